//! Driver errors as [`QueueError`]s.

use order_core::ports::{BoxError, QueueError};
use redis::RedisError;

/// Translates a driver error: connection trouble and time-outs are retryable `Unavailable`.
pub fn translate(e: RedisError) -> QueueError {
    let retryable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(e.kind(), redis::ErrorKind::ClusterConnectionNotFound)
        || matches!(
            e.code(),
            Some("LOADING" | "TRYAGAIN" | "BUSY" | "MASTERDOWN" | "CLUSTERDOWN")
        );
    let source: BoxError = Box::new(e);
    if retryable {
        QueueError::Unavailable(source)
    } else {
        QueueError::Other(source)
    }
}
