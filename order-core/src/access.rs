//! API keys: who may call the API, for what, and for which customer.
//!
//! A key reads `ordk_<id>_<secret>`: the prefix lets secret scanners recognise it, the id
//! (16 hex digits) finds the stored key, the secret (64 hex digits, 256 random bits) proves
//! the caller holds it. Only the secret's SHA-256 is stored and it is compared in constant
//! time; a fast hash is enough because the secret is random, not a password. The secret is
//! known once, when [`issue`] returns it.
//!
//! A key carries [`Scope`]s and may be bound to one customer: a key for a customer-facing
//! app sees and places only that customer's orders. It may expire and be revoked.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Invalid;
use crate::hex::encode as hex;
use crate::ids::CustomerId;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Read orders.
    #[serde(rename = "orders:read")]
    OrdersRead,
    /// Place orders.
    #[serde(rename = "orders:write")]
    OrdersWrite,
    /// Cancel orders.
    #[serde(rename = "orders:cancel")]
    OrdersCancel,
    /// Capture orders' authorized payments (manual capture).
    #[serde(rename = "payments:capture")]
    PaymentsCapture,
    /// Give back part or all of orders' captured payments.
    #[serde(rename = "payments:refund")]
    PaymentsRefund,
    /// Manage webhook endpoints.
    #[serde(rename = "webhooks:manage")]
    WebhooksManage,
    /// Create, list and revoke API keys.
    #[serde(rename = "keys:manage")]
    KeysManage,
    /// Read `/metrics` on the API's port.
    #[serde(rename = "metrics:read")]
    MetricsRead,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Self; 8] = [
        Self::OrdersRead,
        Self::OrdersWrite,
        Self::OrdersCancel,
        Self::PaymentsCapture,
        Self::PaymentsRefund,
        Self::WebhooksManage,
        Self::KeysManage,
        Self::MetricsRead,
    ];

    /// Its name, as in `orders:read`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OrdersRead => "orders:read",
            Self::OrdersWrite => "orders:write",
            Self::OrdersCancel => "orders:cancel",
            Self::PaymentsCapture => "payments:capture",
            Self::PaymentsRefund => "payments:refund",
            Self::WebhooksManage => "webhooks:manage",
            Self::KeysManage => "keys:manage",
            Self::MetricsRead => "metrics:read",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s.trim())
            .ok_or_else(|| {
                Invalid::Malformed(format!(
                    "unknown scope {s:?}; expected one of {}",
                    Self::ALL.map(Self::as_str).join(", ")
                ))
            })
    }
}

/// A key's public id: 16 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    /// Parses an id.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(Invalid::Malformed(
                "an API key id is 16 lowercase hex digits".into(),
            ))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for KeyId {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<KeyId> for String {
    fn from(value: KeyId) -> Self {
        value.0
    }
}

/// The SHA-256 of a key's secret: all that is stored of it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretHash([u8; 32]);

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

impl SecretHash {
    fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// The hash's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Invalid> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| Invalid::Malformed("a secret hash is 32 bytes".into()))
    }

    /// Compares with `other` in time independent of where they differ (`subtle`, which
    /// keeps the compiler from turning the comparison back into an early exit).
    fn matches(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq as _;
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl TryFrom<String> for SecretHash {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let bytes = crate::hex::decode::<32>(&value)
            .ok_or_else(|| Invalid::Malformed("a secret hash is 64 hex digits".into()))?;
        Self::from_bytes(&bytes)
    }
}

impl From<SecretHash> for String {
    fn from(value: SecretHash) -> Self {
        hex(&value.0)
    }
}

/// A stored API key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Its id.
    pub id: KeyId,
    /// What it is for, as its creator named it.
    pub name: String,
    /// What it may do, sorted, without repeats.
    pub scopes: Vec<Scope>,
    /// The one customer it acts for, if it is bound to one.
    pub customer_id: Option<CustomerId>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last seen (kept about once a minute, not on every request).
    pub last_used_at: Option<DateTime<Utc>>,
    /// The SHA-256 of its secret.
    pub secret_hash: SecretHash,
}

/// What a new key should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// Its name (1 to 100 characters).
    pub name: String,
    /// Its scopes (at least one).
    pub scopes: Vec<Scope>,
    /// The customer it is bound to, if any.
    pub customer_id: Option<CustomerId>,
    /// When it expires, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a presented key is not accepted. Every one of these is a `401` to the caller, who
/// is not told which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("no API key: send Authorization: Bearer <key>")]
    Missing,
    /// Not shaped like a key.
    #[error("malformed API key")]
    Malformed,
    /// No such key, or the secret does not match.
    #[error("unknown API key")]
    Unknown,
    /// Revoked.
    #[error("revoked API key")]
    Revoked,
    /// Past its expiry.
    #[error("expired API key")]
    Expired,
}

const PREFIX: &str = "ordk_";

