//! Webhook signing secrets sealed at rest: with [`SecretKeys`], every secret is written as
//! XChaCha20-Poly1305 ciphertext bound to its endpoint's id, so a copy of the database (a
//! dump, a backup, a read replica's disk) holds no secret a receiver trusts.
//!
//! A stored value is one of
//! - a secret as it was written before a key was set (24 to 64 bytes, read as is);
//! - `1 ‖ nonce (24 bytes) ‖ ciphertext and tag`, sealed by an earlier version with a key
//!   it does not name (opened by trying each key);
//! - `2 ‖ key id (4 bytes) ‖ nonce (24 bytes) ‖ ciphertext and tag`: the key id names the
//!   key that sealed it, so the values sealed with another key than the current one are
//!   found by a scan of the table, without opening anything.
//!
//! Once a key is set, [`seal_stored_secrets`] seals the older ones at start, and after a
//! rotation of the key itself (the new one in `WEBHOOK_SECRET_KEY`, the old ones in
//! `WEBHOOK_SECRET_KEY_PREVIOUS`) it seals again, with the current key, every value the old
//! ones sealed; from then on the old keys may be dropped.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use order_core::ports::RepoError;
use order_core::webhook::EndpointId;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::translate;

/// The longest secret stored unsealed; anything longer is a sealed one.
const PLAIN_MAX: usize = 64;
/// The first byte of a value sealed without naming its key.
const SEALED_V1: u8 = 1;
/// The first byte of a value sealed naming its key.
const SEALED_V2: u8 = 2;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// One key secrets are sealed with: 32 bytes (64 hex digits).
#[derive(Clone)]
pub struct SecretKey {
    key: chacha20poly1305::Key,
    /// Names the key in what it seals: the start of a hash of it, which tells nothing of it.
    id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", order_core::hex::encode(&self.id))
    }
}

impl SecretKey {
    /// Reads 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, String> {
        let key = order_core::hex::decode::<32>(hex.trim()).ok_or_else(|| {
            "must be 64 hex digits (32 bytes), as `openssl rand -hex 32` prints".to_owned()
        })?;
        let digest = Sha256::new()
            .chain_update(b"order-service webhook secret key id\0")
            .chain_update(key)
            .finalize();
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Ok(Self {
            key: key.into(),
            id,
        })
    }

    /// `secret`, sealed for endpoint `id`, naming this key.
    fn seal(&self, id: EndpointId, secret: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new(&self.key);
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = id.as_uuid();
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret,
                    aad: aad.as_bytes(),
                },
            )
            .expect("sealing a short secret cannot fail");
        let mut out = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + sealed.len());
        out.push(SEALED_V2);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens `sealed` (nonce, then ciphertext and tag) for endpoint `id`, if this key
    /// sealed it.
    fn open(&self, id: EndpointId, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let aad = id.as_uuid();
        XChaCha20Poly1305::new(&self.key)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .ok()
    }
}

/// The keys secrets are sealed with: the current one (`WEBHOOK_SECRET_KEY`) seals and
/// opens; the previous ones (`WEBHOOK_SECRET_KEY_PREVIOUS`) only open what they sealed
/// before a rotation, until [`seal_stored_secrets`] has sealed it again with the current.
#[derive(Debug, Clone)]
pub struct SecretKeys {
    current: SecretKey,
    previous: Vec<SecretKey>,
}

impl From<SecretKey> for SecretKeys {
    fn from(current: SecretKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }
}

impl SecretKeys {
    /// The same keys, opening also what `previous` sealed.
    #[must_use]
    pub fn with_previous(mut self, previous: Vec<SecretKey>) -> Self {
        self.previous = previous;
        self
    }

    /// Every key, the current one first.
    fn all(&self) -> impl Iterator<Item = &SecretKey> {
        std::iter::once(&self.current).chain(&self.previous)
    }
}

