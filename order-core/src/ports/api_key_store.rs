//! [`ApiKeyStore`]: where API keys (their hashes, never their secrets) are kept.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::RepoError;

/// Where API keys are kept.
///
/// # Contract
/// - `insert_key` stores a new key (its id is new); `key` returns it as stored, `keys` every
///   key, newest first.
/// - `revoke_key(id, at)` sets `revoked_at` once (revoking again keeps the first time) and
///   returns the key; `None` if there is no such key.
/// - `touch_key(id, at)` records `last_used_at` (never moving it back); no such key is not an
///   error.
/// - Nothing here ever sees a key's secret, only its hash.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key.
    async fn insert_key(&self, key: &crate::access::ApiKey) -> Result<(), RepoError>;
    /// The key with this id.
    async fn key(
        &self,
        id: &crate::access::KeyId,
    ) -> Result<Option<crate::access::ApiKey>, RepoError>;
    /// Every key, newest first.
    async fn keys(&self) -> Result<Vec<crate::access::ApiKey>, RepoError>;
    /// Revokes a key from `at`.
    async fn revoke_key(
        &self,
        id: &crate::access::KeyId,
        at: DateTime<Utc>,
    ) -> Result<Option<crate::access::ApiKey>, RepoError>;
    /// Records that the key was used at `at`.
    async fn touch_key(
        &self,
        id: &crate::access::KeyId,
        at: DateTime<Utc>,
    ) -> Result<(), RepoError>;
}
