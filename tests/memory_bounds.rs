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
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024
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
