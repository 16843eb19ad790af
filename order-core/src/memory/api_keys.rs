//! [`MemoryApiKeys`]: API keys in memory, optionally kept in a file.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::lock;
use crate::access::{ApiKey, KeyId};
use crate::ports::{ApiKeyStore, RepoError};

/// [`ApiKeyStore`] in memory, optionally kept in a file of JSON lines (one stored key per
/// line: hashes, never secrets), so the embedded default can have keys that survive a
/// restart. A store read [from a file](MemoryApiKeys::from_file) appends every key it is
/// given and every revocation to it (synced before the call returns), so a key revoked
/// over the API stays revoked after a restart. Clones share their keys.
#[derive(Debug, Clone, Default)]
pub struct MemoryApiKeys {
    keys: Arc<Mutex<Vec<ApiKey>>>,
    file: Option<Arc<std::path::PathBuf>>,
}

impl MemoryApiKeys {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys in `path` (a missing file holds none). The file is a log: a later line for
    /// the same id (a revocation) replaces the earlier one. A line that is not a stored key
    /// is an error naming it.
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut keys = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let key: ApiKey = serde_json::from_str(line).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: line {} is not a stored API key: {e}",
                        path.display(),
                        n + 1
                    ),
                )
            })?;
            match keys.iter_mut().find(|k: &&mut ApiKey| k.id == key.id) {
                Some(earlier) => *earlier = key,
                None => keys.push(key),
            }
        }
        keys.reverse();
        Ok(Self {
            keys: Arc::new(Mutex::new(keys)),
            file: Some(Arc::new(path.to_owned())),
        })
    }

    /// Appends `key` to this store's file, if it has one.
    fn persist(&self, key: &ApiKey) -> Result<(), RepoError> {
        match &self.file {
            Some(path) => Self::append_to_file(path, key)
                .map_err(|e| RepoError::Unavailable(format!("{}: {e}", path.display()).into())),
            None => Ok(()),
        }
    }

    /// Appends `key` to the file at `path` (created if missing).
    pub fn append_to_file(path: &std::path::Path, key: &ApiKey) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut line = serde_json::to_string(key).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        file.write_all(line.as_bytes())?;
        file.sync_all()
    }
}

#[async_trait]
impl ApiKeyStore for MemoryApiKeys {
    async fn insert_key(&self, key: &ApiKey) -> Result<(), RepoError> {
        self.persist(key)?;
        lock(&self.keys).insert(0, key.clone());
        Ok(())
    }

    async fn key(&self, id: &KeyId) -> Result<Option<ApiKey>, RepoError> {
        Ok(lock(&self.keys).iter().find(|k| &k.id == id).cloned())
    }

    async fn keys(&self) -> Result<Vec<ApiKey>, RepoError> {
        Ok(lock(&self.keys).clone())
    }

    async fn revoke_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<Option<ApiKey>, RepoError> {
        let revoked = {
            let mut keys = lock(&self.keys);
            keys.iter_mut().find(|k| &k.id == id).map(|k| {
                k.revoked_at = k.revoked_at.or(Some(at));
                k.clone()
            })
        };
        if let Some(key) = &revoked {
            self.persist(key)?;
        }
        Ok(revoked)
    }

    async fn touch_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<(), RepoError> {
        if let Some(k) = lock(&self.keys).iter_mut().find(|k| &k.id == id) {
            k.last_used_at = k.last_used_at.max(Some(at));
        }
        Ok(())
    }
}
