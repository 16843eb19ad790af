//! # order-gateway-stripe
//!
//! [`StripeGateway`]: the [`PaymentGateway`] port over Stripe's PaymentIntents API, as Stripe
//! documents it (form-encoded requests, `Authorization: Bearer`, `Stripe-Version` pinned to
//! [`STRIPE_VERSION`], an `Idempotency-Key` on every `POST`).
//!
//! ## A charge
//! 1. `POST /v1/payment_intents` under the charge's own key (`order-{id}`): the amount in
//!    cents, the currency, `capture_method=automatic`, the order's `payment_method`,
//!    `payment_method_types[]=card` and `metadata[order_id]`/`metadata[customer_id]`,
//!    **not confirmed**. Stripe replays the same intent for the same key, so every attempt,
//!    worker and restart works on one intent, and an intent is paid at most once.
//! 2. `POST /v1/payment_intents/{id}/confirm` under `order-{id}:confirm`: the payment.
//!    When step 1 was a replay (`Idempotent-Replayed: true`), the intent is read first
//!    (`GET`) and confirmed only if it still waits for it: an earlier attempt whose answer
//!    was lost may have paid it, declined it, or it may have been cancelled.
//!
//! The intent's status is the outcome: `succeeded` captured; `requires_payment_method`
//! with a `last_payment_error` declined (the issuer's `decline_code` kept); `canceled`
//! declined `voided`; `requires_action` declined `authentication_required` (the customer
//! is not there to authenticate); `processing` unknown (asked again later).
//!
//! ## A refund
//! The intent is read by its id when a charge answered with one (`payment_id`); otherwise
//! it is found by repeating step 1 with the charge's exact request (Stripe replays it; when
//! nothing was ever sent under the key, a new intent is made and never confirmed).
//! Then by its status: `succeeded` is refunded (`POST /v1/refunds` with `payment_intent`,
//! `amount` and `metadata[refund_key]`, under the refund's key), unless the order's refunds
//! listed for the intent (`GET /v1/refunds?payment_intent=`) hold one made under that key
//! already, which is the answer; a refund gives back at most what those refunds left of
//! the capture, and is declined `processor_refused` when nothing is left. Anything not
//! paid is cancelled (`POST .../cancel`), so that no attempt still on its way can pay it:
//! the port's void.
//!
//! ## A look-up
//! The intent is found as a refund finds it, and read: `succeeded` is captured (with what
//! the order's refunds listed for it gave back), `requires_capture` authorized,
//! `processing` still processing, `requires_confirmation` not charged (nothing was
//! confirmed), and the rest declined as a charge would say. It confirms, captures and
//! cancels nothing.
//!
//! ## Errors
//! Classified as Stripe's error guide says (see [`wire::Failure::classify`]): a card
//! error is a final decline; an invalid request is final; `401`, `403`, `409` and `429`
//! did nothing and are retried; a `5xx`, a time-out or a connection lost after sending
//! may have done something and are asked again under the same key. Stripe keeps a `5xx`
//! under its key and replays it for 24 hours, so a `5xx` replayed ends that key: the
//! request goes on under `{key}~2`, `{key}~3`, ... ([`KEY_GENERATIONS`]), each only where
//! that cannot do anything twice (see `StripeGateway::post`).
//!
//! ## Events
//! [`events::verify`] checks an event Stripe posts (`Stripe-Signature`) and reads the
//! order it is about; the service treats it as word that the order's payment changed, and
//! asks this adapter again at once (never taking the event's own word for the outcome).
//!
//! ## Limits
//! Stripe keeps an idempotency key 24 hours: an order whose payment is still unsettled
//! after that would be charged under a new intent. The worker settles a payment within
//! minutes (its retry schedule). A refund or capture of a payment that succeeded reads the
//! intent by its id, so it works at any age.

use std::time::Duration;

use async_trait::async_trait;
use order_core::Money;
use order_core::payment::{
    CaptureMethod, CaptureReceipt, CaptureRequest, ChargeReceipt, ChargeRequest, DeclineReason,
    GatewayError, IdempotencyKey, LookupRequest, PaymentState, RefundReceipt, RefundRequest,
};
use order_core::ports::PaymentGateway;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::de::DeserializeOwned;
use tracing::Instrument as _;

mod capture;
pub mod events;
mod lookup;
#[cfg(feature = "testing")]
pub mod stateful_mock;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wire;

use wire::{ErrorEnvelope, Failure, List, PaymentIntent, Refund};

/// The API version every request pins with `Stripe-Version`: the objects and errors this
/// adapter reads are those of this version.
pub const STRIPE_VERSION: &str = "2024-06-20";

