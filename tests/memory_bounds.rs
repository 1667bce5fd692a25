//! What one hostile client can make the broker hold stays bounded (issue 21): each
//! attack measures the process's resident memory while it runs. Its own test
//! binary, and one test at a time (a lock), so each reading is that test's.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, broker};
use std::time::{Duration, Instant};
use stompede::codec::Command;
use tokio::io::AsyncWriteExt;

/// One memory test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `GET /api/stats` as an admin: (status, body).
async fn stats(b: &common::TestBroker) -> (u16, String) {
    let auth = common::basic("root", "root-pw");
    common::http_request(
        b.http_addr,
        "GET",
        "/api/stats",
        &[("Authorization", &auth)],
        b"",
    )
    .await
}

fn rss_mib() -> u64 {
    common::rss_bytes() / (1024 * 1024)
}

// A trader floods un-receipted ACKs of a queue it consumes, for four seconds, as
// fast as the socket takes them. The queue task's commands are bounded: the
// flooding session stops reading while they wait, the process grows less than
// 100 MiB, and meanwhile another queue's work and /api/stats go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_flood_is_held_back_and_others_queue_work_goes_on() {
    let _one = ONE_AT_A_TIME.lock().await;
    let b = broker("");
    let mut trader = Client::tcp(&b).await;
    trader.connect_as("alice", "alice-pw").await;
    trader
        .subscribe_with("a", "/queue/flood", &[("ack", "client-individual")])
        .await;
    let mut svc = Client::tcp(&b).await;
    svc.connect_as("svc", "svc-pw").await;
    svc.publish("/queue/flood", "one").await;
    let m = trader.expect(Command::Message).await;
    let ack = m.headers.get("ack").unwrap().to_owned();
    let before = rss_mib();
    let frame = format!("ACK\nid:{ack}\n\n\0");
    let burst = frame.repeat(65536 / frame.len()).into_bytes();
    // The flood goes on the trader's own connection; nothing reads it meanwhile.
    let mut flooder = trader.into_tcp();
    let flood = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(4);
        let mut sent = 0usize;
        while Instant::now() < until {
            match tokio::time::timeout_at(until.into(), flooder.write_all(&burst)).await {
                Ok(Ok(())) => sent += burst.len(),
                _ => break,
            }
        }
        (sent, flooder)
    });
    // During the flood: another queue's work and the stats answer.
    let mut peak = before;
    let mut rounds = 0;
    let mut worker = Client::tcp(&b).await;
    worker.connect_as("bob", "bob-pw").await;
    worker.subscribe("w", "/queue/other").await;
    while !flood.is_finished() {
        svc.publish("/queue/other", &format!("job {rounds}")).await;
        assert_eq!(
            worker.message_on("/queue/other").await,
            format!("job {rounds}")
        );
        let (status, stats) = stats(&b).await;
        assert_eq!(status, 200, "{stats}");
        assert!(
            stats.contains("\"flood\""),
            "the flooded queue is in the stats: {stats}"
        );
        peak = peak.max(rss_mib());
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (sent, _flooder) = flood.await.unwrap();
    peak = peak.max(rss_mib());
    assert!(
        rounds >= 5,
        "{rounds} rounds of other work during the flood"
    );
    assert!(sent > 1 << 20, "the flood sent {sent} bytes");
    let grown = peak.saturating_sub(before);
    eprintln!("ACK flood: {sent} bytes sent, {rounds} rounds of other work, grew {grown} MiB");
    assert!(
        grown < 100,
        "grew {grown} MiB during the ACK flood ({sent} bytes of ACKs)"
    );
}