/// Writes `secret` of endpoint `id` as it is stored: sealed with the current key, if there
/// is one.
pub(crate) fn stored(keys: Option<&SecretKeys>, id: EndpointId, secret: &[u8]) -> Vec<u8> {
    keys.map_or_else(|| secret.to_vec(), |keys| keys.current.seal(id, secret))
}

/// Reads a stored secret of endpoint `id`: unsealed ones as they are, sealed ones with the
/// key that sealed them. A sealed one without keys, or that no key opens (a key not given,
/// another endpoint's value, altered bytes), is an error naming why.
pub(crate) fn open(
    keys: Option<&SecretKeys>,
    id: EndpointId,
    stored: Vec<u8>,
) -> Result<Vec<u8>, String> {
    if stored.len() <= PLAIN_MAX {
        return Ok(stored);
    }
    let Some(keys) = keys else {
        return Err("sealed, and WEBHOOK_SECRET_KEY is not set".into());
    };
    match (stored[0], &stored[1..]) {
        (SEALED_V2, rest) if rest.len() >= KEY_ID_LEN + NONCE_LEN + TAG_LEN => {
            let (key_id, sealed) = rest.split_at(KEY_ID_LEN);
            let key = keys.all().find(|k| k.id == key_id).ok_or_else(|| {
                format!(
                    "sealed with key {}, which is neither WEBHOOK_SECRET_KEY nor one of \
                     WEBHOOK_SECRET_KEY_PREVIOUS",
                    order_core::hex::encode(key_id)
                )
            })?;
            key.open(id, sealed)
                .ok_or_else(|| "altered, or another endpoint's".into())
        }
        (SEALED_V1, sealed) if sealed.len() >= NONCE_LEN + TAG_LEN => {
            keys.all().find_map(|k| k.open(id, sealed)).ok_or_else(|| {
                "sealed with a key that is neither WEBHOOK_SECRET_KEY nor one of \
                 WEBHOOK_SECRET_KEY_PREVIOUS, or altered"
                    .into()
            })
        }
        _ => Err("not a sealed secret this service wrote".into()),
    }
}

/// What [`seal_stored_secrets`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Rows whose values are now all sealed with the current key.
    pub sealed: u64,
    /// Rows holding a value no key opens: left as they are (their endpoints' routes and
    /// deliveries fail until the key that sealed them is given).
    pub unreadable: u64,
}

