//! Signing secrets and the `webhook-signature` header: making it and checking it.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::error::Invalid;

/// A signing secret: shown as `whsec_` and its bytes in base64. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// What a secret's text starts with.
    pub const PREFIX: &'static str = "whsec_";

    /// A new random secret of 32 bytes.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Reads `whsec_` and base64 (24 to 64 bytes, as the specification allows).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let bad =
            || Invalid::Malformed("a secret is whsec_ and 24 to 64 bytes in base64".to_owned());
        let encoded = text.strip_prefix(Self::PREFIX).ok_or_else(bad)?;
        let bytes = BASE64.decode(encoded).map_err(|_| bad())?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(bad());
        }
        Ok(Self(bytes))
    }

    /// A secret from its stored bytes (24 to 64).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, Invalid> {
        if (24..=64).contains(&bytes.len()) {
            Ok(Self(bytes))
        } else {
            Err(Invalid::Malformed("a secret has 24 to 64 bytes".into()))
        }
    }

    /// Its bytes, for storing.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret's text, `whsec_...`: only for showing it once to its owner.
    pub fn expose(&self) -> String {
        format!("{}{}", Self::PREFIX, BASE64.encode(&self.0))
    }

    /// `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under this secret.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", BASE64.encode(self.mac(id, timestamp, body)))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether `header` (a `webhook-signature` value: space-separated `v1,<base64>`) holds a
    /// signature of `{id}.{timestamp}.{body}` under this secret. Compared in constant time.
    pub fn verifies(&self, header: &str, id: &str, timestamp: i64, body: &[u8]) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        header.split(' ').any(|sig| {
            let Some(encoded) = sig.strip_prefix("v1,") else {
                return false;
            };
            BASE64
                .decode(encoded)
                .is_ok_and(|given| mac.clone().verify_slice(&given).is_ok())
        })
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(whsec_…)")
    }
}

/// The `webhook-signature` header: one `v1,` signature per secret, space-separated.
pub fn signature_header(secrets: &[&Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a received webhook was refused by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A `webhook-*` header is missing or unreadable.
    #[error("missing or unreadable header {0}")]
    Header(&'static str),
    /// The timestamp is too far from now: a replay, or a clock far off.
    #[error("timestamp {0} is more than five minutes from now")]
    Stale(i64),
    /// No signature matches.
    #[error("no signature matches")]
    Signature,
}

/// How far a received timestamp may be from now.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(300);

/// Checks a received webhook the way a receiver must: the headers are there, the timestamp
/// is within five minutes of `now`, and a signature matches one of `secrets`.
pub fn verify(
    secrets: &[&Secret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), VerifyError> {
    let id = id.ok_or(VerifyError::Header("webhook-id"))?;
    let timestamp: i64 = timestamp
        .and_then(|t| t.parse().ok())
        .ok_or(VerifyError::Header("webhook-timestamp"))?;
    let signature = signature.ok_or(VerifyError::Header("webhook-signature"))?;
    let tolerance = i64::try_from(TIMESTAMP_TOLERANCE.as_secs()).unwrap_or(i64::MAX);
    if (now.timestamp() - timestamp).abs() > tolerance {
        return Err(VerifyError::Stale(timestamp));
    }
    if secrets
        .iter()
        .any(|s| s.verifies(signature, id, timestamp, body))
    {
        Ok(())
    } else {
        Err(VerifyError::Signature)
    }
}
