//! `kill -9` in the middle of a durable queue's traffic: producers send receipted
//! messages while a consumer acks slowly; the broker process is killed with
//! SIGKILL and started again on the same store. Every message whose SEND was
//! receipted and that was not acked must be delivered after the restart; none whose
//! ACK was receipted may be. (An ACK sent but not yet receipted at the kill may have
//! taken effect or not: either is right.)

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{BrokerProcess, Client, TIMEOUT};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stompede::codec::{Command, Frame};

const QUEUE: &str = "/queue/crash";
const PRODUCERS: usize = 4;
/// Messages per producer: more than get sent before the kill.
const PER_PRODUCER: usize = 50_000;
/// SENDs a producer has in flight before it waits for receipts: enough that the
/// store always has a group commit under way when the kill comes.
const WINDOW: usize = 64;

type Seen = Arc<Mutex<HashSet<String>>>;

/// Sends `PER_PRODUCER` messages (body = receipt id) with a window of receipts;
/// records each receipted body. Ends when the broker goes away.
async fn produce(addr: SocketAddr, n: usize, receipted: Seen) {
    let mut c = Client::tcp_at(addr).await;
    c.connect().await;
    let mut in_flight = 0;
    for i in 0..PER_PRODUCER {
        let body = format!("p{n}-{i}");
        let frame = Frame::new(Command::Send)
            .header("destination", QUEUE)
            .header("receipt", body.as_str())
            .body(body.clone());
        if !c.try_send(frame).await {
            return;
        }
        in_flight += 1;
        while in_flight >= WINDOW {
            let Some(f) = c.next_frame().await else {
                return;
            };
            assert_eq!(f.command, Command::Receipt, "{f:?}");
            receipted
                .lock()
                .unwrap()
                .insert(f.headers.get("receipt-id").unwrap().to_owned());
            in_flight -= 1;
        }
    }
}

/// Acks each message (with a receipt) a little after it arrives; records each
/// body it sent an ACK for, and each whose ACK was receipted. Ends when the broker
/// goes away.
async fn consume_slowly(addr: SocketAddr, ack_sent: Seen, acked: Seen) {
    let mut c = Client::tcp_at(addr).await;
    c.connect().await;
    let window = [("ack", "client-individual"), ("prefetch-count", "20")];
    c.subscribe_with("slow", QUEUE, &window).await;
    while let Some(f) = c.next_frame().await {
        match f.command {
            Command::Message => {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let body = String::from_utf8(f.body.to_vec()).unwrap();
                let ack = Frame::new(Command::Ack)
                    .header("id", f.headers.get("ack").unwrap())
                    .header("receipt", body.as_str());
                ack_sent.lock().unwrap().insert(body);
                if !c.try_send(ack).await {
                    return;
                }
            }
            Command::Receipt => {
                let body = f.headers.get("receipt-id").unwrap().to_owned();
                acked.lock().unwrap().insert(body);
            }
            other => panic!("unexpected {other}: {f:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_receipted_message_and_revives_no_acked_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store_env = store.to_str().unwrap();
    let env = [
        ("STOMPEDE__STORE__PATH", store_env),
        ("STOMPEDE__QUEUES__DURABLE", QUEUE),
    ];
    let mut broker = BrokerProcess::start(dir.path(), "", &env);
    let addr = broker.stomp_addr;
    let receipted: Seen = Arc::default();
    let ack_sent: Seen = Arc::default();
    let acked: Seen = Arc::default();
    let consumer = tokio::spawn(consume_slowly(addr, ack_sent.clone(), acked.clone()));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|n| tokio::spawn(produce(addr, n, receipted.clone())))
        .collect();

    // Kill once a fair amount is stored and acked, while both are still going.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (r, a) = (receipted.lock().unwrap().len(), acked.lock().unwrap().len());
        if r >= 1000 && a >= 100 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "too slow: {r} receipted, {a} acked"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    broker.kill_9();
    for p in producers {
        tokio::time::timeout(TIMEOUT, p).await.unwrap().unwrap();
    }
    tokio::time::timeout(TIMEOUT, consumer)
        .await
        .unwrap()
        .unwrap();
    let receipted = receipted.lock().unwrap().clone();
    let acked = acked.lock().unwrap().clone();
    let ack_sent = ack_sent.lock().unwrap().clone();
    assert!(
        receipted.len() < PRODUCERS * PER_PRODUCER,
        "the kill came after the producers had finished"
    );
    let owed: HashSet<&String> = receipted.difference(&ack_sent).collect();
    assert!(!owed.is_empty());

    let broker = BrokerProcess::start(dir.path(), "", &env);
    let mut c = Client::tcp_at(broker.stomp_addr).await;
    c.connect().await;
    c.subscribe("after", QUEUE).await;
    // Recovered messages wait ahead of anything new: once this marker arrives,
    // everything recovered has been delivered.
    let mut p = Client::tcp_at(broker.stomp_addr).await;
    p.connect().await;
    p.publish(QUEUE, "marker").await;
    let mut delivered = HashSet::new();
    loop {
        let m = c.expect(Command::Message).await;
        let body = String::from_utf8(m.body.to_vec()).unwrap();
        if body == "marker" {
            break;
        }
        assert_eq!(m.headers.get("redelivered"), Some("true"), "{m:?}");
        assert!(delivered.insert(body.clone()), "{body} delivered twice");
    }
    let lost: Vec<_> = owed.iter().filter(|b| !delivered.contains(**b)).collect();
    assert!(
        lost.is_empty(),
        "{} receipted, unacked messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let revived: Vec<_> = delivered.iter().filter(|b| acked.contains(*b)).collect();
    assert!(revived.is_empty(), "acked messages came back: {revived:?}");
    eprintln!(
        "{} receipted, {} acked ({} more ACKs unanswered), {} owed, {} delivered after the restart",
        receipted.len(),
        acked.len(),
        ack_sent.len() - acked.len(),
        owed.len(),
        delivered.len()
    );
}
