//! # order-cli
//!
//! A command-line client of a running order service, for scripts and people: create, get,
//! list and watch orders, check health, and generate load.
//!
//! ## Layout
//! - [`cli`]: the commands and flags (clap).
//! - [`client`]: what each failure of `order-api`'s `OrderClient` means, as an exit code.
//! - [`output`]: JSON for scripts, tables for people.
//! - [`load`]: the open-model load generator and its report.
//! - [`webhooks`]: managing webhook endpoints, and `listen`, a local receiver that checks
//!   signatures.
//!
//! Exit codes: 0 success, 1 other error, 2 usage, 3 not found, 4 invalid input,
//! 5 service unavailable or rate limited, 6 conflict (an order that cannot be cancelled, or
//! a request with the same Idempotency-Key in flight), 7 not allowed (no good API key, or
//! one without the scope needed). The API key comes from `--api-key` or
//! `ORDER_SERVICE_API_KEY`.

pub mod cli;
pub mod client;
pub mod load;
pub mod output;
pub mod webhooks;

use std::io::Read as _;
use std::time::{Duration, Instant};

use order_api::health::{HealthResponse, Readiness, ReadyResponse};
use order_api::orders::{
    CancelOrderRequest, CancelReason, CreateItemRequest, CreateOrderRequest, ListOrdersQuery,
    OrderStatus,
};
use order_api::{OrderClient, OrderResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::cli::{Cli, Command, KeysCommand};
use crate::client::CliError;
use crate::output::Format;

/// Parses `ID:NAME:QUANTITY:PRICE`; the name may itself contain colons.
pub fn parse_item(spec: &str) -> Result<CreateItemRequest, CliError> {
    let bad = || CliError::Invalid(format!("item {spec:?} is not ID:NAME:QUANTITY:PRICE"));
    let (id, rest) = spec.split_once(':').ok_or_else(bad)?;
    let (rest, price) = rest.rsplit_once(':').ok_or_else(bad)?;
    let (name, quantity) = rest.rsplit_once(':').ok_or_else(bad)?;
    let quantity: i64 = quantity.trim().parse().map_err(|_| {
        CliError::Invalid(format!(
            "item {spec:?}: quantity {quantity:?} is not a whole number"
        ))
    })?;
    // Read exactly, so the price's digits reach the service as typed.
    let price = order_api::money::parse_decimal(price).ok_or_else(|| {
        CliError::Invalid(format!("item {spec:?}: price {price:?} is not a number"))
    })?;
    Ok(CreateItemRequest {
        item_id: id.to_owned(),
        item_name: name.to_owned(),
        quantity,
        price,
    })
}

/// Reads a JSON order from a file (`-`: standard input), to be sent as it is: the service
/// judges it and reports every bad field.
fn read_order_file(path: &std::path::Path) -> Result<Value, CliError> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Invalid(format!("cannot read standard input: {e}")))?;
        text
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::Invalid(format!("cannot read {}: {e}", path.display())))?
    };
    serde_json::from_str(&text).map_err(|e| CliError::Invalid(format!("not JSON: {e}")))
}

fn order_id(id: &str) -> Result<Uuid, CliError> {
    id.trim()
        .parse()
        .map_err(|_| CliError::Invalid(format!("{id:?} is not an order id (a UUID)")))
}

fn seconds(value: f64, flag: &str) -> Result<Duration, CliError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| CliError::Invalid(format!("{flag} must be positive")))
}

/// Liveness and readiness together, as `health` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `GET /health`.
    pub live: HealthResponse,
    /// `GET /health/ready`.
    pub ready: ReadyResponse,
}

