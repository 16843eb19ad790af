//! `RedisQueue` on a private Redis Cluster of three masters started by each test: the queue
//! contract, the key layout, payments end to end, and a master killed during a run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use order_core::memory::MemoryOrderRepo;
use order_core::ports::{OrderRepo, SystemClock};
use order_core::service::Outcome;
use order_core::testing::{ApprovingGateway, conformance, placed_order};
use order_core::{OrderId, OrderStatus, PaymentProcessor, ProcessorConfig, WorkerId};
use order_queue_redis::testing::PrivateCluster;
use order_queue_redis::{QueueConfig, RedisMode, RedisQueue};

fn cluster_config(cluster: &PrivateCluster, shards: u16) -> QueueConfig {
    QueueConfig {
        mode: RedisMode::Cluster,
        shards,
        stream: format!("test-{}", uuid::Uuid::now_v7().simple()),
        ..QueueConfig::new(cluster.urls())
    }
}

async fn connect(config: QueueConfig) -> RedisQueue {
    RedisQueue::connect(config)
        .await
        .unwrap_or_else(|e| panic!("the private cluster does not answer: {e:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sharded_queue_on_a_cluster_honours_the_payment_queue_contract() {
    let cluster = PrivateCluster::start();
    conformance::payment_queue(|| async {
        let a = connect(QueueConfig {
            consumer: "a".into(),
            ..cluster_config(&cluster, 3)
        })
        .await;
        let b = a.consumer("b");
        (a, b)
    })
    .await;
    // One shard on a cluster too: its keys share a slot, so the script and MULTI work.
    conformance::payment_queue(|| async {
        let a = connect(QueueConfig {
            consumer: "a".into(),
            ..cluster_config(&cluster, 1)
        })
        .await;
        let b = a.consumer("b");
        (a, b)
    })
    .await;
}

#[test]
fn each_shards_keys_share_a_slot_and_the_shards_spread_over_the_masters() {
    let cluster = PrivateCluster::start();
    let shards = order_queue_redis::ShardKeys::all("payment_queue", 6);
    let mut masters = std::collections::HashSet::new();
    for keys in &shards {
        let port = cluster.port_of(&keys.stream);
        assert_eq!(cluster.port_of(&keys.deferred), port, "{keys:?}");
        assert_eq!(cluster.port_of(&keys.dead), port, "{keys:?}");
        masters.insert(port);
    }
    assert_eq!(
        masters.len(),
        3,
        "six shards of payment_queue use every master"
    );
}

type Worker = PaymentProcessor<MemoryOrderRepo, RedisQueue, ApprovingGateway, SystemClock>;

/// `count` placed orders, stored in `repo` and queued on `queue`.
async fn place(repo: &MemoryOrderRepo, queue: &RedisQueue, count: usize) -> Vec<OrderId> {
    let mut ids = Vec::new();
    for i in 0..count {
        let order = placed_order(&format!("cluster-{i}"), chrono::Utc::now());
        repo.insert(&order).await.unwrap();
        order_core::ports::PaymentQueue::enqueue(queue, &order_core::ports::Job::of(&order))
            .await
            .unwrap();
        ids.push(order.id);
    }
    ids
}

/// How many of `ids` are not yet in a terminal status.
async fn unfinished(repo: &MemoryOrderRepo, ids: &[OrderId]) -> usize {
    let mut n = 0;
    for id in ids {
        let order = repo.get(*id).await.unwrap().expect("stored");
        if !order.status.is_terminal() {
            n += 1;
        }
    }
    n
}

/// What the worker role does, in small steps: receive and handle, take over stale jobs,
/// re-queue orders whose jobs were lost. Errors (a cluster node down) are waited out.
async fn work_until_done(
    worker: &Worker,
    repo: &MemoryOrderRepo,
    ids: &[OrderId],
    limit: Duration,
) {
    let start = Instant::now();
    let mut last_reconcile = Instant::now();
    while unfinished(repo, ids).await > 0 {
        assert!(
            start.elapsed() < limit,
            "{} orders still unfinished after {limit:?}",
            unfinished(repo, ids).await
        );
        match worker.receive(32, Duration::from_millis(100)).await {
            Ok(jobs) => {
                for job in jobs {
                    let _ = worker.handle(&job).await;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        if let Ok(jobs) = worker.reclaim(32).await {
            for job in jobs {
                let _ = worker.handle(&job).await;
            }
        }
        if last_reconcile.elapsed() > Duration::from_millis(500) {
            let _ = worker.reconcile(1000).await;
            last_reconcile = Instant::now();
        }
    }
}

fn processor(repo: &Arc<MemoryOrderRepo>, queue: &RedisQueue) -> Worker {
    PaymentProcessor::new(
        repo.clone(),
        Arc::new(queue.clone()),
        Arc::new(ApprovingGateway),
        Arc::new(SystemClock),
        ProcessorConfig {
            reconcile_grace: Duration::from_secs(1),
            lease: Duration::from_secs(2),
            ..ProcessorConfig::new(WorkerId::parse("cluster-worker").unwrap())
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worker_pays_orders_through_a_sharded_queue_on_a_cluster() {
    let cluster = PrivateCluster::start();
    let queue = connect(cluster_config(&cluster, 3)).await;
    let repo = Arc::new(MemoryOrderRepo::new());
    let ids = place(&repo, &queue, 60).await;
    let worker = processor(&repo, &queue);

    let mut outcomes = 0;
    while outcomes < ids.len() {
        let jobs = worker.receive(16, Duration::from_secs(1)).await.unwrap();
        assert!(!jobs.is_empty(), "jobs left after {outcomes} payments");
        for job in jobs {
            assert_eq!(worker.handle(&job).await.unwrap(), Outcome::Confirmed);
            outcomes += 1;
        }
    }
    for id in &ids {
        let order = repo.get(*id).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Confirmed);
    }
    assert!(
        worker.reclaim(100).await.unwrap().is_empty(),
        "every job was acked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_master_is_killed_and_comes_back_empty_every_order_is_paid() {
    let mut cluster = PrivateCluster::start();
    let queue = connect(cluster_config(&cluster, 3)).await;
    let repo = Arc::new(MemoryOrderRepo::new());
    let ids = place(&repo, &queue, 90).await;
    let worker = processor(&repo, &queue);

    // Pay a few, then kill the master holding the first shard (its queued jobs and
    // pending entries die with it) and keep working while the cluster is down.
    let first = worker.receive(10, Duration::from_secs(1)).await.unwrap();
    for job in &first {
        worker.handle(job).await.unwrap();
    }
    let victim = cluster.port_of(&queue.shard_keys()[0].stream);
    cluster.kill(victim);
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(3) {
        if let Ok(jobs) = worker.receive(5, Duration::from_millis(100)).await {
            for job in jobs {
                let _ = worker.handle(&job).await;
            }
        }
    }
    let lost = unfinished(&repo, &ids).await;
    assert!(lost > 0, "the killed master held jobs of unpaid orders");
    let restart = tokio::task::spawn_blocking(move || {
        cluster.restart(victim);
        cluster
    });
    let cluster = restart.await.unwrap();

    work_until_done(&worker, &repo, &ids, Duration::from_secs(60)).await;
    for id in &ids {
        let order = repo.get(*id).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Confirmed, "{id}");
    }
    drop(cluster);
}
