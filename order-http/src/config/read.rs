//! Readers of one variable (or one group of them): each checks its value and names the
//! variable in its error.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use order_core::policy::circuit_breaker::BreakerConfig;
use order_core::policy::rate_limit::{Quota, QuotaError};
use order_core::policy::retry::RetryPolicy;
use order_gateway_mock::SimulationConfig;
use order_queue_redis::RedisMode;

use super::ConfigError;

/// An optional socket address such as `0.0.0.0:9464`.
pub(super) fn socket_addr(
    l: &impl Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    match l(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| {
            ConfigError::new(
                name,
                format!("expected an address such as 0.0.0.0:9464, got {v:?}"),
            )
        }),
    }
}

pub(super) fn parse<T: FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    what: &str,
) -> Result<T, ConfigError> {
    match lookup(name) {
        None => Ok(default),
        Some(raw) if raw.trim().is_empty() => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(name, format!("expected {what}, got {raw:?}"))),
    }
}

pub(super) fn seconds(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: f64,
) -> Result<Duration, ConfigError> {
    let value: f64 = parse(lookup, name, default, "a number of seconds")?;
    Duration::try_from_secs_f64(value).map_err(|_| {
        ConfigError::new(
            name,
            format!("expected a non-negative number of seconds, got {value}"),
        )
    })
}

pub(super) fn millis(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
) -> Result<Duration, ConfigError> {
    parse(lookup, name, default, "a whole number of milliseconds").map(Duration::from_millis)
}

pub(super) fn url(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    schemes: &[&str],
) -> Result<Option<String>, ConfigError> {
    match lookup(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) if has_scheme(&v, schemes) => Ok(Some(v)),
        Some(v) => Err(ConfigError::new(
            name,
            format!("expected a {} URL, got {v:?}", schemes.join("/")),
        )),
    }
}

pub(super) fn flag(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
) -> Result<bool, ConfigError> {
    flag_or(lookup, name, false)
}

/// A true/false variable, `default` when unset.
pub(super) fn flag_or(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: bool,
) -> Result<bool, ConfigError> {
    match lookup(name)
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") => Ok(default),
        Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => Err(ConfigError::new(
            name,
            format!("expected true or false, got {other:?}"),
        )),
    }
}

/// One rate limit: `{prefix}_PER_SECOND` (unset: no limit) and `{prefix}_BURST` (by default
/// one second's worth, at least 1).
pub(super) fn quota(
    lookup: &impl Fn(&str) -> Option<String>,
    prefix: &str,
) -> Result<Option<Quota>, ConfigError> {
    let rate_name = format!("{prefix}_PER_SECOND");
    let burst_name = format!("{prefix}_BURST");
    let Some(rate) = lookup(&rate_name).filter(|v| !v.trim().is_empty()) else {
        if lookup(&burst_name).is_some_and(|v| !v.trim().is_empty()) {
            return Err(ConfigError::new(
                &burst_name,
                format!("is set without {rate_name}"),
            ));
        }
        return Ok(None);
    };
    let rate: f64 = rate.trim().parse().map_err(|_| {
        ConfigError::new(
            &rate_name,
            format!("expected a number of requests per second, got {rate:?}"),
        )
    })?;
    // A positive rate's ceiling, as a burst (saturating for absurd rates).
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "saturating; only a default"
    )]
    let default_burst = (rate.ceil().max(1.0)) as u32;
    let burst: u32 = parse(lookup, &burst_name, default_burst, "a whole number")?;
    Quota::new(rate, burst).map(Some).map_err(|e| match e {
        QuotaError::Rate => ConfigError::new(&rate_name, format!("{e}, got {rate}")),
        QuotaError::Burst => ConfigError::new(&burst_name, e.to_string()),
    })
}

