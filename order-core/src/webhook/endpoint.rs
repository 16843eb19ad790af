//! Endpoints: where events are delivered, what they subscribe to, how they sign.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{EndpointId, EventType, Secret, is_public};
use crate::error::Invalid;
use crate::ids::CustomerId;

/// An endpoint's URL: absolute `https` (or `http` where allowed), with a host, at most 2,000
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    /// Checks `url`; `allow_http` admits plain `http` (for local development).
    pub fn parse(url: &str, allow_http: bool) -> Result<Self, Invalid> {
        let url = url.trim();
        let malformed = |why: &str| Invalid::Malformed(why.to_owned());
        if url.chars().count() > 2000 {
            return Err(malformed("a URL is at most 2,000 characters"));
        }
        let rest = if let Some(rest) = url.strip_prefix("https://") {
            rest
        } else if let Some(rest) = url.strip_prefix("http://") {
            if !allow_http {
                return Err(malformed(
                    "must be an https URL (http is allowed with WEBHOOKS_ALLOW_HTTP=true)",
                ));
            }
            rest
        } else {
            return Err(malformed("must be an absolute https URL"));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        let host_only = if host.starts_with('[') {
            host.split(']').next().map(|h| h.trim_start_matches('['))
        } else {
            host.split(':').next()
        };
        if host_only.is_none_or(str::is_empty)
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(malformed("must name a host, with no spaces"));
        }
        if let Some(port) = host
            .rsplit_once(':')
            .map(|(_, p)| p)
            .filter(|_| !host.ends_with(']'))
        {
            if port.parse::<u16>().is_err() {
                return Err(malformed("has an invalid port"));
            }
        }
        Ok(Self(url.to_owned()))
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL as logs show it: scheme, host, port and path, without a user, password,
    /// query or fragment (where receivers often put their tokens).
    pub fn for_log(&self) -> String {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("", &self.0));
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = authority.rsplit('@').next().unwrap_or_default();
        let hidden = if self.0.len() > scheme.len() + 3 + host.len() + path.len() {
            "…"
        } else {
            ""
        };
        format!("{scheme}://{host}{path}{hidden}")
    }

    /// The host: a name, or an IP address (without the brackets of an IPv6 one).
    pub fn host(&self) -> &str {
        let rest = self.0.split_once("://").map_or("", |(_, rest)| rest);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        if let Some(bracketed) = host.strip_prefix('[') {
            bracketed.split(']').next().unwrap_or_default()
        } else {
            host.split(':').next().unwrap_or_default()
        }
    }

    /// The host, if it is an IP address written out (decimal IPv4 or IPv6; names and
    /// other spellings are left to the resolver, and checked when a delivery connects).
    pub fn address(&self) -> Option<IpAddr> {
        self.host().parse().ok()
    }

    /// `Ok` if the URL may be delivered to: a host that is a [public](is_public) address
    /// or a name, unless `allow_private_networks`. A name is checked when a delivery
    /// connects, against every address it resolves to.
    pub fn check_network(&self, allow_private_networks: bool) -> Result<(), Invalid> {
        match self.address() {
            Some(ip) if !allow_private_networks && !is_public(ip) => {
                Err(Invalid::Malformed(format!(
                    "must not point into a private network ({ip} is not a public address; \
                     WEBHOOKS_ALLOW_PRIVATE_NETWORKS=true allows it)"
                )))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret replaced by a rotation, still signing until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiringSecret {
    /// The old secret.
    pub secret: Secret,
    /// When it stops signing.
    pub expires_at: DateTime<Utc>,
}

/// A receiver of webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its id.
    pub id: EndpointId,
    /// Where events are posted.
    pub url: EndpointUrl,
    /// The event types it receives (never empty).
    pub events: BTreeSet<EventType>,
    /// The one customer whose orders' events it receives, if it belongs to one (made with a
    /// key bound to that customer, say); `None`: every customer's.
    pub owner: Option<CustomerId>,
    /// What it is for (at most 500 characters).
    pub description: String,
    /// Whether events are delivered to it. A disabled endpoint keeps its undelivered events
    /// and receives them once enabled again.
    pub enabled: bool,
    /// Why it was disabled by the dispatcher (`410 Gone`, or failing for too long).
    pub disabled_reason: Option<String>,
    /// The secret it is signed with.
    pub secret: Secret,
    /// The secret a rotation replaced, during its grace period.
    pub previous_secret: Option<RetiringSecret>,
    /// Since when every delivery to it has failed (`None` after a success).
    pub failing_since: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last changed.
    pub updated_at: DateTime<Utc>,
}

/// What a new endpoint is made of, each part checked ([`EndpointUrl::parse`], [`event_types`],
/// [`description`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndpoint {
    /// Where events are posted.
    pub url: EndpointUrl,
    /// The event types it receives.
    pub events: BTreeSet<EventType>,
    /// The customer it belongs to, if any.
    pub owner: Option<CustomerId>,
    /// What it is for.
    pub description: String,
}

/// Checks an endpoint's description: at most 500 characters, no control characters but
/// line breaks.
pub fn description(text: &str) -> Result<String, Invalid> {
    if text.chars().count() > 500 {
        return Err(Invalid::TooLong {
            max: 500,
            actual: text.chars().count(),
        });
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Invalid::Malformed("has control characters".into()));
    }
    Ok(text.to_owned())
}

