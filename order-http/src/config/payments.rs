//! Which payment gateway charges (`PAYMENT_GATEWAY`), and each one's settings.

use std::time::Duration;

use super::ConfigError;
use super::read::{seconds, url};

/// Stripe's secret API key (`sk_test_...`, `sk_live_...`, or a restricted `rk_...`): its
/// `Debug` shows only its kind.
#[derive(Clone, PartialEq, Eq)]
pub struct StripeKey(String);

impl StripeKey {
    /// The key, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `sk_test`, `sk_live`, `rk_test` or `rk_live`: what the logs may say of the key.
    pub fn kind(&self) -> &str {
        self.0.get(..7).unwrap_or("sk")
    }
}

impl std::fmt::Debug for StripeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}_***\"", self.kind())
    }
}

/// The secrets Stripe signs its events with: their `Debug` shows how many, not what.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct EventSecrets(pub Vec<String>);

impl std::fmt::Debug for EventSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} secret(s)]", self.0.len())
    }
}

/// Charging through Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeSettings {
    /// The secret key (`STRIPE_API_KEY`).
    pub api_key: StripeKey,
    /// Where Stripe's API is (`STRIPE_API_URL`, `https://api.stripe.com`).
    pub api_url: String,
    /// The currency orders are charged in (`STRIPE_CURRENCY`, `usd`).
    pub currency: String,
    /// The signing secrets of Stripe's events (`STRIPE_WEBHOOK_SECRET`, `whsec_...`,
    /// comma-separated while one rolls); none: no events are taken.
    pub event_secrets: EventSecrets,
}

/// Where money moves (`PAYMENT_GATEWAY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentGateway {
    /// The in-process simulation (`simulated`, the default).
    Simulated,
    /// An HTTP gateway speaking `order_api::gateway`'s protocol (`http`, at
    /// `PAYMENT_GATEWAY_URL`).
    Http {
        /// Where.
        url: String,
    },
    /// Stripe's PaymentIntents (`stripe`).
    Stripe(StripeSettings),
}

/// Reads `PAYMENT_GATEWAY` and the settings of the gateway it names, and how long one call
/// to it may take (`PAYMENT_GATEWAY_TIMEOUT`: 2 s, or 10 s for Stripe, whose calls Stripe's
/// own libraries allow far longer).
pub(super) fn payment_gateway(
    l: &impl Fn(&str) -> Option<String>,
) -> Result<(PaymentGateway, Duration), ConfigError> {
    let http_url = url(l, "PAYMENT_GATEWAY_URL", &["http", "https"])?;
    let named = l("PAYMENT_GATEWAY").filter(|v| !v.trim().is_empty());
    let gateway = match (named.as_deref().map(str::trim), http_url) {
        (None | Some("simulated"), None) => PaymentGateway::Simulated,
        (None | Some("http"), Some(url)) => PaymentGateway::Http { url },
        (Some("http"), None) => {
            return Err(ConfigError::new(
                "PAYMENT_GATEWAY_URL",
                "PAYMENT_GATEWAY=http needs the gateway's URL",
            ));
        }
        (Some(other @ ("simulated" | "stripe")), Some(_)) => {
            return Err(ConfigError::new(
                "PAYMENT_GATEWAY_URL",
                format!("is for PAYMENT_GATEWAY=http, not {other}"),
            ));
        }
        (Some("stripe"), None) => PaymentGateway::Stripe(stripe(l)?),
        (Some(other), _) => {
            return Err(ConfigError::new(
                "PAYMENT_GATEWAY",
                format!("expected simulated, http or stripe, got {other:?}"),
            ));
        }
    };
    let default_timeout = if matches!(gateway, PaymentGateway::Stripe(_)) {
        10.0
    } else {
        2.0
    };
    let timeout = seconds(l, "PAYMENT_GATEWAY_TIMEOUT", default_timeout)?;
    Ok((gateway, timeout))
}

/// Reads `PAYMENT_CAPTURE`: `automatic` (the default) or `manual`.
pub(super) fn capture_method(
    l: &impl Fn(&str) -> Option<String>,
) -> Result<order_core::payment::CaptureMethod, ConfigError> {
    match l("PAYMENT_CAPTURE").filter(|v| !v.trim().is_empty()) {
        None => Ok(order_core::payment::CaptureMethod::Automatic),
        Some(v) => v
            .parse()
            .map_err(|e: order_core::Invalid| ConfigError::new("PAYMENT_CAPTURE", e.to_string())),
    }
}

fn stripe(l: &impl Fn(&str) -> Option<String>) -> Result<StripeSettings, ConfigError> {
    let api_key = l("STRIPE_API_KEY")
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ConfigError::new(
                "STRIPE_API_KEY",
                "PAYMENT_GATEWAY=stripe needs a secret key (sk_test_... for test mode)",
            )
        })?;
    if !(api_key.starts_with("sk_") || api_key.starts_with("rk_"))
        || !api_key.bytes().all(|b| b.is_ascii_graphic())
    {
        // Not echoed: it may be a live secret pasted into the wrong place.
        return Err(ConfigError::new(
            "STRIPE_API_KEY",
            "expected a secret key (sk_...) or a restricted key (rk_...); a publishable key \
             (pk_...) cannot charge",
        ));
    }
    let api_url = url(l, "STRIPE_API_URL", &["http", "https"])?
        .unwrap_or_else(|| order_gateway_stripe::DEFAULT_API_URL.into());
    let currency = match l("STRIPE_CURRENCY").filter(|c| !c.trim().is_empty()) {
        None => "usd".into(),
        Some(code) => order_gateway_stripe::currency(&code)
            .map_err(|e| ConfigError::new("STRIPE_CURRENCY", e.to_string()))?,
    };
    let event_secrets = l("STRIPE_WEBHOOK_SECRET")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if event_secrets
        .iter()
        .any(|s| !s.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ConfigError::new(
            "STRIPE_WEBHOOK_SECRET",
            "expected signing secrets (whsec_...) separated by commas",
        ));
    }
    Ok(StripeSettings {
        api_key: StripeKey(api_key),
        api_url,
        currency,
        event_secrets: EventSecrets(event_secrets),
    })
}
