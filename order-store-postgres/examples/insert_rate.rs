//! Measures how many orders per second `PgOrderRepo` stores, one order per transaction
//! versus batches through `insert_many`, with fsync and synchronous_commit as configured on
//! the server (on by default).
//!
//! ```sh
//! cargo run --release -p order-store-postgres --example insert_rate -- [seconds] [tasks] [batch]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use order_core::ports::OrderRepo;
use order_core::testing::placed_order;
use order_store_postgres::testing::TestSchema;
use order_store_postgres::{PgOrderRepo, PoolConfig, lazy_pool};

async fn rate(repo: &PgOrderRepo, seconds: u64, tasks: usize, batch: usize) -> f64 {
    let stored = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let repo = repo.clone();
        let stored = stored.clone();
        handles.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let orders: Vec<_> = (0..batch)
                    .map(|_| placed_order(&format!("bench-{t}"), Utc::now()))
                    .collect();
                repo.insert_many(&orders).await.expect("insert");
                stored.fetch_add(orders.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    stored.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let seconds = args.first().copied().unwrap_or(5);
    let tasks = usize::try_from(args.get(1).copied().unwrap_or(16)).expect("tasks");
    let batch = usize::try_from(args.get(2).copied().unwrap_or(100)).expect("batch");
    let schema = TestSchema::create().await;
    let config = PoolConfig {
        max_connections: u32::try_from(tasks).expect("tasks"),
        ..PoolConfig::default()
    };
    let repo = PgOrderRepo::new(lazy_pool(schema.options.clone(), &config));
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(repo.pool())
        .await
        .expect("show");
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(repo.pool())
        .await
        .expect("show");
    println!("fsync={fsync} synchronous_commit={sync}, {tasks} concurrent tasks, {seconds} s each");
    let single = rate(&repo, seconds, tasks, 1).await;
    println!("one order per transaction: {single:>9.0} orders/s");
    let batched = rate(&repo, seconds, tasks, batch).await;
    println!(
        "{batch} orders per transaction: {batched:>9.0} orders/s  ({:.1}x)",
        batched / single
    );
    schema.drop().await;
}
