//! `order-http`'s integration tests, in one binary: the API through a real socket, payments
//! end to end, the binary as an operator runs it, and the chaos run.

#![allow(
    clippy::too_many_lines,
    reason = "table-driven tests read best as one table"
)]

/// Each scenario, once on the embedded default and once on PostgreSQL + Redis: a module per
/// backend, a test per scenario, named after it.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod on_memory {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(order_http::testing::Backend::Memory).await;
                }
            )*
        }
        mod on_postgres_and_redis {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(order_http::testing::Backend::PostgresRedis).await;
                }
            )*
        }
    };
}

mod api;
mod auth;
mod binary;
mod cancel;
mod capture;
mod chaos;
mod faults;
mod limits;
mod metrics;
mod payments;
mod refunds;
mod slowloris;
mod ssrf;
mod stripe;
mod tls;
mod webhooks;
