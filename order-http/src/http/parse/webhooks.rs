//! Webhook endpoints: a new endpoint, a change to one, and how many delivery attempts a
//! listing shows.

use std::collections::BTreeSet;

use order_core::webhook::{EndpointChange, EndpointUrl, EventType, NewEndpoint};
use order_core::{CustomerId, FieldError, Invalid, ValidationErrors};
use serde_json::{Map, Value};

use super::must_be;
use crate::config::UrlRules;

/// Parses a new endpoint's body: `url` (required; as `rules` allow), `events` (every type
/// if absent), `description`, `customer_id` (its owner, if any).
pub fn new_endpoint(body: &Value, rules: UrlRules) -> Result<NewEndpoint, ValidationErrors> {
    let mut fields = Fields::of(body)?;
    let url = fields.url(rules);
    if fields.object.get("url").is_none_or(Value::is_null) {
        fields.errors.push(FieldError::new("url", Invalid::Empty));
    }
    let events = fields.events();
    let description = fields.description();
    let owner = fields.owner();
    fields.finish()?;
    let url = url.ok_or_else(|| ValidationErrors::one("url", Invalid::Empty))?;
    Ok(NewEndpoint {
        url,
        events: events.unwrap_or_else(|| EventType::ALL.into_iter().collect()),
        owner,
        description: description.unwrap_or_default(),
    })
}

/// Parses a change to an endpoint: any of `url`, `events`, `description`, `enabled`.
pub fn endpoint_change(body: &Value, rules: UrlRules) -> Result<EndpointChange, ValidationErrors> {
    let mut fields = Fields::of(body)?;
    let change = EndpointChange {
        url: fields.url(rules),
        events: fields.events(),
        description: fields.description(),
        enabled: fields.enabled(),
    };
    fields.finish()?;
    Ok(change)
}

/// How long a rotation's replaced secret keeps signing: `previous_secret_grace_seconds`
/// from the optional body, held to `longest` (also what an absent one means).
pub fn rotation_grace(
    body: Option<&Value>,
    longest: std::time::Duration,
) -> Result<std::time::Duration, ValidationErrors> {
    const FIELD: &str = "previous_secret_grace_seconds";
    let reject =
        |reason: Invalid| ValidationErrors::check(vec![FieldError::new(FIELD, reason)], || longest);
    let Some(body) = body.filter(|b| !b.is_null()) else {
        return Ok(longest);
    };
    let Some(object) = body.as_object() else {
        return ValidationErrors::check(
            vec![FieldError::new("body", must_be("a JSON object"))],
            || longest,
        );
    };
    match object.get(FIELD) {
        None | Some(Value::Null) => Ok(longest),
        // A whole number however it is written (`60`, `6e1`, `60.0`), up to 2^31 - 1.
        Some(Value::Number(n)) => match n.as_u64().map(|s| s as f64).or_else(|| n.as_f64()) {
            Some(s) if s.fract() == 0.0 && (0.0..=f64::from(i32::MAX)).contains(&s) => {
                Ok(std::time::Duration::from_secs_f64(s).min(longest))
            }
            _ => reject(must_be("a whole number of seconds, 0 to 2,147,483,647")),
        },
        Some(_) => reject(must_be("a whole number of seconds, 0 to 2,147,483,647")),
    }
}

/// How many delivery attempts a listing shows: 1 to 100, 50 if not given.
pub fn deliveries_limit(limit: Option<i64>) -> Result<usize, ValidationErrors> {
    match limit {
        None => Ok(50),
        Some(n @ 1..=100) => Ok(usize::try_from(n).unwrap_or(50)),
        Some(_) => Err(ValidationErrors::one(
            "limit",
            Invalid::OutOfRange {
                min: "1".into(),
                max: "100".into(),
            },
        )),
    }
}

/// Reads the optional fields of an endpoint's body, naming every bad one.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn of(body: &'a Value) -> Result<Self, ValidationErrors> {
        body.as_object()
            .map(|object| Self {
                object,
                errors: Vec::new(),
            })
            .ok_or_else(|| ValidationErrors::one("body", must_be("a JSON object")))
    }

    fn url(&mut self, rules: UrlRules) -> Option<EndpointUrl> {
        match self.object.get("url") {
            None | Some(Value::Null) => None,
            Some(Value::String(url)) => EndpointUrl::parse(url, rules.allow_http)
                .and_then(|url| {
                    url.check_network(rules.allow_private_networks)
                        .map(|()| url)
                })
                .map_err(|e| self.errors.push(FieldError::new("url", e)))
                .ok(),
            Some(_) => {
                self.errors
                    .push(FieldError::new("url", must_be("a string")));
                None
            }
        }
    }

    fn events(&mut self) -> Option<BTreeSet<EventType>> {
        match self.object.get("events") {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) if list.is_empty() => {
                self.errors
                    .push(FieldError::new("events", Invalid::TooFew { min: 1 }));
                None
            }
            Some(Value::Array(list)) => {
                let mut events = BTreeSet::new();
                for (i, name) in list.iter().enumerate() {
                    match name.as_str().map(str::parse::<EventType>) {
                        Some(Ok(kind)) => {
                            events.insert(kind);
                        }
                        Some(Err(e)) => {
                            self.errors.push(FieldError::new(format!("events[{i}]"), e));
                        }
                        None => self
                            .errors
                            .push(FieldError::new(format!("events[{i}]"), must_be("a string"))),
                    }
                }
                Some(events)
            }
            Some(_) => {
                self.errors.push(FieldError::new(
                    "events",
                    must_be("an array of event types"),
                ));
                None
            }
        }
    }

    fn description(&mut self) -> Option<String> {
        match self.object.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => order_core::webhook::description(text)
                .map_err(|e| self.errors.push(FieldError::new("description", e)))
                .ok(),
            Some(_) => {
                self.errors
                    .push(FieldError::new("description", must_be("a string")));
                None
            }
        }
    }

    fn owner(&mut self) -> Option<CustomerId> {
        match self.object.get("customer_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => CustomerId::parse(id.as_str())
                .map_err(|e| self.errors.push(FieldError::new("customer_id", e)))
                .ok(),
            Some(_) => {
                self.errors
                    .push(FieldError::new("customer_id", must_be("a string")));
                None
            }
        }
    }

    fn enabled(&mut self) -> Option<bool> {
        match self.object.get("enabled") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.errors
                    .push(FieldError::new("enabled", must_be("true or false")));
                None
            }
        }
    }

    fn finish(self) -> Result<(), ValidationErrors> {
        ValidationErrors::check(self.errors, || ())
    }
}
