//! # order-gateway-mock
//!
//! [`SimulatedGateway`]: a payment gateway simulation with the original service's settings
//! (`PAYMENT_MOCK_SUCCESS_RATE` 0.95, `PAYMENT_MOCK_LATENCY_MIN`/`_MAX` 50/200 ms), its
//! decline reasons (final), ambiguous time-outs, an outage switch, and a ledger keyed by
//! idempotency key: the same key replays its first definitive outcome and is never
//! charged twice. Refunds give a capture back at most once, never more than it was; a
//! refund of a key with nothing captured voids it, so no later charge with it captures.
//! A seed makes every run repeatable.
//!
//! It is named so as not to clash with `order_core::ports::MockPaymentGateway`, the
//! mockall mock used to check interactions.

mod capture;
mod lookup;
pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::Money;
use order_core::payment::{
    CaptureMethod, CaptureReceipt, CaptureRequest, ChargeReceipt, ChargeRequest, DeclineReason,
    GatewayError, IdempotencyKey, LookupRequest, PaymentState, RefundReceipt, RefundRequest,
};
use order_core::ports::{Clock, PaymentGateway, SystemClock};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// A setting out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name} must be {expected} (got {got})")]
pub struct ConfigError {
    /// The setting.
    pub name: &'static str,
    /// What it must be.
    pub expected: &'static str,
    /// What it was.
    pub got: String,
}

/// How the simulation behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationConfig {
    success_rate: f64,
    latency: RangeInclusive<Duration>,
    decline_share: f64,
    timeout_share: f64,
    seed: Option<u64>,
}

fn share(name: &'static str, value: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError {
            name,
            expected: "between 0 and 1",
            got: value.to_string(),
        })
    }
}

impl SimulationConfig {
    /// `success_rate` of charges succeed; of the failures, `decline_share` are declines
    /// (final), `timeout_share` time-outs (ambiguous: half of them did capture), the rest
    /// "not processed" errors (retryable). Each charge takes a latency drawn from `latency`.
    pub fn new(
        success_rate: f64,
        latency: RangeInclusive<Duration>,
        decline_share: f64,
        timeout_share: f64,
    ) -> Result<Self, ConfigError> {
        let success_rate = share("PAYMENT_MOCK_SUCCESS_RATE", success_rate)?;
        let decline_share = share("PAYMENT_MOCK_DECLINE_SHARE", decline_share)?;
        let timeout_share = share("PAYMENT_MOCK_TIMEOUT_SHARE", timeout_share)?;
        if decline_share + timeout_share > 1.0 {
            return Err(ConfigError {
                name: "PAYMENT_MOCK_DECLINE_SHARE + PAYMENT_MOCK_TIMEOUT_SHARE",
                expected: "at most 1",
                got: (decline_share + timeout_share).to_string(),
            });
        }
        if latency.start() > latency.end() {
            return Err(ConfigError {
                name: "PAYMENT_MOCK_LATENCY_MIN",
                expected: "at most PAYMENT_MOCK_LATENCY_MAX",
                got: format!("{:?} > {:?}", latency.start(), latency.end()),
            });
        }
        Ok(Self {
            success_rate,
            latency,
            decline_share,
            timeout_share,
            seed: None,
        })
    }

    /// The same behaviour with a fixed random seed.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Share of charges that succeed.
    pub fn success_rate(&self) -> f64 {
        self.success_rate
    }
}

impl Default for SimulationConfig {
    /// The original's settings: 95 % success, 50-200 ms; failures half declines, a tenth
    /// time-outs.
    fn default() -> Self {
        Self::new(
            0.95,
            Duration::from_millis(50)..=Duration::from_millis(200),
            0.5,
            0.1,
        )
        .expect("defaults are valid")
    }
}

/// One idempotency key's history in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Calls made with the key.
    pub calls: u32,
    /// Payments captured under the key (0 or 1).
    pub captures: u32,
    /// Amount of the first call.
    pub amount: Money,
    /// Whether the first call captured, or only authorized.
    pub method: CaptureMethod,
    /// The capture of an authorized payment, once made.
    pub captured: Option<CaptureReceipt>,
    /// The definitive outcome, once there is one.
    pub outcome: Option<Result<ChargeReceipt, GatewayError>>,
    /// Refunds made of the capture.
    pub refunds: u32,
    /// The definitive answer to each refund of the key, by the refund's own key: a refund,
    /// or nothing captured (the key is then void and every charge with it is declined).
    pub refund_answers: BTreeMap<String, RefundReceipt>,
}

impl LedgerEntry {
    fn new(amount: Money, method: CaptureMethod) -> Self {
        Self {
            calls: 0,
            captures: 0,
            amount,
            method,
            captured: None,
            outcome: None,
            refunds: 0,
            refund_answers: BTreeMap::new(),
        }
    }

