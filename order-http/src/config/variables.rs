//! Every variable the binary reads, with its default and meaning: the one list that
//! `order-http --help` shows and that the command line is built from (each variable is also
//! a flag, `PORT` as `--port`). [`Config::from_lookup`](super::Config::from_lookup) parses
//! their values; a test checks that it reads exactly these and that each default shown is
//! the one it applies.

/// A setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    /// The environment variable.
    pub name: &'static str,
    /// What applies when it is unset.
    pub default: WhenUnset,
    /// What it sets, in a line.
    pub help: &'static str,
}

/// What applies when a variable is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnset {
    /// This value, exactly as if it were set to it.
    Value(&'static str),
    /// Nothing: the feature is off or the adapter in memory, as the text says.
    Unset(&'static str),
    /// A value that depends on other settings, as the text says.
    Depends(&'static str),
}

impl Variable {
    /// The command-line flag: the name in lower case with dashes (`--database-url`).
    pub fn flag(&self) -> String {
        self.name.to_ascii_lowercase().replace('_', "-")
    }

    /// The help line, with the default.
    pub fn help_line(&self) -> String {
        let default = match self.default {
            WhenUnset::Value(v) => v,
            WhenUnset::Unset(text) | WhenUnset::Depends(text) => text,
        };
        format!("{} [default: {default}]", self.help)
    }
}

/// Every variable, in the order of the README's table. The trace exporter reads the
/// standard `OTEL_*` variables itself ([`TRACES_HELP`]).
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "AUTH_MODE",
        default: WhenUnset::Depends("api_key with DATABASE_URL, none on the embedded default"),
        help: "`api_key`: every /api/v1 request needs `Authorization: Bearer <key>` with its scope; `none`: anyone who reaches the port may call the API (logged as a warning unless only loopback can)",
    },
    Variable {
        name: "API_KEYS_FILE",
        default: WhenUnset::Unset("unset"),
        help: "the embedded default's API keys: a file of hashed keys (JSON lines); with DATABASE_URL keys live in PostgreSQL",
    },
    Variable {
        name: "DATABASE_URL",
        default: WhenUnset::Unset("unset: in memory"),
        help: "PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/orders; migrations run once it answers",
    },
    Variable {
        name: "DATABASE_POOL_SIZE",
        default: WhenUnset::Value("20"),
        help: "connections in the PostgreSQL pool",
    },
    Variable {
        name: "DATABASE_ACQUIRE_TIMEOUT",
        default: WhenUnset::Value("1"),
        help: "seconds a request waits for a PostgreSQL connection before it answers 503",
    },
    Variable {
        name: "DATABASE_STATEMENT_TIMEOUT_SECONDS",
        default: WhenUnset::Value("10"),
        help: "seconds one PostgreSQL statement may run before the server cancels it (503; nothing changed); 0: no limit",
    },
    Variable {
        name: "MAX_REQUESTS_IN_FLIGHT",
        default: WhenUnset::Value("2048"),
        help: "the most /api requests one process holds at once, executing and waiting their turn together; beyond it: 503 `overloaded`",
    },
    Variable {
        name: "REQUEST_QUEUE_TARGET",
        default: WhenUnset::Value("0.005"),
        help: "seconds: requests beyond the executing limit (which follows the latency gradient to the knee) wait their turn; a queue holding 3/4 of MAX_REQUESTS_IN_FLIGHT with its shortest wait above this is overload, and then newcomers that would wait longer get 503 with Retry-After",
    },
    Variable {
        name: "RATE_LIMIT_WRITES_PER_SECOND",
        default: WhenUnset::Unset("unset: no limit"),
        help: "per client: writes (POST, DELETE) allowed per second on average; over it, 429",
    },
    Variable {
        name: "RATE_LIMIT_WRITES_BURST",
        default: WhenUnset::Depends("one second's worth"),
        help: "per client: writes allowed at once",
    },
    Variable {
        name: "RATE_LIMIT_READS_PER_SECOND",
        default: WhenUnset::Unset("unset: no limit"),
        help: "per client: reads (GET) allowed per second on average; over it, 429",
    },
    Variable {
        name: "RATE_LIMIT_READS_BURST",
        default: WhenUnset::Depends("one second's worth"),
        help: "per client: reads allowed at once",
    },
    Variable {
        name: "RATE_LIMIT_AUTH_FAILURES_PER_SECOND",
        default: WhenUnset::Value("1"),
        help: "per client address: refused API keys a second; past the burst, 429 before any key is looked up; 0: no limit",
    },
    Variable {
        name: "RATE_LIMIT_AUTH_FAILURES_BURST",
        default: WhenUnset::Value("100"),
        help: "per client address: refused API keys allowed at once",
    },
    Variable {
        name: "RATE_LIMIT_REDELIVERIES_PER_SECOND",
        default: WhenUnset::Value("1"),
        help: "per client: webhook event redeliveries a second (each posts the event to every subscribed endpoint); past the burst, 429; 0: no limit",
    },
    Variable {
        name: "RATE_LIMIT_REDELIVERIES_BURST",
        default: WhenUnset::Value("60"),
        help: "per client: webhook event redeliveries allowed at once",
    },
    Variable {
        name: "RATE_LIMIT_FAIL_CLOSED",
        default: WhenUnset::Value("false"),
        help: "when the limiter's Redis cannot be reached: false lets requests through, true answers 503",
    },
    Variable {
        name: "TRUST_FORWARDED_FOR",
        default: WhenUnset::Value("false"),
        help: "how many proxies in front append to X-Forwarded-For (true: 1): a client is then the address that many entries from the right; false: its connection's address",
    },
    Variable {
        name: "REDIS_URL",
        default: WhenUnset::Unset("unset: in memory"),
        help: "Redis, e.g. redis://127.0.0.1:6379; with REDIS_MODE=cluster, seed nodes separated by commas",
    },
    Variable {
        name: "REDIS_CA_FILE",
        default: WhenUnset::Unset("unset: the public roots"),
        help: "PEM certificate of the authority that signs the Redis servers' certificates, for rediss:// URLs with a private CA",
    },
    Variable {
        name: "REDIS_MODE",
        default: WhenUnset::Value("standalone"),
        help: "`standalone` (one server) or `cluster` (a Redis Cluster)",
    },
    Variable {
        name: "REDIS_QUEUE_NAME",
        default: WhenUnset::Value("payment_queue"),
        help: "base name of the payment queue's Redis keys",
    },
    Variable {
        name: "REDIS_QUEUE_SHARDS",
        default: WhenUnset::Value("1"),
        help: "streams the payment jobs are spread over; the same in every process",
    },
    Variable {
        name: "HOST",
        default: WhenUnset::Depends("0.0.0.0 with DATABASE_URL, 127.0.0.1 on the embedded default"),
        help: "the address the API listens on",
    },
    Variable {
        name: "HTTP_HEADER_TIMEOUT_SECONDS",
        default: WhenUnset::Value("10"),
        help: "how long a connection may go without a whole request head: a client's time to send its headers, and a kept-alive connection's idle time; then it is closed",
    },
    Variable {
        name: "HTTP_BODY_TIMEOUT_SECONDS",
        default: WhenUnset::Value("10"),
        help: "how long a client has to send an /api request's whole body; then 408 `request_timeout`",
    },
    Variable {
        name: "MAX_CONNECTIONS",
        default: WhenUnset::Value("16384"),
        help: "connections served at once; more wait unaccepted in the listen backlog",
    },
    Variable {
        name: "PORT",
        default: WhenUnset::Value("8000"),
        help: "the port the API listens on",
    },
    Variable {
        name: "PAYMENT_RETRY_ATTEMPTS",
        default: WhenUnset::Value("3"),
        help: "attempts per order before `payment_failed` (declines are final at once)",
    },
    Variable {
        name: "PAYMENT_RETRY_DELAY",
        default: WhenUnset::Value("1.0"),
        help: "backoff base in seconds: retry n waits rand(0, min(cap, base*2^n))",
    },
    Variable {
        name: "PAYMENT_RETRY_MAX_DELAY",
        default: WhenUnset::Value("60"),
        help: "backoff cap in seconds",
    },
    Variable {
        name: "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
        default: WhenUnset::Value("5"),
        help: "consecutive gateway failures that open the breaker",
    },
    Variable {
        name: "CIRCUIT_BREAKER_RECOVERY_TIMEOUT",
        default: WhenUnset::Value("60"),
        help: "seconds the breaker stays open before probing",
    },
    Variable {
        name: "CIRCUIT_BREAKER_HALF_OPEN_PROBES",
        default: WhenUnset::Value("1"),
        help: "probe calls admitted at once while half-open",
    },
    Variable {
        name: "PAYMENT_GATEWAY",
        default: WhenUnset::Depends("http when PAYMENT_GATEWAY_URL is set, else simulated"),
        help: "where money moves: simulated, http or stripe",
    },
    Variable {
        name: "PAYMENT_CAPTURE",
        default: WhenUnset::Value("automatic"),
        help: "automatic (the worker captures) or manual (the worker authorizes; POST .../capture takes it)",
    },
    Variable {
        name: "PAYMENT_GATEWAY_URL",
        default: WhenUnset::Unset("unset: in-process simulation"),
        help: "an HTTP payment gateway to charge through, e.g. http://127.0.0.1:8100",
    },
    Variable {
        name: "PAYMENT_GATEWAY_TIMEOUT",
        default: WhenUnset::Depends("2; 10 with PAYMENT_GATEWAY=stripe"),
        help: "seconds a call to the gateway may take before it counts as timed out",
    },
    Variable {
        name: "STRIPE_API_KEY",
        default: WhenUnset::Unset("unset: required with PAYMENT_GATEWAY=stripe"),
        help: "Stripe secret key (sk_test_... in test mode)",
    },
    Variable {
        name: "STRIPE_API_URL",
        default: WhenUnset::Value("https://api.stripe.com"),
        help: "Stripe's API, or a fake of it",
    },
    Variable {
        name: "STRIPE_WEBHOOK_SECRET",
        default: WhenUnset::Unset("unset: no events are taken from Stripe"),
        help: "signing secret(s) of Stripe's events (whsec_..., comma-separated while one rolls)",
    },
    Variable {
        name: "STRIPE_CURRENCY",
        default: WhenUnset::Value("usd"),
        help: "currency orders are charged in (two decimal places)",
    },
    Variable {
        name: "PAYMENT_MOCK_SUCCESS_RATE",
        default: WhenUnset::Value("0.95"),
        help: "share of simulated charges that succeed",
    },
    Variable {
        name: "PAYMENT_MOCK_LATENCY_MIN",
        default: WhenUnset::Value("50"),
        help: "least simulated charge latency, milliseconds",
    },
    Variable {
        name: "PAYMENT_MOCK_LATENCY_MAX",
        default: WhenUnset::Value("200"),
        help: "most simulated charge latency, milliseconds",
    },
    Variable {
        name: "PAYMENT_MOCK_DECLINE_SHARE",
        default: WhenUnset::Value("0.5"),
        help: "share of simulated failures that are declines (final)",
    },
    Variable {
        name: "PAYMENT_MOCK_TIMEOUT_SHARE",
        default: WhenUnset::Value("0.1"),
        help: "share of simulated failures that are time-outs (ambiguous)",
    },
    Variable {
        name: "PAYMENT_MOCK_SEED",
        default: WhenUnset::Unset("random"),
        help: "seed for repeatable simulations",
    },
    Variable {
        name: "WORKER_CONCURRENCY",
        default: WhenUnset::Value("1024"),
        help: "payments one worker process keeps in flight",
    },
    Variable {
        name: "PAYMENT_LEASE_SECONDS",
        default: WhenUnset::Value("30"),
        help: "how long a worker's claim on an order lasts before others may take it over",
    },
    Variable {
        name: "PAYMENT_MAX_DELIVERIES",
        default: WhenUnset::Value("10"),
        help: "deliveries of one job before it goes to the dead-letter stream",
    },
    Variable {
        name: "PAYMENT_RECONCILE_GRACE_SECONDS",
        default: WhenUnset::Value("30"),
        help: "how long a due order may wait unqueued before the reconciler queues it again",
    },
    Variable {
        name: "PAYMENT_RECONCILE_INTERVAL_SECONDS",
        default: WhenUnset::Value("10"),
        help: "how often each worker runs the reconciler, seconds",
    },
    Variable {
        name: "SHUTDOWN_GRACE_SECONDS",
        default: WhenUnset::Value("30"),
        help: "how long shutdown waits for payments in flight, seconds",
    },
    Variable {
        name: "IDEMPOTENCY_KEY_RETENTION_SECONDS",
        default: WhenUnset::Value("86400"),
        help: "how long an Idempotency-Key is remembered, seconds",
    },
    Variable {
        name: "WEBHOOKS_ALLOW_HTTP",
        default: WhenUnset::Depends("true on the embedded default, else false"),
        help: "whether webhook endpoint URLs may be plain http",
    },
    Variable {
        name: "WEBHOOKS_ALLOW_PRIVATE_NETWORKS",
        default: WhenUnset::Depends("true on the embedded default on loopback, else false"),
        help: "whether webhooks may go to addresses that are not public (loopback, RFC 1918, link-local, ...): for tests and private deployments",
    },
    Variable {
        name: "WEBHOOK_TIMEOUT_SECONDS",
        default: WhenUnset::Value("10"),
        help: "how long a receiver has to answer a delivery, seconds",
    },
    Variable {
        name: "WEBHOOK_SECRET_GRACE_SECONDS",
        default: WhenUnset::Value("86400"),
        help: "how long a rotated secret keeps signing beside the new one, seconds",
    },
    Variable {
        name: "WEBHOOK_DISABLE_AFTER_SECONDS",
        default: WhenUnset::Value("432000"),
        help: "an endpoint whose every delivery failed for this long is disabled, seconds",
    },
    Variable {
        name: "WEBHOOK_RETENTION_SECONDS",
        default: WhenUnset::Value("604800"),
        help: "how long settled webhook events and their attempts are kept, seconds",
    },
    Variable {
        name: "WEBHOOK_CONCURRENCY",
        default: WhenUnset::Value("128"),
        help: "webhook deliveries one worker process posts at once",
    },
    Variable {
        name: "WEBHOOK_ENDPOINT_CONCURRENCY",
        default: WhenUnset::Value("16"),
        help: "webhook deliveries of one endpoint posted at once, by every process together; one while it is failing",
    },
    Variable {
        name: "WEBHOOK_SECRET_KEY",
        default: WhenUnset::Unset("unset: secrets stored as they are"),
        help: "64 hex digits (openssl rand -hex 32): webhook signing secrets are sealed with it in PostgreSQL, and those stored before, or sealed with a previous key, are sealed with it at start",
    },
    Variable {
        name: "WEBHOOK_SECRET_KEY_PREVIOUS",
        default: WhenUnset::Unset("unset: no previous key"),
        help: "after a rotation of WEBHOOK_SECRET_KEY, the keys it replaced (comma-separated 64 hex digits): they open what they sealed until the start seals it again with the new key; then drop them",
    },
    Variable {
        name: "WEBHOOK_MAX_ENDPOINTS",
        default: WhenUnset::Value("20"),
        help: "the most webhook endpoints one customer has, and the most serving every customer",
    },
    Variable {
        name: "METRICS_ENABLED",
        default: WhenUnset::Value("true"),
        help: "record metrics and serve /metrics",
    },
    Variable {
        name: "METRICS_ADDR",
        default: WhenUnset::Unset("unset"),
        help: "serve /metrics on this address instead of the API's port",
    },
    Variable {
        name: "LOG_LEVEL",
        default: WhenUnset::Value("info"),
        help: "error, warn, info, debug, trace, or a filter such as order_core=debug,info",
    },
    Variable {
        name: "LOG_FORMAT",
        default: WhenUnset::Value("text"),
        help: "`text` or `json`",
    },
];