/// Stripe's API.
pub const DEFAULT_API_URL: &str = "https://api.stripe.com";

/// The most of an answer that is read.
pub const ANSWER_LIMIT_BYTES: usize = 256 * 1024;

/// An intent in a state the call cannot settle (`processing`, or one it kept moving
/// through): the outcome is not known yet, and is asked again later.
fn unsettled(intent: &PaymentIntent) -> GatewayError {
    GatewayError::Timeout(format!("payment intent {} is {}", intent.id, intent.status))
}

/// How often one call follows an intent from state to state (a confirmation that finds
/// the intent cancelled, a cancellation that finds it paid) before it gives up as unknown.
const STATE_STEPS: usize = 4;

/// How many keys one request may go through: its own, then `{key}~2` up to
/// `{key}~KEY_GENERATIONS`, each taken only when Stripe keeps a server error under the
/// previous one (see the crate's "Errors").
pub const KEY_GENERATIONS: u32 = 8;

/// `code` as Stripe names a currency: a three-letter ISO code in lower case, with two
/// decimal places (`usd`, `eur`). Stripe counts zero-decimal currencies (`jpy`) in whole
/// units, and orders are priced in cents, so those are refused.
pub fn currency(code: &str) -> Result<String, BuildError> {
    const ZERO_DECIMAL: [&str; 16] = [
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    ];
    let code = code.trim().to_ascii_lowercase();
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(BuildError(format!(
            "expected a three-letter currency code, got {code:?}"
        )));
    }
    if ZERO_DECIMAL.contains(&code.as_str()) {
        return Err(BuildError(format!(
            "{code} has no cents; orders are priced with two decimal places"
        )));
    }
    Ok(code)
}

/// [`PaymentGateway`] charging through Stripe.
#[derive(Clone)]
pub struct StripeGateway {
    client: reqwest::Client,
    base: String,
    api_key: String,
    currency: String,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeGateway")
            .field("base", &self.base)
            .field("api_key", &"[redacted]")
            .field("currency", &self.currency)
            .finish_non_exhaustive()
    }
}

