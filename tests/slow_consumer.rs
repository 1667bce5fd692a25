//! A subscriber that never reads must not slow anyone else, and costs the broker at
//! most its outbox limit. Its own test binary, so the memory reading is this test's.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, broker, http_get, metric, rss_bytes};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use stompede::codec::{Command, Frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_cut_off_and_others_get_everything() {
    const MESSAGES: usize = 20_000;
    const BODY: usize = 4096;
    let b = broker("[limits]\nmax_outbox_bytes = 1048576");
    let rss_before = rss_bytes();

    // The stalled client: subscribes over raw TCP, then never reads again.
    let mut stalled = TcpStream::connect(b.stomp_addr.unwrap()).await.unwrap();
    stalled
        .write_all(
            b"CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:0\ndestination:/topic/flood\n\n\0",
        )
        .await
        .unwrap();
    let mut fast = Client::ws(&b).await;
    fast.connect().await;
    fast.subscribe("0", "/topic/flood").await;
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    // Make sure the stalled subscription exists before flooding.
    for _ in 0..100 {
        if b.broker.engine.topic_subscribers("/topic/flood") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.broker.engine.topic_subscribers("/topic/flood"), 2);

    // 20,000 × 4 KiB = 80 MiB through the broker, far past the stalled client's
    // socket buffers and its 1 MiB outbox. The publisher stays at most WINDOW
    // messages (256 KiB) ahead of the fast subscriber, which therefore never lags
    // near the limit, while the stalled one falls ever further behind.
    const WINDOW: usize = 64;
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let body = vec![b'f'; BODY];
    let consumer = tokio::spawn(async move {
        let started = Instant::now();
        for i in 0..MESSAGES {
            let m = fast.expect(Command::Message).await;
            assert_eq!(m.body.len(), BODY, "message {i}");
            counter.store(i + 1, Ordering::Release);
        }
        // Hand the client back: it stays connected and subscribed.
        (started.elapsed(), fast)
    });
    for i in 0..MESSAGES {
        let deadline = Instant::now() + Duration::from_secs(10);
        while i >= received.load(Ordering::Acquire) + WINDOW {
            assert!(
                Instant::now() < deadline,
                "fast subscriber stuck at {}",
                received.load(Ordering::Acquire)
            );
            tokio::task::yield_now().await;
        }
        publisher
            .send(
                Frame::new(Command::Send)
                    .header("destination", "/topic/flood")
                    .body(body.clone()),
            )
            .await;
    }
    let (took, mut fast) = tokio::time::timeout(Duration::from_secs(120), consumer)
        .await
        .expect("the fast subscriber was held up")
        .unwrap();
    eprintln!(
        "fast subscriber received {MESSAGES} messages in {took:?} ({:.0} msg/s)",
        MESSAGES as f64 / took.as_secs_f64()
    );

    let (_, text) = http_get(b.http_addr, "/metrics").await;
    assert!(metric(&text, "stompede_slow_consumer_disconnects_total").unwrap() >= 1.0);
    // Its subscription is gone with it.
    for _ in 0..100 {
        if b.broker.engine.topic_subscribers("/topic/flood") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.broker.engine.topic_subscribers("/topic/flood"), 1);
    let grown = rss_bytes().saturating_sub(rss_before);
    eprintln!("RSS grew by {} KiB", grown / 1024);
    // Unbounded, the stalled outbox alone would hold most of the 80 MiB.
    assert!(grown < 40 * 1024 * 1024, "RSS grew by {grown} bytes");
    // The survivor still receives.
    publisher.publish("/topic/flood", "after").await;
    assert_eq!(fast.message_on("/topic/flood").await, "after");
    drop(stalled);
}
