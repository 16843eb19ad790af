//! # order-cli
//!
//! A command-line client of a running order service, for scripts and people: create, get,
//! list and watch orders, check health, and generate load.
//!
//! ## Layout
//! - [`cli`]: the commands and flags (clap).
//! - [`client`]: the HTTP client and its errors, each with an exit code.
//! - [`output`]: JSON for scripts, tables for people.
//! - [`load`]: the open-model load generator and its report.
//!
//! Exit codes: 0 success, 1 other error, 2 usage, 3 not found, 4 invalid input,
//! 5 service unavailable, 6 conflict.

pub mod cli;
pub mod client;
pub mod load;
pub mod output;

use std::io::Read as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cli::{Cli, Command};
use crate::client::{CliError, Client};
use crate::output::Format;

/// Parses `ID:NAME:QUANTITY:PRICE`; the name may itself contain colons.
pub fn parse_item(spec: &str) -> Result<Value, CliError> {
    let bad = || CliError::Invalid(format!("item {spec:?} is not ID:NAME:QUANTITY:PRICE"));
    let (id, rest) = spec.split_once(':').ok_or_else(bad)?;
    let (rest, price) = rest.rsplit_once(':').ok_or_else(bad)?;
    let (name, quantity) = rest.rsplit_once(':').ok_or_else(bad)?;
    let quantity: i64 = quantity.trim().parse().map_err(|_| {
        CliError::Invalid(format!(
            "item {spec:?}: quantity {quantity:?} is not a whole number"
        ))
    })?;
    // The price goes as text, so its digits reach the service exactly.
    Ok(json!({"item_id": id, "item_name": name, "quantity": quantity, "price": price.trim()}))
}

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

/// Runs one command (all but `completions`), printing in `format`.
pub async fn run(cli: &Cli, format: Format) -> Result<(), CliError> {
    let timeout = Duration::try_from_secs_f64(cli.timeout)
        .map_err(|_| CliError::Invalid("--timeout must be positive".into()))?;
    let client = Client::new(&cli.base_url, timeout)?;
    match &cli.command {
        Command::Create {
            customer,
            items,
            file,
            idempotency_key,
        } => {
            let body = match file {
                Some(path) => read_order_file(path)?,
                None => json!({
                    "customer_id": customer.clone().unwrap_or_default(),
                    "items": items.iter().map(|s| parse_item(s)).collect::<Result<Vec<_>, _>>()?,
                }),
            };
            let order = client.create(&body, idempotency_key.as_deref()).await?;
            output::print(format, &order, output::order);
        }
        Command::Get { id } => {
            let order = client.get(id).await?;
            output::print(format, &order, output::order);
        }
        Command::List {
            customer,
            status,
            page,
            page_size,
            all,
        } => {
            list(
                &client,
                format,
                customer.as_ref(),
                status.as_ref(),
                *page,
                *page_size,
                *all,
            )
            .await?;
        }
        Command::Watch { id, interval, wait } => {
            watch(&client, format, id, *interval, *wait).await?;
        }
        Command::Health => {
            let health = client.health().await?;
            output::print(format, &health, |h| {
                format!(
                    "live: {}\nready: {}\n",
                    h["live"]["status"], h["ready"]["status"]
                )
            });
        }
        Command::Load(args) => {
            let report = load::run(&client, args).await?;
            if args.json || format == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string(&report).map_err(|e| CliError::Other(e.to_string()))?
                );
            } else {
                print!("{}", report.render());
            }
        }
        Command::Drain { wait } => {
            let limit = Duration::try_from_secs_f64(*wait)
                .map_err(|_| CliError::Invalid("--wait must be positive".into()))?;
            let drained = load::settle(&client, (0, 0), limit).await?;
            let value =
                serde_json::to_value(&drained).map_err(|e| CliError::Other(e.to_string()))?;
            output::print(format, &value, |d| {
                format!(
                    "drained {} open orders in {:.1} s ({:.0}/s)\n",
                    d["open_at_start"],
                    d["seconds"].as_f64().unwrap_or(0.0),
                    d["drain_rate"].as_f64().unwrap_or(0.0)
                )
            });
        }
        Command::Completions { .. } => {}
    }
    Ok(())
}

async fn list(
    client: &Client,
    format: Format,
    customer: Option<&String>,
    status: Option<&String>,
    first_page: u32,
    page_size: u32,
    all: bool,
) -> Result<(), CliError> {
    let mut query: Vec<(&str, String)> = vec![("page_size", page_size.to_string())];
    if let Some(c) = customer {
        query.push(("customer_id", c.clone()));
    }
    if let Some(s) = status {
        query.push(("status", s.clone()));
    }
    let mut page = first_page;
    let mut orders = Vec::new();
    let mut total;
    loop {
        let mut q = query.clone();
        q.push(("page", page.to_string()));
        let body = client.list(&q).await?;
        total = body["total"].as_u64().unwrap_or(0);
        let got = body["orders"].as_array().cloned().unwrap_or_default();
        let done = !all || got.is_empty() || u64::from(page) * u64::from(page_size) >= total;
        if !all {
            output::print(format, &body, |b| {
                output::orders(
                    b["orders"].as_array().map_or(&[][..], Vec::as_slice),
                    b["total"].as_u64(),
                )
            });
            return Ok(());
        }
        orders.extend(got);
        if done {
            break;
        }
        page += 1;
    }
    let body = json!({"orders": orders, "total": total});
    output::print(format, &body, |b| {
        output::orders(
            b["orders"].as_array().map_or(&[][..], Vec::as_slice),
            Some(total),
        )
    });
    Ok(())
}

async fn watch(
    client: &Client,
    format: Format,
    id: &str,
    interval: f64,
    wait: f64,
) -> Result<(), CliError> {
    let interval = Duration::try_from_secs_f64(interval)
        .map_err(|_| CliError::Invalid("--interval must be positive".into()))?;
    let deadline = Instant::now()
        + Duration::try_from_secs_f64(wait)
            .map_err(|_| CliError::Invalid("--wait must be positive".into()))?;
    let mut last = String::new();
    loop {
        let order = client.get(id).await?;
        let status = order["status"].as_str().unwrap_or("").to_owned();
        if status != last {
            match format {
                Format::Json => println!(
                    "{}",
                    json!({"id": id, "status": status, "updated_at": order["updated_at"]})
                ),
                Format::Table => {
                    println!("{}  {status}", order["updated_at"].as_str().unwrap_or(""));
                }
            }
            last.clone_from(&status);
        }
        if matches!(
            status.as_str(),
            "confirmed" | "payment_failed" | "cancelled"
        ) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CliError::Unavailable(format!(
                "order {id} still {status} after {wait} s"
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
        assert_eq!(
            parse_item("item_001:Burger:2:12.99").unwrap(),
            json!({"item_id": "item_001", "item_name": "Burger", "quantity": 2, "price": "12.99"})
        );
        assert_eq!(
            parse_item("x:Menu: large:1:5").unwrap()["item_name"],
            "Menu: large"
        );
        assert!(matches!(
            parse_item("x:Burger:two:1"),
            Err(CliError::Invalid(_))
        ));
        assert!(matches!(parse_item("nonsense"), Err(CliError::Invalid(_))));
    }
}