/// Why a [`StripeGateway`] could not be built.
#[derive(Debug)]
pub struct BuildError(String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// A call that did not end in the object asked for.
#[derive(Debug)]
enum CallError {
    /// Stripe answered with an error status.
    Answered(Failure),
    /// No usable answer: already classified.
    Lost(GatewayError),
}

impl CallError {
    fn classify(self) -> GatewayError {
        match self {
            Self::Answered(failure) => failure.classify(),
            Self::Lost(e) => e,
        }
    }
}

/// An object Stripe answered with, and whether the answer replays an earlier request's.
struct Answer<T> {
    object: T,
    replayed: bool,
}

/// What a request that got no answer means: refused before anything was sent, nothing
/// can have happened (retryable); otherwise it may have (ambiguous).
fn unsent(e: &reqwest::Error) -> GatewayError {
    if e.is_connect() {
        GatewayError::Unavailable(format!("cannot reach Stripe: {e}"))
    } else if e.is_timeout() {
        GatewayError::Timeout(format!("no answer from Stripe in time: {e}"))
    } else {
        GatewayError::Timeout(format!("connection to Stripe lost: {e}"))
    }
}

/// `amount` in cents, as Stripe counts a two-decimal currency.
fn cents(amount: Money) -> Result<i64, GatewayError> {
    (amount.amount() * Decimal::ONE_HUNDRED)
        .normalize()
        .to_i64()
        .ok_or(GatewayError::Declined(DeclineReason::ProcessorRefused))
}

/// `cents` as money.
fn money(cents: i64) -> Result<Money, GatewayError> {
    Money::new(Decimal::new(cents, 2))
        .map_err(|e| GatewayError::Timeout(format!("Stripe answered an amount of {cents}: {e}")))
}

impl StripeGateway {
    /// A gateway calling Stripe at `base_url` ([`DEFAULT_API_URL`], or a fake's) with the
    /// secret key `api_key` (`sk_test_...` or `sk_live_...`), whose calls time out after
    /// `timeout` (an unknown outcome, asked again). Amounts are charged in US dollars
    /// unless [`with_currency`](Self::with_currency) says otherwise.
    pub fn new(base_url: &str, api_key: &str, timeout: Duration) -> Result<Self, BuildError> {
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(BuildError(format!(
                "expected an http:// or https:// URL, got {base_url:?}"
            )));
        }
        if api_key.is_empty() || !api_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(BuildError(
                "the Stripe API key must be non-empty visible ASCII (sk_test_...)".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BuildError(e.to_string()))?;
        Ok(Self {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            currency: "usd".into(),
        })
    }

    /// The same gateway charging in `currency` (see [`currency`]).
    pub fn with_currency(mut self, currency: &str) -> Result<Self, BuildError> {
        self.currency = self::currency(currency)?;
        Ok(self)
    }

    /// One call: `form` (a `POST` when given) under `key`.
    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        key: Option<&str>,
        form: Option<&[(&str, String)]>,
    ) -> Result<Answer<T>, CallError> {
        let url = format!("{}{path}", self.base);
        let mut request = match form {
            Some(form) => self
                .client
                .post(&url)
                .body(serde_urlencoded::to_string(form).expect("a list of pairs always encodes")),
            None => self.client.get(&url),
        }
        .bearer_auth(&self.api_key)
        .header("Stripe-Version", STRIPE_VERSION)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| CallError::Lost(unsent(&e)))?;
        let status = response.status().as_u16();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() <= ANSWER_LIMIT_BYTES => {
                    body.extend_from_slice(&chunk);
                }
                Ok(Some(_)) => {
                    return Err(CallError::Lost(GatewayError::Timeout(format!(
                        "Stripe's answer ({status}) is longer than {ANSWER_LIMIT_BYTES} bytes"
                    ))));
                }
                Ok(None) => break,
                Err(e) => return Err(CallError::Lost(unsent(&e))),
            }
        }
        if (200..300).contains(&status) {
            serde_json::from_slice(&body)
                .map(|object| Answer { object, replayed })
                .map_err(|e| {
                    CallError::Lost(GatewayError::Timeout(format!(
                        "Stripe answered {status}, unreadably: {e}"
                    )))
                })
        } else {
            let error = serde_json::from_slice::<ErrorEnvelope>(&body)
                .map(|envelope| envelope.error)
                .unwrap_or_default();
            Err(CallError::Answered(Failure {
                status,
                replayed,
                error,
            }))
        }
    }

    /// A `POST` of `form` to `path` under `key`, or under the next generation of the key
    /// when Stripe keeps a server error under it. Stripe stores the answer of every request
    /// that began executing, a `500` included, and replays it to every later request with
    /// the key for 24 hours: after one, the key can never carry the request again. The
    /// error replayed says the first request ended on Stripe's side without an answer, so a
    /// caller that has read what it changes (the intent's state, the refunds made) sends
    /// the request again under `{key}~2`, then `{key}~3`, up to [`KEY_GENERATIONS`]; the
    /// walk is the same on every attempt, so a later attempt finds the answer kept under
    /// the generation an earlier one reached. Only for requests that cannot do twice what
    /// they do: an intent made but never confirmed moves no money; a confirmation, capture
    /// or cancellation acts on one intent, whose state allows each once; a refund is sent
    /// only after the intent's refunds were listed and none was made under its key.
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        form: &[(&str, String)],
    ) -> Result<Answer<T>, CallError> {
        let mut generation = 1;
        loop {
            let this = if generation == 1 {
                key.to_owned()
            } else {
                format!("{key}~{generation}")
            };
            match self.call::<T>(path, Some(&this), Some(form)).await {
                Err(CallError::Answered(f))
                    if f.replayed && f.status >= 500 && generation < KEY_GENERATIONS =>
                {
                    generation += 1;
                }
                other => return other,
            }
        }
    }

    /// A `POST` of `form` to `path` under `key` (or a later generation of it, as every
    /// `POST` of this adapter), read and classified as every call of this adapter is: the
    /// object and whether Stripe replayed it (`Idempotent-Replayed`), or the port's error.
    /// For checking the adapter's wire conventions against a fake.
    #[cfg(feature = "testing")]
    pub async fn post_form(
        &self,
        path: &str,
        key: &str,
        form: &[(&str, String)],
    ) -> Result<(serde_json::Value, bool), GatewayError> {
        self.post::<serde_json::Value>(path, key, form)
            .await
            .map(|a| (a.object, a.replayed))
            .map_err(CallError::classify)
    }

    /// Step 1 of a charge, or the way a refund finds the charge's intent: the intent made
    /// under the charge's key, never confirmed here.
    async fn intent(&self, charge: &ChargeRequest) -> Result<PaymentIntent, GatewayError> {
        let method = charge
            .payment_method
            .as_ref()
            .ok_or(GatewayError::Declined(DeclineReason::InvalidPaymentMethod))?;
        let form = [
            ("amount", cents(charge.amount)?.to_string()),
            ("currency", self.currency.clone()),
            ("capture_method", charge.capture.as_str().into()),
            ("payment_method", method.to_string()),
            ("payment_method_types[]", "card".into()),
            ("metadata[order_id]", charge.order_id.to_string()),
            ("metadata[customer_id]", charge.customer_id.to_string()),
        ];
        let created = self
            .post::<PaymentIntent>(
                "/v1/payment_intents",
                charge.idempotency_key.as_str(),
                &form,
            )
            .await
            .map_err(CallError::classify)?;
        if created.replayed {
            // The replay shows the intent as it was made; what happened since is read.
            self.read(&created.object.id).await
        } else {
            Ok(created.object)
        }
    }

    /// The intent of a payment: read by its id when a charge answered with one, else found
    /// under the charge's key.
    async fn intent_of(
        &self,
        charge: &ChargeRequest,
        payment_id: Option<&str>,
    ) -> Result<PaymentIntent, GatewayError> {
        match payment_id {
            Some(id) if id.starts_with("pi_") => self.read(id).await,
            _ => self.intent(charge).await,
        }
    }

    async fn read(&self, id: &str) -> Result<PaymentIntent, GatewayError> {
        self.call(&format!("/v1/payment_intents/{id}"), None, None)
            .await
            .map(|a| a.object)
            .map_err(CallError::classify)
    }

    /// `POST /v1/payment_intents/{id}/{action}` under `key`: the intent after it, or, when
    /// Stripe says its state does not allow it, the intent as it now is.
    async fn act(
        &self,
        id: &str,
        action: &str,
        key: &str,
        form: &[(&str, String)],
    ) -> Result<PaymentIntent, GatewayError> {
        match self
            .post::<PaymentIntent>(&format!("/v1/payment_intents/{id}/{action}"), key, form)
            .await
        {
            Ok(answer) => Ok(answer.object),
            Err(CallError::Answered(f)) if f.error.is_unexpected_state() => self.read(id).await,
            Err(e) => Err(e.classify()),
        }
    }

    async fn charge_once(&self, request: &ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        let mut intent = self.intent(request).await?;
        let confirm_key = format!("{}:confirm", request.idempotency_key);
        for _ in 0..STATE_STEPS {
            match intent.status.as_str() {
                "succeeded" => {
                    return Ok(ChargeReceipt {
                        transaction_id: intent.id,
                    });
                }
                // Authorized, as a manual capture asks.
                "requires_capture" if request.capture == CaptureMethod::Manual => {
                    return Ok(ChargeReceipt {
                        transaction_id: intent.id,
                    });
                }
                "requires_confirmation" => {
                    intent = self.act(&intent.id, "confirm", &confirm_key, &[]).await?;
                }
                _ => {
                    return Err(lookup::decline(&intent)
                        .map_or_else(|| unsettled(&intent), GatewayError::Declined));
                }
            }
        }
        Err(unsettled(&intent))
    }

    async fn refund_once(&self, request: &RefundRequest) -> Result<RefundReceipt, GatewayError> {
        if request.charge.payment_method.is_none() {
            // Such a charge is declined before anything is sent: nothing can be captured.
            return Ok(RefundReceipt::NothingCaptured);
        }
        let mut intent = self
            .intent_of(&request.charge, request.payment_id.as_deref())
            .await?;
        let cancel_key = format!("{}:cancel", request.charge_key());
        for _ in 0..STATE_STEPS {
            match intent.status.as_str() {
                "succeeded" => return self.refund_paid(&intent, request).await,
                "canceled" => return Ok(RefundReceipt::NothingCaptured),
                "requires_confirmation"
                | "requires_payment_method"
                | "requires_action"
                | "requires_capture" => {
                    intent = self.act(&intent.id, "cancel", &cancel_key, &[]).await?;
                }
                _ => return Err(unsettled(&intent)),
            }
        }
        Err(unsettled(&intent))
    }

    /// Refunds part or all of a paid intent under the request's key, once: an existing
    /// refund made under that key is the answer; what the order's other refunds gave back
    /// is not given again.
    async fn refund_paid(
        &self,
        intent: &PaymentIntent,
        request: &RefundRequest,
    ) -> Result<RefundReceipt, GatewayError> {
        let order = request.order_id().to_string();
        let key = request.idempotency_key.as_str();
        let whole = IdempotencyKey::for_refund(request.order_id());
        // The order's refunds that give money back, and of them the one made under `key`.
        let listed = || async {
            let ours = self.refunds_of(&intent.id, &order).await?;
            let made = ours
                .iter()
                .find(|r| r.is_under(key, &whole))
                .map(|r| {
                    Ok::<_, GatewayError>(RefundReceipt::Refunded {
                        amount: money(r.amount)?,
                        refund_id: r.id.clone(),
                    })
                })
                .transpose()?;
            let given: i64 = ours.iter().map(|r| r.amount).sum();
            Ok::<_, GatewayError>((made, given))
        };
        let (made, given) = listed().await?;
        if let Some(done) = made {
            return Ok(done);
        }
        let captured = intent.amount_received.unwrap_or(intent.amount);
        let left = captured.saturating_sub(given);
        if left <= 0 {
            return Err(GatewayError::Declined(DeclineReason::ProcessorRefused));
        }
        let amount = cents(request.amount)?.min(left);
        let form = [
            ("payment_intent", intent.id.clone()),
            ("amount", amount.to_string()),
            ("metadata[order_id]", order.clone()),
            ("metadata[refund_key]", key.to_owned()),
        ];
        match self
            .post::<Refund>("/v1/refunds", request.idempotency_key.as_str(), &form)
            .await
        {
            Ok(answer) if answer.object.counts() => Ok(RefundReceipt::Refunded {
                amount: money(answer.object.amount)?,
                refund_id: answer.object.id,
            }),
            Ok(answer) => Err(GatewayError::Declined(DeclineReason::ProcessorRefused))
                .inspect_err(|_| {
                    tracing::warn!(refund = %answer.object.id, status = ?answer.object.status, "Stripe did not make the refund");
                }),
            Err(CallError::Answered(f)) if f.error.is_already_refunded() => match listed().await? {
                (Some(done), _) => Ok(done),
                (None, _) => Err(GatewayError::Declined(DeclineReason::ProcessorRefused)),
            },
            Err(e) => Err(e.classify()),
        }
    }
}

