//! Reading the configuration: defaults, each variable, and the errors that name it.

use super::*;
use std::collections::HashMap;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn postgres_asks_for_keys_and_listens_everywhere_unless_told_otherwise() {
    let database = ("DATABASE_URL", "postgres://postgres@127.0.0.1/orders");
    let c = config(&[database]).unwrap();
    assert_eq!(c.auth_mode, AuthMode::ApiKey);
    assert_eq!(c.listen.to_string(), "0.0.0.0:8000");
    let c = config(&[database, ("AUTH_MODE", "none"), ("HOST", "10.0.0.5")]).unwrap();
    assert_eq!(c.auth_mode, AuthMode::None);
    assert_eq!(c.listen.to_string(), "10.0.0.5:8000");
    let c = config(&[("AUTH_MODE", "api_key"), ("HOST", "0.0.0.0")]).unwrap();
    assert_eq!(c.auth_mode, AuthMode::ApiKey);
}

#[test]
fn no_variables_give_the_embedded_defaults() {
    let c = config(&[]).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
    assert_eq!(c.auth_mode, AuthMode::None);
    assert!(c.database_url.is_none() && c.redis_url.is_none());
    assert_eq!(c.retry.max_attempts(), 3);
    assert_eq!(c.breaker.failure_threshold, 5);
    assert_eq!(c.breaker.recovery_timeout, Duration::from_secs(60));
    assert!((c.gateway.success_rate() - 0.95).abs() < f64::EPSILON);
    assert_eq!(c.redis_queue_name, "payment_queue");
    assert_eq!(
        (c.redis_mode, c.redis_queue_shards),
        (RedisMode::Standalone, 1)
    );
}

#[test]
fn rate_limits_are_off_unless_set_and_the_burst_defaults_to_a_second() {
    assert!(!config(&[]).unwrap().rate_limits.any());
    let c = config(&[
        ("RATE_LIMIT_WRITES_PER_SECOND", "2.5"),
        ("RATE_LIMIT_READS_PER_SECOND", "100"),
        ("RATE_LIMIT_READS_BURST", "300"),
        ("TRUST_FORWARDED_FOR", "true"),
    ])
    .unwrap()
    .rate_limits;
    assert_eq!(c.writes, Some(Quota::new(2.5, 3).unwrap()));
    assert_eq!(c.reads, Some(Quota::new(100.0, 300).unwrap()));
    assert!(c.forwarded_hops == 1 && !c.fail_closed);
    let hops =
        |v: &str| config(&[("TRUST_FORWARDED_FOR", v)]).map(|c| c.rate_limits.forwarded_hops);
    assert_eq!(hops("false"), Ok(0));
    assert_eq!(hops("2"), Ok(2));
    assert!(hops("many").is_err());
}

#[test]
fn a_cluster_takes_several_seed_urls_and_a_server_one() {
    let c = config(&[
        ("REDIS_MODE", "cluster"),
        ("REDIS_URL", "redis://a:7000,redis://b:7001"),
        ("REDIS_QUEUE_SHARDS", "6"),
    ])
    .unwrap();
    assert_eq!(c.redis_mode, RedisMode::Cluster);
    assert_eq!(
        c.redis_url.as_ref().map(SecretUrl::expose),
        Some("redis://a:7000,redis://b:7001")
    );
    assert_eq!(c.redis_queue_shards, 6);
    for vars in [
        &[("REDIS_URL", "redis://a:7000,redis://b:7001")][..],
        &[
            ("REDIS_MODE", "cluster"),
            ("REDIS_URL", "redis://a:7000,b:7001"),
        ][..],
    ] {
        assert_eq!(config(vars).unwrap_err().variable, "REDIS_URL", "{vars:?}");
    }
}

