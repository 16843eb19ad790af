//! Client idempotency: a key the client sends with a request so that retrying it never
//! creates a second order.
//!
//! Same key and same order: the first order is returned again. Same key, different order:
//! rejected. Same key while the first request is still being stored: rejected as in flight.

use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::Invalid;
use crate::ids::OrderId;
use crate::order::NewOrder;

/// A client's idempotency key: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey(String);

impl RequestKey {
    /// Longest key accepted.
    pub const MAX_LEN: usize = 255;

    /// Parses a key.
    pub fn parse(key: impl Into<String>) -> Result<Self, Invalid> {
        let key = key.into();
        if key.is_empty() {
            return Err(Invalid::Empty);
        }
        if key.len() > Self::MAX_LEN {
            return Err(Invalid::TooLong {
                max: Self::MAX_LEN,
                actual: key.len(),
            });
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Invalid::Malformed(
                "must be visible ASCII characters".into(),
            ));
        }
        Ok(Self(key))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A token naming this key among an order's refunds: the first 32 hex digits of its
    /// SHA-256, the same for every retry with the key.
    pub fn refund_token(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        crate::hex::encode(&digest[..16])
    }

    /// This key in the namespace of `scope` (say, the caller's API key id): the same key
    /// sent by two callers is two keys, so one caller can neither replay nor block
    /// another's requests. Kept as `{scope}:{SHA-256 of the key}`, within the length limit
    /// whatever the key's length.
    #[must_use]
    pub fn scoped_to(&self, scope: &str) -> Self {
        let digest = Sha256::digest(self.0.as_bytes());
        Self(format!("{scope}:{}", crate::hex::encode(&digest)))
    }
}

impl fmt::Display for RequestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A digest of what an order asks for, to tell a retry from a different request under the
/// same key. Computed from the parsed order, so `12.99` and `"12.990"` are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `order`.
    pub fn of(order: &NewOrder) -> Self {
        let mut hash = Sha256::new();
        // Each field is length-prefixed, so no two different orders give the same input.
        let mut field = |s: &str| {
            hash.update((s.len() as u64).to_be_bytes());
            hash.update(s.as_bytes());
        };
        field(order.customer_id().as_str());
        for item in order.items() {
            field(item.item_id.as_str());
            field(item.item_name.as_str());
            field(&item.quantity.to_string());
            field(&item.price.to_string());
        }
        // Last and only when named, so an order without one keeps the fingerprint it had
        // before orders could name one (customer + 4 fields per item, then 1 more: the
        // number of fields tells the two apart).
        if let Some(method) = order.payment_method() {
            field(method.as_str());
        }
        Self(hash.finalize().into())
    }

    /// The fingerprint of a cancellation of order `id` for `reason`. It cannot equal an
    /// order's: its input starts with a tag no order's can.
    pub fn of_cancel(id: OrderId, reason: crate::order::CancelReason) -> Self {
        let mut hash = Sha256::new();
        hash.update(u64::MAX.to_be_bytes());
        hash.update(b"cancel");
        hash.update(id.as_uuid().as_bytes());
        hash.update(reason.as_str().as_bytes());
        Self(hash.finalize().into())
    }

    /// The fingerprint of a capture of `amount` (the whole authorization when `None`) of
    /// order `id`'s payment. It cannot equal an order's or a cancellation's: its input
    /// starts with a tag neither's can.
    pub fn of_capture(id: OrderId, amount: Option<crate::Money>) -> Self {
        let mut hash = Sha256::new();
        hash.update(u64::MAX.to_be_bytes());
        hash.update(b"capture");
        hash.update(id.as_uuid().as_bytes());
        if let Some(amount) = amount {
            hash.update(amount.to_string().as_bytes());
        }
        Self(hash.finalize().into())
    }

    /// The fingerprint of a refund of order `id`'s payment asked for on its own. It cannot
    /// equal an order's, a cancellation's or a capture's: its input starts with a tag none
    /// of theirs can.
    pub fn of_refund(
        id: OrderId,
        ask: &crate::order::RefundAsk,
        reason: Option<&crate::ids::RefundReason>,
    ) -> Self {
        use crate::order::RefundAsk;
        let mut hash = Sha256::new();
        hash.update(u64::MAX.to_be_bytes());
        hash.update(b"refund");
        hash.update(id.as_uuid().as_bytes());
        match ask {
            RefundAsk::Rest => hash.update(b"rest\0"),
            RefundAsk::Amount(amount) => {
                hash.update(b"amount\0");
                hash.update(amount.to_string().as_bytes());
            }
            RefundAsk::Items { items, amount } => {
                hash.update(b"items\0");
                if let Some(amount) = amount {
                    hash.update(amount.to_string().as_bytes());
                    hash.update(b"\0");
                }
                for item in items {
                    hash.update(item.item_id.as_str().as_bytes());
                    hash.update(b"\0");
                    hash.update(item.quantity.get().to_be_bytes());
                }
            }
        }
        if let Some(reason) = reason {
            hash.update(b"\0reason\0");
            hash.update(reason.as_str().as_bytes());
        }
        Self(hash.finalize().into())
    }

    /// Wraps stored bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// What [`crate::ports::OrderRepo::begin_request`] found for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedRequest {
    /// The key is now reserved for this request; store the order with this token.
    New(Uuid),
    /// Another request with the key is being stored right now.
    InFlight,
    /// A request with the key stored this order.
    Completed(OrderId),
    /// The key was used for a different order.
    Mismatch,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{UncheckedItem, UncheckedOrder};

    fn order(price: &str) -> NewOrder {
        NewOrder::parse(UncheckedOrder {
            payment_method: None,
            customer_id: "c".into(),
            items: vec![UncheckedItem {
                item_id: "i".into(),
                item_name: "n".into(),
                quantity: 1,
                price: price.parse().unwrap(),
            }],
        })
        .unwrap()
    }

    #[test]
    fn equal_orders_have_equal_fingerprints_and_different_ones_do_not() {
        assert_eq!(
            Fingerprint::of(&order("12.99")),
            Fingerprint::of(&order("12.990"))
        );
        assert_ne!(
            Fingerprint::of(&order("12.99")),
            Fingerprint::of(&order("12.98"))
        );
    }

    #[test]
    fn a_cancellation_is_told_apart_by_order_and_reason() {
        use crate::order::CancelReason;
        let id = OrderId::new();
        let fp = Fingerprint::of_cancel(id, CancelReason::Duplicate);
        assert_eq!(fp, Fingerprint::of_cancel(id, CancelReason::Duplicate));
        assert_ne!(fp, Fingerprint::of_cancel(id, CancelReason::Other));
        assert_ne!(
            fp,
            Fingerprint::of_cancel(OrderId::new(), CancelReason::Duplicate)
        );
    }

    #[test]
    fn keys_are_bounded_visible_ascii() {
        assert!(RequestKey::parse("a1b2-c3d4").is_ok());
        assert!(RequestKey::parse("k".repeat(255)).is_ok());
        assert!(RequestKey::parse("k".repeat(256)).is_err());
        assert!(RequestKey::parse("").is_err());
        assert!(RequestKey::parse("has space").is_err());
        assert!(RequestKey::parse("ключ").is_err());
    }
}
