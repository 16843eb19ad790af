//! The load generator.
//!
//! - **Open model** (`--rate R`): requests are due at fixed times, `1/R` apart, whether or not
//!   earlier ones have answered. Latency is measured from when a request was *due*, not from
//!   when it was sent, so a stalled service cannot hide its stall behind a stalled client
//!   (coordinated omission).
//! - **Closed loop** (no rate): `--connections` tasks send back to back; this finds the
//!   maximum throughput.
//!
//! Latencies go into an HdrHistogram (microseconds, 3 significant digits).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use order_api::OrderClient;
use order_api::client::{ClientError, Placed};
use order_api::orders::{CreateItemRequest, CreateOrderRequest, ListOrdersQuery, OrderStatus};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::cli::LoadArgs;
use crate::client::CliError;

const MENU: [(&str, &str, &str); 8] = [
    ("item_001", "Burger", "12.99"),
    ("item_002", "Fries", "4.99"),
    ("item_003", "Soda", "2.50"),
    ("item_004", "Salad", "8.75"),
    ("item_005", "Pizza", "15.00"),
    ("item_006", "Noodles", "11.20"),
    ("item_007", "Ice cream", "3.95"),
    ("item_008", "Coffee", "2.10"),
];

/// A realistic order: one of 1,000 customers, 1 to 5 items from the menu.
pub fn random_order(rng: &mut impl Rng) -> CreateOrderRequest {
    let items = (0..rng.random_range(1..=5))
        .map(|_| {
            let (id, name, price) = MENU[rng.random_range(0..MENU.len())];
            CreateItemRequest {
                item_id: id.to_owned(),
                item_name: name.to_owned(),
                quantity: rng.random_range(1..=4),
                price: price.parse().expect("menu prices are decimals"),
            }
        })
        .collect();
    CreateOrderRequest {
        customer_id: format!("load-customer-{}", rng.random_range(0..1000)),
        items,
        payment_method: None,
    }
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// How the backlog drained after sending.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settle {
    /// Orders with work left (pending, paying, cancelling) when sending stopped.
    pub open_at_start: u64,
    /// Seconds until none was left.
    pub seconds: f64,
    /// Orders settled per second while draining.
    pub drain_rate: f64,
    /// Orders confirmed during the run and the drain.
    pub confirmed: u64,
    /// Orders failed during the run and the drain.
    pub failed: u64,
    /// `confirmed / (confirmed + failed)`.
    pub confirmation_rate: f64,
}

/// How a run sends its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// At a fixed rate, whether or not earlier requests have answered.
    Open,
    /// Back to back over a fixed number of connections, as fast as they go.
    Closed,
}

impl LoadMode {
    /// Its name in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// What a load run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Fixed rate or full speed.
    pub mode: LoadMode,
    /// The target rate (open model).
    pub target_rate: Option<f64>,
    /// Seconds spent sending.
    pub seconds: f64,
    /// Requests sent.
    pub sent: u64,
    /// Requests answered 202.
    pub accepted: u64,
    /// Requests that failed, by HTTP status or `connection`.
    pub errors: BTreeMap<String, u64>,
    /// Requests not sent because `max_in_flight` were outstanding (open model).
    pub dropped: u64,
    /// Accepted orders per second.
    pub throughput: f64,
    /// Latency of the requests answered (202 or not), from when each was due.
    pub latency_ms: Latency,
    /// Latency of the requests answered 202 alone: what a client whose order was taken
    /// waited, however many others were refused.
    #[serde(default)]
    pub accepted_latency_ms: Latency,
    /// The drain, with `--settle`.
    pub settle: Option<Settle>,
}