    /// What its refunds gave back, in all.
    pub fn refunded(&self) -> Money {
        self.refund_answers
            .values()
            .map(|r| match r {
                RefundReceipt::Refunded { amount, .. } => *amount,
                RefundReceipt::NothingCaptured => Money::ZERO,
            })
            .sum()
    }

    /// What was captured under the key.
    pub fn captured_amount(&self) -> Money {
        if self.captures == 0 {
            return Money::ZERO;
        }
        self.captured.as_ref().map_or(self.amount, |c| c.amount)
    }
}

#[derive(Debug)]
struct State {
    config: SimulationConfig,
    rng: SmallRng,
    outage_until: Option<DateTime<Utc>>,
    ledger: HashMap<IdempotencyKey, LedgerEntry>,
    calls: u64,
    refund_calls: u64,
    lookup_calls: u64,
    /// The durable ledger, when there is one: a JSON line per change that matters for money,
    /// synced to disk before the answer that reports it.
    journal: Option<std::fs::File>,
}

impl State {
    /// Stores `entry` under `key`; with a journal, first writes and syncs it when what it
    /// says about money changed (captures, refunds, definitive outcomes). On a failed write
    /// nothing changes and the call is answered as not processed.
    fn commit(&mut self, key: IdempotencyKey, entry: LedgerEntry) -> Result<(), GatewayError> {
        if let Some(journal) = &mut self.journal {
            let line = JournalLine::of(&key, &entry);
            let changed = self
                .ledger
                .get(&key)
                .is_none_or(|before| JournalLine::of(&key, before) != line);
            if changed {
                journal::append(journal, &line).map_err(|e| {
                    GatewayError::Unavailable(format!("the ledger could not be made durable: {e}"))
                })?;
            }
        }
        self.ledger.insert(key, entry);
        Ok(())
    }
}

/// What the journal keeps of a key's entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct JournalLine {
    key: String,
    captures: u32,
    amount: Money,
    #[serde(default)]
    method: CaptureMethod,
    #[serde(default)]
    captured: Option<CaptureReceipt>,
    outcome: Option<JournalOutcome>,
    refunds: u32,
    #[serde(default)]
    refund_answers: BTreeMap<String, RefundReceipt>,
}

/// A definitive charge outcome, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum JournalOutcome {
    Captured { transaction_id: String },
    Declined { reason: DeclineReason },
}

impl JournalLine {
    fn of(key: &IdempotencyKey, entry: &LedgerEntry) -> Self {
        Self {
            key: key.as_str().to_owned(),
            captures: entry.captures,
            amount: entry.amount,
            method: entry.method,
            captured: entry.captured.clone(),
            outcome: match &entry.outcome {
                Some(Ok(receipt)) => Some(JournalOutcome::Captured {
                    transaction_id: receipt.transaction_id.clone(),
                }),
                Some(Err(GatewayError::Declined(reason))) => {
                    Some(JournalOutcome::Declined { reason: *reason })
                }
                Some(Err(_)) | None => None,
            },
            refunds: entry.refunds,
            refund_answers: entry.refund_answers.clone(),
        }
    }

    fn into_entry(self) -> (IdempotencyKey, LedgerEntry) {
        let outcome = self.outcome.map(|o| match o {
            JournalOutcome::Captured { transaction_id } => Ok(ChargeReceipt { transaction_id }),
            JournalOutcome::Declined { reason } => Err(GatewayError::Declined(reason)),
        });
        (
            IdempotencyKey::from_raw(self.key),
            LedgerEntry {
                calls: 0,
                captures: self.captures,
                amount: self.amount,
                method: self.method,
                captured: self.captured,
                outcome,
                refunds: self.refunds,
                refund_answers: self.refund_answers,
            },
        )
    }
}

/// The journal file: appended, synced, and read back at start.
mod journal {
    use std::io::{BufRead, Write};

    use super::JournalLine;

    pub fn append(file: &mut std::fs::File, line: &JournalLine) -> std::io::Result<()> {
        let mut text = serde_json::to_vec(line).map_err(std::io::Error::other)?;
        text.push(b'\n');
        file.write_all(&text)?;
        file.sync_data()
    }

    /// Every line of the journal at `path`, oldest first. A last line cut short by a crash
    /// mid-write was never acknowledged, so it is dropped; any other bad line is an error.
    pub fn read(path: &std::path::Path) -> std::io::Result<Vec<JournalLine>> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let texts: Vec<String> = std::io::BufReader::new(file)
            .lines()
            .collect::<Result<_, _>>()?;
        let last = texts.len().saturating_sub(1);
        let mut lines = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            match serde_json::from_str(text) {
                Ok(line) => lines.push(line),
                Err(_) if i == last => {}
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{}: line {} is not a ledger entry: {e}",
                            path.display(),
                            i + 1
                        ),
                    ));
                }
            }
        }
        Ok(lines)
    }
}

