//! The sweep of charges whose outcome nobody knows: orders still being paid whose last
//! charge timed out are looked up at the processor, and the ones it has decided are handed
//! to a worker at once.

use tracing::{debug, info};

use super::OrderService;
use crate::ports::{Clock, OrderRepo, PaymentQueue, RepoError};
use crate::service::micros_now;

impl<R, Q, C> OrderService<R, Q, C>
where
    R: OrderRepo + ?Sized,
    Q: PaymentQueue + ?Sized,
    C: Clock + ?Sized,
{
    /// Asks the gateway about the orders whose last charge timed out longer than
    /// `older_than` ago and that are still being paid (at most `limit`), and makes each one
    /// the processor has decided (captured, authorized, declined, or nothing charged) due
    /// at once: a worker then settles it through its own look-up, in the order's one
    /// state machine, instead of at its next scheduled retry, which backs off to minutes.
    /// The number of orders hastened. A service without a gateway, or a gateway that does
    /// not answer, hastens none; only the store's failures are errors.
    pub async fn sweep_unresolved_charges(
        &self,
        older_than: std::time::Duration,
        limit: usize,
    ) -> Result<usize, RepoError> {
        let Some(gateway) = self.gateway.as_ref() else {
            return Ok(0);
        };
        let before = micros_now(&*self.clock) - super::super::chrono(older_than);
        let mut hastened = 0;
        for id in self
            .store(self.repo.unresolved_charges(before, limit))
            .await?
        {
            let Some(order) = self.store(self.repo.get(id)).await? else {
                continue;
            };
            match gateway.lookup(&order.lookup_request()).await {
                Ok(state) if state != crate::payment::PaymentState::Processing => {
                    info!(order_id = %id, ?state, "the processor decided a charge that timed out");
                    if self.hasten(id).await?.is_some() {
                        hastened += 1;
                    }
                }
                Ok(_) => debug!(order_id = %id, "the processor is still processing the charge"),
                Err(e) => {
                    debug!(order_id = %id, error = %e, "the processor did not answer a look-up");
                }
            }
        }
        Ok(hastened)
    }
}
