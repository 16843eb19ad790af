//! Webhook signing secrets sealed at rest: with a [`SecretKey`], every secret is written as
//! XChaCha20-Poly1305 ciphertext bound to its endpoint's id, so a copy of the database (a
//! dump, a backup, a read replica's disk) holds no secret a receiver trusts.
//!
//! A stored value is either a secret as it was written before a key was set (24 to 64
//! bytes, read as is) or `1 ‖ nonce (24 bytes) ‖ ciphertext and tag` (more than 64). Once a
//! key is set, [`seal_stored_secrets`] seals the older ones at start.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use order_core::ports::RepoError;
use order_core::webhook::EndpointId;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::translate;

/// The longest secret stored unsealed; anything longer is a sealed one.
const PLAIN_MAX: usize = 64;
/// The first byte of a sealed value: the format's version.
const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 24;

/// The key secrets are sealed with: 32 bytes (`WEBHOOK_SECRET_KEY`, 64 hex digits).
#[derive(Clone)]
pub struct SecretKey(chacha20poly1305::Key);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Reads 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<Self, String> {
        let key = order_core::hex::decode::<32>(hex.trim()).ok_or_else(|| {
            "must be 64 hex digits (32 bytes), as `openssl rand -hex 32` prints".to_owned()
        })?;
        Ok(Self(key.into()))
    }

    /// `secret`, sealed for endpoint `id`.
    pub(crate) fn seal(&self, id: EndpointId, secret: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new(&self.0);
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
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }
}

/// Writes `secret` of endpoint `id` as it is stored: sealed with `key`, if there is one.
pub(crate) fn stored(key: Option<&SecretKey>, id: EndpointId, secret: &[u8]) -> Vec<u8> {
    key.map_or_else(|| secret.to_vec(), |key| key.seal(id, secret))
}

/// Reads a stored secret of endpoint `id`: unsealed ones as they are, sealed ones with
/// `key`. A sealed one without the key, or that the key does not open (another key, another
/// endpoint's value, altered bytes), is an error naming why.
pub(crate) fn open(
    key: Option<&SecretKey>,
    id: EndpointId,
    stored: Vec<u8>,
) -> Result<Vec<u8>, String> {
    if stored.len() <= PLAIN_MAX {
        return Ok(stored);
    }
    let Some(key) = key else {
        return Err("sealed, and WEBHOOK_SECRET_KEY is not set".into());
    };
    if stored[0] != SEALED_V1 || stored.len() < 1 + NONCE_LEN + 16 {
        return Err("not a sealed secret this service wrote".into());
    }
    let nonce = XNonce::from_slice(&stored[1..=NONCE_LEN]);
    let aad = id.as_uuid();
    XChaCha20Poly1305::new(&key.0)
        .decrypt(
            nonce,
            Payload {
                msg: &stored[1 + NONCE_LEN..],
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| "sealed with another WEBHOOK_SECRET_KEY, or altered".into())
}

/// Seals every secret still stored unsealed with `key`, each row only if it still holds
/// what was read (a concurrent rotation wins). Returns how many rows it sealed.
pub async fn seal_stored_secrets(pool: &PgPool, key: &SecretKey) -> Result<u64, RepoError> {
    let rows: Vec<(Uuid, Vec<u8>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT id, secret, previous_secret FROM webhook_endpoints \
         WHERE length(secret) <= 64 OR length(previous_secret) <= 64",
    )
    .fetch_all(pool)
    .await
    .map_err(translate)?;
    let mut sealed = 0;
    for (id, secret, previous) in rows {
        let endpoint = EndpointId::from_uuid(id);
        let seal = |value: &Vec<u8>| {
            if value.len() <= PLAIN_MAX {
                key.seal(endpoint, value)
            } else {
                value.clone()
            }
        };
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET secret = $4, previous_secret = $5 \
             WHERE id = $1 AND secret = $2 AND previous_secret IS NOT DISTINCT FROM $3",
        )
        .bind(id)
        .bind(&secret)
        .bind(&previous)
        .bind(seal(&secret))
        .bind(previous.as_ref().map(seal))
        .execute(pool)
        .await
        .map_err(translate)?;
        sealed += done.rows_affected();
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_its_key_for_its_endpoint_only() {
        let key = SecretKey::from_hex(&"ab".repeat(32)).unwrap();
        let other = SecretKey::from_hex(&"cd".repeat(32)).unwrap();
        let (id, elsewhere) = (EndpointId::new(), EndpointId::new());
        let secret = [7_u8; 32];
        let sealed = stored(Some(&key), id, &secret);
        assert!(sealed.len() > PLAIN_MAX && !sealed.windows(32).any(|w| w == secret));
        assert_eq!(open(Some(&key), id, sealed.clone()).unwrap(), secret);
        assert!(
            open(Some(&other), id, sealed.clone()).is_err(),
            "another key"
        );
        assert!(
            open(Some(&key), elsewhere, sealed.clone()).is_err(),
            "another endpoint"
        );
        assert!(open(None, id, sealed.clone()).is_err(), "no key");
        let mut altered = sealed;
        *altered.last_mut().unwrap() ^= 1;
        assert!(open(Some(&key), id, altered).is_err(), "altered");
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
}