#[test]
fn a_printed_configuration_shows_no_password() {
    let c = config(&[
        (
            "DATABASE_URL",
            "postgres://orders:hunter2@db:5432/orders?sslmode=require",
        ),
        ("REDIS_URL", "redis://:s3cret@cache:6379/0"),
    ])
    .unwrap();
    let printed = format!("{c:?}");
    assert!(
        !printed.contains("hunter2") && !printed.contains("s3cret"),
        "{printed}"
    );
    assert!(printed.contains("postgres://orders:***@db:5432/orders?sslmode=require"));
    assert!(printed.contains("redis://:***@cache:6379/0"));
    assert_eq!(
        c.database_url.as_ref().map(SecretUrl::expose),
        Some("postgres://orders:hunter2@db:5432/orders?sslmode=require"),
        "connecting uses the URL as given"
    );
    let list = SecretUrl::from("redis://u:p@a:1,redis://b:2".to_owned());
    assert_eq!(list.to_string(), "redis://u:***@a:1,redis://b:2");
}

#[test]
fn each_bad_value_is_named() {
    for (var, value) in [
        ("PORT", "eighty"),
        ("PAYMENT_RETRY_ATTEMPTS", "0"),
        ("PAYMENT_RETRY_DELAY", "-1"),
        ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "x"),
        ("PAYMENT_MOCK_SUCCESS_RATE", "1.5"),
        ("DATABASE_URL", "mysql://x"),
        ("REDIS_URL", "localhost:6379"),
        ("LOG_FORMAT", "xml"),
        ("WORKER_CONCURRENCY", "0"),
        ("REDIS_MODE", "sentinel"),
        ("REDIS_QUEUE_SHARDS", "0"),
        ("REDIS_QUEUE_SHARDS", "70000"),
        ("RATE_LIMIT_WRITES_PER_SECOND", "0"),
        ("RATE_LIMIT_READS_PER_SECOND", "many"),
        ("RATE_LIMIT_READS_BURST", "5"),
        ("RATE_LIMIT_FAIL_CLOSED", "maybe"),
        ("AUTH_MODE", "basic"),
    ] {
        let err = config(&[(var, value)]).unwrap_err();
        assert_eq!(err.variable, var, "{value} for {var} gave {err}");
    }
    let err = config(&[
        ("PAYMENT_MOCK_LATENCY_MIN", "300"),
        ("PAYMENT_MOCK_LATENCY_MAX", "200"),
    ])
    .unwrap_err();
    assert_eq!(err.variable, "PAYMENT_MOCK_LATENCY_MIN");
}

#[test]
fn redeliveries_are_limited_by_default_and_zero_turns_the_limit_off() {
    assert_eq!(
        config(&[]).unwrap().rate_limits.redeliveries,
        Some(Quota::new(1.0, 60).unwrap())
    );
    let c = config(&[
        ("RATE_LIMIT_REDELIVERIES_PER_SECOND", "0.5"),
        ("RATE_LIMIT_REDELIVERIES_BURST", "4"),
    ])
    .unwrap();
    assert_eq!(
        c.rate_limits.redeliveries,
        Some(Quota::new(0.5, 4).unwrap())
    );
    let off = config(&[("RATE_LIMIT_REDELIVERIES_PER_SECOND", "0")]).unwrap();
    assert_eq!(off.rate_limits.redeliveries, None);
    let err = config(&[("RATE_LIMIT_REDELIVERIES_BURST", "0")]).unwrap_err();
    assert_eq!(err.variable, "RATE_LIMIT_REDELIVERIES_BURST");
}