impl Report {
    /// Human-readable lines.
    pub fn render(&self) -> String {
        let l = &self.latency_ms;
        let mut out = format!(
            "mode {} {}for {:.1} s\nsent {}  accepted {}  dropped {}  errors {:?}\nthroughput {:.0} orders/s\n\
             latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}\n\
             accepted only: p50 {:.2}  p99 {:.2}  max {:.2}\n",
            self.mode.as_str(),
            self.target_rate
                .map_or(String::new(), |r| format!("at {r:.0}/s ")),
            self.seconds,
            self.sent,
            self.accepted,
            self.dropped,
            self.errors,
            self.throughput,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            l.mean,
            self.accepted_latency_ms.p50,
            self.accepted_latency_ms.p99,
            self.accepted_latency_ms.max,
        );
        if let Some(s) = &self.settle {
            let _ = writeln!(
                out,
                "drained {} open orders in {:.1} s ({:.0}/s); confirmed {} failed {} ({:.1} % confirmed)",
                s.open_at_start,
                s.seconds,
                s.drain_rate,
                s.confirmed,
                s.failed,
                s.confirmation_rate * 100.0
            );
        }
        out
    }
}

/// Shared tallies of a run.
struct Tally {
    histogram: Mutex<Histogram<u64>>,
    accepted_histogram: Mutex<Histogram<u64>>,
    accepted: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn new() -> Self {
        let histogram = || {
            Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
            )
        };
        Self {
            histogram: histogram(),
            accepted_histogram: histogram(),
            accepted: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    fn record(&self, due: Instant, outcome: Result<Placed, ClientError>) {
        let micros = u64::try_from(due.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(micros);
        match outcome {
            Ok(_) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                self.accepted_histogram
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .saturating_record(micros);
            }
            Err(ClientError::Timeout(_)) => self.error("timeout".into()),
            Err(e) => self.error(
                e.status()
                    .map_or_else(|| "connection".into(), |s| s.to_string()),
            ),
        }
    }

    fn error(&self, kind: String) {
        *self
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind)
            .or_default() += 1;
    }

