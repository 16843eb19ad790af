//! What the process tells about itself: logs (set up here: `LOG_LEVEL` filters,
//! `LOG_FORMAT=json` gives one JSON object per line, with `trace_id` and `span_id` while
//! traces are exported), [`traces`] (OpenTelemetry spans, exported when the environment asks
//! for them) and [`metrics`] (Prometheus).

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{self, FmtContext};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{Config, LogFormat};

pub mod metrics;
pub mod traces;

/// What [`init`] installed; [`shutdown`](Self::shutdown) flushes spans not yet exported.
#[derive(Debug, Default)]
#[must_use = "dropping it without shutdown loses the spans still buffered"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("order-http: exporting the last spans failed: {e}");
            }
        }
    }
}

/// Installs the global subscriber with the exporter the environment asks for (once; later
/// calls install nothing). An exporter that cannot be built is reported and left out: the
/// service runs without traces rather than not at all.
pub fn init(config: &Config) -> Telemetry {
    let provider = traces::from_env().unwrap_or_else(|e| {
        eprintln!("order-http: {e}; running without traces");
        None
    });
    init_with(config, provider)
}

/// Installs the global subscriber, exporting spans through `provider` if there is one
/// (tests pass one with an in-memory exporter).
pub fn init_with(config: &Config, provider: Option<SdkTracerProvider>) -> Telemetry {
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match config.log_format {
        LogFormat::Json => fmt::layer()
            .json()
            .with_target(false)
            .event_format(WithTraceIds(fmt::format().json().with_target(false)))
            .boxed(),
        LogFormat::Text => fmt::layer().with_target(false).boxed(),
    };
    // Each layer filters for itself: a quiet LOG_LEVEL (`warn`) must not silence the spans.
    let spans = provider
        .as_ref()
        .map(|provider| traces::layer(provider).with_filter(traces::recorded()));
    let installed = tracing_subscriber::registry()
        .with(spans)
        .with(logs.with_filter(filter))
        .try_init()
        .is_ok();
    if installed && provider.is_some() {
        traces::set_enabled();
    }
    Telemetry { provider }
}

/// A JSON event format that puts the current span's `trace_id` and `span_id` first, so a log
/// line leads to its trace.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = traces::current_ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
            ),
            None => writer.write_str(&line),
        }
    }
}
