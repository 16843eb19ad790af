//! OpenTelemetry traces: the spans of requests, payments and gateway calls, exported over
//! OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set. The standard variables are honoured: `OTEL_SERVICE_NAME` (default `order-http`),
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and its argument, `OTEL_EXPORTER_OTLP_*`
//! (headers, time-out), `OTEL_BSP_*` (the batch processor), and `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` to export nothing. With none of them set nothing changes: no
//! layer, no exporter, and orders carry no trace.
//!
//! One trace follows an order: the request's span continues an incoming W3C `traceparent`;
//! the order stores the request span's context ([`current`]) and so does each of its
//! payment jobs; the worker's span for a job continues it ([`continue_from`]), and the HTTP
//! gateway's call sends it on as a `traceparent` header.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use order_core::trace::TraceParent;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Whether spans are exported: set once the subscriber with the OpenTelemetry layer is
/// installed. While it is false, [`current`] and [`continue_from`] cost nothing.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether this process exports traces.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub(crate) fn set_enabled() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// The target of a span that starts traced work (a request, a payment job) which is to be
/// recorded; everything under it is recorded too.
pub const TRACED: &str = "order_http::traced";
/// The target of the same spans when their work is not sampled: they exist for the logs,
/// and nothing under them is recorded.
pub const UNTRACED: &str = "order_http::untraced";

/// Which traces are recorded, decided once where the work enters the process (the request,
/// the payment job), from `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`: a caller's
/// or a job's `traceparent` is followed (its sampled flag); a new trace is recorded always,
/// never, or with the set probability. Deciding before any span of the work exists is what
/// makes an unsampled request cost nothing: the spans under it are never built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Every new trace (`always_on`, `parentbased_always_on`: the default).
    Always,
    /// No new trace (`always_off`, `parentbased_always_off`).
    Never,
    /// New traces with this probability (`traceidratio`, `parentbased_traceidratio`).
    Ratio(f64),
}

impl Sampling {
    /// The sampling `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` ask for; a sampler
    /// this process does not implement records every trace.
    pub fn from_vars(sampler: Option<&str>, arg: Option<&str>) -> Self {
        match sampler.map(str::trim) {
            Some("always_off" | "parentbased_always_off") => Self::Never,
            Some("traceidratio" | "parentbased_traceidratio") => {
                let ratio = arg
                    .and_then(|a| a.trim().parse::<f64>().ok())
                    .filter(|r| (0.0..=1.0).contains(r))
                    .unwrap_or(1.0);
                Self::Ratio(ratio)
            }
            _ => Self::Always,
        }
    }

    /// Whether work continuing `parent` (or starting a trace, with none) is recorded.
    pub fn sampled(self, parent: Option<&TraceParent>) -> bool {
        match (parent, self) {
            (Some(parent), _) => parent.sampled(),
            (None, Self::Always) => true,
            (None, Self::Never) => false,
            (None, Self::Ratio(ratio)) => rand::random::<f64>() < ratio,
        }
    }
}

static SAMPLING: OnceLock<Sampling> = OnceLock::new();

fn sampling() -> Sampling {
    *SAMPLING.get_or_init(|| {
        Sampling::from_vars(
            std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
            std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
        )
    })
}

/// Whether work entering the process under `parent` is to be recorded: never while traces
/// are off.
pub fn sampled(parent: Option<&TraceParent>) -> bool {
    enabled() && sampling().sampled(parent)
}

/// What the OpenTelemetry layer records: spans and events at INFO or above, of traced work
/// only: an edge span created as [`TRACED`], and what happens inside one.
pub fn recorded<S>() -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::filter::DynFilterFn::new(
        |meta: &tracing::Metadata<'_>, cx: &tracing_subscriber::layer::Context<'_, S>| {
            if *meta.level() > tracing::Level::INFO {
                return false;
            }
            match meta.target() {
                TRACED => true,
                UNTRACED => false,
                _ => cx.lookup_current().is_some(),
            }
        },
    )
}

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP trace exporter: {0}")]
pub struct TracesError(String);

/// Whether the environment asks for traces to be exported.
pub fn wanted(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let no_exporter =
        var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled
        && !no_exporter
        && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The tracer provider the environment asks for: an OTLP/HTTP (protobuf) exporter behind a
/// batch processor, or `None` when no endpoint is set (see [`wanted`]).
pub fn from_env() -> Result<Option<SdkTracerProvider>, TracesError> {
    if !wanted(|name| std::env::var(name).ok()) {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| TracesError(e.to_string()))?;
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            // Sampling is decided where the work enters ([`sampled`]): what reaches the SDK
            // is to be recorded.
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
            .with_resource(resource())
            .build(),
    ))
}

/// The resource spans are reported under: what the environment says, named `order-http`
/// unless it names the service.
pub fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder();
    if named {
        builder.build()
    } else {
        builder.with_service_name("order-http").build()
    }
}

