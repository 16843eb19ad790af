//! How results are shown: JSON for scripts (one document per result), tables for people.

use std::fmt::Write as _;

use serde_json::Value;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON, as the service returns it.
    Json,
    /// A readable table.
    Table,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
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

fn order_row(order: &Value) -> Vec<String> {
    let items = order["items"].as_array().map_or(0, Vec::len);
    vec![
        text(&order["id"]),
        text(&order["customer_id"]),
        text(&order["status"]),
        text(&order["total_amount"]),
        items.to_string(),
        order["payment_attempts"]
            .as_array()
            .map_or(0, Vec::len)
            .to_string(),
        text(&order["created_at"]),
    ]
}

const ORDER_HEADERS: [&str; 7] = [
    "ID", "CUSTOMER", "STATUS", "TOTAL", "ITEMS", "ATTEMPTS", "CREATED",
];

/// One order: a summary line and its items and attempts.
pub fn order(order: &Value) -> String {
    let mut out = table(&ORDER_HEADERS, &[order_row(order)]);
    let items: Vec<Vec<String>> = order["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            vec![
                text(&i["item_id"]),
                text(&i["item_name"]),
                text(&i["quantity"]),
                text(&i["price"]),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&["ITEM", "NAME", "QTY", "PRICE"], &items));
    let attempts: Vec<Vec<String>> = order["payment_attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            vec![
                text(&a["attempt_number"]),
                text(&a["status"]),
                a.get("transaction_id")
                    .or_else(|| a.get("error_message"))
                    .map_or("-".into(), text),
                text(&a["finished_at"]),
            ]
        })
        .collect();
    if !attempts.is_empty() {
        out.push('\n');
        out.push_str(&table(&["ATTEMPT", "OUTCOME", "DETAIL", "AT"], &attempts));
    }
    out
}

/// A list of orders, with the paging line.
pub fn orders(orders: &[Value], total: Option<u64>) -> String {
    let rows: Vec<Vec<String>> = orders.iter().map(order_row).collect();
    let mut out = table(&ORDER_HEADERS, &rows);
    if let Some(total) = total {
        let _ = writeln!(out, "{} of {total} orders", orders.len());
    }
    out
}

/// Prints `value` in `format`, using `table` for people.
pub fn print(format: Format, value: &Value, table: impl FnOnce(&Value) -> String) {
    match format {
        Format::Json => println!("{value}"),
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