/// `at` to the microsecond, the precision every store keeps.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// Issues a key: the stored part and the whole key (`ordk_<id>_<secret>`), which is shown
/// once and kept nowhere. Its times are kept to the microsecond.
pub fn issue(new: NewApiKey, now: DateTime<Utc>) -> Result<(ApiKey, String), Invalid> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Invalid::Malformed(
            "a key's name is 1 to 100 printable characters".into(),
        ));
    }
    let mut scopes = new.scopes;
    scopes.sort_unstable();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(Invalid::Malformed("a key needs at least one scope".into()));
    }
    if new.expires_at.is_some_and(|at| at <= now) {
        return Err(Invalid::Malformed("a key must expire in the future".into()));
    }
    let mut bytes = [0u8; 40];
    rand::rng().fill_bytes(&mut bytes);
    let id = KeyId(hex(&bytes[..8]));
    let secret = hex(&bytes[8..]);
    let key = ApiKey {
        secret_hash: SecretHash::of(&secret),
        id: id.clone(),
        name: name.to_owned(),
        scopes,
        customer_id: new.customer_id,
        created_at: micros(now),
        expires_at: new.expires_at.map(micros),
        revoked_at: None,
        last_used_at: None,
    };
    Ok((key, format!("{PREFIX}{id}_{secret}")))
}

/// A key as presented by a caller: its id and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedKey {
    /// The id, to find the stored key.
    pub id: KeyId,
    secret: String,
}

impl fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl FromStr for PresentedKey {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.trim().strip_prefix(PREFIX).ok_or(AuthError::Malformed)?;
        let (id, secret) = rest.split_once('_').ok_or(AuthError::Malformed)?;
        let id = KeyId::parse(id).map_err(|_| AuthError::Malformed)?;
        if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuthError::Malformed);
        }
        Ok(Self {
            id,
            secret: secret.to_owned(),
        })
    }
}

impl ApiKey {
    /// Whether `presented` is this key, usable at `now`.
    pub fn authenticate(
        &self,
        presented: &PresentedKey,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        if presented.id != self.id || !self.secret_hash.matches(&SecretHash::of(&presented.secret))
        {
            return Err(AuthError::Unknown);
        }
        if self.revoked_at.is_some_and(|at| at <= now) {
            return Err(AuthError::Revoked);
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::Expired);
        }
        Ok(())
    }

    /// Whether it carries `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether it may act for `customer`: a key bound to a customer acts for that one only.
    pub fn may_act_for(&self, customer: &CustomerId) -> bool {
        self.customer_id
            .as_ref()
            .is_none_or(|bound| bound == customer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(scopes: &[Scope]) -> NewApiKey {
        NewApiKey {
            name: "test".into(),
            scopes: scopes.to_vec(),
            customer_id: None,
            expires_at: None,
        }
    }

    #[test]
    fn an_issued_key_authenticates_and_nothing_else_does() {
        let now = Utc::now();
        let (key, plain) = issue(new(&[Scope::OrdersRead, Scope::OrdersRead]), now).unwrap();
        assert!(plain.starts_with("ordk_") && plain.len() == 5 + 16 + 1 + 64);
        assert_eq!(key.scopes, [Scope::OrdersRead], "deduplicated");
        let presented: PresentedKey = plain.parse().unwrap();
        assert_eq!(key.authenticate(&presented, now), Ok(()));
        assert!(
            !plain.contains(&String::from(key.secret_hash.clone())),
            "only the hash is kept"
        );

        let mut wrong = plain.clone();
        let last = wrong.pop().unwrap();
        wrong.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            key.authenticate(&wrong.parse().unwrap(), now),
            Err(AuthError::Unknown)
        );
        for bad in [
            "",
            "Bearer x",
            "ordk_",
            "ordk_zz_00",
            &plain[..plain.len() - 1],
        ] {
            assert_eq!(
                bad.parse::<PresentedKey>(),
                Err(AuthError::Malformed),
                "{bad:?}"
            );
        }
        let (other, _) = issue(new(&[Scope::OrdersRead]), now).unwrap();
        assert_ne!(other.id, key.id);
        assert_eq!(other.authenticate(&presented, now), Err(AuthError::Unknown));
    }

    #[test]
    fn revoked_and_expired_keys_stop_working_from_their_time() {
        let now = Utc::now();
        let later = now + chrono::Duration::hours(1);
        let (mut key, plain) = issue(
            NewApiKey {
                expires_at: Some(later),
                ..new(&[Scope::OrdersWrite])
            },
            now,
        )
        .unwrap();
        let presented = plain.parse().unwrap();
        assert_eq!(key.authenticate(&presented, now), Ok(()));
        assert_eq!(key.authenticate(&presented, later), Err(AuthError::Expired));
        key.revoked_at = Some(now);
        assert_eq!(key.authenticate(&presented, now), Err(AuthError::Revoked));
    }

    #[test]
    fn bad_new_keys_are_refused_and_scopes_parse_by_name() {
        let now = Utc::now();
        assert!(issue(new(&[]), now).is_err());
        assert!(
            issue(
                NewApiKey {
                    name: " ".into(),
                    ..new(&[Scope::KeysManage])
                },
                now
            )
            .is_err()
        );
        assert!(
            issue(
                NewApiKey {
                    expires_at: Some(now),
                    ..new(&[Scope::KeysManage])
                },
                now
            )
            .is_err()
        );
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
        }
        assert!("orders:delete".parse::<Scope>().is_err());
    }

    #[test]
    fn a_key_bound_to_a_customer_acts_for_that_one_only() {
        let now = Utc::now();
        let alice = CustomerId::parse("alice").unwrap();
        let (key, _) = issue(
            NewApiKey {
                customer_id: Some(alice.clone()),
                ..new(&[Scope::OrdersRead])
            },
            now,
        )
        .unwrap();
        assert!(key.may_act_for(&alice));
        assert!(!key.may_act_for(&CustomerId::parse("bob").unwrap()));
        assert!(key.allows(Scope::OrdersRead) && !key.allows(Scope::OrdersWrite));
    }
}