/// What the help says of the `OTEL_*` variables, which the trace exporter reads itself.
pub const TRACES_HELP: &str = "Traces: OTEL_EXPORTER_OTLP_ENDPOINT exports them over OTLP/HTTP \
    (unset, nothing is traced); the other standard OTEL_* variables apply (README).";

/// `command` with every variable as a global option read from its environment variable,
/// listed under "Settings" in its help and every subcommand's. Values are not shown in
/// the help (`DATABASE_URL` may hold a password).
pub fn with_settings(command: clap::Command) -> clap::Command {
    let command = command.after_help(TRACES_HELP);
    VARIABLES.iter().fold(command, |command, variable| {
        command.arg(
            clap::Arg::new(variable.name)
                .long(variable.flag())
                .env(variable.name)
                .hide_env_values(true)
                .value_name("VALUE")
                .help(variable.help_line())
                .help_heading("Settings (each from its environment variable)")
                .global(true),
        )
    })
}

/// The value a parsed command line gives `name` (its flag, else its environment
/// variable), for [`Config::from_lookup`](super::Config::from_lookup).
pub fn lookup(matches: &clap::ArgMatches, name: &str) -> Option<String> {
    matches.try_get_one::<String>(name).ok().flatten().cloned()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};
    use std::sync::Mutex;

    use super::*;
    use crate::Config;

    /// The variables `Config::from_lookup` asks for, given these values.
    fn read_by_config(values: &[(&str, &str)]) -> BTreeSet<String> {
        let values: HashMap<&str, &str> = values.iter().copied().collect();
        let asked = Mutex::new(BTreeSet::new());
        Config::from_lookup(|name| {
            asked.lock().unwrap().insert(name.to_owned());
            values.get(name).map(|v| (*v).to_owned())
        })
        .expect("the values are valid");
        asked.into_inner().unwrap()
    }

    #[test]
    fn the_list_names_exactly_the_variables_the_configuration_reads() {
        let mut read = read_by_config(&[]);
        read.extend(read_by_config(&[
            ("RATE_LIMIT_WRITES_PER_SECOND", "10"),
            ("RATE_LIMIT_READS_PER_SECOND", "10"),
        ]));
        read.extend(read_by_config(&[
            ("PAYMENT_GATEWAY", "stripe"),
            ("STRIPE_API_KEY", "sk_test_x"),
        ]));
        let listed: BTreeSet<String> = VARIABLES.iter().map(|v| v.name.to_owned()).collect();
        assert_eq!(read, listed);
    }

    #[test]
    fn every_default_shown_is_the_one_applied() {
        let unset = format!("{:?}", Config::from_lookup(|_| None).unwrap());
        for variable in VARIABLES {
            if let WhenUnset::Value(value) = variable.default {
                let set = Config::from_lookup(|name| (name == variable.name).then(|| value.into()))
                    .unwrap_or_else(|e| panic!("{}={value} is rejected: {e}", variable.name));
                assert_eq!(format!("{set:?}"), unset, "{}={value}", variable.name);
            }
        }
    }

    #[test]
    fn a_flag_and_its_variable_reach_the_configuration_and_the_flag_wins() {
        let command = with_settings(clap::Command::new("order-http").no_binary_name(true));
        let matches = command
            .try_get_matches_from(["--port", "9001", "--redis-queue-shards", "4"])
            .unwrap();
        let config = Config::from_lookup(|name| lookup(&matches, name)).unwrap();
        assert_eq!(config.listen.port(), 9001);
        assert_eq!(config.redis_queue_shards, 4);
    }

    #[test]
    fn a_bad_flag_value_names_its_variable() {
        let command = with_settings(clap::Command::new("order-http").no_binary_name(true));
        let matches = command.try_get_matches_from(["--port", "eighty"]).unwrap();
        let error = Config::from_lookup(|name| lookup(&matches, name)).unwrap_err();
        assert!(error.to_string().contains("PORT"), "{error}");
    }

    #[test]
    fn every_variable_is_in_the_help_with_its_default() {
        let help = with_settings(clap::Command::new("order-http"))
            .render_long_help()
            .to_string();
        for variable in VARIABLES {
            assert!(
                help.contains(&format!("--{}", variable.flag())),
                "{}",
                variable.name
            );
            assert!(
                help.contains(&format!("[env: {}]", variable.name)),
                "{}",
                variable.name
            );
            assert!(help.contains(&variable.help_line()), "{}", variable.name);
        }
    }

    #[test]
    fn the_readme_documents_every_variable() {
        let readme = include_str!("../../../README.md");
        for variable in VARIABLES {
            assert!(
                readme.contains(&format!("`{}`", variable.name)),
                "{}",
                variable.name
            );
        }
    }
}