/// Checks a list of event type names: an empty list is refused, a missing one means all.
pub fn event_types(names: Option<&[String]>) -> Result<BTreeSet<EventType>, Invalid> {
    match names {
        None => Ok(EventType::ALL.into_iter().collect()),
        Some([]) => Err(Invalid::TooFew { min: 1 }),
        Some(names) => names.iter().map(|n| n.parse()).collect(),
    }
}

impl Endpoint {
    /// A new, enabled endpoint with a fresh secret, created at `now`.
    pub fn create(new: NewEndpoint, now: DateTime<Utc>) -> Self {
        let now = micros(now);
        Self {
            id: EndpointId::new(),
            url: new.url,
            events: new.events,
            owner: new.owner,
            description: new.description,
            enabled: true,
            disabled_reason: None,
            secret: Secret::generate(),
            previous_secret: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether it receives events of `kind` now (of some customer's orders).
    pub fn wants(&self, kind: EventType) -> bool {
        self.enabled && self.events.contains(&kind)
    }

    /// Whether it receives an event of `kind` about an order of `customer` now: it
    /// [wants](Self::wants) the type and belongs to no customer or to that one.
    pub fn receives(&self, kind: EventType, customer: &CustomerId) -> bool {
        self.wants(kind) && self.serves(customer)
    }

    /// Whether what concerns `customer` may reach it: it belongs to no one or to `customer`.
    pub fn serves(&self, customer: &CustomerId) -> bool {
        self.owner.as_ref().is_none_or(|owner| owner == customer)
    }

    /// The secrets deliveries are signed with at `now`: the current one, and the one a
    /// rotation replaced while its grace period lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&Secret> {
        let mut secrets = vec![&self.secret];
        if let Some(old) = self.previous_secret.as_ref().filter(|o| o.expires_at > now) {
            secrets.push(&old.secret);
        }
        secrets
    }

    /// Replaces the secret with a new one; the old one keeps signing beside it for `grace`.
    /// Returns the new secret.
    pub fn rotate_secret(&mut self, now: DateTime<Utc>, grace: Duration) -> Secret {
        let new = Secret::generate();
        self.rotate_to(new.clone(), crate::time::later(now, grace), now);
        new
    }

    /// Makes `secret` its secret, at `now`, and the one it replaces the retiring one until
    /// `until`.
    pub fn rotate_to(&mut self, secret: Secret, until: DateTime<Utc>, now: DateTime<Utc>) {
        let old = std::mem::replace(&mut self.secret, secret);
        self.previous_secret = Some(RetiringSecret {
            secret: old,
            expires_at: micros(until),
        });
        self.updated_at = micros(now);
    }

    /// Records a change made at `now`.
    pub fn touch(&mut self, now: DateTime<Utc>) {
        self.updated_at = micros(now);
    }

    /// Enables or disables it by hand: enabling clears the dispatcher's reason and its
    /// failure streak.
    pub fn set_enabled(&mut self, enabled: bool, now: DateTime<Utc>) {
        self.enabled = enabled;
        if enabled {
            self.disabled_reason = None;
            self.failing_since = None;
        }
        self.updated_at = micros(now);
    }

    /// Applies `change`, made at `now`: what it gives changes, nothing else does.
    pub fn apply(&mut self, change: &EndpointChange, now: DateTime<Utc>) {
        if let Some(url) = &change.url {
            self.url.clone_from(url);
        }
        if let Some(events) = &change.events {
            self.events.clone_from(events);
        }
        if let Some(description) = &change.description {
            self.description.clone_from(description);
        }
        if let Some(enabled) = change.enabled {
            self.set_enabled(enabled, now);
        }
        self.touch(now);
    }
}

/// A change to an endpoint's settings, as `PATCH` asks for it: only the fields given
/// change. Its secrets and what the dispatcher records (the failure streak, a reason to
/// disable) are not settings, and a change leaves them as they are, except that enabling
/// clears the reason and the streak ([`Endpoint::set_enabled`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointChange {
    /// A new URL.
    pub url: Option<EndpointUrl>,
    /// A new set of event types (never empty).
    pub events: Option<BTreeSet<EventType>>,
    /// A new description.
    pub description: Option<String>,
    /// Enabled, or disabled.
    pub enabled: Option<bool>,
}

/// Times are kept to the microsecond, as PostgreSQL keeps them.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}
