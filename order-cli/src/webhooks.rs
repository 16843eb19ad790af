//! `order-cli webhooks ...`: endpoints, deliveries and replay over the API, and `listen`, a
//! local receiver that checks each request's signature the way a production receiver must
//! and prints the event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use order_api::OrderClient;
use order_api::webhooks::{
    CreateWebhookEndpointRequest, DeliveryAttemptResponse, EventType, UpdateWebhookEndpointRequest,
    WebhookEndpointResponse, WebhookEvent,
};
use order_core::webhook::Secret;
use serde::Serialize;
use tokio::sync::Notify;

use crate::cli::WebhooksCommand;
use crate::client::CliError;
use crate::output::{self, Format};

fn event_types(names: &[String]) -> Result<Vec<EventType>, CliError> {
    names
        .iter()
        .map(|n| n.parse::<EventType>().map_err(CliError::Invalid))
        .collect()
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn endpoints(list: &[WebhookEndpointResponse]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.url.clone(),
                if e.enabled { "yes" } else { "no" }.to_owned(),
                e.events
                    .iter()
                    .map(|t| t.as_str().trim_start_matches("order."))
                    .collect::<Vec<_>>()
                    .join(","),
                time(e.failing_since),
                e.disabled_reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "URL",
            "ENABLED",
            "EVENTS",
            "FAILING SINCE",
            "DISABLED BECAUSE",
        ],
        &rows,
    )
}

