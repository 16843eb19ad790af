//! A webhook receiver on loopback for tests: it records every request it gets and answers
//! as told, and checks what it got the way a receiver must.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use order_api::webhooks::{EventType, WebhookEvent};

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// This status at once.
    Status(u16),
    /// This status with `Retry-After` in seconds.
    RetryAfter(u16, u64),
    /// Nothing for this long, then `503` (the sender has given up by then).
    Hang(Duration),
    /// This status with this body, whatever bytes it holds.
    Body(u16, &'static [u8]),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// The body.
    pub body: Bytes,
    /// The headers as received.
    pub headers: HeaderMap,
    /// The status it was answered with.
    pub answered: u16,
    /// When it arrived.
    pub at: Instant,
    /// When it arrived, by the wall clock.
    pub wall: DateTime<Utc>,
}

impl Received {
    /// The body as the event envelope.
    pub fn event(&self) -> WebhookEvent {
        serde_json::from_slice(&self.body).expect("a webhook body is an event envelope")
    }
}

#[derive(Debug, Default)]
struct Inner {
    script: VecDeque<Answer>,
    otherwise: Option<Answer>,
    received: Vec<Received>,
    /// Requests being answered now, and the most there ever were at once.
    open: usize,
    most_open: usize,
}

/// Counts a request as open from its arrival until its handler ends or is dropped (a sender
/// that gives up closes the connection, which drops the handler).
struct Open(Arc<Mutex<Inner>>);

impl Open {
    fn new(inner: &Arc<Mutex<Inner>>) -> Self {
        let mut i = inner.lock().unwrap_or_else(PoisonError::into_inner);
        i.open += 1;
        i.most_open = i.most_open.max(i.open);
        drop(i);
        Self(Arc::clone(inner))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).open -= 1;
    }
}

/// A loopback webhook receiver. By default it answers `200` to everything.
#[derive(Debug, Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    port: u16,
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _open = Open::new(&inner);
    let answer = {
        let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .script
            .pop_front()
            .or(inner.otherwise)
            .unwrap_or(Answer::Status(200))
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (status, retry_after, hang, body_out): (_, _, _, &'static [u8]) = match answer {
        Answer::Status(s) => (s, None, None, b"ok"),
        Answer::RetryAfter(s, secs) => (s, Some(secs), None, b"try later"),
        Answer::Hang(d) => (503, None, Some(d), b"ok"),
        Answer::Body(s, bytes) => (s, None, None, bytes),
    };
    let received = Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
        headers: headers.clone(),
        answered: status,
        at: Instant::now(),
        wall: Utc::now(),
    };
    inner
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .received
        .push(received);
    // Recorded on arrival: a sender that gives up drops this handler while it hangs.
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match retry_after {
        Some(secs) => (status, [("retry-after", secs.to_string())], body_out).into_response(),
        None => (status, body_out).into_response(),
    }
}

impl Receiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("a loopback port");
        let port = listener.local_addr().expect("an address").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { inner, port }
    }

    /// The port it listens on, on loopback.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers the next requests as listed, then as before.
    pub fn script(&self, answers: &[Answer]) {
        self.lock().script.extend(answers.iter().copied());
    }

    /// Answers every request past the script this way.
    pub fn otherwise(&self, answer: Answer) {
        self.lock().otherwise = Some(answer);
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The most requests it was answering at once, so far.
    pub fn most_at_once(&self) -> usize {
        self.lock().most_open
    }

    /// The events delivered (answered `2xx`), one per `webhook-id`.
    pub fn delivered(&self) -> BTreeMap<String, Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .map(|r| (r.id.clone(), r))
            .collect()
    }

    /// Waits until `done` holds for what was received, or panics after `deadline`.
    pub async fn wait_for(
        &self,
        deadline: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) {
        let start = Instant::now();
        loop {
            if done(&self.received()) {
                return;
            }
            assert!(start.elapsed() < deadline, "the receiver never got {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Every event of the state machine.
const EVENTS: [order_core::order::OrderEvent; 6] = [
    order_core::order::OrderEvent::PaymentStarted,
    order_core::order::OrderEvent::PaymentCaptured,
    order_core::order::OrderEvent::PaymentFailed,
    order_core::order::OrderEvent::Cancelled,
    order_core::order::OrderEvent::CancelRequested,
    order_core::order::OrderEvent::Refunded,
];

/// The order in which an order's events happen: by time, and where two share a time, in
/// life order (a refund is reported after its cancellation).
fn rank(kind: EventType) -> usize {
    EventType::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

/// Panics unless [`sequences`] finds every order's events in an allowed order; returns
/// each order's sequence.
pub fn check_sequences(
    delivered: &BTreeMap<String, Received>,
) -> HashMap<uuid::Uuid, Vec<EventType>> {
    sequences(delivered).unwrap_or_else(|e| panic!("{e}"))
}

/// Each order's delivered events (deduplicated by id), in the order they happened, if for
/// every order the first is `order.created`, each next one a status the state machine
/// allows after the previous, `order.refunded` comes only right after `order.cancelled`,
/// and `order.partially_refunded` only while the order is `confirmed`; else which order
/// broke which rule.
pub fn sequences(
    delivered: &BTreeMap<String, Received>,
) -> Result<HashMap<uuid::Uuid, Vec<EventType>>, String> {
    use order_core::order::{OrderStatus, next_status};
    let mut by_order: HashMap<uuid::Uuid, Vec<(DateTime<Utc>, EventType)>> = HashMap::new();
    for r in delivered.values() {
        let event = r.event();
        if event.id != r.id {
            return Err(format!("body id {} is not webhook-id {}", event.id, r.id));
        }
        by_order
            .entry(event.data.id)
            .or_default()
            .push((event.timestamp, event.kind));
    }
    let status = |kind: EventType| -> OrderStatus {
        let core: order_core::webhook::EventType = kind.as_str().parse().expect("the same names");
        core.status()
    };
    by_order
        .into_iter()
        .map(|(order, mut events)| {
            events.sort_by_key(|(at, kind)| (*at, rank(*kind)));
            let kinds: Vec<EventType> = events.iter().map(|(_, k)| *k).collect();
            if kinds.first() != Some(&EventType::Created) {
                return Err(format!(
                    "{order}: {kinds:?} does not start with order.created"
                ));
            }
            for pair in kinds.windows(2) {
                let allowed = if pair[1] == EventType::Refunded {
                    pair[0] == EventType::Cancelled
                } else if pair[1] == EventType::PartiallyRefunded {
                    status(pair[0]) == OrderStatus::Confirmed
                } else {
                    let (from, to) = (status(pair[0]), status(pair[1]));
                    EVENTS.iter().any(|e| next_status(from, *e) == Ok(to))
                };
                if !allowed {
                    return Err(format!(
                        "{order}: {:?} cannot follow {:?} ({kinds:?})",
                        pair[1], pair[0]
                    ));
                }
            }
            Ok((order, kinds))
        })
        .collect()
}
