use super::*;

fn queue(ceiling: usize) -> Arc<AdmissionQueue> {
    Arc::new(AdmissionQueue::new(AdmissionConfig::new(
        ceiling,
        Duration::from_millis(5),
    )))
}

#[tokio::test]
async fn beyond_the_limit_requests_wait_their_turn_first_come_first_served() {
    let q = queue(1000);
    let limit = q.limit();
    let held: Vec<_> = futures::future::join_all((0..limit).map(|_| q.acquire()))
        .await
        .into_iter()
        .map(|p| p.expect("a free place"))
        .collect();
    assert_eq!(q.in_flight(), limit);
    let (first, second) = (q.clone(), q.clone());
    let order = Arc::new(Mutex::new(Vec::new()));
    let (o1, o2) = (order.clone(), order.clone());
    let a = tokio::spawn(async move {
        let p = first.acquire().await.expect("its turn");
        o1.lock().unwrap().push(1);
        p
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b = tokio::spawn(async move {
        let p = second.acquire().await.expect("its turn");
        o2.lock().unwrap().push(2);
        p
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(q.waiting(), 2);
    drop(held);
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(*order.lock().unwrap(), [1, 2]);
    drop((a, b));
    assert_eq!(
        (q.in_flight(), q.waiting()),
        (0, 0),
        "every place given back"
    );
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_a_waiter_that_gives_up_loses_nothing() {
    let q = queue(12);
    let mut held = Vec::new();
    while q.in_flight() < q.limit() {
        held.push(q.acquire().await.unwrap());
    }
    let waiters: Vec<_> = (0..12 - held.len())
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move { q.acquire().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let refused = q
        .acquire()
        .await
        .expect_err("executing and waiting fill the ceiling");
    assert!(refused.retry_after >= 1);
    for waiter in &waiters {
        waiter.abort();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(held);
    assert_eq!(q.in_flight(), 0, "aborted waiters hold no place");
    assert!(q.acquire().await.is_ok());
}

/// A service of `capacity` requests at once, each taking `service` (more at once wait
/// inside it, as on a pool).
async fn serve(inside: &tokio::sync::Semaphore, service: Duration) {
    let _slot = inside.acquire().await.unwrap();
    tokio::time::sleep(service).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_far_above_the_limit_is_never_refused() {
    // 1,000 clients, within three quarters of the default ceiling.
    let q = queue(2048);
    let inside = Arc::new(tokio::sync::Semaphore::new(16));
    let deadline = Instant::now() + Duration::from_secs(2);
    let clients: Vec<_> = (0..1000)
        .map(|_| {
            let (q, inside) = (q.clone(), inside.clone());
            tokio::spawn(async move {
                let (mut served, mut refused) = (0u32, 0u32);
                while Instant::now() < deadline {
                    match q.acquire().await {
                        Ok(permit) => {
                            serve(&inside, Duration::from_millis(2)).await;
                            drop(permit);
                            served += 1;
                        }
                        Err(_) => refused += 1,
                    }
                }
                (served, refused)
            })
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for client in clients {
        let (s, r) = client.await.unwrap();
        served += s;
        refused += r;
    }
    assert_eq!(
        refused, 0,
        "a standing queue is no overload ({served} served)"
    );
    assert!(served > 1000, "{served}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_load_beyond_capacity_is_refused_and_what_is_accepted_waits_little() {
    let q = queue(1024);
    let inside = Arc::new(tokio::sync::Semaphore::new(8));
    // Capacity: 8 at once, 4 ms each (a little more, as the timer rounds): about 2,000/s.
    // Offered: 8,000/s for 2 s.
    let waits = Arc::new(Mutex::new(Vec::new()));
    let served = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let refused = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    let start = Instant::now();
    // Once the limit found the knee: after the first half second. What is served from then
    // on counts (whenever it was let in), against what the service could do meanwhile.
    let settled = start + Duration::from_millis(500);
    for i in 0..16_000u32 {
        let due = start + Duration::from_micros(u64::from(i) * 125);
        tokio::time::sleep_until(due.into()).await;
        let (q, inside, waits) = (q.clone(), inside.clone(), waits.clone());
        let (served, refused) = (served.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let asked = Instant::now();
            match q.acquire().await {
                Ok(permit) => {
                    let waited = asked.elapsed();
                    serve(&inside, Duration::from_millis(4)).await;
                    drop(permit);
                    if asked > settled {
                        waits.lock().unwrap().push(waited);
                    }
                    if Instant::now() > settled {
                        served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    let offered_for = start.elapsed();
    futures::future::join_all(tasks).await;
    // What the service could do meanwhile, measured: 8 at once for as long as it ran.
    let busy_for = start.elapsed().saturating_sub(Duration::from_millis(500));
    let mut waits = waits.lock().unwrap().clone();
    waits.sort();
    let (served, refused) = (
        served.load(std::sync::atomic::Ordering::Relaxed),
        refused.load(std::sync::atomic::Ordering::Relaxed),
    );
    let ceiling = busy_for.as_secs_f64() * 8.0 / 0.004;
    println!(
        "offered for {offered_for:?}; served {served} after the first 0.5 s (at most {ceiling:.0} \
         at 4 ms each), refused {refused}"
    );
    assert!(refused > 7_000, "most of 4x capacity is refused: {refused}");
    assert!(
        f64::from(served) > 0.7 * ceiling,
        "about capacity's worth is served: {served} of at most {ceiling:.0}"
    );
    let p99 = waits[waits.len() * 99 / 100];
    assert!(
        p99 < Duration::from_millis(50),
        "accepted requests wait little: p99 {p99:?}"
    );
}
