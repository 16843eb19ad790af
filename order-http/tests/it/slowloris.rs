//! Slow clients cannot stop the service for others: 1,250 connections that trickle their
//! bodies or their headers, or send nothing, hold no in-flight permit, are cut off when their time is up
//! (`408` for a body, a closed connection for a head), and meanwhile a normal client is
//! answered within a second. Attacked as a client would: real sockets, one byte at a time.

use std::time::{Duration, Instant};

use order_http::testing::{Backend, TestApp, sample_json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Slow clients that trickle a body: more than the 1,024 requests a process serves at once.
const SLOW_BODIES: usize = 1_100;
/// Slow clients that trickle a head.
const SLOW_HEADS: usize = 100;
/// Clients that connect and send nothing.
const SILENT: usize = 50;

/// What a slow client sends: the whole head and then a body a byte at a time, or a head
/// a byte at a time.
#[derive(Clone, Copy)]
enum Slow {
    Body,
    Head,
    Silent,
}

/// Trickles one byte every 200 ms on `stream` until the server hangs up; returns what the
/// server answered, if anything, and how long the connection lasted.
async fn trickle(mut stream: TcpStream, slow: Slow) -> (String, Duration) {
    let connected = Instant::now();
    let head = "POST /api/v1/orders HTTP/1.1\r\nHost: orders\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
    let (opening, drip): (&[u8], &[u8]) = match slow {
        Slow::Body => (head.as_bytes(), b" "),
        Slow::Head => (b"P", b"X"),
        Slow::Silent => (b"", b""),
    };
    let _ = stream.write_all(opening).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if stream.write_all(drip).await.is_err() {
                    break;
                }
            }
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        connected.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_hold_nothing_a_normal_client_needs() {
    let app = TestApp::spawn(
        Backend::Memory,
        &[
            ("HTTP_HEADER_TIMEOUT_SECONDS", "5"),
            ("HTTP_BODY_TIMEOUT_SECONDS", "5"),
        ],
    )
    .await;
    let addr: std::net::SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("a socket address");
    // Connected one after another (a burst beyond the listen backlog would only measure
    // the kernel's SYN retries), then all trickling at once.
    let mut attackers = Vec::new();
    for i in 0..SLOW_BODIES + SLOW_HEADS + SILENT {
        let slow = match i {
            _ if i < SLOW_BODIES => Slow::Body,
            _ if i < SLOW_BODIES + SLOW_HEADS => Slow::Head,
            _ => Slow::Silent,
        };
        let stream = TcpStream::connect(addr).await.expect("a connection");
        attackers.push(tokio::spawn(trickle(stream, slow)));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let normal = reqwest::Client::new();
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let sent = Instant::now();
        let response = normal
            .post(app.url("/api/v1/orders"))
            .json(&sample_json("normal"))
            .send()
            .await
            .expect("the normal client is answered");
        latencies.push(sent.elapsed());
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
    }
    let worst = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "a normal client's order under {SLOW_BODIES} slow bodies, {SLOW_HEADS} slow heads and {SILENT} silent connections: worst of 5 {worst:?} ({latencies:?})"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a normal client waited {worst:?}: {latencies:?}"
    );

    // Each is cut off (the server closes the connection; a trickler that writes again
    // after the `408` may see a reset rather than the answer).
    for (i, attacker) in attackers.into_iter().enumerate() {
        let (_, lasted) = tokio::time::timeout(Duration::from_secs(30), attacker)
            .await
            .expect("every slow client is cut off")
            .expect("no panic");
        assert!(
            lasted < Duration::from_secs(12),
            "slow client {i} lasted {lasted:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_when_its_time_is_up() {
    let app = TestApp::spawn(Backend::Memory, &[("HTTP_BODY_TIMEOUT_SECONDS", "1")]).await;
    let addr: std::net::SocketAddr = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("a socket address");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /api/v1/orders HTTP/1.1\r\nHost: orders\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"customer_id\"")
        .await
        .unwrap();
    let sent = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let waited = sent.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&waited),
        "answered after {waited:?}"
    );
    // Nothing of it was taken: the store has no order.
    let listed = app
        .client
        .list(&order_api::ListOrdersQuery::default())
        .await
        .unwrap();
    assert_eq!(listed.total, 0);
    app.stop().await;
}