/// The quota of refused API keys per address: `RATE_LIMIT_AUTH_FAILURES_PER_SECOND` (1;
/// `0`: no limit) and `RATE_LIMIT_AUTH_FAILURES_BURST` (100).
pub(super) fn auth_failures(
    l: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Quota>, ConfigError> {
    defaulted_quota(l, "RATE_LIMIT_AUTH_FAILURES", "1", "100")
}

/// `RATE_LIMIT_REDELIVERIES_PER_SECOND` (1) and `_BURST` (60): event redeliveries per
/// caller; `PER_SECOND=0` turns it off.
pub(super) fn redeliveries(
    l: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Quota>, ConfigError> {
    defaulted_quota(l, "RATE_LIMIT_REDELIVERIES", "1", "60")
}

/// The quota `{prefix}_PER_SECOND` and `{prefix}_BURST`, each `rate` and `burst` when
/// unset; a rate of `0` is no quota.
fn defaulted_quota(
    l: &impl Fn(&str) -> Option<String>,
    prefix: &str,
    rate: &str,
    burst: &str,
) -> Result<Option<Quota>, ConfigError> {
    let rate_name = format!("{prefix}_PER_SECOND");
    let burst_name = format!("{prefix}_BURST");
    let given_rate = l(&rate_name).filter(|v| !v.trim().is_empty());
    if given_rate.as_deref().map(str::trim) == Some("0") {
        return Ok(None);
    }
    let with_defaults = |name: &str| {
        if name == rate_name {
            given_rate.clone().or_else(|| Some(rate.to_owned()))
        } else if name == burst_name {
            l(name)
                .filter(|v| !v.trim().is_empty())
                .or_else(|| Some(burst.to_owned()))
        } else {
            l(name)
        }
    };
    quota(&with_defaults, prefix)
}

/// `REDIS_CA_FILE`: a readable PEM certificate, for `rediss://` URLs only.
pub(super) fn redis_ca(
    l: &impl Fn(&str) -> Option<String>,
    redis_url: Option<&str>,
) -> Result<Option<RootCa>, ConfigError> {
    const NAME: &str = "REDIS_CA_FILE";
    let Some(path) = l(NAME).filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let path = path.trim();
    if !redis_url.is_some_and(|u| u.split(',').all(|u| has_scheme(u, &["rediss"]))) {
        return Err(ConfigError::new(
            NAME,
            "is for servers reached over TLS: REDIS_URL must use rediss://".to_owned(),
        ));
    }
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::new(NAME, format!("cannot read {path}: {e}")))?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(ConfigError::new(
            NAME,
            format!("{path} holds no PEM certificate"),
        ));
    }
    Ok(Some(RootCa(pem)))
}

/// A certificate authority's certificate, PEM (shown by its size only).
#[derive(Clone, PartialEq, Eq)]
pub struct RootCa(pub Vec<u8>);

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootCa({} bytes of PEM)", self.0.len())
    }
}

/// `WEBHOOK_SECRET_KEY`: 64 hex digits, for a PostgreSQL store only; with it,
/// `WEBHOOK_SECRET_KEY_PREVIOUS`: the keys it replaced, comma-separated.
pub(super) fn secret_keys(
    l: &impl Fn(&str) -> Option<String>,
    embedded: bool,
) -> Result<Option<order_store_postgres::SecretKeys>, ConfigError> {
    const NAME: &str = "WEBHOOK_SECRET_KEY";
    const PREVIOUS: &str = "WEBHOOK_SECRET_KEY_PREVIOUS";
    let previous = l(PREVIOUS).filter(|v| !v.trim().is_empty());
    let current = match l(NAME).filter(|v| !v.trim().is_empty()) {
        None if previous.is_some() => {
            return Err(ConfigError::new(
                PREVIOUS,
                format!("opens secrets sealed before a rotation: set {NAME} to the new key"),
            ));
        }
        None => return Ok(None),
        Some(_) if embedded => {
            return Err(ConfigError::new(
                NAME,
                "seals secrets stored in PostgreSQL: set DATABASE_URL too".to_owned(),
            ));
        }
        Some(hex) => order_store_postgres::SecretKey::from_hex(&hex)
            .map_err(|e| ConfigError::new(NAME, e))?,
    };
    let previous = previous
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .enumerate()
        .map(|(i, hex)| {
            order_store_postgres::SecretKey::from_hex(hex)
                .map_err(|e| ConfigError::new(PREVIOUS, format!("key {}: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(
        order_store_postgres::SecretKeys::from(current).with_previous(previous),
    ))
}

pub(super) fn api_keys_file(
    l: &impl Fn(&str) -> Option<String>,
) -> Result<Option<std::path::PathBuf>, ConfigError> {
    let file = l("API_KEYS_FILE").filter(|v| !v.trim().is_empty());
    let database = l("DATABASE_URL").filter(|v| !v.trim().is_empty());
    match (file, database) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            "API_KEYS_FILE",
            "is for the embedded default; with DATABASE_URL keys live in PostgreSQL \
             (create them with `order-http keys create`)"
                .to_owned(),
        )),
        (file, _) => Ok(file.map(|f| std::path::PathBuf::from(f.trim()))),
    }
}

pub(super) fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    schemes
        .iter()
        .any(|s| url.trim().starts_with(&format!("{s}://")))
}

