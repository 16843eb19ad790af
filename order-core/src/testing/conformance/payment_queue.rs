//! The [`PaymentQueue`] suite.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;

use crate::ports::{Delivery, Job, PaymentQueue};

/// Checks a [`PaymentQueue`] against its contract. `make` returns two consumers of one
/// fresh, empty queue.
pub async fn payment_queue<Q, F, Fut>(make: F)
where
    Q: PaymentQueue,
    F: Fn() -> Fut,
    Fut: Future<Output = (Q, Q)>,
{
    jobs_go_to_one_consumer_in_order_until_acked(make().await).await;
    jobs_queued_and_acked_in_batches(make().await).await;
    unacked_jobs_are_reclaimed_with_their_count_and_dead_lettered(make().await).await;
    deferred_jobs_come_back_at_their_time(make().await).await;
    receive_waits_for_a_job(make().await).await;
    stats_count_jobs_where_they_are(make().await).await;
    a_jobs_trace_travels_with_every_delivery(make().await).await;
}

/// The `traceparent` of W3C Trace Context's example.
pub fn sample_trace() -> crate::trace::TraceParent {
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .expect("a valid traceparent")
}

async fn a_jobs_trace_travels_with_every_delivery<Q: PaymentQueue>((a, b): (Q, Q)) {
    let short = Duration::from_millis(500);
    let traced = Job {
        order_id: crate::ids::OrderId::new(),
        trace: Some(sample_trace()),
    };
    let plain = Job::untraced(crate::ids::OrderId::new());
    a.enqueue(&traced).await.expect("enqueue");
    a.enqueue(&plain).await.expect("enqueue");
    let got = a.receive(2, short).await.expect("receive");
    let find = |got: &[Delivery], id| {
        got.iter()
            .find(|d| d.order_id == id)
            .map(|d| d.trace)
            .expect("delivered")
    };
    assert_eq!(find(&got, traced.order_id), traced.trace, "received");
    assert_eq!(find(&got, plain.order_id), None, "an untraced job has none");
    let reclaimed = b.reclaim(Duration::ZERO, 10).await.expect("reclaim");
    assert_eq!(find(&reclaimed, traced.order_id), traced.trace, "reclaimed");
    for d in &reclaimed {
        b.defer(d, Utc::now() - chrono::Duration::seconds(1))
            .await
            .expect("defer");
    }
    let mut back = Vec::new();
    for _ in 0..10 {
        back.extend(b.receive(2, short).await.expect("receive"));
        if back.len() == 2 {
            break;
        }
    }
    assert_eq!(
        find(&back, traced.order_id),
        traced.trace,
        "deferred and back"
    );
    assert_eq!(
        find(&back, plain.order_id),
        None,
        "deferred and back, untraced"
    );
    for d in &back {
        b.ack(d).await.expect("ack");
    }
}

async fn stats_count_jobs_where_they_are<Q: PaymentQueue>((queue, _other): (Q, Q)) {
    let empty = queue.stats().await.expect("stats");
    assert_eq!(
        (
            empty.waiting,
            empty.pending,
            empty.deferred,
            empty.dead,
            empty.oldest_age
        ),
        (0, 0, 0, 0, None),
        "a new queue holds nothing"
    );
    for _ in 0..4 {
        queue
            .enqueue(&Job::untraced(crate::ids::OrderId::new()))
            .await
            .expect("enqueue");
    }
    let got = queue
        .receive(2, Duration::from_millis(500))
        .await
        .expect("receive");
    assert_eq!(got.len(), 2);
    queue
        .defer(&got[0], Utc::now() + chrono::Duration::hours(1))
        .await
        .expect("defer");
    queue
        .dead_letter(&got[1], "test")
        .await
        .expect("dead letter");
    let got = queue
        .receive(1, Duration::from_millis(500))
        .await
        .expect("receive");
    assert_eq!(got.len(), 1);
    let stats = queue.stats().await.expect("stats");
    assert_eq!(
        (stats.waiting, stats.pending, stats.deferred, stats.dead),
        (1, 1, 1, 1),
        "one of each: {stats:?}"
    );
    assert!(
        stats
            .oldest_age
            .is_some_and(|age| age < Duration::from_secs(60)),
        "the oldest job's age: {stats:?}"
    );
    queue.ack(&got[0]).await.expect("ack");
    let rest = queue
        .receive(1, Duration::from_millis(500))
        .await
        .expect("receive");
    queue.ack(&rest[0]).await.expect("ack");
    let stats = queue.stats().await.expect("stats");
    assert_eq!(
        (stats.waiting, stats.pending, stats.oldest_age),
        (0, 0, None),
        "settled jobs are gone: {stats:?}"
    );
}

async fn jobs_go_to_one_consumer_in_order_until_acked<Q: PaymentQueue>((a, b): (Q, Q)) {
    let short = Duration::from_millis(50);
    a.ping().await.expect("ping");
    assert!(
        a.receive(10, short).await.expect("receive").is_empty(),
        "a new queue is empty"
    );
    let orders: Vec<_> = (0..3).map(|_| crate::ids::OrderId::new()).collect();
    for id in &orders {
        a.enqueue(&Job::untraced(*id)).await.expect("enqueue");
    }
    let got = a.receive(2, short).await.expect("receive");
    assert_eq!(got.len(), 2, "at most max, as many as there are");
    assert!(got.iter().all(|d| d.deliveries == 1));
    let rest = b.receive(10, short).await.expect("receive");
    let mut all: Vec<_> = got.iter().chain(&rest).map(|d| d.order_id).collect();
    all.sort_unstable();
    let mut expected = orders.clone();
    expected.sort_unstable();
    assert_eq!(all, expected, "each job goes to exactly one consumer");
    assert!(b.receive(10, short).await.expect("receive").is_empty());
    for d in got.iter().chain(&rest) {
        a.ack(d).await.expect("ack");
    }
    a.ack(&got[0]).await.expect("acking twice is fine");
    assert!(
        b.reclaim(Duration::ZERO, 10)
            .await
            .expect("reclaim")
            .is_empty(),
        "acked jobs are gone"
    );
}