impl StripeGateway {
    /// The refunds of intent `intent_id` that this adapter made for order `order` and that
    /// give money back.
    async fn refunds_of(&self, intent_id: &str, order: &str) -> Result<Vec<Refund>, GatewayError> {
        let refunds = self
            .call::<List<Refund>>(
                &format!("/v1/refunds?payment_intent={intent_id}&limit=100"),
                None,
                None,
            )
            .await
            .map_err(CallError::classify)?;
        Ok(refunds
            .object
            .data
            .into_iter()
            .filter(|r| r.counts() && r.is_for(order))
            .collect())
    }
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeReceipt, GatewayError> {
        let span = tracing::info_span!(
            "gateway charge",
            otel.name = "POST /v1/payment_intents",
            otel.kind = "client",
            order_id = %request.order_id,
        );
        self.charge_once(request).instrument(span).await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundReceipt, GatewayError> {
        let span = tracing::info_span!(
            "gateway refund",
            otel.name = "POST /v1/refunds",
            otel.kind = "client",
            order_id = %request.order_id(),
        );
        self.refund_once(request).instrument(span).await
    }

    async fn capture(&self, request: &CaptureRequest) -> Result<CaptureReceipt, GatewayError> {
        let span = tracing::info_span!(
            "gateway capture",
            otel.name = "POST /v1/payment_intents/{id}/capture",
            otel.kind = "client",
            order_id = %request.charge.order_id,
        );
        self.capture_once(request).instrument(span).await
    }

    async fn lookup(&self, request: &LookupRequest) -> Result<PaymentState, GatewayError> {
        let span = tracing::info_span!(
            "gateway lookup",
            otel.name = "GET /v1/payment_intents/{id}",
            otel.kind = "client",
            order_id = %request.charge.order_id,
        );
        self.lookup_once(request).instrument(span).await
    }

    fn requires_payment_method(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_go_in_cents() {
        let m = |s: &str| Money::new(s.parse().unwrap()).unwrap();
        assert_eq!(cents(m("30.97")), Ok(3097));
        assert_eq!(cents(m("0.5")), Ok(50));
        assert_eq!(cents(m("12")), Ok(1200));
        assert_eq!(money(3097), Ok(m("30.97")));
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let g = StripeGateway::new(
            "http://127.0.0.1:1",
            "sk_test_secret",
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{g:?}").contains("sk_test_secret"));
    }

    #[test]
    fn a_zero_decimal_currency_is_refused() {
        let g =
            StripeGateway::new("http://127.0.0.1:1", "sk_test_x", Duration::from_secs(1)).unwrap();
        assert!(g.clone().with_currency("JPY").is_err());
        assert!(g.clone().with_currency("us").is_err());
        assert!(g.with_currency("EUR").is_ok());
    }
}
