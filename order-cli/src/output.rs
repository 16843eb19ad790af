//! How results are shown: JSON for scripts (one document per result, exactly as the
//! service's contract writes it), tables for people.

use std::fmt::Write as _;

use order_api::orders::{AttemptResponse, OrderResponse};
use serde::Serialize;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON, as the service returns it.
    Json,
    /// A readable table.
    Table,
}

/// Lays rows out in columns under `headers`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(
        &mut out,
        &headers.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    );
    for row in rows {
        line(&mut out, row);
    }
    out
}

fn order_row(order: &OrderResponse) -> Vec<String> {
    vec![
        order.id.to_string(),
        order.customer_id.clone(),
        order.status.to_string(),
        order.total_amount.to_string(),
        order.items.len().to_string(),
        order.payment_attempts.len().to_string(),
        order.created_at.to_rfc3339(),
    ]
}

const ORDER_HEADERS: [&str; 7] = [
    "ID", "CUSTOMER", "STATUS", "TOTAL", "ITEMS", "ATTEMPTS", "CREATED",
];

fn attempt_row(a: &AttemptResponse) -> Vec<String> {
    vec![
        a.attempt_number.to_string(),
        a.status.to_string(),
        a.transaction_id
            .clone()
            .or_else(|| a.error_message.clone())
            .unwrap_or_else(|| "-".into()),
        a.finished_at.to_rfc3339(),
    ]
}

/// One order: a summary line and its items and attempts.
pub fn order(order: &OrderResponse) -> String {
    let mut out = table(&ORDER_HEADERS, &[order_row(order)]);
    let items: Vec<Vec<String>> = order
        .items
        .iter()
        .map(|i| {
            vec![
                i.item_id.clone(),
                i.item_name.clone(),
                i.quantity.to_string(),
                i.price.to_string(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&["ITEM", "NAME", "QTY", "PRICE"], &items));
    let attempts: Vec<Vec<String>> = order.payment_attempts.iter().map(attempt_row).collect();
    if !attempts.is_empty() {
        out.push('\n');
        out.push_str(&table(&["ATTEMPT", "OUTCOME", "DETAIL", "AT"], &attempts));
    }
    if let Some(c) = &order.cancellation {
        let _ = writeln!(
            out,
            "\ncancelled {} ({})",
            c.requested_at.to_rfc3339(),
            c.reason
        );
    }
    for refund in &order.refunds {
        let _ = writeln!(
            out,
            "refund {} {}{}",
            refund.amount,
            refund.status.as_str(),
            refund
                .refund_id
                .as_ref()
                .map_or(String::new(), |id| format!(" ({id})"))
        );
    }
    out
}

/// A list of orders, with the paging line.
pub fn orders(orders: &[OrderResponse], total: u64) -> String {
    let rows: Vec<Vec<String>> = orders.iter().map(order_row).collect();
    let mut out = table(&ORDER_HEADERS, &rows);
    let _ = writeln!(out, "{} of {total} orders", orders.len());
    out
}

/// Prints `value` in `format`: as its JSON for scripts, through `table` for people.
pub fn print<T: Serialize>(format: Format, value: &T, table: impl FnOnce(&T) -> String) {
    match format {
        Format::Json => match serde_json::to_string(value) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("order-cli: cannot write JSON: {e}"),
        },
        Format::Table => print!("{}", table(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let out = table(
            &["A", "LONG"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(out, "A    LONG\nxyz  1\nq    22\n");
    }
}