/// The OpenTelemetry layer for `provider`'s tracer.
pub fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("order-http"))
        .with_location(false)
        .with_threads(false)
        // Spans start when they close or when their context is read, not when entered: the
        // request span is named after its route only once routing found it.
        .with_context_activation(false)
        // No busy and idle times per span: they cost two clock reads and a lock on every
        // poll of every instrumented future.
        .with_tracked_inactivity(false)
}

/// The trace context of the current span, as a `traceparent`: the span becomes the parent of
/// whatever continues from it. `None` when traces are off or the span is not in one.
pub fn current() -> Option<TraceParent> {
    if !enabled() {
        return None;
    }
    let context = Span::current().context();
    let span = context.span();
    let span = span.span_context();
    if !span.is_valid() {
        return None;
    }
    TraceParent::new(
        span.trace_id().to_bytes(),
        span.span_id().to_bytes(),
        span.trace_flags().to_u8(),
    )
}

/// Makes `span` (not yet entered) a child of the remote `parent`.
pub fn continue_from(span: &Span, parent: &TraceParent) {
    if !enabled() {
        return;
    }
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id()),
        SpanId::from_bytes(parent.parent_id()),
        TraceFlags::new(parent.flags()),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The span of one payment job: recorded if the job's trace was (or, for a job in no
/// trace, as a new trace is), continuing that trace.
pub fn job_span(job: &order_core::ports::Delivery) -> Span {
    macro_rules! span {
        ($target:expr) => {
            tracing::info_span!(
                target: $target,
                parent: None,
                "payment job",
                order_id = %job.order_id,
                otel.kind = "consumer",
            )
        };
    }
    if !sampled(job.trace.as_ref()) {
        return span!(UNTRACED);
    }
    let span = span!(TRACED);
    if let Some(parent) = &job.trace {
        continue_from(&span, parent);
    }
    span
}

/// The trace an order placed by this request joins: the request span's when it is
/// recorded; the caller's when the caller asked not to record it (so the order's payment is
/// not recorded either); none while traces are off.
pub fn of_request(headers: &axum::http::HeaderMap) -> Option<TraceParent> {
    if !enabled() {
        return None;
    }
    current().or_else(|| incoming(headers))
}

/// The `traceparent` a request carries, if it is valid (an invalid one is ignored, as the
/// recommendation asks: the request starts a trace of its own).
pub fn incoming(headers: &axum::http::HeaderMap) -> Option<TraceParent> {
    headers
        .get(order_core::trace::TRACEPARENT)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The trace id and span id of the current span, as hex, for log lines.
pub fn current_ids() -> Option<(String, String)> {
    current().map(|here| (here.trace_id_hex(), here.parent_id_hex()))
}

#[cfg(test)]
mod tests {
    use super::wanted;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_samplers_the_variables_name_decide_new_traces_and_follow_a_callers() {
        use super::Sampling;
        use order_core::trace::TraceParent;
        let sampled: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap();
        let unsampled: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
            .parse()
            .unwrap();
        assert_eq!(Sampling::from_vars(None, None), Sampling::Always);
        assert_eq!(
            Sampling::from_vars(Some("parentbased_always_off"), None),
            Sampling::Never
        );
        assert_eq!(
            Sampling::from_vars(Some("parentbased_traceidratio"), Some("0.25")),
            Sampling::Ratio(0.25)
        );
        assert_eq!(
            Sampling::from_vars(Some("traceidratio"), Some("2")),
            Sampling::Ratio(1.0),
            "an argument outside [0, 1] is ignored"
        );
        for sampling in [Sampling::Always, Sampling::Never, Sampling::Ratio(0.5)] {
            assert!(
                sampling.sampled(Some(&sampled)),
                "{sampling:?} follows the caller"
            );
            assert!(
                !sampling.sampled(Some(&unsampled)),
                "{sampling:?} follows the caller"
            );
        }
        assert!(Sampling::Always.sampled(None));
        assert!(!Sampling::Never.sampled(None));
        let kept = (0..10_000)
            .filter(|_| Sampling::Ratio(0.1).sampled(None))
            .count();
        assert!((700..1300).contains(&kept), "about a tenth: {kept}");
    }

    #[test]
    fn traces_are_exported_only_when_an_endpoint_is_set_and_nothing_turns_them_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert!(!wanted(env(&[])), "nothing set: nothing exported");
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(wanted(env(&[endpoint])));
        assert!(wanted(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/v1/traces"
        )])));
        assert!(!wanted(env(&[endpoint, ("OTEL_SDK_DISABLED", "true")])));
        assert!(wanted(env(&[endpoint, ("OTEL_SDK_DISABLED", "false")])));
        assert!(!wanted(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])));
    }
}
