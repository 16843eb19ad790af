//! The chaos run's clients: they place orders, cancel some, capture some (manual capture),
//! give back part of some, and hang up on others.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use order_core::OrderId;
use order_http::testing::sample_order;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

/// What the clients ask of orders beside placing them.
#[derive(Debug, Clone, Copy)]
pub struct Shares {
    /// Of the accepted orders, the share cancelled a moment later.
    pub cancel: f64,
    /// Of the accepted orders, the share captured once confirmed (manual capture only).
    pub capture: f64,
    /// Of the orders not cancelled at once (and, with manual capture, captured), the share
    /// given back in part once confirmed: the fries, 4.99.
    pub refund: f64,
}

/// What the clients were told.
pub struct Acknowledged {
    /// Every order answered `202`, in order.
    pub accepted: Vec<OrderId>,
    /// Every cancellation answered `200` or `202`.
    pub cancelled: HashSet<OrderId>,
    /// Every capture answered `200`, with the amount it asked for.
    pub captured: HashMap<OrderId, Decimal>,
    /// Every refund answered `200`, with the amount it asked for.
    pub refunded: HashMap<OrderId, Decimal>,
    /// POSTs of orders that were not accepted.
    pub refused: u64,
}

/// Clients submitting orders until `submitting` turns false; every 202 is recorded. A
/// share of the accepted orders is cancelled a moment later, at whatever stage its payment
/// is, and (manual capture) another share is captured for part of its total once it is
/// confirmed; every cancellation and capture the service acknowledged is recorded.
pub struct Clients {
    accepted: Arc<Mutex<Vec<OrderId>>>,
    cancelled: Arc<Mutex<HashSet<OrderId>>>,
    captured: Arc<Mutex<HashMap<OrderId, Decimal>>>,
    refunded: Arc<Mutex<HashMap<OrderId, Decimal>>>,
    submitting: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Cancels `order` through the API on `port`: `true` when the service acknowledged it.
async fn cancel(client: &reqwest::Client, port: u16, order: uuid::Uuid) -> bool {
    let answer = client
        .post(format!(
            "http://127.0.0.1:{port}{}",
            order_api::paths::order_cancel(order)
        ))
        .send()
        .await;
    answer.is_ok_and(|a| matches!(a.status().as_u16(), 200 | 202))
}

/// POSTs `body` to `path` on the API processes in turn until an answer is `200` (`true`)
/// or `gives_up` (`false`), for at most 5 s (`false`): anything else (an order not
/// confirmed yet, a gateway's answer unknown, a process down) is asked again, under
/// `key` when there is one.
async fn post_until(
    client: &reqwest::Client,
    api_ports: [u16; 2],
    path: &str,
    body: &impl serde::Serialize,
    key: Option<&str>,
    gives_up: u16,
) -> bool {
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let port = api_ports[n % 2];
        n += 1;
        let mut call = client
            .post(format!("http://127.0.0.1:{port}{path}"))
            .json(body);
        if let Some(key) = key {
            call = call.header(order_api::headers::IDEMPOTENCY_KEY, key);
        }
        match call.send().await.as_ref().map(reqwest::Response::status) {
            Ok(s) if s == 200 => return true,
            Ok(s) if s == gives_up => return false,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Asks for the capture of `amount` of `order` until it is captured (`true`) or the time
/// is up: a `409` (not confirmed yet, cancelled, or captured by an answer that was lost) is
/// asked again.
async fn capture(
    client: &reqwest::Client,
    api_ports: [u16; 2],
    order: uuid::Uuid,
    amount: Decimal,
) -> bool {
    let body = order_api::orders::CaptureOrderRequest {
        amount: Some(amount),
    };
    let path = order_api::paths::order_capture(order);
    post_until(client, api_ports, &path, &body, None, 0).await
}

/// Asks for a refund of `amount` of `order`, under one idempotency key, until it is made
/// (`true`) or the time is up: a `409` (not confirmed yet, cancelled) is asked again.
async fn refund(
    client: &reqwest::Client,
    api_ports: [u16; 2],
    order: uuid::Uuid,
    amount: Decimal,
) -> bool {
    let body = order_api::orders::RefundOrderRequest {
        amount: Some(amount),
        ..Default::default()
    };
    let path = order_api::paths::order_refunds(order);
    let key = format!("chaos-refund-{order}");
    post_until(client, api_ports, &path, &body, Some(&key), 0).await
}

impl Clients {
    /// Starts 8 clients on `api_ports`, and 2 that hang up.
    pub fn start(api_ports: [u16; 2], shares: Shares, seed: u64) -> Self {
        let accepted: Arc<Mutex<Vec<OrderId>>> = Arc::new(Mutex::new(Vec::new()));
        let cancelled: Arc<Mutex<HashSet<OrderId>>> = Arc::new(Mutex::new(HashSet::new()));
        let captured: Arc<Mutex<HashMap<OrderId, Decimal>>> = Arc::default();
        let refunded: Arc<Mutex<HashMap<OrderId, Decimal>>> = Arc::default();
        let submitting = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for c in 0..8 {
            let (accepted, cancelled, captured, refunded, submitting, refused) = (
                accepted.clone(),
                cancelled.clone(),
                captured.clone(),
                refunded.clone(),
                submitting.clone(),
                refused.clone(),
            );
            let mut rng = SmallRng::seed_from_u64(seed.wrapping_add(c as u64));
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            tasks.push(tokio::spawn(async move {
                let mut n = 0usize;
                while submitting.load(Ordering::Relaxed) {
                    let port = api_ports[(c + n) % 2];
                    n += 1;
                    let sent = client
                        .post(format!(
                            "http://127.0.0.1:{port}{}",
                            order_api::paths::ORDERS
                        ))
                        .json(&sample_order(&format!("chaos-{c}")))
                        .send()
                        .await;
                    let Ok(order) = (match sent {
                        Ok(r) if r.status() == 202 => r.json::<order_api::OrderResponse>().await,
                        _ => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    }) else {
                        continue;
                    };
                    let id = OrderId::from_uuid(order.id);
                    accepted.lock().unwrap().push(id);
                    if rng.random_bool(shares.cancel) {
                        let wait = rng.random_range(0..300);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        let port = api_ports[rng.random_range(0..2)];
                        if cancel(&client, port, order.id).await {
                            cancelled.lock().unwrap().insert(id);
                        }
                        continue;
                    }
                    let to_capture = rng.random_bool(shares.capture);
                    if to_capture {
                        // 25.98 of 30.97: the fries were not there.
                        let amount = Decimal::new(2598, 2);
                        if !capture(&client, api_ports, order.id, amount).await {
                            continue;
                        }
                        captured.lock().unwrap().insert(id, amount);
                    }
                    // The burger was cold: 4.99 of it goes back, the order stays confirmed.
                    // (An order only authorized has nothing to give back.)
                    if (to_capture || shares.capture <= 0.0) && rng.random_bool(shares.refund) {
                        let amount = Decimal::new(499, 2);
                        if refund(&client, api_ports, order.id, amount).await {
                            refunded.lock().unwrap().insert(id, amount);
                        }
                    }
                    // Some are cancelled after the capture (and refund): what is left of
                    // what was taken goes back, and no more than that.
                    if to_capture && rng.random_bool(0.3) {
                        let port = api_ports[rng.random_range(0..2)];
                        if cancel(&client, port, order.id).await {
                            cancelled.lock().unwrap().insert(id);
                        }
                    }
                }
            }));
        }
        // Clients that hang up: each POST is abandoned after a few milliseconds, before or
        // after the service stored the order. Their orders are not recorded as accepted, but
        // every one that was stored must be paid like any other.
        for c in 0..2u64 {
            let submitting = submitting.clone();
            let mut rng = SmallRng::seed_from_u64(seed.wrapping_add(100 + c));
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                while submitting.load(Ordering::Relaxed) {
                    let port = api_ports[rng.random_range(0..2)];
                    let patience = Duration::from_millis(rng.random_range(1..15));
                    let _ = tokio::time::timeout(
                        patience,
                        client
                            .post(format!(
                                "http://127.0.0.1:{port}{}",
                                order_api::paths::ORDERS
                            ))
                            .json(&sample_order(&format!("chaos-hangup-{c}")))
                            .send(),
                    )
                    .await;
                    tokio::time::sleep(Duration::from_millis(rng.random_range(5..40))).await;
                }
            }));
        }
        Self {
            accepted,
            cancelled,
            captured,
            refunded,
            submitting,
            refused,
            tasks,
        }
    }

    /// Orders accepted so far.
    pub fn count(&self) -> u64 {
        self.accepted.lock().unwrap().len() as u64
    }

    /// Stops them; what they were told.
    pub async fn stop(self) -> Acknowledged {
        self.submitting.store(false, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        Acknowledged {
            accepted: self.accepted.lock().unwrap().clone(),
            cancelled: self.cancelled.lock().unwrap().clone(),
            captured: self.captured.lock().unwrap().clone(),
            refunded: self.refunded.lock().unwrap().clone(),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}