/// Runs one command (all but `completions`), printing in `format`.
pub async fn run(cli: &Cli, format: Format) -> Result<(), CliError> {
    let client = client(cli)?;
    match &cli.command {
        Command::Create {
            customer,
            items,
            payment_method,
            file,
            idempotency_key,
        } => {
            let order = create(
                &client,
                customer.as_deref(),
                items,
                payment_method.as_deref(),
                file.as_deref(),
                idempotency_key.as_deref(),
            )
            .await?;
            output::print(format, &order, output::order);
        }
        Command::Cancel {
            id,
            reason,
            idempotency_key,
        } => {
            let (reason, key) = (reason.as_deref(), idempotency_key.as_deref());
            let order = cancel(&client, order_id(id)?, reason, key).await?;
            output::print(format, &order, output::order);
        }
        Command::Capture {
            id,
            amount,
            idempotency_key,
        } => {
            let (amount, key) = (amount.as_deref(), idempotency_key.as_deref());
            let order = capture(&client, order_id(id)?, amount, key).await?;
            output::print(format, &order, output::order);
        }
        Command::Refund {
            id,
            amount,
            item,
            reason,
            idempotency_key,
        } => {
            let request = refund_request(amount.as_deref(), item, reason.clone())?;
            let key = idempotency_key.as_deref();
            let order = client.refund(order_id(id)?, &request, key).await?;
            output::print(format, &order.order, output::order);
        }
        Command::Get { id } => {
            let order = client.get(order_id(id)?).await?;
            output::print(format, &order, output::order);
        }
        Command::List {
            customer,
            status,
            page,
            cursor,
            page_size,
            all,
        } => {
            let query = ListOrdersQuery {
                customer_id: customer.clone(),
                status: order_status(status.as_deref())?,
                page: *page,
                page_size: Some(*page_size),
                cursor: cursor.clone(),
            };
            list(&client, format, query, *all).await?;
        }
        Command::Watch { id, interval, wait } => {
            let interval = seconds(*interval, "--interval")?;
            let wait = seconds(*wait, "--wait")?;
            watch(&client, format, order_id(id)?, interval, wait).await?;
        }
        Command::Health { live: true } => {
            let live = client.health().await?;
            output::print(format, &live, |h| format!("live: {}\n", h.status));
        }
        Command::Health { live: false } => health(&client, format).await?,
        Command::Load(args) => {
            let report = load::run(&client, args).await?;
            if args.json || format == Format::Json {
                output::print(Format::Json, &report, |_| String::new());
            } else {
                print!("{}", report.render());
            }
        }
        Command::Drain { wait } => drain(&client, format, seconds(*wait, "--wait")?).await?,
        Command::Keys(command) => keys(&client, format, command).await?,
        Command::Webhooks(command) => webhooks::run(&client, format, command).await?,
        Command::Completions { .. } => {}
    }
    Ok(())
}

/// `drain`: waits until no order is open, and says how fast they closed.
async fn drain(client: &OrderClient, format: Format, wait: Duration) -> Result<(), CliError> {
    let drained = load::settle(client, (0, 0), wait).await?;
    output::print(format, &drained, |d| {
        format!(
            "drained {} open orders in {:.1} s ({:.0}/s)\n",
            d.open_at_start, d.seconds, d.drain_rate
        )
    });
    Ok(())
}

/// The status `--status` names, if any.
fn order_status(status: Option<&str>) -> Result<Option<OrderStatus>, CliError> {
    status
        .map(str::parse::<OrderStatus>)
        .transpose()
        .map_err(|e| CliError::Invalid(e.to_string()))
}

/// `health`: alive and ready, or why not.
async fn health(client: &OrderClient, format: Format) -> Result<(), CliError> {
    let live = client.health().await?;
    let ready = client.ready().await?;
    if ready.status != Readiness::Ready {
        return Err(CliError::Unavailable(format!(
            "alive but not ready: database {}, queue {}",
            ready.database, ready.queue
        )));
    }
    let report = HealthReport { live, ready };
    output::print(format, &report, |h| {
        format!(
            "live: {}\nready: database {}, queue {}\n",
            h.live.status, h.ready.database, h.ready.queue
        )
    });
    Ok(())
}

/// The client `cli` asks for: its URL, timeout and API key.
fn client(cli: &Cli) -> Result<OrderClient, CliError> {
    let client = OrderClient::with_timeout(&cli.base_url, seconds(cli.timeout, "--timeout")?)?;
    Ok(match &cli.api_key {
        Some(key) if !key.trim().is_empty() => client.with_api_key(key.trim()),
        _ => client,
    })
}

