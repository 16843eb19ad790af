//! `RedisQueue` against real Redis servers: the machine's shared one (each test on its own
//! stream) and, for restarts, a private `redis-server` the test starts and stops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use order_core::memory::MemoryOrderRepo;
use order_core::ports::{Job, OrderRepo, PaymentQueue, SystemClock};
use order_core::service::Outcome;
use order_core::testing::{ApprovingGateway, conformance, placed_order};
use order_core::{OrderId, PaymentProcessor, ProcessorConfig, WorkerId};
use order_queue_redis::testing::{PrivateRedis, redis_url};
use order_queue_redis::{QueueConfig, RedisQueue};

fn test_config(url: &str) -> QueueConfig {
    QueueConfig {
        stream: format!("test-{}", uuid::Uuid::now_v7().simple()),
        ..QueueConfig::new(url)
    }
}

async fn connect(config: QueueConfig) -> RedisQueue {
    let url = config.url.clone();
    RedisQueue::connect(config).await.unwrap_or_else(|e| {
        panic!(
            "Redis is not reachable at {url} ({e:?}). Start it with `scripts/ensure-services.sh`, \
             or point TEST_REDIS_URL at a server."
        )
    })
}

/// Deletes every key of `queue`'s shards from the shared server.
async fn delete_keys(queue: &RedisQueue) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for keys in queue.shard_keys() {
        let _: () = redis::cmd("DEL")
            .arg(&keys.stream)
            .arg(&keys.deferred)
            .arg(&keys.dead)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// Polls `f` until it returns `Some`, failing after `deadline`.
async fn eventually<T, F, Fut>(deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the conformance suite on queues of `shards` shards on the shared server.
async fn conformance_with(shards: u16) {
    let made = Arc::new(std::sync::Mutex::new(Vec::new()));
    conformance::payment_queue(|| {
        let made = made.clone();
        async move {
            let a = connect(QueueConfig {
                consumer: "a".into(),
                shards,
                ..test_config(&redis_url())
            })
            .await;
            let b = a.consumer("b");
            made.lock().unwrap().push(a.clone());
            (a, b)
        }
    })
    .await;
    let made = std::mem::take(&mut *made.lock().unwrap());
    for queue in made {
        delete_keys(&queue).await;
    }
}

#[tokio::test]
async fn the_redis_queue_honours_the_payment_queue_contract() {
    conformance_with(1).await;
}

#[tokio::test]
async fn a_sharded_redis_queue_honours_the_payment_queue_contract() {
    conformance_with(4).await;
}

#[tokio::test]
async fn one_shard_delivers_jobs_in_the_order_they_were_queued() {
    let queue = connect(test_config(&redis_url())).await;
    let orders: Vec<OrderId> = (0..20).map(|_| OrderId::new()).collect();
    for id in &orders {
        queue.enqueue(&Job::untraced(*id)).await.unwrap();
    }
    let got = queue.receive(20, Duration::from_millis(50)).await.unwrap();
    assert_eq!(got.iter().map(|d| d.order_id).collect::<Vec<_>>(), orders);
    delete_keys(&queue).await;
}

#[tokio::test]
async fn jobs_spread_over_the_shards_and_every_consumer_reads_every_shard() {
    let queue = connect(QueueConfig {
        shards: 4,
        ..test_config(&redis_url())
    })
    .await;
    let orders: Vec<OrderId> = (0..200).map(|_| OrderId::new()).collect();
    let mut per_shard = [0usize; 4];
    for id in &orders {
        per_shard[queue.shard_of(*id)] += 1;
        queue.enqueue(&Job::untraced(*id)).await.unwrap();
    }
    assert!(
        per_shard.iter().all(|&n| n >= 20),
        "order ids spread over the shards: {per_shard:?}"
    );
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for (keys, expected) in queue.shard_keys().iter().zip(per_shard) {
        let len: usize = redis::cmd("XLEN")
            .arg(&keys.stream)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(len, expected, "{} holds its orders' jobs", keys.stream);
    }
    // One consumer, small batches: it takes every job, whatever shard it is on.
    let mut seen = std::collections::HashSet::new();
    while seen.len() < orders.len() {
        let got = queue.receive(7, Duration::from_millis(10)).await.unwrap();
        assert!(
            !got.is_empty(),
            "jobs left unreceived: {}",
            orders.len() - seen.len()
        );
        for d in got {
            queue.ack(&d).await.unwrap();
            assert!(seen.insert(d.order_id), "{} delivered twice", d.order_id);
        }
    }
    delete_keys(&queue).await;
}

#[tokio::test]
async fn a_job_left_by_a_dead_consumer_is_reclaimed_after_the_idle_time_then_dead_lettered() {
    let config = test_config(&redis_url());
    let dead = connect(QueueConfig {
        consumer: "dead".into(),
        ..config
    })
    .await;
    let alive = dead.consumer("alive");
    let order = OrderId::new();
    dead.enqueue(&Job::untraced(order)).await.unwrap();
    assert_eq!(
        dead.receive(1, Duration::from_secs(1)).await.unwrap().len(),
        1
    );
    // The consumer "dies" here: it never acks.

    let idle = Duration::from_millis(300);
    assert!(
        alive.reclaim(idle, 10).await.unwrap().is_empty(),
        "not before the idle time"
    );
    let taken = eventually(Duration::from_secs(5), || async {
        let got = alive.reclaim(idle, 10).await.unwrap();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!((taken[0].order_id, taken[0].deliveries), (order, 2));

    // Still not acked: delivered once more, then past max_deliveries (2) it is dead-lettered.
    let again = alive.reclaim(Duration::ZERO, 10).await.unwrap();
    assert_eq!(again[0].deliveries, 3);
    let worker = PaymentProcessor::new(
        Arc::new(MemoryOrderRepo::new()),
        Arc::new(alive.clone()),
        Arc::new(ApprovingGateway),
        Arc::new(SystemClock),
        ProcessorConfig {
            max_deliveries: 2,
            ..ProcessorConfig::new(WorkerId::parse("alive").unwrap())
        },
    );
    assert_eq!(
        worker.handle(&again[0]).await.unwrap(),
        Outcome::DeadLettered
    );
    assert_eq!(alive.dead_letter_count().await.unwrap(), 1);
    assert!(alive.reclaim(Duration::ZERO, 10).await.unwrap().is_empty());
    delete_keys(&alive).await;
}

#[tokio::test]
async fn a_deleted_stream_and_group_are_recreated_on_the_next_read() {
    let queue = connect(test_config(&redis_url())).await;
    queue.enqueue(&Job::untraced(OrderId::new())).await.unwrap();
    delete_keys(&queue).await;

    assert!(
        queue
            .receive(1, Duration::from_millis(10))
            .await
            .unwrap()
            .is_empty()
    );
    let order = OrderId::new();
    queue.enqueue(&Job::untraced(order)).await.unwrap();
    let got = queue.receive(1, Duration::from_millis(100)).await.unwrap();
    assert_eq!(got[0].order_id, order);
    delete_keys(&queue).await;
}

#[tokio::test]
async fn the_worker_pays_an_order_through_redis_end_to_end() {
    let queue = Arc::new(connect(test_config(&redis_url())).await);
    let repo = Arc::new(MemoryOrderRepo::new());
    let order = placed_order("redis-e2e", chrono::Utc::now());
    repo.insert(&order).await.unwrap();
    queue.enqueue(&Job::of(&order)).await.unwrap();
    let worker = PaymentProcessor::new(
        repo.clone(),
        queue.clone(),
        Arc::new(ApprovingGateway),
        Arc::new(SystemClock),
        ProcessorConfig::new(WorkerId::parse("w").unwrap()),
    );

    assert_eq!(
        worker.process_next(Duration::from_secs(1)).await.unwrap(),
        Some(Outcome::Confirmed)
    );
    assert!(
        queue.reclaim(Duration::ZERO, 10).await.unwrap().is_empty(),
        "acked"
    );
    delete_keys(&queue).await;
}

#[tokio::test]
async fn after_redis_restarts_empty_the_queue_reconnects_and_keeps_working() {
    let mut server = PrivateRedis::start();
    let queue = connect(test_config(&server.url())).await;
    queue.enqueue(&Job::untraced(OrderId::new())).await.unwrap();
    queue.enqueue(&Job::untraced(OrderId::new())).await.unwrap();

    server.kill();
    let err = queue
        .enqueue(&Job::untraced(OrderId::new()))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "a dead server is retryable: {err:?}");
    let server = PrivateRedis::start_on(server.port());

    let order = OrderId::new();
    eventually(Duration::from_secs(10), || async {
        queue.enqueue(&Job::untraced(order)).await.ok()
    })
    .await;
    let got = eventually(Duration::from_secs(10), || async {
        queue
            .receive(10, Duration::from_millis(50))
            .await
            .ok()
            .filter(|v| !v.is_empty())
    })
    .await;
    assert_eq!(
        got.iter().map(|d| d.order_id).collect::<Vec<_>>(),
        [order],
        "the lost jobs are gone, new ones flow"
    );
    queue.ack(&got[0]).await.unwrap();
    drop(server);
}

#[tokio::test]
async fn consumers_of_stopped_workers_are_forgotten_once_they_hold_nothing() {
    let config = test_config(&redis_url());
    let me = connect(QueueConfig {
        consumer: "me".into(),
        ..config
    })
    .await;
    let stopped = me.consumer("stopped-worker");
    let holding = me.consumer("holding-worker");
    // Consumers exist once they have received something: one finished its job and
    // stopped, one still holds a job.
    me.enqueue(&Job::untraced(OrderId::new())).await.unwrap();
    me.enqueue(&Job::untraced(OrderId::new())).await.unwrap();
    let done = stopped.receive(1, Duration::from_millis(10)).await.unwrap();
    stopped.ack(&done[0]).await.unwrap();
    assert_eq!(
        holding
            .receive(1, Duration::from_millis(10))
            .await
            .unwrap()
            .len(),
        1
    );

    assert_eq!(
        me.forget_idle_consumers(Duration::from_secs(3600))
            .await
            .unwrap(),
        0,
        "none idle that long"
    );
    let removed = me.forget_idle_consumers(Duration::ZERO).await.unwrap();

    assert_eq!(
        removed, 1,
        "only the stopped consumer, not one holding a job"
    );
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let left: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&me.shard_keys()[0].stream)
        .arg("payment-workers")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut names: Vec<String> = left
        .iter()
        .map(|c| redis::from_redis_value::<String>(&c["name"]).unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["holding-worker"]);
    delete_keys(&me).await;
}

#[tokio::test]
async fn trimming_deletes_only_entries_the_group_is_done_with() {
    let queue = connect(test_config(&redis_url())).await;
    let stream = queue.shard_keys()[0].stream.clone();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let len = |mut conn: redis::aio::MultiplexedConnection| {
        let stream = stream.clone();
        async move {
            redis::cmd("XLEN")
                .arg(&stream)
                .query_async::<u64>(&mut conn)
                .await
                .unwrap()
        }
    };
    for _ in 0..50 {
        queue.enqueue(&Job::untraced(OrderId::new())).await.unwrap();
    }
    let taken = queue.receive(30, Duration::from_millis(10)).await.unwrap();
    for d in taken[..10].iter().chain(&taken[20..]) {
        queue.ack(d).await.unwrap();
    }
    assert_eq!(
        queue.trim_acknowledged().await.unwrap(),
        10,
        "up to the oldest pending"
    );
    assert_eq!(len(conn.clone()).await, 40);
    for d in &taken[10..20] {
        queue.ack(d).await.unwrap();
    }
    // Nothing pending: everything before the last delivered entry goes; undelivered stay.
    assert_eq!(queue.trim_acknowledged().await.unwrap(), 19);
    let rest = queue.receive(100, Duration::from_millis(10)).await.unwrap();
    assert_eq!(rest.len(), 20, "no undelivered entry was trimmed");
    for d in &rest {
        queue.ack(d).await.unwrap();
    }
    queue.trim_acknowledged().await.unwrap();
    assert_eq!(
        len(conn.clone()).await,
        1,
        "only the last delivered entry is left"
    );
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    delete_keys(&queue).await;
}