#[test]
fn previous_secret_keys_go_with_a_current_one_and_each_bad_one_is_named() {
    let database = ("DATABASE_URL", "postgres://postgres@127.0.0.1/orders");
    let (a, b) = ("a1".repeat(32), "b2".repeat(32));
    let c = config(&[
        database,
        ("WEBHOOK_SECRET_KEY", &b),
        ("WEBHOOK_SECRET_KEY_PREVIOUS", &format!("{a}, {a}")),
    ])
    .unwrap();
    let shown = format!("{:?}", c.webhook_secret_keys.unwrap());
    assert_eq!(shown.matches("SecretKey(").count(), 3, "{shown}");
    assert!(
        !shown.contains(&a) && !shown.contains(&b),
        "no key is printed"
    );
    let alone = config(&[database, ("WEBHOOK_SECRET_KEY_PREVIOUS", &a)]).unwrap_err();
    assert_eq!(alone.variable, "WEBHOOK_SECRET_KEY_PREVIOUS");
    let bad = config(&[
        database,
        ("WEBHOOK_SECRET_KEY", &b),
        ("WEBHOOK_SECRET_KEY_PREVIOUS", &format!("{a},zz")),
    ])
    .unwrap_err();
    assert_eq!(bad.variable, "WEBHOOK_SECRET_KEY_PREVIOUS");
    assert!(bad.message.starts_with("key 2:"), "{}", bad.message);
}

#[test]
fn the_payment_gateway_is_simulated_unless_a_url_or_stripe_is_named() {
    let c = config(&[]).unwrap();
    assert_eq!(c.payment_gateway, PaymentGateway::Simulated);
    assert_eq!(c.payment_gateway_timeout, Duration::from_secs(2));
    let url = ("PAYMENT_GATEWAY_URL", "http://127.0.0.1:8100");
    let http = PaymentGateway::Http {
        url: "http://127.0.0.1:8100".into(),
    };
    assert_eq!(config(&[url]).unwrap().payment_gateway, http);
    assert_eq!(
        config(&[url, ("PAYMENT_GATEWAY", "http")])
            .unwrap()
            .payment_gateway,
        http
    );
    let c = config(&[
        ("PAYMENT_GATEWAY", "stripe"),
        ("STRIPE_API_KEY", "sk_test_abc"),
    ])
    .unwrap();
    let PaymentGateway::Stripe(stripe) = &c.payment_gateway else {
        panic!("stripe: {:?}", c.payment_gateway);
    };
    assert_eq!(
        (stripe.api_url.as_str(), stripe.currency.as_str()),
        ("https://api.stripe.com", "usd")
    );
    assert_eq!(stripe.api_key.expose(), "sk_test_abc");
    assert!(
        !format!("{c:?}").contains("sk_test_abc"),
        "the key is not logged"
    );
    assert_eq!(c.payment_gateway_timeout, Duration::from_secs(10));
}

#[test]
fn a_payment_gateway_setting_that_cannot_work_is_refused_naming_the_variable() {
    let refused = |vars: &[(&str, &str)]| config(vars).unwrap_err().variable;
    assert_eq!(refused(&[("PAYMENT_GATEWAY", "paypal")]), "PAYMENT_GATEWAY");
    assert_eq!(
        refused(&[("PAYMENT_GATEWAY", "http")]),
        "PAYMENT_GATEWAY_URL"
    );
    assert_eq!(refused(&[("PAYMENT_GATEWAY", "stripe")]), "STRIPE_API_KEY");
    assert_eq!(
        refused(&[
            ("PAYMENT_GATEWAY", "stripe"),
            ("STRIPE_API_KEY", "pk_test_abc")
        ]),
        "STRIPE_API_KEY"
    );
    assert_eq!(
        refused(&[
            ("PAYMENT_GATEWAY", "stripe"),
            ("STRIPE_API_KEY", "sk_test_abc"),
            ("PAYMENT_GATEWAY_URL", "http://127.0.0.1:8100"),
        ]),
        "PAYMENT_GATEWAY_URL"
    );
    assert_eq!(
        refused(&[
            ("PAYMENT_GATEWAY", "stripe"),
            ("STRIPE_API_KEY", "sk_test_abc"),
            ("STRIPE_API_URL", "ftp://x"),
        ]),
        "STRIPE_API_URL"
    );
    assert_eq!(
        refused(&[
            ("PAYMENT_GATEWAY", "stripe"),
            ("STRIPE_API_KEY", "sk_test_abc"),
            ("STRIPE_CURRENCY", "jpy"),
        ]),
        "STRIPE_CURRENCY"
    );
}