async fn jobs_queued_and_acked_in_batches<Q: PaymentQueue>((a, b): (Q, Q)) {
    let short = Duration::from_millis(50);
    let orders: Vec<_> = (0..6).map(|_| crate::ids::OrderId::new()).collect();
    let jobs: Vec<Job> = orders
        .iter()
        .enumerate()
        .map(|(i, id)| Job {
            order_id: *id,
            trace: (i % 2 == 0).then(sample_trace),
        })
        .collect();
    a.enqueue_many(&jobs).await.expect("a batch of jobs");
    a.enqueue_many(&[]).await.expect("an empty batch");
    let mut got = Vec::new();
    for _ in 0..20 {
        if got.len() == orders.len() {
            break;
        }
        got.extend(a.receive(10, short).await.expect("receive"));
    }
    assert_eq!(got.len(), orders.len(), "every job received");
    let mut received: Vec<_> = got.iter().map(|d| (d.order_id, d.trace)).collect();
    received.sort_unstable_by_key(|(id, _)| *id);
    let mut queued: Vec<_> = jobs.iter().map(|j| (j.order_id, j.trace)).collect();
    queued.sort_unstable_by_key(|(id, _)| *id);
    assert_eq!(
        received, queued,
        "a batch queues each job once, with its trace"
    );
    let (acked, left) = got.split_at(4);
    let mut batch = acked.to_vec();
    batch.push(acked[0].clone());
    a.ack_many(&batch)
        .await
        .expect("a batch of acks, one of them twice");
    a.ack_many(&[]).await.expect("an empty batch");
    let mut pending: Vec<_> = b
        .reclaim(Duration::ZERO, 10)
        .await
        .expect("reclaim")
        .into_iter()
        .map(|d| d.order_id)
        .collect();
    pending.sort_unstable();
    let mut want: Vec<_> = left.iter().map(|d| d.order_id).collect();
    want.sort_unstable();
    assert_eq!(pending, want, "the batch acked its jobs and only those");
}

async fn unacked_jobs_are_reclaimed_with_their_count_and_dead_lettered<Q: PaymentQueue>(
    (a, b): (Q, Q),
) {
    let short = Duration::from_millis(50);
    let id = crate::ids::OrderId::new();
    a.enqueue(&Job::untraced(id)).await.expect("enqueue");
    let first = a.receive(1, short).await.expect("receive");
    assert_eq!(first.len(), 1);
    assert!(
        b.reclaim(Duration::from_secs(3600), 10)
            .await
            .expect("reclaim")
            .is_empty(),
        "jobs idle less than min_idle stay with their consumer"
    );
    let taken = b.reclaim(Duration::ZERO, 10).await.expect("reclaim");
    assert_eq!(taken.len(), 1, "an unacked job can be reclaimed");
    assert_eq!((taken[0].order_id, taken[0].deliveries), (id, 2));
    let again = a.reclaim(Duration::ZERO, 10).await.expect("reclaim");
    assert_eq!(again[0].deliveries, 3, "each reclaim counts a delivery");
    a.dead_letter(&again[0], "poison")
        .await
        .expect("dead_letter");
    assert!(
        b.reclaim(Duration::ZERO, 10)
            .await
            .expect("reclaim")
            .is_empty(),
        "dead letters leave the queue"
    );
    assert!(b.receive(10, short).await.expect("receive").is_empty());
}

async fn deferred_jobs_come_back_at_their_time<Q: PaymentQueue>((a, b): (Q, Q)) {
    let short = Duration::from_millis(50);
    let id = crate::ids::OrderId::new();
    a.enqueue(&Job::untraced(id)).await.expect("enqueue");
    let d = a.receive(1, short).await.expect("receive").remove(0);
    a.defer(&d, Utc::now() + chrono::Duration::hours(1))
        .await
        .expect("defer");
    assert!(
        b.receive(10, short).await.expect("receive").is_empty(),
        "deferred jobs wait for their time"
    );
    assert!(
        b.reclaim(Duration::ZERO, 10)
            .await
            .expect("reclaim")
            .is_empty(),
        "deferring acks the job"
    );
    let other = crate::ids::OrderId::new();
    a.enqueue(&Job::untraced(other)).await.expect("enqueue");
    let d = a.receive(1, short).await.expect("receive").remove(0);
    a.defer(&d, Utc::now() - chrono::Duration::seconds(1))
        .await
        .expect("defer");
    let back = b.receive(10, short).await.expect("receive");
    assert_eq!(
        back.len(),
        1,
        "a job deferred to the past is delivered again"
    );
    assert_eq!(
        (back[0].order_id, back[0].deliveries),
        (other, 1),
        "with its count reset"
    );
    b.ack(&back[0]).await.expect("ack");
}

async fn receive_waits_for_a_job<Q: PaymentQueue>((a, b): (Q, Q)) {
    let id = crate::ids::OrderId::new();
    let (got, ()) = tokio::join!(a.receive(1, Duration::from_secs(5)), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.enqueue(&Job::untraced(id)).await.expect("enqueue");
    });
    let got = got.expect("receive");
    assert_eq!(got.len(), 1, "receive waits for a job to arrive");
    assert_eq!(got[0].order_id, id);
}
