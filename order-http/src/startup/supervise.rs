//! Side tasks (the webhook dispatcher, purges, the metrics sampler and server, the
//! migrator) are watched: one that panics stops the whole process, gracefully, and makes it
//! exit non-zero, so its supervisor (systemd, Kubernetes, compose) starts a whole one. A
//! process never keeps serving and reporting healthy with a part of it dead.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::error;

use super::StartError;
use crate::worker::panic_message;

/// Watches `side` until every task has ended. The first to panic while the process runs
/// sets `stop` (which ends the rest: serving, the worker, the other side tasks); every
/// panic is in the result.
pub(super) fn supervise(
    side: Vec<(&'static str, JoinHandle<()>)>,
    stop: Arc<watch::Sender<bool>>,
) -> JoinHandle<Result<(), StartError>> {
    tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        for (task, handle) in side {
            tasks.spawn(async move { (task, handle.await) });
        }
        let mut result = Ok(());
        while let Some(joined) = tasks.join_next().await {
            let Ok((task, Err(e))) = joined else {
                continue;
            };
            let message = panic_message(e);
            if !*stop.borrow() {
                error!(
                    task,
                    %message,
                    "a task of the process died: stopping it, to be started whole again"
                );
            }
            stop.send_replace(true);
            result = result.and(Err(StartError::Panicked { task, message }));
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_side_task_that_panics_stops_the_process_and_is_reported() {
        let (stop, stopped) = watch::channel(false);
        let stop = Arc::new(stop);
        let mut steady_stopped = stopped.clone();
        let steady = tokio::spawn(async move {
            let _ = steady_stopped.wait_for(|s| *s).await;
        });
        let done = tokio::spawn(async {});
        let doomed = tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            panic!("the dispatcher fell over");
        });
        let supervisor = supervise(
            vec![
                ("steady", steady),
                ("migrator", done),
                ("webhook dispatcher", doomed),
            ],
            Arc::clone(&stop),
        );
        let mut watching = stopped.clone();
        tokio::time::timeout(Duration::from_secs(2), watching.wait_for(|s| *s))
            .await
            .expect("the process is told to stop")
            .expect("the sender lives");
        let result = tokio::time::timeout(Duration::from_secs(2), supervisor)
            .await
            .expect("every task ends once stopped")
            .expect("the supervisor does not panic");
        match result {
            Err(StartError::Panicked { task, message }) => {
                assert_eq!(task, "webhook dispatcher");
                assert_eq!(message, "the dispatcher fell over");
            }
            other => panic!("the panic is reported, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn tasks_that_end_or_stop_when_told_are_no_failure() {
        let (stop, stopped) = watch::channel(false);
        let stop = Arc::new(stop);
        let mut steady_stopped = stopped.clone();
        let steady = tokio::spawn(async move {
            let _ = steady_stopped.wait_for(|s| *s).await;
        });
        let supervisor = supervise(
            vec![("steady", steady), ("migrator", tokio::spawn(async {}))],
            Arc::clone(&stop),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !*stopped.borrow(),
            "a task that finished its work stops nothing"
        );
        stop.send_replace(true);
        let result = supervisor.await.expect("the supervisor does not panic");
        assert!(result.is_ok(), "{result:?}");
    }
}