// Eight kept destinations flooded with 1000 KiB bodies under
// `history_max_bytes = 64 MiB`: the history holds at most that, and the process
// grows less than history_max_bytes + 100 MiB (the store's channel and cache are
// bounded; they once added +420 MiB that stayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_flood_stays_within_its_byte_bound() {
    let _one = ONE_AT_A_TIME.lock().await;
    let b = broker(
        "[topics]\nhistory = [\"/topic/h.#\"]\nhistory_max_bytes = 67108864\nhistory_max_messages = 10000\n[limits]\nmax_frame_bytes = 1100000",
    );
    let before = rss_mib();
    let mut peak = before;
    let mut publishers = Vec::new();
    for p in 0..2 {
        let mut c = Client::tcp(&b).await;
        c.connect_as("svc", "svc-pw").await;
        publishers.push(tokio::spawn(async move {
            let body = "x".repeat(1000 * 1024);
            for i in 0..150 {
                let destination = format!("/topic/h.d{}", (i + p * 4) % 8);
                c.send(
                    stompede::codec::Frame::new(Command::Send)
                        .header("destination", destination.as_str())
                        .body(body.clone()),
                )
                .await;
            }
            c.publish("/topic/h.d0", "end").await;
        }));
    }
    while publishers.iter().any(|p| !p.is_finished()) {
        peak = peak.max(rss_mib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for p in publishers {
        p.await.unwrap();
    }
    // Let the store catch up, then read again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    peak = peak.max(rss_mib());
    let (status, text) = stats(&b).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let held = v["history"]["bytes"].as_u64().unwrap();
    assert!(held <= 64 << 20, "history holds {held} bytes");
    assert!(
        held > 32 << 20,
        "the flood reached the history: {held} bytes"
    );
    let grown = peak.saturating_sub(before);
    eprintln!(
        "history flood: 300 MB published, history holds {} MiB, grew {grown} MiB",
        held >> 20
    );
    assert!(grown < 64 + 100, "grew {grown} MiB");
}

/// Sends `n` SUBSCRIBEs of `pattern` from the first offset on `c`, ids
/// `{prefix}{i}`, without reading anything.
async fn replay_flood(c: &mut Client, prefix: &str, pattern: &str, n: usize) {
    let mut frames = String::new();
    for i in 0..n {
        frames.push_str(&format!(
            "SUBSCRIBE\nid:{prefix}{i}\ndestination:{pattern}\nx-stream-offset:first\n\n\0"
        ));
    }
    c.send_raw(frames.as_bytes()).await;
}

/// `stompede_errors_sent_total` for `reason`.
async fn errors_sent(b: &common::TestBroker, reason: &str) -> f64 {
    let (_, text) = common::http_get(b.http_addr, "/metrics").await;
    common::metric(
        &text,
        &format!("stompede_errors_sent_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

// 4000 kept destinations of 1 KiB, and two anonymous connections that never read
// asking 1000 times each for all of it from the start: refused at once, naming
// the cap. Two more asking 1000 times each for 200 destinations (under the cap):
// what each replay may hold counts against the connection's subscription bytes,
// so they are refused after a few. The process grows less than 200 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_hold_bounded_memory() {
    let _one = ONE_AT_A_TIME.lock().await;
    let b = broker("[topics]\nhistory = [\"/topic/h.#\"]\nhistory_max_messages = 10");
    let mut publisher = Client::tcp(&b).await;
    publisher.connect_as("svc", "svc-pw").await;
    let body = "k".repeat(1024);
    let mut frames = Vec::new();
    for i in 0..4000 {
        frames.extend_from_slice(
            format!("SEND\ndestination:/topic/h.g{}.d{i}\n\n{body}\0", i % 20).as_bytes(),
        );
    }
    publisher.send_raw(&frames).await;
    publisher.publish("/topic/h.g0.d0", "fence").await;
    // One such SUBSCRIBE is refused, naming the cap.
    let mut probe = Client::tcp(&b).await;
    probe.connect_anonymously().await;
    probe
        .send(
            stompede::codec::Frame::new(Command::Subscribe)
                .header("id", "w")
                .header("destination", "/topic/h.#")
                .header("x-stream-offset", "first"),
        )
        .await;
    probe
        .expect_error(
            "would cover 4000 kept destinations; at most 256 (topics.max_replay_destinations)",
        )
        .await;
    let (wide_before, bytes_before) = (
        errors_sent(&b, "replay_too_wide").await,
        errors_sent(&b, "too_many_subscriptions").await,
    );
    let before = rss_mib();
    let mut wide = Vec::new();
    let mut narrow = Vec::new();
    for _ in 0..2 {
        let mut c = Client::tcp(&b).await;
        c.connect_anonymously().await;
        replay_flood(&mut c, "w", "/topic/h.#", 1000).await;
        wide.push(c);
        let mut c = Client::tcp(&b).await;
        c.connect_anonymously().await;
        replay_flood(&mut c, "n", "/topic/h.g1.*", 1000).await;
        narrow.push(c);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = rss_mib().saturating_sub(before);
    // Each flooding connection was refused (its ERROR may be lost to the reset
    // of a socket closed with unread input: counted instead).
    assert_eq!(errors_sent(&b, "replay_too_wide").await - wide_before, 2.0);
    assert_eq!(
        errors_sent(&b, "too_many_subscriptions").await - bytes_before,
        2.0
    );
    drop((wide, narrow));
    eprintln!("replay flood: grew {grown} MiB");
    assert!(grown < 200, "grew {grown} MiB");
    // Someone asking for what fits gets it.
    let mut modest = Client::tcp(&b).await;
    modest.connect_anonymously().await;
    modest
        .subscribe_with("m", "/topic/h.g0.d0", &[("x-stream-offset", "first")])
        .await;
    let m = modest.expect(Command::Message).await;
    assert_eq!(m.body.len(), 1024);
}
