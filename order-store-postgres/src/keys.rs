//! API keys: the [`ApiKeyStore`] port on the `api_keys` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::CustomerId;
use order_core::access::{ApiKey, KeyId, Scope, SecretHash};
use order_core::ports::{ApiKeyStore, RepoError};

use crate::PgOrderRepo;
use crate::error::{CorruptRow, translate};

const COLUMNS: &str = "id, name, scopes, customer_id, created_at, expires_at, revoked_at, \
     last_used_at, secret_sha256";

/// One row of `api_keys`.
#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    name: String,
    scopes: Vec<String>,
    customer_id: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    secret_sha256: Vec<u8>,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = CorruptRow;

    fn try_from(row: KeyRow) -> Result<Self, Self::Error> {
        let corrupt = |column, e| CorruptRow::new("api_keys", column, e);
        Ok(Self {
            id: KeyId::parse(&row.id).map_err(|e| corrupt("id", e))?,
            name: row.name,
            scopes: row
                .scopes
                .iter()
                .map(|s| s.parse::<Scope>())
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt("scopes", e))?,
            customer_id: row
                .customer_id
                .map(CustomerId::parse)
                .transpose()
                .map_err(|e| corrupt("customer_id", e))?,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
            secret_hash: SecretHash::from_bytes(&row.secret_sha256)
                .map_err(|e| corrupt("secret_sha256", e))?,
        })
    }
}

fn key(row: KeyRow) -> Result<ApiKey, RepoError> {
    Ok(ApiKey::try_from(row)?)
}

#[async_trait]
impl ApiKeyStore for PgOrderRepo {
    async fn insert_key(&self, key: &ApiKey) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, scopes, customer_id, created_at, expires_at, \
             revoked_at, last_used_at, secret_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(key.id.as_str())
        .bind(&key.name)
        .bind(key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        .bind(key.customer_id.as_ref().map(CustomerId::as_str))
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.revoked_at)
        .bind(key.last_used_at)
        .bind(key.secret_hash.as_bytes().as_slice())
        .execute(self.db()?)
        .await
        .map_err(translate)?;
        Ok(())
    }

    async fn key(&self, id: &KeyId) -> Result<Option<ApiKey>, RepoError> {
        sqlx::query_as::<_, KeyRow>(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.db()?)
            .await
            .map_err(translate)?
            .map(key)
            .transpose()
    }

    async fn keys(&self) -> Result<Vec<ApiKey>, RepoError> {
        sqlx::query_as::<_, KeyRow>(&format!(
            "SELECT {COLUMNS} FROM api_keys ORDER BY created_at DESC, id DESC"
        ))
        .fetch_all(self.db()?)
        .await
        .map_err(translate)?
        .into_iter()
        .map(key)
        .collect()
    }

    async fn revoke_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<Option<ApiKey>, RepoError> {
        sqlx::query_as::<_, KeyRow>(&format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 \
             RETURNING {COLUMNS}"
        ))
        .bind(id.as_str())
        .bind(at)
        .fetch_optional(self.db()?)
        .await
        .map_err(translate)?
        .map(key)
        .transpose()
    }

    async fn touch_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(id.as_str())
        .bind(at)
        .execute(self.db()?)
        .await
        .map_err(translate)?;
        Ok(())
    }
}