/// Seals with the current key every secret stored unsealed or sealed with another key,
/// each row only if it still holds what was read (a concurrent rotation wins).
pub async fn seal_stored_secrets(pool: &PgPool, keys: &SecretKeys) -> Result<Resealed, RepoError> {
    let mut current = Vec::with_capacity(1 + KEY_ID_LEN);
    current.push(SEALED_V2);
    current.extend_from_slice(&keys.current.id);
    let rows: Vec<(Uuid, Vec<u8>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT id, secret, previous_secret FROM webhook_endpoints \
         WHERE substring(secret FROM 1 FOR 5) <> $1 OR length(secret) <= 64 \
            OR substring(previous_secret FROM 1 FOR 5) <> $1 OR length(previous_secret) <= 64",
    )
    .bind(&current)
    .fetch_all(pool)
    .await
    .map_err(translate)?;
    let mut done = Resealed::default();
    for (id, secret, previous) in rows {
        let endpoint = EndpointId::from_uuid(id);
        let reseal = |value: &Vec<u8>| -> Result<Vec<u8>, String> {
            if value.len() > PLAIN_MAX && value.starts_with(&current) {
                return Ok(value.clone());
            }
            let clear = open(Some(keys), endpoint, value.clone())?;
            Ok(keys.current.seal(endpoint, &clear))
        };
        let (new_secret, new_previous) = match (
            reseal(&secret),
            previous.as_ref().map(reseal).transpose(),
        ) {
            (Ok(s), Ok(p)) => (s, p),
            (Err(why), _) | (_, Err(why)) => {
                tracing::warn!(endpoint_id = %endpoint, reason = %why, "a webhook secret could not be sealed with the current key");
                done.unreadable += 1;
                continue;
            }
        };
        let updated = sqlx::query(
            "UPDATE webhook_endpoints SET secret = $4, previous_secret = $5 \
             WHERE id = $1 AND secret = $2 AND previous_secret IS NOT DISTINCT FROM $3",
        )
        .bind(id)
        .bind(&secret)
        .bind(&previous)
        .bind(new_secret)
        .bind(new_previous)
        .execute(pool)
        .await
        .map_err(translate)?;
        done.sealed += updated.rows_affected();
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: &str) -> SecretKey {
        SecretKey::from_hex(&byte.repeat(32)).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_with_its_key_for_its_endpoint_only() {
        let keys = SecretKeys::from(key("ab"));
        let other = SecretKeys::from(key("cd"));
        let (id, elsewhere) = (EndpointId::new(), EndpointId::new());
        let secret = [7_u8; 32];
        let sealed = stored(Some(&keys), id, &secret);
        assert!(sealed.len() > PLAIN_MAX && !sealed.windows(32).any(|w| w == secret));
        assert_eq!(open(Some(&keys), id, sealed.clone()).unwrap(), secret);
        assert!(
            open(Some(&other), id, sealed.clone())
                .unwrap_err()
                .contains("neither WEBHOOK_SECRET_KEY nor one of WEBHOOK_SECRET_KEY_PREVIOUS"),
            "another key"
        );
        assert!(
            open(Some(&keys), elsewhere, sealed.clone()).is_err(),
            "another endpoint"
        );
        assert!(open(None, id, sealed.clone()).is_err(), "no key");
        let mut altered = sealed;
        *altered.last_mut().unwrap() ^= 1;
        assert!(open(Some(&keys), id, altered).is_err(), "altered");
        assert_eq!(
            open(None, id, secret.to_vec()).unwrap(),
            secret,
            "unsealed, as it was"
        );
        assert_eq!(stored(None, id, &secret), secret, "no key: stored as is");
        for bad in ["", "ab", &"zz".repeat(32), &"ab".repeat(33)] {
            assert!(SecretKey::from_hex(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn after_a_rotation_the_previous_keys_open_what_they_sealed_and_only_the_new_one_seals() {
        let (old, new) = (key("0a"), key("0b"));
        let id = EndpointId::new();
        let secret = [9_u8; 32];
        let sealed_before = stored(Some(&SecretKeys::from(old.clone())), id, &secret);
        let rotated = SecretKeys::from(new.clone()).with_previous(vec![old]);
        assert_eq!(
            open(Some(&rotated), id, sealed_before.clone()).unwrap(),
            secret
        );
        let sealed_after = stored(Some(&rotated), id, &secret);
        assert_eq!(
            open(Some(&SecretKeys::from(new)), id, sealed_after).unwrap(),
            secret,
            "the new key alone opens what is sealed now"
        );
        assert!(
            open(Some(&SecretKeys::from(key("0c"))), id, sealed_before).is_err(),
            "a key never given opens nothing"
        );
    }

    #[test]
    fn values_sealed_without_naming_their_key_open_with_whichever_key_sealed_them() {
        let (old, new) = (key("1a"), key("1b"));
        let id = EndpointId::new();
        let secret = [5_u8; 32];
        // The first format: version 1, then the nonce and ciphertext (no key id).
        let mut v1 = vec![SEALED_V1];
        v1.extend_from_slice(&old.seal(id, &secret)[1 + KEY_ID_LEN..]);
        let keys = SecretKeys::from(new).with_previous(vec![old]);
        assert_eq!(open(Some(&keys), id, v1).unwrap(), secret);
    }

    #[test]
    fn a_key_id_tells_nothing_of_the_key_and_the_debug_form_shows_only_it() {
        let k = key("ab");
        assert_ne!(&k.id[..], &[0xab; KEY_ID_LEN][..]);
        assert_eq!(
            format!("{k:?}"),
            format!("SecretKey({})", order_core::hex::encode(&k.id))
        );
    }
}