/// The `keys` commands.
async fn keys(client: &OrderClient, format: Format, command: &KeysCommand) -> Result<(), CliError> {
    use order_api::keys::{ApiKeyResponse, CreateApiKeyRequest, Scope};
    let rows = |keys: &[ApiKeyResponse]| {
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map_or_else(
                || "-".to_owned(),
                |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )
        };
        let rows: Vec<Vec<String>> = keys
            .iter()
            .map(|k| {
                vec![
                    k.id.clone(),
                    k.name.clone(),
                    k.scopes
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    k.customer_id.clone().unwrap_or_else(|| "-".into()),
                    time(k.expires_at),
                    time(k.revoked_at),
                    time(k.last_used_at),
                ]
            })
            .collect();
        output::table(
            &[
                "ID",
                "NAME",
                "SCOPES",
                "CUSTOMER",
                "EXPIRES",
                "REVOKED",
                "LAST USED",
            ],
            &rows,
        )
    };
    match command {
        KeysCommand::Create {
            name,
            scopes,
            customer,
            expires_in,
        } => {
            let scopes = scopes
                .iter()
                .map(|s| s.parse::<Scope>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(CliError::Invalid)?;
            let created = client
                .create_key(&CreateApiKeyRequest {
                    name: name.clone(),
                    scopes,
                    customer_id: customer.clone(),
                    expires_in_seconds: *expires_in,
                })
                .await?;
            eprintln!(
                "created API key {} ({}); it is shown only now",
                created.api_key.id, created.api_key.name
            );
            output::print(format, &created, |c| format!("{}\n", c.key));
        }
        KeysCommand::List => {
            let list = client.list_keys().await?;
            output::print(format, &list, |l| rows(&l.keys));
        }
        KeysCommand::Revoke { id } => {
            let key = client.revoke_key(id).await?;
            output::print(format, &key, |k| rows(std::slice::from_ref(k)));
        }
    }
    Ok(())
}

/// Places an order from flags or a file.
async fn create(
    client: &OrderClient,
    customer: Option<&str>,
    items: &[String],
    payment_method: Option<&str>,
    file: Option<&std::path::Path>,
    key: Option<&str>,
) -> Result<OrderResponse, CliError> {
    let placed = if let Some(path) = file {
        client.create(&read_order_file(path)?, key).await?
    } else {
        let order = CreateOrderRequest {
            customer_id: customer.unwrap_or_default().to_owned(),
            items: items
                .iter()
                .map(|s| parse_item(s))
                .collect::<Result<_, _>>()?,
            payment_method: payment_method.map(str::to_owned),
        };
        client.create(&order, key).await?
    };
    Ok(placed.order)
}

/// Cancels an order for `reason` (the service's default when absent).
async fn cancel(
    client: &OrderClient,
    id: Uuid,
    reason: Option<&str>,
    key: Option<&str>,
) -> Result<OrderResponse, CliError> {
    let reason = reason
        .map(str::parse::<CancelReason>)
        .transpose()
        .map_err(CliError::Invalid)?;
    Ok(client
        .cancel(id, &CancelOrderRequest { reason }, key)
        .await?
        .order)
}

/// Captures `amount` (the whole authorization when `None`) of the order's payment.
async fn capture(
    client: &OrderClient,
    id: Uuid,
    amount: Option<&str>,
    key: Option<&str>,
) -> Result<OrderResponse, CliError> {
    let amount = amount
        .map(|a| {
            order_api::money::parse_decimal(a)
                .ok_or_else(|| CliError::Invalid(format!("--amount: {a:?} is not an amount")))
        })
        .transpose()?;
    let request = order_api::orders::CaptureOrderRequest { amount };
    Ok(client.capture(id, &request, key).await?.order)
}

