//! Captures of authorized payments (manual capture): asked of the store, taken by the
//! gateway, recorded.

use tracing::instrument;

use super::{OrderService, Reserved};
use crate::ids::OrderId;
use crate::money::Money;
use crate::order::Order;
use crate::payment::{DeclineReason, GatewayError};
use crate::ports::{CaptureStart, Clock, OrderRepo, PaymentQueue, RepoError};
use crate::request::{Fingerprint, RequestKey};
use crate::service::micros_now;

/// Why a capture was not made.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No such order.
    #[error("order {0} not found")]
    NotFound(OrderId),
    /// The amount is zero, or more than was authorized.
    #[error("the amount must be more than 0 and at most the authorized {authorized}")]
    Amount {
        /// What was authorized.
        authorized: Money,
    },
    /// The order has no authorized payment to capture (it is not `confirmed` with manual
    /// capture, or is being cancelled), it was captured already, or another amount is
    /// being captured.
    #[error("order {} has no authorized payment to capture", .0.id)]
    NotCapturable(Box<Order>),
    /// The gateway refused the capture for good (the authorization was voided, say).
    #[error("the gateway refused the capture: {0}")]
    Declined(DeclineReason, Box<Order>),
    /// The gateway gave no definitive answer: the capture may or may not have happened;
    /// asking again for the same amount finds out.
    #[error("the payment gateway did not answer the capture: {0}")]
    Gateway(GatewayError),
    /// No gateway was given to the service.
    #[error("this service takes no captures")]
    NoGateway,
    /// The key was used for another request, or its first request is in flight.
    #[error(transparent)]
    Key(#[from] super::PlaceError),
    /// The store failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// A capture made, and whether it replays an earlier request with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The order after it.
    pub order: Order,
    /// Whether the answer replays an earlier request with the same idempotency key.
    pub replayed: bool,
}

impl<R, Q, C> OrderService<R, Q, C>
where
    R: OrderRepo + ?Sized,
    Q: PaymentQueue + ?Sized,
    C: Clock + ?Sized,
{
    /// Captures `amount` (the whole authorization when `None`) of order `id`'s authorized
    /// payment, once. The store records the capture as asked for before the gateway is
    /// called, so a cancellation meanwhile refunds what it takes; a call the gateway did
    /// not answer is resumed by asking again for the same amount (the gateway replays it
    /// under the order's capture key).
    #[instrument(skip_all, fields(order_id = %id))]
    pub async fn capture(&self, id: OrderId, amount: Option<Money>) -> Result<Order, CaptureError> {
        let gateway = self.gateway.as_ref().ok_or(CaptureError::NoGateway)?;
        let order = self
            .store(self.repo.get(id))
            .await?
            .ok_or(CaptureError::NotFound(id))?;
        // What cannot be captured at all says so whatever the amount.
        if !order.has_capturable_payment() {
            return Err(CaptureError::NotCapturable(Box::new(order)));
        }
        let amount = amount.unwrap_or(order.total_amount);
        if amount == Money::ZERO || amount > order.total_amount {
            return Err(CaptureError::Amount {
                authorized: order.total_amount,
            });
        }
        let now = micros_now(&*self.clock);
        let order = match self.store(self.repo.begin_capture(id, amount, now)).await? {
            CaptureStart::Begun(order) => order,
            CaptureStart::Captured(order) | CaptureStart::Refused(order) => {
                return Err(CaptureError::NotCapturable(Box::new(order)));
            }
        };
        match gateway.capture(&order.capture_request(amount)).await {
            Ok(receipt) => {
                let now = micros_now(&*self.clock);
                Ok(self
                    .store(self.repo.finish_capture(id, receipt.amount, now))
                    .await?)
            }
            Err(GatewayError::Declined(reason)) => {
                Err(CaptureError::Declined(reason, Box::new(order)))
            }
            Err(e) => Err(CaptureError::Gateway(e)),
        }
    }

    /// [`capture`](Self::capture) under a client's idempotency key: a retry of the same
    /// request answers with the order as it is now (`replayed`).
    #[instrument(skip_all, fields(order_id = %id, key = %key))]
    pub async fn capture_once(
        &self,
        id: OrderId,
        amount: Option<Money>,
        key: &RequestKey,
    ) -> Result<Captured, CaptureError> {
        let token = match self
            .reserve(key, &Fingerprint::of_capture(id, amount))
            .await
            .map_err(CaptureError::Key)?
        {
            Reserved::New(token) => token,
            Reserved::Replay(order) => {
                return Ok(Captured {
                    order: *order,
                    replayed: true,
                });
            }
        };
        match self.capture(id, amount).await {
            Ok(order) => {
                self.repo.complete_request(key, token, id).await?;
                Ok(Captured {
                    order,
                    replayed: false,
                })
            }
            Err(e) => {
                let _ = self.repo.abandon_request(key, token).await;
                Err(e)
            }
        }
    }
}