/// `REDIS_MODE`, and `REDIS_URL` as that mode reads it: one URL, or (cluster) seed URLs
/// separated by commas.
pub(super) fn redis(
    l: &impl Fn(&str) -> Option<String>,
) -> Result<(RedisMode, Option<String>), ConfigError> {
    let mode: RedisMode = match l("REDIS_MODE").filter(|s| !s.trim().is_empty()) {
        None => RedisMode::Standalone,
        Some(v) => v.parse().map_err(|e| ConfigError::new("REDIS_MODE", e))?,
    };
    let schemes = &["redis", "rediss"];
    let url = match (mode, l("REDIS_URL").filter(|v| !v.trim().is_empty())) {
        (_, None) => None,
        (RedisMode::Cluster, Some(list)) => {
            if let Some(bad) = list.split(',').find(|u| !has_scheme(u, schemes)) {
                return Err(ConfigError::new(
                    "REDIS_URL",
                    format!("expected redis/rediss URLs separated by commas, got {bad:?}"),
                ));
            }
            Some(list)
        }
        (RedisMode::Standalone, Some(v)) if v.contains(',') => {
            return Err(ConfigError::new(
                "REDIS_URL",
                "several URLs need REDIS_MODE=cluster".to_owned(),
            ));
        }
        (RedisMode::Standalone, Some(_)) => url(l, "REDIS_URL", schemes)?,
    };
    Ok((mode, url))
}

pub(super) fn positive<T: PartialOrd + Default + std::fmt::Display>(
    name: &str,
    value: T,
) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError::new(
            name,
            format!("must be at least 1, got {value}"),
        ))
    }
}

pub(super) fn retry_policy(
    l: &impl Fn(&str) -> Option<String>,
) -> Result<RetryPolicy, ConfigError> {
    let attempts: u32 = positive(
        "PAYMENT_RETRY_ATTEMPTS",
        parse(l, "PAYMENT_RETRY_ATTEMPTS", 3, "a whole number")?,
    )?;
    let base = seconds(l, "PAYMENT_RETRY_DELAY", 1.0)?;
    let cap = seconds(l, "PAYMENT_RETRY_MAX_DELAY", 60.0)?.max(base);
    RetryPolicy::new(attempts, base, cap)
        .map_err(|e| ConfigError::new("PAYMENT_RETRY_ATTEMPTS", e.to_string()))
}

pub(super) fn breaker(l: &impl Fn(&str) -> Option<String>) -> Result<BreakerConfig, ConfigError> {
    Ok(BreakerConfig {
        failure_threshold: positive(
            "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
            parse(l, "CIRCUIT_BREAKER_FAILURE_THRESHOLD", 5, "a whole number")?,
        )?,
        recovery_timeout: seconds(l, "CIRCUIT_BREAKER_RECOVERY_TIMEOUT", 60.0)?,
        half_open_probes: positive(
            "CIRCUIT_BREAKER_HALF_OPEN_PROBES",
            parse(l, "CIRCUIT_BREAKER_HALF_OPEN_PROBES", 1, "a whole number")?,
        )?,
        probe_wait: Duration::from_secs(1),
    })
}

pub(super) fn gateway(
    l: &impl Fn(&str) -> Option<String>,
) -> Result<SimulationConfig, ConfigError> {
    let share = "a number between 0 and 1";
    let latency_min = millis(l, "PAYMENT_MOCK_LATENCY_MIN", 50)?;
    let latency_max = millis(l, "PAYMENT_MOCK_LATENCY_MAX", 200)?;
    let gateway = SimulationConfig::new(
        parse(l, "PAYMENT_MOCK_SUCCESS_RATE", 0.95, share)?,
        latency_min..=latency_max,
        parse(l, "PAYMENT_MOCK_DECLINE_SHARE", 0.5, share)?,
        parse(l, "PAYMENT_MOCK_TIMEOUT_SHARE", 0.1, share)?,
    )
    .map_err(|e| ConfigError::new(e.name, format!("must be {} (got {})", e.expected, e.got)))?;
    match l("PAYMENT_MOCK_SEED").filter(|s| !s.trim().is_empty()) {
        None => Ok(gateway),
        Some(seed) => seed
            .trim()
            .parse()
            .map(|seed| gateway.with_seed(seed))
            .map_err(|_| {
                ConfigError::new(
                    "PAYMENT_MOCK_SEED",
                    format!("expected a whole number, got {seed:?}"),
                )
            }),
    }
}