/// A refund of `amount`, or of `items` given as `ITEM_ID=QUANTITY`.
fn refund_request(
    amount: Option<&str>,
    items: &[String],
    reason: Option<String>,
) -> Result<order_api::orders::RefundOrderRequest, CliError> {
    let amount = amount
        .map(|a| {
            order_api::money::parse_decimal(a)
                .ok_or_else(|| CliError::Invalid(format!("--amount: {a:?} is not an amount")))
        })
        .transpose()?;
    let items = items
        .iter()
        .map(|line| {
            let parsed = line
                .rsplit_once('=')
                .and_then(|(id, n)| Some((id, n.trim().parse::<u32>().ok()?)));
            match parsed {
                Some((item_id, quantity)) if !item_id.is_empty() => {
                    Ok(order_api::orders::RefundItem {
                        item_id: item_id.to_owned(),
                        quantity,
                    })
                }
                _ => Err(CliError::Invalid(format!(
                    "--item: {line:?} is not ITEM_ID=QUANTITY"
                ))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(order_api::orders::RefundOrderRequest {
        amount,
        items: (!items.is_empty()).then_some(items),
        reason,
    })
}

/// The orders of every page from the query's on, as `list --all` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllOrders {
    /// Every order listed, newest first.
    pub orders: Vec<OrderResponse>,
    /// How many matched.
    pub total: u64,
}

async fn list(
    client: &OrderClient,
    format: Format,
    mut query: ListOrdersQuery,
    all: bool,
) -> Result<(), CliError> {
    if !all {
        let page = client.list(&query).await?;
        output::print(format, &page, |p| {
            let mut out = output::orders(&p.orders, p.total);
            if let Some(cursor) = &p.next_cursor {
                out = format!("{out}next page: --cursor {cursor}\n");
            }
            out
        });
        return Ok(());
    }
    let mut collected = AllOrders {
        orders: Vec::new(),
        total: 0,
    };
    // Page after page by cursor: as fast at any depth, and orders placed meanwhile
    // neither shift what follows nor appear twice.
    loop {
        let page = client.list(&query).await?;
        collected.total = page.total;
        collected.orders.extend(page.orders);
        let Some(next) = page.next_cursor else {
            break;
        };
        query.page = None;
        query.cursor = Some(next);
    }
    output::print(format, &collected, |c| output::orders(&c.orders, c.total));
    Ok(())
}

/// One line of `watch`: the order's status at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The order.
    pub id: Uuid,
    /// Its status since `updated_at`.
    pub status: OrderStatus,
    /// When it took that status.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

async fn watch(
    client: &OrderClient,
    format: Format,
    id: Uuid,
    interval: Duration,
    wait: Duration,
) -> Result<(), CliError> {
    let deadline = Instant::now() + wait;
    let mut last = None;
    loop {
        let order = client.get(id).await?;
        if last != Some(order.status) {
            let change = StatusChange {
                id,
                status: order.status,
                updated_at: order.updated_at,
            };
            output::print(format, &change, |c| {
                format!("{}  {}\n", c.updated_at.to_rfc3339(), c.status)
            });
            last = Some(order.status);
        }
        if order.status.is_terminal() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::Unavailable(format!(
                "order {id} still {} after {} s",
                order.status,
                wait.as_secs_f64()
            )));
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_parse_from_flags_and_names_may_hold_colons() {
        let item = parse_item("item_001:Burger:2:12.99").unwrap();
        assert_eq!(
            (
                item.item_id.as_str(),
                item.item_name.as_str(),
                item.quantity
            ),
            ("item_001", "Burger", 2)
        );
        assert_eq!(item.price.to_string(), "12.99");
        assert_eq!(
            parse_item("x:Menu: large:1:5").unwrap().item_name,
            "Menu: large"
        );
        assert!(matches!(
            parse_item("x:Burger:1:cheap"),
            Err(CliError::Invalid(_))
        ));
        assert!(matches!(
            parse_item("x:Burger:two:1"),
            Err(CliError::Invalid(_))
        ));
        assert!(matches!(parse_item("nonsense"), Err(CliError::Invalid(_))));
    }
}
