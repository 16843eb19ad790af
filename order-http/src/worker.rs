//! The worker roles' loops: [`payments`] runs the payment processor, [`webhooks`] delivers
//! webhooks and forgets their history past its retention.

pub mod payments;
pub mod webhooks;

pub use payments::{Processor, WorkerPanicked, WorkerSettings, panic_message, run};
