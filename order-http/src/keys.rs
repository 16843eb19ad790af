//! `order-http keys create|list|revoke`: manage API keys straight in the store the
//! configuration names (PostgreSQL with `DATABASE_URL`, else the `API_KEYS_FILE`), with no
//! service running and no key needed: how the first key of a deployment is made.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use order_core::CustomerId;
use order_core::access::{ApiKey, KeyId, NewApiKey, Scope, issue};
use order_core::memory::MemoryApiKeys;
use order_core::ports::{ApiKeyStore, RepoError};
use order_store_postgres::{PgOrderRepo, PoolConfig};

use crate::Config;

/// A `keys` command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Creates a key and prints it, alone, on standard output (it is shown only now).
    Create {
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// Its scopes, separated by commas: orders:read, orders:write, orders:cancel,
        /// payments:capture, payments:refund, webhooks:manage, keys:manage, metrics:read.
        #[arg(long, value_delimiter = ',', required = true, value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Bind the key to this customer: it then sees and places that customer's orders
        /// only.
        #[arg(long)]
        customer: Option<String>,
        /// Make the key expire after this long: `3600`, `90m`, `12h` or `30d`.
        #[arg(long, value_parser = parse_lifetime)]
        expires_in: Option<Duration>,
    },
    /// Lists every key, newest first (never their secrets).
    List,
    /// Revokes a key by its id.
    Revoke {
        /// The key's id (the 16 hex digits after `ordk_`).
        id: String,
    },
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse().map_err(|e: order_core::Invalid| e.to_string())
}

/// `3600`, `90m`, `12h` or `30d`.
fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a lifetime: {s:?} (try 3600, 90m, 12h or 30d)"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit {other:?}: use s, m, h or d")),
    };
    match n.checked_mul(unit) {
        Some(0) | None => Err(format!("not a usable lifetime: {s:?}")),
        Some(seconds) => Ok(Duration::from_secs(seconds)),
    }
}

/// Why a `keys` command failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Neither `DATABASE_URL` nor `API_KEYS_FILE` is set.
    #[error("nowhere to keep keys: set DATABASE_URL, or API_KEYS_FILE for the embedded default")]
    NoStore,
    /// The store failed.
    #[error("the key store failed: {0}")]
    Store(#[from] RepoError),
    /// The key file failed.
    #[error("the key file failed: {0}")]
    File(#[from] std::io::Error),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
}

/// Runs `command`; returns what goes to standard output.
pub async fn run(config: &Config, command: KeysCommand) -> Result<String, KeysError> {
    let now = chrono::Utc::now();
    let (store, file): (Arc<dyn ApiKeyStore>, _) =
        match (&config.database_url, &config.api_keys_file) {
            (Some(url), _) => {
                let pool = PoolConfig {
                    max_connections: 2,
                    acquire_timeout: Duration::from_secs(10),
                    statement_timeout: config.database_statement_timeout,
                };
                (
                    Arc::new(PgOrderRepo::connect(url.expose(), &pool).await?),
                    None,
                )
            }
            (None, Some(path)) => (
                Arc::new(MemoryApiKeys::from_file(path)?),
                Some(path.clone()),
            ),
            (None, None) => return Err(KeysError::NoStore),
        };
    match command {
        KeysCommand::Create {
            name,
            scopes,
            customer,
            expires_in,
        } => {
            let customer_id = customer
                .map(CustomerId::parse)
                .transpose()
                .map_err(|e| KeysError::Invalid(format!("--customer {e}")))?;
            let expires_at = expires_in
                .map(|d| {
                    chrono::Duration::from_std(d)
                        .ok()
                        .and_then(|d| now.checked_add_signed(d))
                        .ok_or(())
                })
                .transpose()
                .map_err(|()| KeysError::Invalid("--expires-in is too long".into()))?;
            let new = NewApiKey {
                name,
                scopes,
                customer_id,
                expires_at,
            };
            let (key, secret) = issue(new, now).map_err(|e| KeysError::Invalid(e.to_string()))?;
            store.insert_key(&key).await?;
            if let Some(path) = &file {
                MemoryApiKeys::append_to_file(path, &key)?;
            }
            eprintln!(
                "created API key {} ({}); it is shown only now",
                key.id, key.name
            );
            Ok(format!("{secret}\n"))
        }
        KeysCommand::List => Ok(table(&store.keys().await?)),
        KeysCommand::Revoke { id } => {
            let id = KeyId::parse(&id).map_err(|e| KeysError::Invalid(e.to_string()))?;
            let key = store
                .revoke_key(&id, now)
                .await?
                .ok_or_else(|| KeysError::Invalid(format!("no API key {id}")))?;
            if let Some(path) = &file {
                MemoryApiKeys::append_to_file(path, &key)?;
            }
            Ok(format!("revoked {id}\n"))
        }
    }
}

/// Keys as a table, one per line.
fn table(keys: &[ApiKey]) -> String {
    let mut out = String::from(
        "ID                NAME                 SCOPES                                   CUSTOMER      EXPIRES                    REVOKED                    LAST USED\n",
    );
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
    };
    for key in keys {
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        let _ = writeln!(
            out,
            "{:<17} {:<20} {:<40} {:<13} {:<26} {:<26} {}",
            key.id,
            key.name,
            scopes.join(","),
            key.customer_id.as_ref().map_or("-", CustomerId::as_str),
            time(key.expires_at),
            time(key.revoked_at),
            time(key.last_used_at),
        );
    }
    out
}
