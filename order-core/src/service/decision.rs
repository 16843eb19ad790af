//! What one gateway answer means for an order: a pure function of the answer, the order's
//! history, the breaker's verdict, the retry policy and a random draw. No I/O, no clock.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::payment::{ChargeReceipt, GatewayError, RefundReceipt};
use crate::policy::retry::{ChargeHistory, RetryDecision, RetryPolicy};

/// The state of the gateway as the breaker sees it once the attempt is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayHealth {
    /// The breaker is closed or probing: failures are the order's own.
    Serving,
    /// The breaker opened on gateway faults: an outage until at least this time.
    Outage {
        /// When the breaker lets a probe through again.
        until: DateTime<Utc>,
    },
}

/// What is known when a charge attempt has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptContext {
    /// The attempt's number, from 1.
    pub number: u32,
    /// Whether an earlier attempt may have captured.
    pub history: ChargeHistory,
    /// The gateway's state after this attempt.
    pub gateway: GatewayHealth,
    /// When the attempt ended.
    pub finished_at: DateTime<Utc>,
}

/// What happens to the order after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeDecision {
    /// Captured: the order is confirmed.
    Confirm,
    /// Declined, or out of attempts with nothing possibly captured: the order has failed.
    Fail,
    /// Try again at this time; the attempt counted against the order.
    RetryAt(DateTime<Utc>),
    /// The gateway is down: try again once the breaker may let a probe through (spread over
    /// `probe_wait` so waiting orders do not return in one wave). An outage never turns into
    /// a wave of failed orders.
    AwaitGateway(DateTime<Utc>),
}

/// Decides what `result` means for the order.
///
/// `probe_wait` is the breaker's spread for orders waiting out an outage; `draw` is a
/// uniform random number in `[0, 1]` for the jitter.
pub fn decide(
    result: &Result<ChargeReceipt, GatewayError>,
    attempt: &AttemptContext,
    retry: &RetryPolicy,
    probe_wait: Duration,
    draw: f64,
) -> ChargeDecision {
    let Err(error) = result else {
        return ChargeDecision::Confirm;
    };
    match attempt.gateway {
        GatewayHealth::Outage { until } if error.is_gateway_fault() => {
            ChargeDecision::AwaitGateway(crate::time::later(
                until,
                probe_wait.mul_f64(draw.clamp(0.0, 1.0)),
            ))
        }
        _ => match retry.decide(attempt.number, error, attempt.history, draw) {
            RetryDecision::GiveUp => ChargeDecision::Fail,
            RetryDecision::RetryAfter(delay) => {
                ChargeDecision::RetryAt(crate::time::later(attempt.finished_at, delay))
            }
        },
    }
}

/// What happens to a cancelling order after a refund attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundDecision {
    /// Refunded, or nothing was captured and the charge is void: the order is cancelled.
    Complete,
    /// Try again at this time. Refunds are never given up: money taken must go back.
    RetryAt(DateTime<Utc>),
    /// The gateway is down: try again once the breaker may let a probe through.
    AwaitGateway(DateTime<Utc>),
}

