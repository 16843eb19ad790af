//! The HTTP server: hyper under the router, with the limits a server on the open internet
//! needs and `axum::serve` does not set. A connection has [`ServerLimits::header_timeout`]
//! to send each request's head (which also closes a kept-alive connection left idle that
//! long, and one that never sends a byte), at most [`ServerLimits::max_connections`] are served at once (the rest wait in
//! the listen backlog, unaccepted), and shutdown stops accepting, then lets every open
//! connection finish its requests. The body's own deadline is the `read_body` middleware's
//! ([`crate::http::middleware::body`]), which reads it before any permit is taken.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tracing::{debug, error};

pub use crate::config::ServerLimits;

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then waits for
/// the open connections' requests to finish. Each request carries its client's address as
/// [`ConnectInfo`] of a `SocketAddr`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // A client that shuts its side once it sent a whole request is still answered
        // (and, above all, its request is carried out, not cancelled).
        .half_close(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (router, builder, watcher) = (router.clone(), builder.clone(), graceful.watcher());
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // hyper's timers start once it knows the protocol, from the first bytes: a
            // client that connects and sends nothing is cut off here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(1..)) => {}
                _ => return drop(slot),
            }
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(client));
                    router.clone().oneshot(request.map(axum::body::Body::new))
                });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                debug!(%client, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// An accept that failed: a client that went away is nothing; anything else (out of file
/// descriptors, say) is logged and waited out for a moment rather than spun on.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    error!(error = %e, "accepting a connection failed; accepting again in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
