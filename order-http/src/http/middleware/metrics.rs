//! Counts and times every request by its method, route template and status.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

use crate::telemetry::metrics::{HTTP_REQUESTS, HTTP_SECONDS};

/// The handles of one route's series, by method and status: looked up by the route's
/// `&str` on every request, so counting allocates only the first time a series is seen.
type RouteSeries = HashMap<(&'static str, u16), (metrics::Counter, metrics::Histogram)>;

fn series(
    method: &'static str,
    route: &str,
    status: u16,
) -> (metrics::Counter, metrics::Histogram) {
    static SERIES: OnceLock<Mutex<HashMap<String, RouteSeries>>> = OnceLock::new();
    let mut all = SERIES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = all.get(route).and_then(|r| r.get(&(method, status))) {
        return found.clone();
    }
    let made = (
        metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route.to_owned(), "status" => status.to_string()),
        metrics::histogram!(HTTP_SECONDS, "method" => method, "route" => route.to_owned()),
    );
    all.entry(route.to_owned())
        .or_default()
        .insert((method, status), made.clone());
    made
}

/// Counts and times a request by its method, route template and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let (requests, seconds) = series(method, route, response.status().as_u16());
    seconds.record(started.elapsed().as_secs_f64());
    requests.increment(1);
    response
}