    fn latency(histogram: &Mutex<Histogram<u64>>) -> Latency {
        let h = histogram.lock().unwrap_or_else(PoisonError::into_inner);
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

fn progress(args: &LoadArgs) -> ProgressBar {
    if args.quiet {
        return ProgressBar::hidden();
    }
    let millis = u64::try_from(args.duration.as_millis()).unwrap_or(u64::MAX);
    let bar = ProgressBar::new(millis);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Sends load as `args` says and reports what it measured.
pub async fn run(client: &OrderClient, args: &LoadArgs) -> Result<Report, CliError> {
    let tally = Arc::new(Tally::new());
    let baseline = if args.settle {
        Some(settled_counts(client).await?)
    } else {
        None
    };
    let bar = progress(args);
    let start = Instant::now();
    let (sent, dropped) = match args.rate {
        Some(rate) if rate > 0.0 => open_model(client, args, rate, &tally, &bar).await,
        Some(_) => return Err(CliError::Invalid("--rate must be more than 0".into())),
        None => closed_loop(client, args, &tally, &bar).await,
    };
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let accepted = tally.accepted.load(Ordering::Relaxed);
    let settle = match baseline {
        Some(before) => {
            Some(settle(client, before, Duration::from_secs_f64(args.settle_timeout)).await?)
        }
        None => None,
    };
    Ok(Report {
        mode: if args.rate.is_some() {
            LoadMode::Open
        } else {
            LoadMode::Closed
        },
        target_rate: args.rate,
        seconds,
        sent,
        accepted,
        errors: tally
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
        dropped,
        throughput: accepted as f64 / seconds,
        latency_ms: Tally::latency(&tally.histogram),
        accepted_latency_ms: Tally::latency(&tally.accepted_histogram),
        settle,
    })
}

/// `x` rounded down to a whole count, clamped to `u64`'s range.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "clamped to u64's range first"
)]
fn whole(x: f64) -> u64 {
    x.floor().clamp(0.0, u64::MAX as f64) as u64
}

async fn open_model(
    client: &OrderClient,
    args: &LoadArgs,
    rate: f64,
    tally: &Arc<Tally>,
    bar: &ProgressBar,
) -> (u64, u64) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = whole(args.duration.as_secs_f64() * rate);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut rng = args.seed.map_or_else(
        || SmallRng::from_rng(&mut rand::rng()),
        SmallRng::seed_from_u64,
    );
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    let (mut sent, mut dropped) = (0u64, 0u64);
    let mut next = 0u64;
    while next < total {
        // Send everything due by now, then sleep a tick: timers are coarser than 1/rate.
        let due_by_now = (whole(start.elapsed().as_secs_f64() * rate) + 1).min(total);
        while next < due_by_now {
            let due = start + interval.mul_f64(next as f64);
            next += 1;
            if in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
                dropped += 1;
                continue;
            }
            sent += 1;
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (client, tally, in_flight) =
                (client.clone(), Arc::clone(tally), Arc::clone(&in_flight));
            let order = random_order(&mut rng);
            let key = args.keyed.then(fresh_key);
            tasks.spawn(async move {
                let outcome = client.create(&order, key.as_deref()).await;
                tally.record(due, outcome);
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        while tasks.try_join_next().is_some() {}
        bar.set_position(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
        bar.set_message(format!(
            "{sent} sent, {} in flight",
            in_flight.load(Ordering::Relaxed)
        ));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while tasks.join_next().await.is_some() {}
    (sent, dropped)
}

/// A new `Idempotency-Key` for one order of a `--keyed` run.
fn fresh_key() -> String {
    format!("load-{}", uuid::Uuid::now_v7().simple())
}

async fn closed_loop(
    client: &OrderClient,
    args: &LoadArgs,
    tally: &Arc<Tally>,
    bar: &ProgressBar,
) -> (u64, u64) {
    let sent = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + args.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..args.connections.max(1) {
        let (client, tally, sent) = (client.clone(), Arc::clone(tally), Arc::clone(&sent));
        let keyed = args.keyed;
        let seed = args
            .seed
            .map_or_else(rand::random, |s| s.wrapping_add(c as u64));
        tasks.spawn(async move {
            let mut rng = SmallRng::seed_from_u64(seed);
            while Instant::now() < deadline {
                let order = random_order(&mut rng);
                let due = Instant::now();
                sent.fetch_add(1, Ordering::Relaxed);
                let key = keyed.then(fresh_key);
                let outcome = client.create(&order, key.as_deref()).await;
                tally.record(due, outcome);
            }
        });
    }
    let start = Instant::now();
    while Instant::now() < deadline {
        bar.set_position(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
        bar.set_message(format!("{} sent", sent.load(Ordering::Relaxed)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while tasks.join_next().await.is_some() {}
    (sent.load(Ordering::Relaxed), 0)
}

async fn count(client: &OrderClient, status: OrderStatus) -> Result<u64, CliError> {
    let query = ListOrdersQuery {
        status: Some(status),
        page_size: Some(1),
        ..ListOrdersQuery::default()
    };
    Ok(client.list(&query).await?.total)
}

/// Confirmed and failed orders so far.
async fn settled_counts(client: &OrderClient) -> Result<(u64, u64), CliError> {
    Ok((
        count(client, OrderStatus::Confirmed).await?,
        count(client, OrderStatus::PaymentFailed).await?,
    ))
}

/// Orders a worker still has work on: every status that is not terminal.
async fn open_orders(client: &OrderClient) -> Result<u64, CliError> {
    let mut open = 0;
    for status in OrderStatus::ALL.into_iter().filter(|s| !s.is_terminal()) {
        open += count(client, status).await?;
    }
    Ok(open)
}

/// Waits until no order has work left; `before` is the settled counts before
/// the run.
pub async fn settle(
    client: &OrderClient,
    before: (u64, u64),
    limit: Duration,
) -> Result<Settle, CliError> {
    let start = Instant::now();
    let open_at_start = open_orders(client).await?;
    loop {
        if open_orders(client).await? == 0 {
            break;
        }
        if start.elapsed() > limit {
            return Err(CliError::Unavailable(format!(
                "orders still open after {limit:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let (confirmed, failed) = settled_counts(client).await?;
    let (confirmed, failed) = (
        confirmed - before.0.min(confirmed),
        failed - before.1.min(failed),
    );
    Ok(Settle {
        open_at_start,
        seconds,
        drain_rate: open_at_start as f64 / seconds.max(1e-3),
        confirmed,
        failed,
        confirmation_rate: if confirmed + failed == 0 {
            0.0
        } else {
            confirmed as f64 / (confirmed + failed) as f64
        },
    })
}
