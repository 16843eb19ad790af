//! Refunds asked for on their own: part (or all) of a `confirmed` order's captured payment
//! given back while the order keeps its status, each recorded before the gateway is called
//! and resumed under its own key when the gateway did not answer.

use tracing::{instrument, warn};
use uuid::Uuid;

use super::{OrderService, Reserved};
use crate::error::ValidationErrors;
use crate::ids::{OrderId, RefundReason};
use crate::money::Money;
use crate::order::{Order, PartialRefund, RefundAsk, RefundDraft, RefundSettlement};
use crate::payment::{GatewayError, IdempotencyKey, RefundReceipt};
use crate::ports::{Clock, OrderRepo, PaymentGateway, PaymentQueue, RefundStart, RepoError};
use crate::request::{Fingerprint, RequestKey};
use crate::service::micros_now;

/// Why a refund was not made.
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    /// No such order.
    #[error("order {0} not found")]
    NotFound(OrderId),
    /// The amount is zero, or the items are not the order's or more than are left of them.
    #[error("{errors}")]
    Invalid {
        /// Each field and why.
        errors: ValidationErrors,
        /// The order as it is.
        order: Box<Order>,
    },
    /// The order cannot be refunded this way: it is not `confirmed`, is being cancelled,
    /// nothing of its payment was captured, or all of it was given back.
    #[error("order {} has no captured payment to refund", .0.id)]
    NotRefundable(Box<Order>),
    /// The refund asks for more than is left of what was captured.
    #[error("the amount must be at most the {left} left to refund")]
    Exceeds {
        /// What may still be given back.
        left: Money,
        /// The order as it is.
        order: Box<Order>,
    },
    /// The gateway refused the refund for good; nothing was given back.
    #[error("the gateway refused the refund: {0}")]
    Declined(String, Box<Order>),
    /// The gateway gave no definitive answer: the refund may or may not have happened;
    /// asking again with the same idempotency key finds out (and a later refund of the
    /// order, or its cancellation, asks too).
    #[error("the payment gateway did not answer the refund: {0}")]
    Gateway(GatewayError),
    /// No gateway was given to the service.
    #[error("this service makes no refunds")]
    NoGateway,
    /// The client's key was used for another request, or its first request is in flight.
    #[error(transparent)]
    Key(#[from] super::PlaceError),
    /// The store failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// A refund made, and whether it replays an earlier request with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refunded {
    /// The order after it.
    pub order: Order,
    /// Whether the answer replays an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// What a gateway's answer to a refund settles: `Err` when it settles nothing (the gateway
/// did not answer, or not definitively), so the refund stays pending.
pub(crate) fn settlement(
    answer: Result<RefundReceipt, GatewayError>,
) -> Result<RefundSettlement, GatewayError> {
    match answer {
        Ok(RefundReceipt::Refunded { refund_id, amount }) => {
            Ok(RefundSettlement::Refunded { refund_id, amount })
        }
        Ok(RefundReceipt::NothingCaptured) => Ok(RefundSettlement::Refused {
            error: "the gateway holds no captured payment for the order".into(),
        }),
        Err(GatewayError::Declined(reason)) => Ok(RefundSettlement::Refused {
            error: reason.to_string(),
        }),
        Err(e) => Err(e),
    }
}

impl<R, Q, C> OrderService<R, Q, C>
where
    R: OrderRepo + ?Sized,
    Q: PaymentQueue + ?Sized,
    C: Clock + ?Sized,
{
    /// Gives back what `ask` names of order `id`'s captured payment, while the order stays
    /// `confirmed`. `token` tells this refund apart from the order's others, and is the
    /// same for every retry of it (derived from the client's key); without one the refund
    /// is new. The store records the refund before the gateway is called, so a refund
    /// the gateway did not answer still counts against what is left, and is asked again
    /// (under its key) by a retry, by the order's next refund and by its cancellation.
    #[instrument(skip_all, fields(order_id = %id))]
    pub async fn refund(
        &self,
        id: OrderId,
        ask: &RefundAsk,
        reason: Option<RefundReason>,
        token: Option<&str>,
    ) -> Result<Order, RefundError> {
        let gateway = self.gateway.as_ref().ok_or(RefundError::NoGateway)?;
        let order = self
            .store(self.repo.get(id))
            .await?
            .ok_or(RefundError::NotFound(id))?;
        if order.refundable_now().is_none() {
            return Err(RefundError::NotRefundable(Box::new(order)));
        }
        let amount = match order.refund_amount(ask) {
            Ok(amount) => amount,
            Err(errors) => {
                return Err(RefundError::Invalid {
                    errors,
                    order: Box::new(order),
                });
            }
        };
        let token = token.map_or_else(|| Uuid::now_v7().simple().to_string(), str::to_owned);
        let draft = RefundDraft {
            key: IdempotencyKey::for_partial_refund(id, &token),
            amount,
            items: match ask {
                RefundAsk::Items { items, .. } => items.clone(),
                RefundAsk::Amount(_) | RefundAsk::Rest => Vec::new(),
            },
            reason,
        };
        // What is left depends on the refunds whose outcome is not known: ask about them
        // first (a retry of this very refund is sent below).
        self.settle_pending(&**gateway, order, Some(&draft.key))
            .await?;
        let now = micros_now(&*self.clock);
        let order = match self.store(self.repo.begin_refund(id, &draft, now)).await? {
            RefundStart::Begun(order) => order,
            RefundStart::Settled(order) => return settled(order, &draft.key),
            RefundStart::KeyReused(_) => {
                return Err(RefundError::Key(super::PlaceError::KeyReused));
            }
            RefundStart::Refused(order) => {
                return Err(match order.refundable_now() {
                    Some(left) if left > Money::ZERO => RefundError::Exceeds {
                        left,
                        order: Box::new(order),
                    },
                    _ => RefundError::NotRefundable(Box::new(order)),
                });
            }
        };
        let refund = order
            .partial_refund(&draft.key)
            .expect("a begun refund is recorded")
            .clone();
        let order = self.send_refund(&**gateway, &order, &refund).await?;
        settled(order, &draft.key)
    }

    /// [`refund`](Self::refund) under a client's idempotency key: a retry of the same
    /// request answers with the order as it is now (`replayed`), and a retry after the
    /// gateway did not answer sends the same refund again.
    #[instrument(skip_all, fields(order_id = %id, key = %key))]
    pub async fn refund_once(
        &self,
        id: OrderId,
        ask: &RefundAsk,
        reason: Option<RefundReason>,
        key: &RequestKey,
    ) -> Result<Refunded, RefundError> {
        let fingerprint = Fingerprint::of_refund(id, ask, reason.as_ref());
        let token = match self.reserve(key, &fingerprint).await? {
            Reserved::New(token) => token,
            Reserved::Replay(order) => {
                return Ok(Refunded {
                    order: *order,
                    replayed: true,
                });
            }
        };
        match self
            .refund(id, ask, reason, Some(&key.refund_token()))
            .await
        {
            Ok(order) => {
                self.repo.complete_request(key, token, id).await?;
                Ok(Refunded {
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

    /// Sends `refund` of `order` to the gateway and records its outcome once definitive;
    /// the order as it is then.
    async fn send_refund(
        &self,
        gateway: &dyn PaymentGateway,
        order: &Order,
        refund: &PartialRefund,
    ) -> Result<Order, RefundError> {
        let answer = gateway.refund(&order.partial_refund_request(refund)).await;
        let settlement = settlement(answer).map_err(RefundError::Gateway)?;
        let now = micros_now(&*self.clock);
        Ok(self
            .store(
                self.repo
                    .finish_refund(order.id, &refund.key, &settlement, now),
            )
            .await?)
    }

    /// Asks the gateway about the refunds pending since longer than `older_than` (at most
    /// `limit` orders' worth), so that none whose answer was lost stays unknown when no
    /// client retries it; the number of refunds settled. What a gateway does not answer
    /// stays pending for the next sweep.
    pub async fn sweep_pending_refunds(
        &self,
        older_than: std::time::Duration,
        limit: usize,
    ) -> Result<usize, RefundError> {
        let gateway = self.gateway.as_ref().ok_or(RefundError::NoGateway)?;
        let before = micros_now(&*self.clock) - super::super::chrono(older_than);
        let mut settled = 0;
        for id in self.store(self.repo.pending_refunds(before, limit)).await? {
            let Some(order) = self.store(self.repo.get(id)).await? else {
                continue;
            };
            let pending = order
                .partial_refunds
                .iter()
                .filter(|r| r.is_pending())
                .count();
            let after = self.settle_pending(&**gateway, order, None).await?;
            let still = after
                .partial_refunds
                .iter()
                .filter(|r| r.is_pending())
                .count();
            settled += pending.saturating_sub(still);
        }
        Ok(settled)
    }

    /// Asks the gateway again about `order`'s refunds whose outcome is not known (but the
    /// one under `except`), and records what it says; the order as it is then. One the
    /// gateway does not answer stays pending.
    async fn settle_pending(
        &self,
        gateway: &dyn PaymentGateway,
        mut order: Order,
        except: Option<&IdempotencyKey>,
    ) -> Result<Order, RefundError> {
        let pending: Vec<PartialRefund> = order
            .partial_refunds
            .iter()
            .filter(|r| r.is_pending() && Some(&r.key) != except)
            .cloned()
            .collect();
        for refund in pending {
            match self.send_refund(gateway, &order, &refund).await {
                Ok(now) => order = now,
                Err(RefundError::Gateway(e)) => {
                    warn!(refund = %refund.key, error = %e, "a pending refund is still not answered");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(order)
    }
}

/// The answer for the order's refund under `key` once it has an outcome: the order, or
/// the gateway's refusal.
fn settled(order: Order, key: &IdempotencyKey) -> Result<Order, RefundError> {
    match order.partial_refund(key).map(|r| &r.state) {
        Some(crate::order::PartialRefundState::Refused { error, .. }) => {
            Err(RefundError::Declined(error.clone(), Box::new(order)))
        }
        _ => Ok(order),
    }
}
