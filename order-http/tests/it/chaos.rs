//! Chaos: a private PostgreSQL, a private Redis, the HTTP mock gateway (its ledger in a
//! file), two API and two worker processes. Clients submit orders continuously, recording
//! every 202, and other clients hang up on their POSTs after a few milliseconds, while API
//! and worker processes are killed with SIGKILL at random and restarted, Redis is restarted
//! empty (`CHAOS_REDIS_RESTARTS`, 1), PostgreSQL is crashed (`pg_ctl stop -m immediate`) and
//! started again (`CHAOS_PG_CRASHES`, 1), and the gateway is killed and restarted on its
//! ledger (`CHAOS_GATEWAY_RESTARTS`, 1). Once the faults stop, every stored order (the
//! abandoned ones included) must reach a terminal status, every accepted one must be
//! stored, the gateway must hold at most one capture per order, every `confirmed` order
//! exactly one and every `payment_failed` order none, and every attempt history must be one
//! the state machine allows. A share of the orders (`CHAOS_CANCEL_PERCENT`, 30 by default) is cancelled at
//! whatever stage its payment is: every acknowledged cancellation ends `cancelled`, and
//! every `cancelled` order that was captured is refunded exactly once.
//!
//! Short by default (CI); `scripts/chaos.sh` runs the full form:
//! `CHAOS_ORDERS=2000 CHAOS_KILLS=10 cargo test --release -p order-http --test it chaos -- --nocapture`;
//! `CHAOS_SEED` replays the fault schedule of an earlier run (each run prints its seed).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use order_core::payment::AttemptOutcome;
use order_core::ports::OrderRepo;
use order_core::ports::WebhookStore;
use order_core::{IdempotencyKey, OrderId, OrderStatus};
use order_gateway_mock::server::{Behaviour, router};
use order_gateway_mock::{SimulatedGateway, SimulationConfig};
use order_http::testing::{PrivateRedis, Receiver, check_sequences, free_port, sample_order};
use order_store_postgres::PgOrderRepo;
use order_store_postgres::testing::PrivatePostgres;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One `order-http` process that can be killed and started again.
struct Process {
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_order-http"))
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL: no chance to clean up.
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The mock gateway over HTTP, in this process, with its ledger in a file: the authority
/// on charges and refunds. Killing it drops its server and everything it held in memory;
/// starting it again rebuilds the ledger from the file alone, as a restarted process would.
struct Gateway {
    port: u16,
    ledger_path: PathBuf,
    ledger: SimulatedGateway,
    server: tokio::task::JoinHandle<()>,
}

impl Gateway {
    async fn start(port: u16, ledger_path: PathBuf) -> Self {
        let ledger = SimulatedGateway::new(SimulationConfig::default().with_seed(17))
            .with_ledger_file(&ledger_path)
            .expect("the gateway's ledger file opens");
        let behaviour = Behaviour {
            success_rate: 0.9,
            latency_min_ms: 5,
            latency_max_ms: 30,
            decline_share: 0.3,
            timeout_share: 0.3,
            timeout_delay_ms: 800,
        };
        let app = router(ledger.clone(), behaviour).unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            port,
            ledger_path,
            ledger,
            server,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the gateway: its server and its memory are gone; its file stays.
    async fn kill(self) -> (u16, PathBuf) {
        // Requests in flight run on connection tasks that outlive the server's task (axum
        // spawns one per connection). An endless outage, set under the lock every booking
        // takes, stops them booking anything more, so the file the next gateway reads holds
        // every capture ever answered.
        self.ledger
            .set_outage_until(Some(chrono::DateTime::<chrono::Utc>::MAX_UTC));
        self.server.abort();
        let _ = self.server.await;
        (self.port, self.ledger_path)
    }
}

/// The settings every process shares: quick leases, retries and reconciles.
fn environment(database_url: &str, redis_port: u16, gateway_url: String) -> Vec<(String, String)> {
    [
        ("AUTH_MODE", "none".to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("DATABASE_ACQUIRE_TIMEOUT", "0.5".into()),
        ("REDIS_URL", format!("redis://127.0.0.1:{redis_port}")),
        ("REDIS_QUEUE_NAME", "chaos".into()),
        ("HOST", "127.0.0.1".into()),
        ("PAYMENT_GATEWAY_URL", gateway_url),
        ("PAYMENT_GATEWAY_TIMEOUT", "0.4".into()),
        ("PAYMENT_RETRY_ATTEMPTS", "3".into()),
        ("PAYMENT_RETRY_DELAY", "0.05".into()),
        ("PAYMENT_RETRY_MAX_DELAY", "0.5".into()),
        ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "50".into()),
        ("CIRCUIT_BREAKER_RECOVERY_TIMEOUT", "1".into()),
        ("PAYMENT_LEASE_SECONDS", "2".into()),
        ("PAYMENT_RECONCILE_GRACE_SECONDS", "2".into()),
        ("PAYMENT_RECONCILE_INTERVAL_SECONDS", "0.5".into()),
        ("DATABASE_POOL_SIZE", "8".into()),
        ("LOG_LEVEL", "warn".into()),
        ("WEBHOOKS_ALLOW_HTTP", "true".into()),
        ("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "true".into()),
        ("WEBHOOK_TIMEOUT_SECONDS", "1".into()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

/// Two API processes on `api_ports` and two workers, started.
fn start_processes(
    env: &[(String, String)],
    api_ports: [u16; 2],
    logs: &std::path::Path,
) -> Vec<Process> {
    let mut processes: Vec<Process> = Vec::new();
    for (i, port) in api_ports.iter().enumerate() {
        let mut env = env.to_vec();
        env.push(("PORT".into(), port.to_string()));
        processes.push(Process {
            args: vec!["serve".into()],
            env,
            log: logs.join(format!("api-{i}.log")),
            child: None,
        });
    }
    for i in 0..2 {
        // A worker serves /metrics on its PORT: give each one of its own.
        let mut env = env.to_vec();
        env.push(("PORT".into(), free_port().to_string()));
        processes.push(Process {
            args: vec!["worker".into()],
            env,
            log: logs.join(format!("worker-{i}.log")),
            child: None,
        });
    }
    for p in &mut processes {
        p.start();
    }
    processes
}

/// Clients submitting orders until `submitting` turns false; every 202 is recorded. A
/// share of the accepted orders is cancelled a moment later, at whatever stage its payment
/// is; every cancellation the service acknowledged is recorded.
struct Clients {
    accepted: Arc<Mutex<Vec<OrderId>>>,
    cancelled: Arc<Mutex<HashSet<OrderId>>>,
    submitting: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Clients {
    fn start(api_ports: [u16; 2], cancel_share: f64, seed: u64) -> Self {
        let accepted: Arc<Mutex<Vec<OrderId>>> = Arc::new(Mutex::new(Vec::new()));
        let cancelled: Arc<Mutex<HashSet<OrderId>>> = Arc::new(Mutex::new(HashSet::new()));
        let submitting = Arc::new(AtomicBool::new(true));
        let refused = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for c in 0..8 {
            let (accepted, cancelled, submitting, refused) = (
                accepted.clone(),
                cancelled.clone(),
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
                    match sent {
                        Ok(r) if r.status() == 202 => {
                            let Ok(order) = r.json::<order_api::OrderResponse>().await else {
                                continue;
                            };
                            accepted.lock().unwrap().push(OrderId::from_uuid(order.id));
                            if rng.random_bool(cancel_share) {
                                let wait = rng.random_range(0..300);
                                tokio::time::sleep(Duration::from_millis(wait)).await;
                                let port = api_ports[rng.random_range(0..2)];
                                let answer = client
                                    .post(format!(
                                        "http://127.0.0.1:{port}{}",
                                        order_api::paths::order_cancel(order.id)
                                    ))
                                    .send()
                                    .await;
                                if answer.is_ok_and(|a| matches!(a.status().as_u16(), 200 | 202)) {
                                    cancelled
                                        .lock()
                                        .unwrap()
                                        .insert(OrderId::from_uuid(order.id));
                                }
                            }
                        }
                        _ => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
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
            submitting,
            refused,
            tasks,
        }
    }

    fn count(&self) -> u64 {
        self.accepted.lock().unwrap().len() as u64
    }

    async fn stop(self) -> (Vec<OrderId>, HashSet<OrderId>, u64) {
        self.submitting.store(false, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let accepted = self.accepted.lock().unwrap().clone();
        let cancelled = self.cancelled.lock().unwrap().clone();
        (accepted, cancelled, self.refused.load(Ordering::Relaxed))
    }
}

/// Checks one settled order against the gateway's ledger; returns its final status.
fn check_order(
    id: OrderId,
    order: &order_core::Order,
    ledger: &SimulatedGateway,
    cancel_acknowledged: bool,
) -> OrderStatus {
    let (captures, refunds) = ledger
        .entry(&IdempotencyKey::for_order(id))
        .map_or((0, 0), |e| (e.captures, e.refunds));
    let attempts = &order.payment_attempts;
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(
            a.number.get() as usize,
            i + 1,
            "{id}: attempts numbered in order"
        );
        let last = i + 1 == attempts.len();
        assert!(
            last || matches!(
                a.outcome,
                AttemptOutcome::Failed { .. } | AttemptOutcome::TimedOut { .. }
            ),
            "{id}: only the last attempt may end the payment"
        );
    }
    assert!(
        refunds <= captures,
        "{id}: {refunds} refunds of {captures} captures"
    );
    if cancel_acknowledged {
        assert_eq!(
            order.status,
            OrderStatus::Cancelled,
            "{id}: an acknowledged cancellation ends cancelled"
        );
    }
    match order.status {
        OrderStatus::Confirmed => {
            assert_eq!(captures, 1, "{id} is confirmed with {captures} captures");
            assert_eq!(refunds, 0, "{id} is confirmed and refunded");
            assert!(
                attempts.last().is_some_and(|a| a.outcome.is_success()),
                "{id}: confirmed by a success"
            );
        }
        OrderStatus::PaymentFailed => {
            assert_eq!(captures, 0, "{id} failed but was captured");
            assert!(!attempts.iter().any(|a| a.outcome.is_success()));
        }
        OrderStatus::Cancelled => {
            assert_eq!(
                refunds, captures,
                "{id} is cancelled with {captures} capture(s) and {refunds} refund(s)"
            );
            assert!(
                order.cancellation.is_some(),
                "{id}: the cancellation is recorded"
            );
        }
        other => panic!("{id} ended {other}"),
    }
    order.status
}

/// Subscribes `receiver` to every event through the API on `port`, once it answers.
async fn subscribe(port: u16, receiver: &Receiver) {
    let client = order_api::OrderClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let request = order_api::webhooks::CreateWebhookEndpointRequest {
        url: receiver.url(),
        events: None,
        description: Some("chaos".into()),
        customer_id: None,
    };
    let start = Instant::now();
    while client.create_webhook_endpoint(&request).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the API never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every event in the outbox of every stored order has reached the receiver
/// (deduplicated by id), and checks each order's events follow the state machine. Returns
/// how many events there are and how many requests the receiver got.
async fn check_events(
    repo: &PgOrderRepo,
    orders: &HashSet<OrderId>,
    receiver: &Receiver,
    logs: &std::path::Path,
) -> (usize, usize) {
    let mut outbox = HashSet::new();
    for id in orders {
        for event in repo.events_of(*id).await.unwrap() {
            outbox.insert(event.id.to_string());
        }
    }
    let deadline = Instant::now() + Duration::from_secs(setting("CHAOS_SETTLE_SECONDS", 120));
    loop {
        let delivered = receiver.delivered();
        let missing = outbox
            .iter()
            .filter(|id| !delivered.contains_key(*id))
            .count();
        if missing == 0 {
            let sequences = check_sequences(&delivered);
            assert_eq!(
                sequences.len(),
                orders.len(),
                "every order's events arrived"
            );
            return (outbox.len(), receiver.received().len());
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} events never reached the receiver; logs in {}",
            outbox.len(),
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_accepted_order_is_lost_or_charged_twice_under_kills_restarts_and_crashes() {
    let target_orders = setting("CHAOS_ORDERS", 300);
    let pg_crashes_wanted = setting("CHAOS_PG_CRASHES", 1);
    let target_kills = setting("CHAOS_KILLS", 4);
    let redis_restarts_wanted = setting("CHAOS_REDIS_RESTARTS", 1);
    let gateway_restarts_wanted = setting("CHAOS_GATEWAY_RESTARTS", 1);
    let logs = std::env::temp_dir().join(format!("chaos-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&logs).unwrap();
    let mut gateway = Gateway::start(free_port(), logs.join("gateway-ledger.jsonl")).await;
    let mut postgres = tokio::task::block_in_place(|| {
        let mut postgres = PrivatePostgres::create(free_port());
        postgres.start();
        postgres
    });
    let redis_port = free_port();
    let mut redis = PrivateRedis::start_on(redis_port);
    let env = environment(&postgres.url(), redis_port, gateway.url());
    let api_ports = [free_port(), free_port()];
    let mut processes = start_processes(&env, api_ports, &logs);
    // A subscriber to every event: each one must reach it, whatever is killed.
    let receiver = Receiver::start().await;
    subscribe(api_ports[0], &receiver).await;
    // Faults: SIGKILL a random process and restart it; restart Redis empty along the way.
    // The schedule is seeded; a failing run prints its seed, and CHAOS_SEED replays it.
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("chaos: seed {seed} (replay with CHAOS_SEED={seed})");
    let cancel_share = setting("CHAOS_CANCEL_PERCENT", 30) as f64 / 100.0;
    let clients = Clients::start(api_ports, cancel_share, seed);
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut kills, mut redis_restarts, mut gateway_restarts, mut pg_crashes) =
        (0u64, 0u64, 0u64, 0u64);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(setting("CHAOS_MAX_SECONDS", 600));
    while clients.count() < target_orders
        || kills < target_kills
        || redis_restarts < redis_restarts_wanted
        || gateway_restarts < gateway_restarts_wanted
        || pg_crashes < pg_crashes_wanted
    {
        assert!(
            Instant::now() < deadline,
            "chaos did not reach its targets in time"
        );
        let (pause, victim, down) = (
            rng.random_range(200..800),
            rng.random_range(0..processes.len()),
            rng.random_range(50..400),
        );
        tokio::time::sleep(Duration::from_millis(pause)).await;
        if kills >= target_kills / 4 && gateway_restarts < gateway_restarts_wanted {
            let (port, ledger_path) = gateway.kill().await;
            tokio::time::sleep(Duration::from_millis(down)).await;
            gateway = Gateway::start(port, ledger_path).await;
            gateway_restarts += 1;
        } else if kills >= target_kills * 3 / 4 && pg_crashes < pg_crashes_wanted {
            // Crash recovery on start: whatever was committed is there, nothing else.
            tokio::task::block_in_place(|| postgres.crash());
            tokio::time::sleep(Duration::from_millis(down)).await;
            tokio::task::block_in_place(|| postgres.start());
            pg_crashes += 1;
        } else if kills >= target_kills / 2 && redis_restarts < redis_restarts_wanted {
            redis.kill();
            tokio::time::sleep(Duration::from_millis(down)).await;
            redis = PrivateRedis::start_on(redis_port);
            redis_restarts += 1;
        } else if kills < target_kills {
            processes[victim].kill();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(down)).await;
            processes[victim].start();
        }
    }
    let (accepted, cancel_acknowledged, refused) = clients.stop().await;
    let unique: HashSet<OrderId> = accepted.iter().copied().collect();
    assert_eq!(unique.len(), accepted.len(), "every 202 named a new order");

    // Faults are over: every stored order must settle.
    let ledger = &gateway.ledger;
    let repo = PgOrderRepo::connect(
        &postgres.url(),
        &order_store_postgres::PoolConfig::default(),
    )
    .await
    .expect("the private PostgreSQL answers");
    let settle_by = Instant::now() + Duration::from_secs(setting("CHAOS_SETTLE_SECONDS", 120));
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM orders \
             WHERE status IN ('pending', 'payment_processing', 'cancelling')",
        )
        .fetch_one(repo.pool())
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < settle_by,
            "{open} orders never settled; logs in {}",
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stored_ids: HashSet<OrderId> = sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM orders")
        .fetch_all(repo.pool())
        .await
        .unwrap()
        .into_iter()
        .map(OrderId::from_uuid)
        .collect();
    for id in &accepted {
        assert!(stored_ids.contains(id), "accepted order {id} was lost");
    }
    let (events, requests) = check_events(&repo, &stored_ids, &receiver, &logs).await;
    let mut ended: std::collections::HashMap<OrderStatus, u64> = std::collections::HashMap::new();
    for id in &stored_ids {
        let order = repo.get(*id).await.unwrap().expect("stored");
        let status = check_order(*id, &order, ledger, cancel_acknowledged.contains(id));
        *ended.entry(status).or_default() += 1;
    }
    assert!(
        ledger
            .ledger()
            .values()
            .all(|e| e.captures <= 1 && e.refunds <= e.captures),
        "a key was captured twice, or refunded more than captured"
    );
    let count = |status| ended.get(&status).copied().unwrap_or(0);
    let stored = stored_ids.len();
    println!(
        "chaos: accepted={} stored={stored} confirmed={} failed={} cancelled={} cancels_acknowledged={} \
         events={events} webhook_requests={requests} kills={kills} redis_restarts={redis_restarts} pg_crashes={pg_crashes} gateway_restarts={gateway_restarts} refused={refused} \
         gateway_calls_since_restart={} captures={} refunds={} seconds={:.1}",
        accepted.len(),
        count(OrderStatus::Confirmed),
        count(OrderStatus::PaymentFailed),
        count(OrderStatus::Cancelled),
        cancel_acknowledged.len(),
        ledger.calls(),
        ledger.total_captures(),
        ledger.total_refunds(),
        started.elapsed().as_secs_f64(),
    );
    drop(processes);
    drop(redis);
    drop(repo);
    tokio::task::block_in_place(|| drop(postgres));
    let _ = std::fs::remove_dir_all(&logs);
}