fn attempts(list: &[DeliveryAttemptResponse]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                time(Some(a.attempted_at)),
                a.event_id.clone(),
                a.event_type.to_string(),
                a.attempt.to_string(),
                a.status_code
                    .map_or_else(|| a.error.clone().unwrap_or_default(), |s| s.to_string()),
                format!("{:.1}", a.latency_ms),
                if a.delivered { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    output::table(
        &[
            "AT",
            "EVENT",
            "TYPE",
            "ATTEMPT",
            "ANSWER",
            "MS",
            "DELIVERED",
        ],
        &rows,
    )
}

/// Runs one `webhooks` command.
pub async fn run(
    client: &OrderClient,
    format: Format,
    command: &WebhooksCommand,
) -> Result<(), CliError> {
    match command {
        WebhooksCommand::Create {
            url,
            events,
            description,
            customer,
        } => {
            let request = CreateWebhookEndpointRequest {
                url: url.clone(),
                events: (!events.is_empty())
                    .then(|| event_types(events))
                    .transpose()?,
                description: description.clone(),
                customer_id: customer.clone(),
            };
            let created = client.create_webhook_endpoint(&request).await?;
            eprintln!(
                "created webhook endpoint {}; its signing secret is shown only now",
                created.endpoint.id
            );
            output::print(format, &created, |c| format!("{}\n", c.secret));
        }
        WebhooksCommand::List => {
            let list = client.list_webhook_endpoints().await?;
            output::print(format, &list, |l| endpoints(&l.endpoints));
        }
        WebhooksCommand::Get { id } => {
            let endpoint = client.get_webhook_endpoint(id).await?;
            output::print(format, &endpoint, |e| endpoints(std::slice::from_ref(e)));
        }
        WebhooksCommand::Update {
            id,
            url,
            events,
            description,
            enable,
            disable,
        } => {
            let request = UpdateWebhookEndpointRequest {
                url: url.clone(),
                events: events.as_deref().map(event_types).transpose()?,
                enabled: match (enable, disable) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
                description: description.clone(),
            };
            let endpoint = client.update_webhook_endpoint(id, &request).await?;
            output::print(format, &endpoint, |e| endpoints(std::slice::from_ref(e)));
        }
        WebhooksCommand::Delete { id } => {
            let endpoint = client.delete_webhook_endpoint(id).await?;
            output::print(format, &endpoint, |e| endpoints(std::slice::from_ref(e)));
        }
        WebhooksCommand::RotateSecret { id } => {
            let rotated = client.rotate_webhook_secret(id).await?;
            eprintln!(
                "the old secret keeps signing beside this one until {}",
                time(Some(rotated.previous_secret_expires_at))
            );
            output::print(format, &rotated, |r| format!("{}\n", r.secret));
        }
        WebhooksCommand::Deliveries { id, limit } => {
            let list = client.webhook_deliveries(id, Some(*limit)).await?;
            output::print(format, &list, |l| attempts(&l.attempts));
        }
        WebhooksCommand::Redeliver { event_id } => {
            let queued = client.redeliver_event(event_id).await?;
            output::print(format, &queued, |q| {
                format!("{} queued to {} endpoint(s)\n", q.event_id, q.deliveries)
            });
        }
        WebhooksCommand::Listen {
            port,
            secret,
            status,
            count,
        } => {
            let secrets = secret
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    Secret::parse(s.trim()).map_err(|e| CliError::Invalid(format!("--secret: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let status = StatusCode::from_u16(*status).map_err(|_| {
                CliError::Invalid(format!("--status {status} is not an HTTP status"))
            })?;
            listen(*port, secrets, status, *count, format).await?;
        }
    }
    Ok(())
}

/// One received event, as `listen` prints it.
#[derive(Debug, Serialize)]
struct Printed {
    /// When it arrived.
    received_at: chrono::DateTime<chrono::Utc>,
    /// Whether its signature was checked and matched (`false` without `--secret`).
    verified: bool,
    /// The event.
    event: serde_json::Value,
}

struct Listener {
    secrets: Vec<Secret>,
    status: StatusCode,
    format: Format,
    received: AtomicU64,
    count: Option<u64>,
    done: Notify,
}

async fn receive(State(l): State<Arc<Listener>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let received_at = chrono::Utc::now();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = if l.secrets.is_empty() {
        false
    } else {
        let secrets: Vec<&Secret> = l.secrets.iter().collect();
        if let Err(e) = order_core::webhook::verify(
            &secrets,
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            &body,
            chrono::Utc::now(),
        ) {
            eprintln!(
                "rejected {}: {e}",
                header("webhook-id").unwrap_or("a request without webhook-id")
            );
            return StatusCode::UNAUTHORIZED;
        }
        true
    };
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        eprintln!("rejected a body that is not JSON");
        return StatusCode::BAD_REQUEST;
    };
    match l.format {
        Format::Json => {
            let line = serde_json::to_string(&Printed {
                received_at,
                verified,
                event,
            })
            .unwrap_or_default();
            println!("{line}");
        }
        Format::Table => match serde_json::from_value::<WebhookEvent>(event.clone()) {
            Ok(e) => println!(
                "{}  {:<26} {}  order {} {}{}",
                e.timestamp
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                e.kind.as_str(),
                e.id,
                e.data.id,
                e.data.status,
                if verified { "" } else { "  (unverified)" }
            ),
            Err(_) => println!("{event}"),
        },
    }
    let seen = l.received.fetch_add(1, Ordering::Relaxed) + 1;
    if l.count.is_some_and(|n| seen >= n) {
        l.done.notify_one();
    }
    l.status
}

/// Serves `POST` on every path of 127.0.0.1:`port` until interrupted (or `count` events).
async fn listen(
    port: u16,
    secrets: Vec<Secret>,
    status: StatusCode,
    count: Option<u64>,
    format: Format,
) -> Result<(), CliError> {
    if secrets.is_empty() {
        eprintln!("no --secret: signatures are not checked");
    }
    let state = Arc::new(Listener {
        secrets,
        status,
        format,
        received: AtomicU64::new(0),
        count,
        done: Notify::new(),
    });
    let app = axum::Router::new()
        .route("/", axum::routing::post(receive))
        .route("/{*path}", axum::routing::post(receive))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| CliError::Other(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Other(e.to_string()))?;
    eprintln!("listening for webhooks on http://{addr}/");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = state.done.notified() => {}
            }
        })
        .await
        .map_err(|e| CliError::Other(e.to_string()))
}
