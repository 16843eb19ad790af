//! The commands and their flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::output::Format;

/// Client of the order service: create, read and watch orders, check health, generate load.
#[derive(Debug, Parser)]
#[command(
    name = "order-cli",
    version,
    after_help = "Examples:
  order-cli create --customer customer_123 --item item_001:Burger:2:12.99 --item item_002:Fries:1:4.99
  echo '{\"customer_id\":\"c1\",\"items\":[...]}' | order-cli create --file -
  order-cli get 01936f0e-...        order-cli watch 01936f0e-...
  order-cli cancel 01936f0e-... --reason duplicate
  order-cli list --customer customer_123 --status confirmed --all --output json
  order-cli load --rate 1000 --duration 10s
  order-cli completions bash > /etc/bash_completion.d/order-cli

Exit codes: 0 ok, 1 other error, 2 usage, 3 not found, 4 invalid input,
5 service unavailable, 6 conflict (an order that cannot be cancelled, or a request with
the same Idempotency-Key in flight)."
)]
pub struct Cli {
    /// The service's base URL.
    #[arg(
        long,
        global = true,
        env = "ORDER_SERVICE_URL",
        default_value = "http://localhost:8000"
    )]
    pub base_url: String,
    /// Output format: JSON for scripts, a table for people (default: table on a terminal,
    /// JSON otherwise).
    #[arg(long, short, global = true, value_enum)]
    pub output: Option<Format>,
    /// Seconds to wait for each request.
    #[arg(long, global = true, default_value_t = 10.0)]
    pub timeout: f64,
    /// The API key to send (`Authorization: Bearer`), when the service requires keys.
    #[arg(
        long,
        global = true,
        env = "ORDER_SERVICE_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Place an order, from flags or from a JSON file (`-` for standard input).
    Create {
        /// The customer (with --item).
        #[arg(long, required_unless_present = "file")]
        customer: Option<String>,
        /// An item as ID:NAME:QUANTITY:PRICE (repeat for more items).
        #[arg(
            long = "item",
            value_name = "ID:NAME:QTY:PRICE",
            required_unless_present = "file"
        )]
        items: Vec<String>,
        /// The processor's token for how the customer pays (with --item), such as
        /// `pm_card_visa` for Stripe's test mode; required when the service charges Stripe.
        #[arg(long)]
        payment_method: Option<String>,
        /// A JSON order to send as it is (`-` reads standard input).
        #[arg(long, conflicts_with_all = ["customer", "items", "payment_method"])]
        file: Option<PathBuf>,
        /// An Idempotency-Key: retrying with the same key never places a second order.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Capture an order's authorized payment (a service with PAYMENT_CAPTURE=manual): the
    /// whole authorization, or --amount of it; once per order.
    Capture {
        /// The order's id.
        id: String,
        /// How much to take, such as 25.98 (at most the authorized amount).
        #[arg(long)]
        amount: Option<String>,
        /// An Idempotency-Key: retrying with the same key answers with the order as it is.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Give back part of a confirmed order's captured payment: --amount, --item
    /// ITEM_ID=QUANTITY (once per item), both (that amount for those items), or neither
    /// (all of what is left); the order stays confirmed.
    Refund {
        /// The order's id.
        id: String,
        /// How much to give back, such as 4.99 (at most what is left of the capture; with
        /// --item, at most those items' value).
        #[arg(long)]
        amount: Option<String>,
        /// An item given back, as ITEM_ID=QUANTITY (repeatable).
        #[arg(long)]
        item: Vec<String>,
        /// Why, 1 to 500 characters.
        #[arg(long)]
        reason: Option<String>,
        /// An Idempotency-Key: retrying with the same key sends the same refund.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Cancel an order: at once before payment, else once its payment is refunded (`watch`
    /// follows it to `cancelled`). A `payment_failed` order cannot be cancelled (exit 6).
    Cancel {
        /// The order's id.
        id: String,
        /// Why: requested_by_customer (default), duplicate, fraudulent,
        /// restaurant_unavailable or other.
        #[arg(long)]
        reason: Option<String>,
        /// An Idempotency-Key: retrying with the same key answers with the order as it is.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show one order.
    Get {
        /// The order's id.
        id: String,
    },
    /// List orders, newest first.
    List {
        /// Only this customer's orders.
        #[arg(long)]
        customer: Option<String>,
        /// Only orders in this status.
        #[arg(long)]
        status: Option<String>,
        /// Page number, 1 to 1000 (default 1).
        #[arg(long, conflicts_with = "cursor")]
        page: Option<u32>,
        /// The page after the one that printed this cursor (`next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
        /// Orders per page, 1 to 100.
        #[arg(long, default_value_t = 20)]
        page_size: u32,
        /// Walk every page from --page (or --cursor) on.
        #[arg(long)]
        all: bool,
    },
    /// Wait until an order is terminal, printing each status change.
    Watch {
        /// The order's id.
        id: String,
        /// Seconds between polls.
        #[arg(long, default_value_t = 0.5)]
        interval: f64,
        /// Give up after this many seconds (exit 5).
        #[arg(long, default_value_t = 300.0)]
        wait: f64,
    },
    /// Check that the service is alive and ready.
    Health {
        /// Only that it is alive (`/health`): what a container's health check of a
        /// worker-only process asks, which serves no readiness.
        #[arg(long)]
        live: bool,
    },
    /// Create, list and revoke API keys (needs a key with keys:manage when the service
    /// requires keys).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage webhook endpoints, see their deliveries, replay events, or receive webhooks
    /// locally (`listen`); needs a key with webhooks:manage when the service requires keys.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Generate load: a fixed rate (open model) or as fast as N connections go.
    Load(LoadArgs),
    /// Wait until no order is pending, in payment or being cancelled, and report how fast
    /// they drained.
    Drain {
        /// Give up after this many seconds (exit 5).
        #[arg(long, default_value_t = 600.0)]
        wait: f64,
    },
}

/// The `keys` commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints it (shown only now) alone with `-o json` off, or the whole
    /// answer as JSON.
    Create {
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// Its scopes, separated by commas: orders:read, orders:write, orders:cancel,
        /// payments:capture, payments:refund, webhooks:manage, keys:manage, metrics:read.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Bind the key to this customer.
        #[arg(long)]
        customer: Option<String>,
        /// Seconds until the key expires.
        #[arg(long)]
        expires_in: Option<u64>,
    },
    /// List every key, newest first.
    List,
    /// Revoke a key by its id.
    Revoke {
        /// The key's id (the 16 hex digits after `ordk_`).
        id: String,
    },
}

/// The `webhooks` commands.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Create an endpoint; prints its signing secret (shown only now and on rotation).
    Create {
        /// Where events are posted.
        #[arg(long)]
        url: String,
        /// The event types it receives, separated by commas (default: all): order.created,
        /// order.payment_processing, order.confirmed, order.payment_failed,
        /// order.cancelling, order.cancelled, order.refunded, order.partially_refunded.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        /// Deliver only this customer's orders' events to it (a key bound to a customer
        /// makes endpoints of its own customer only).
        #[arg(long)]
        customer: Option<String>,
    },
    /// List every endpoint (a key bound to a customer sees its own).
    List,
    /// Show one endpoint.
    Get {
        /// The endpoint's id (`ep_...`).
        id: String,
    },
    /// Change an endpoint: only what is given.
    Update {
        /// The endpoint's id.
        id: String,
        /// A new URL.
        #[arg(long)]
        url: Option<String>,
        /// New event types, separated by commas.
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// Enable it (clearing why it was disabled).
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable it.
        #[arg(long)]
        disable: bool,
    },
    /// Delete an endpoint and its undelivered events.
    Delete {
        /// The endpoint's id.
        id: String,
    },
    /// Replace an endpoint's signing secret; the old one signs beside it for a grace period.
    RotateSecret {
        /// The endpoint's id.
        id: String,
    },
    /// An endpoint's delivery attempts, newest first.
    Deliveries {
        /// The endpoint's id.
        id: String,
        /// At most this many (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Send an event again to every endpoint subscribed to it.
    Redeliver {
        /// The event's id (`evt_...`, the `webhook-id` a receiver saw).
        event_id: String,
    },
    /// Receive webhooks on this machine and print each event: what a developer points an
    /// endpoint at (`http://127.0.0.1:PORT/`, with WEBHOOKS_ALLOW_HTTP on) to watch events
    /// arrive. With `--secret`, signatures are checked and a forged or stale request is
    /// answered 401 and reported.
    Listen {
        /// The port to listen on (on 127.0.0.1).
        #[arg(long, default_value_t = 9000)]
        port: u16,
        /// The endpoint's signing secret (`whsec_...`); give it twice during a rotation.
        #[arg(
            long,
            env = "ORDER_WEBHOOK_SECRET",
            hide_env_values = true,
            value_delimiter = ' '
        )]
        secret: Vec<String>,
        /// The status to answer verified requests with (try 500 to watch retries).
        #[arg(long, default_value_t = 200)]
        status: u16,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// Settings of a load run.
#[derive(Debug, Clone, clap::Args)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent command-line switches"
)]
pub struct LoadArgs {
    /// Orders per second to send on schedule (open model); without it, closed-loop at full
    /// speed over --connections.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Concurrent connections for the closed-loop mode.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// How long to send, such as `30s`, `2m` or `500ms`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Requests in flight at most (open model): past it, sends are counted as dropped.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// After sending, wait until no order has work left (pending, paying, cancelling), and report how fast the
    /// backlog drained.
    #[arg(long)]
    pub settle: bool,
    /// Seconds to wait for settling at most.
    #[arg(long, default_value_t = 600.0)]
    pub settle_timeout: f64,
    /// Send every order with an `Idempotency-Key` of its own, as retrying clients do.
    #[arg(long)]
    pub keyed: bool,
    /// Seed for the generated orders.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Parses `500ms`, `30s`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("not a duration: {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