/// The simulated gateway. Cheap to clone; clones share the ledger.
#[derive(Clone)]
pub struct SimulatedGateway {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SimulatedGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedGateway").finish_non_exhaustive()
    }
}

enum Draw {
    Capture,
    Decline(DeclineReason),
    Timeout { captured: bool },
    NotProcessed,
}

impl SimulatedGateway {
    /// What the books say about `key`: captures and refunds (for conformance checks).
    #[cfg(any(test, feature = "testing"))]
    pub fn books(&self, key: &IdempotencyKey) -> order_core::testing::conformance::GatewayBooks {
        self.entry(key)
            .map(|e| order_core::testing::conformance::GatewayBooks {
                captures: e.captures,
                refunds: e.refunds,
                captured: e.captured_amount(),
                refunded: e.refunded(),
            })
            .unwrap_or_default()
    }

    /// A gateway behaving per `config`, on the system clock.
    pub fn new(config: SimulationConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A gateway behaving per `config` whose outages follow `clock`.
    pub fn with_clock(config: SimulationConfig, clock: Arc<dyn Clock>) -> Self {
        let rng = config.seed.map_or_else(
            || SmallRng::from_rng(&mut rand::rng()),
            SmallRng::seed_from_u64,
        );
        Self {
            state: Arc::new(Mutex::new(State {
                config,
                rng,
                outage_until: None,
                ledger: HashMap::new(),
                calls: 0,
                refund_calls: 0,
                lookup_calls: 0,
                journal: None,
            })),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The same gateway with a durable ledger in the file at `path`: what the file holds is
    /// loaded (a restarted gateway still knows every capture and refund, and replays them
    /// for the same keys), and every change that matters for money is appended and synced
    /// before the answer that reports it. Call counts are not kept.
    pub fn with_ledger_file(self, path: &std::path::Path) -> std::io::Result<Self> {
        let lines = journal::read(path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        {
            let mut s = self.lock();
            for line in lines {
                let (key, entry) = line.into_entry();
                s.ledger.insert(key, entry);
            }
            s.journal = Some(file);
        }
        Ok(self)
    }

    /// Fails every charge as unavailable until `until` (`None` ends an outage).
    pub fn set_outage_until(&self, until: Option<DateTime<Utc>>) {
        self.lock().outage_until = until;
    }

    /// Changes the behaviour from now on (the ledger and, without a new seed, the random
    /// sequence stay).
    pub fn reconfigure(&self, config: SimulationConfig) {
        let mut s = self.lock();
        if let Some(seed) = config.seed {
            s.rng = SmallRng::seed_from_u64(seed);
        }
        s.config = config;
    }

    /// The ledger entry of a key.
    pub fn entry(&self, key: &IdempotencyKey) -> Option<LedgerEntry> {
        self.lock().ledger.get(key).cloned()
    }

    /// The whole ledger.
    pub fn ledger(&self) -> HashMap<IdempotencyKey, LedgerEntry> {
        self.lock().ledger.clone()
    }

    /// Calls received, outage rejections included.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Payments captured, over all keys.
    pub fn total_captures(&self) -> u64 {
        self.lock()
            .ledger
            .values()
            .map(|e| u64::from(e.captures))
            .sum()
    }

    fn draw(state: &mut State) -> Draw {
        let c = &state.config;
        let (success, decline, timeout) = (c.success_rate, c.decline_share, c.timeout_share);
        let rng = &mut state.rng;
        if rng.random_bool(success) {
            return Draw::Capture;
        }
        let kind: f64 = rng.random();
        if kind < decline {
            let reason = DeclineReason::CARD[rng.random_range(0..DeclineReason::CARD.len())];
            Draw::Decline(reason)
        } else if kind < decline + timeout {
            Draw::Timeout {
                captured: rng.random_bool(0.5),
            }
        } else {
            Draw::NotProcessed
        }
    }

    /// Decides the charge's outcome and books it, without the latency.
    fn book(&self, request: &ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        let now = self.clock.now();
        let mut s = self.lock();
        s.calls += 1;
        if s.outage_until.is_some_and(|until| now < until) {
            return Err(GatewayError::Unavailable("gateway outage".into()));
        }
        let draw = Self::draw(&mut s);
        let key = request.idempotency_key.clone();
        let mut entry = s
            .ledger
            .get(&key)
            .cloned()
            .unwrap_or_else(|| LedgerEntry::new(request.amount, request.capture));
        entry.calls += 1;
        if let Some(outcome) = entry.outcome.clone() {
            s.commit(key, entry)?;
            return outcome;
        }
        let capture = |entry: &mut LedgerEntry| {
            let receipt = ChargeReceipt {
                transaction_id: format!("txn_{}", Uuid::now_v7().simple()),
            };
            // A manual charge authorizes: the money is taken by a capture later.
            if entry.method == CaptureMethod::Automatic {
                entry.captures += 1;
            }
            entry.outcome = Some(Ok(receipt.clone()));
            receipt
        };
        let result = match draw {
            Draw::Capture => Ok(capture(&mut entry)),
            Draw::Decline(reason) => {
                let e = GatewayError::Declined(reason);
                entry.outcome = Some(Err(e.clone()));
                Err(e)
            }
            Draw::Timeout { captured } => {
                if captured {
                    capture(&mut entry);
                }
                Err(GatewayError::Timeout(
                    "gateway did not answer in time".into(),
                ))
            }
            Draw::NotProcessed => Err(GatewayError::Unavailable("processor error".into())),
        };
        // Durable before the answer: a capture the journal does not hold is not made.
        s.commit(key, entry)?;
        result
    }

    /// Decides the refund's outcome and books it, without the latency. A refund is drawn
    /// like a charge, but cannot be declined: it succeeds, times out (half of those did
    /// refund) or is not processed.
    fn book_refund(&self, request: &RefundRequest) -> Result<RefundReceipt, GatewayError> {
        let now = self.clock.now();
        let mut s = self.lock();
        s.calls += 1;
        s.refund_calls += 1;
        if s.outage_until.is_some_and(|until| now < until) {
            return Err(GatewayError::Unavailable("gateway outage".into()));
        }
        let (done, timed_out) = match Self::draw(&mut s) {
            Draw::Capture | Draw::Decline(_) => (true, false),
            Draw::Timeout { captured } => (captured, true),
            Draw::NotProcessed => (false, false),
        };
        let key = request.charge_key().clone();
        let mut entry = s
            .ledger
            .get(&key)
            .cloned()
            .unwrap_or_else(|| LedgerEntry::new(request.amount, request.charge.capture));
        let refund_key = request.idempotency_key.as_str();
        if let Some(refund) = entry.refund_answers.get(refund_key) {
            return Ok(refund.clone());
        }
        if !done && !timed_out {
            return Err(GatewayError::Unavailable("processor error".into()));
        }
        if done {
            let receipt = if entry.captures > 0 {
                // Never more than is left of what was captured.
                let left = entry.captured_amount().saturating_sub(entry.refunded());
                if left == Money::ZERO {
                    return Err(GatewayError::Declined(DeclineReason::ProcessorRefused));
                }
                entry.refunds += 1;
                RefundReceipt::Refunded {
                    refund_id: format!("re_{}", Uuid::now_v7().simple()),
                    amount: request.amount.min(left),
                }
            } else {
                // Nothing captured: void the key, so no charge still on its way can capture.
                entry.outcome = Some(Err(GatewayError::Declined(DeclineReason::Voided)));
                RefundReceipt::NothingCaptured
            };
            entry
                .refund_answers
                .insert(refund_key.to_owned(), receipt.clone());
            s.commit(key, entry)?;
            if !timed_out {
                return Ok(receipt);
            }
        }
        Err(GatewayError::Timeout(
            "gateway did not answer the refund in time".into(),
        ))
    }

    /// Refunds made, over all keys.
    pub fn total_refunds(&self) -> u64 {
        self.lock()
            .ledger
            .values()
            .map(|e| u64::from(e.refunds))
            .sum()
    }

    /// Refund calls received, outage rejections included.
    pub fn refund_calls(&self) -> u64 {
        self.lock().refund_calls
    }

    /// Look-ups received, outage rejections included (not counted in [`Self::calls`]).
    pub fn lookup_calls(&self) -> u64 {
        self.lock().lookup_calls
    }

    fn latency(&self) -> Duration {
        let mut s = self.lock();
        let range = s.config.latency.clone();
        if range.start() == range.end() {
            return *range.start();
        }
        s.rng.random_range(range)
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        let latency = self.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.book(request)
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundReceipt, GatewayError> {
        let latency = self.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.book_refund(request)
    }

    async fn capture(&self, request: &CaptureRequest) -> Result<CaptureReceipt, GatewayError> {
        let latency = self.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.book_capture(request)
    }

    async fn lookup(&self, request: &LookupRequest) -> Result<PaymentState, GatewayError> {
        self.payment(request.charge_key()).await
    }
}

#[cfg(test)]
mod tests;