/// Decides what a refund's `result` means for the cancelling order.
///
/// Failures are retried with the policy's backoff (its ceiling past `max_attempts`, as for
/// ambiguous charges), a refusal included: it needs an operator, and retrying keeps the
/// order visibly `cancelling` until one acts.
pub fn decide_refund(
    result: &Result<RefundReceipt, GatewayError>,
    attempt: &AttemptContext,
    retry: &RetryPolicy,
    probe_wait: Duration,
    draw: f64,
) -> RefundDecision {
    let Err(error) = result else {
        return RefundDecision::Complete;
    };
    match attempt.gateway {
        GatewayHealth::Outage { until } if error.is_gateway_fault() => {
            RefundDecision::AwaitGateway(crate::time::later(
                until,
                probe_wait.mul_f64(draw.clamp(0.0, 1.0)),
            ))
        }
        _ => RefundDecision::RetryAt(crate::time::later(
            attempt.finished_at,
            retry.delay(attempt.number.saturating_sub(1), draw),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payment::DeclineReason;

    fn at(number: u32, history: ChargeHistory, gateway: GatewayHealth) -> AttemptContext {
        AttemptContext {
            number,
            history,
            gateway,
            finished_at: DateTime::UNIX_EPOCH,
        }
    }

    const WAIT: Duration = Duration::from_secs(10);

    fn down() -> Result<ChargeReceipt, GatewayError> {
        Err(GatewayError::Unavailable("down".into()))
    }

    #[test]
    fn a_capture_confirms_whatever_came_before() {
        let ok = Ok(ChargeReceipt {
            transaction_id: "t".into(),
        });
        let context = at(9, ChargeHistory::Unresolved, GatewayHealth::Serving);
        assert_eq!(
            decide(&ok, &context, &RetryPolicy::DEFAULT, WAIT, 0.5),
            ChargeDecision::Confirm
        );
    }

    #[test]
    fn a_decline_fails_the_order_at_once() {
        let declined = Err(GatewayError::Declined(DeclineReason::InsufficientFunds));
        let context = at(1, ChargeHistory::Resolved, GatewayHealth::Serving);
        assert_eq!(
            decide(&declined, &context, &RetryPolicy::DEFAULT, WAIT, 0.5),
            ChargeDecision::Fail
        );
    }

    #[test]
    fn a_fault_during_an_outage_waits_for_the_breaker_without_failing() {
        let until = DateTime::UNIX_EPOCH + chrono::Duration::seconds(60);
        let last = RetryPolicy::DEFAULT.max_attempts();
        let context = at(
            last,
            ChargeHistory::Resolved,
            GatewayHealth::Outage { until },
        );
        assert_eq!(
            decide(&down(), &context, &RetryPolicy::DEFAULT, WAIT, 0.5),
            ChargeDecision::AwaitGateway(until + chrono::Duration::seconds(5))
        );
    }

    #[test]
    fn the_last_clean_failure_fails_the_order_only_when_nothing_may_have_been_captured() {
        let last = RetryPolicy::DEFAULT.max_attempts();
        let resolved = at(last, ChargeHistory::Resolved, GatewayHealth::Serving);
        assert_eq!(
            decide(&down(), &resolved, &RetryPolicy::DEFAULT, WAIT, 0.5),
            ChargeDecision::Fail
        );
        let unresolved = at(last, ChargeHistory::Unresolved, GatewayHealth::Serving);
        assert!(matches!(
            decide(&down(), &unresolved, &RetryPolicy::DEFAULT, WAIT, 0.5),
            ChargeDecision::RetryAt(_)
        ));
    }

    #[test]
    fn a_refund_completes_on_any_definitive_answer_and_never_gives_up_otherwise() {
        let last = RetryPolicy::DEFAULT.max_attempts() + 5;
        let context = at(last, ChargeHistory::Resolved, GatewayHealth::Serving);
        for done in [
            RefundReceipt::NothingCaptured,
            RefundReceipt::Refunded {
                refund_id: "r".into(),
                amount: crate::Money::ZERO,
            },
        ] {
            assert_eq!(
                decide_refund(&Ok(done), &context, &RetryPolicy::DEFAULT, WAIT, 0.5),
                RefundDecision::Complete
            );
        }
        for failed in [
            GatewayError::Unavailable("down".into()),
            GatewayError::Timeout("slow".into()),
            GatewayError::Declined(DeclineReason::CardDeclined),
        ] {
            assert!(matches!(
                decide_refund(&Err(failed), &context, &RetryPolicy::DEFAULT, WAIT, 0.5),
                RefundDecision::RetryAt(_)
            ));
        }
        let until = DateTime::UNIX_EPOCH + chrono::Duration::seconds(60);
        let outage = at(1, ChargeHistory::Resolved, GatewayHealth::Outage { until });
        assert!(matches!(
            decide_refund(&down_refund(), &outage, &RetryPolicy::DEFAULT, WAIT, 0.0),
            RefundDecision::AwaitGateway(t) if t == until
        ));
    }

    fn down_refund() -> Result<RefundReceipt, GatewayError> {
        Err(GatewayError::Unavailable("down".into()))
    }

    #[test]
    fn an_early_failure_is_retried_within_the_backoff_ceiling() {
        let context = at(1, ChargeHistory::Resolved, GatewayHealth::Serving);
        let ChargeDecision::RetryAt(when) =
            decide(&down(), &context, &RetryPolicy::DEFAULT, WAIT, 1.0)
        else {
            panic!("expected a retry");
        };
        assert_eq!(
            when,
            crate::time::later(DateTime::UNIX_EPOCH, RetryPolicy::DEFAULT.ceiling(0))
        );
    }
}
