//! Durable queues: what `queues.durable` and `persistent: true` messages survive
//! (a clean restart; `tests/crash.rs` covers `kill -9`), what they do not, and
//! that the store does not grow as messages pass through.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, TestBroker, broker};
use std::time::Duration;
use stompede::codec::{Command, Frame};

/// A broker whose store lives in `store` (so a second broker can reopen it).
fn broker_on(store: &std::path::Path, extra: &str) -> TestBroker {
    broker(&format!(
        "[store]\npath = {:?}\n[queues]\ndurable = [\"/queue/orders.*\"]\nmax_redeliveries = 1\n{extra}",
        store.display().to_string()
    ))
}

async fn restart(b: TestBroker, store: &std::path::Path) -> TestBroker {
    assert!(b.shutdown(Duration::from_secs(5)).await);
    drop(b);
    broker_on(store, "")
}

/// A connected client (logged in as the test service) for sending.
async fn producer(b: &TestBroker) -> Client {
    let mut c = Client::tcp(b).await;
    c.connect().await;
    c
}

async fn consumer(b: &TestBroker, queue: &str, ack: &str) -> Client {
    let mut c = Client::tcp(b).await;
    c.connect().await;
    c.subscribe_with("s", queue, &[("ack", ack)]).await;
    c
}

async fn ack(c: &mut Client, command: Command, m: &Frame) {
    c.send(
        Frame::new(command)
            .header("id", m.headers.get("ack").unwrap())
            .header("receipt", "acked"),
    )
    .await;
    c.expect_receipt_keeping_messages("acked").await;
}

fn body(m: &Frame) -> String {
    String::from_utf8(m.body.to_vec()).unwrap()
}

#[tokio::test]
async fn durable_queue_messages_survive_a_restart_and_acked_ones_do_not() {
    let store = tempfile::tempdir().unwrap();
    let b = broker_on(store.path(), "");
    let mut p = producer(&b).await;
    for i in 0..5 {
        p.send(
            Frame::new(Command::Send)
                .header("destination", "/queue/orders.eu")
                .header("receipt", format!("r{i}"))
                .header("order-id", format!("o-{i}"))
                .body(format!("order {i}")),
        )
        .await;
        p.expect(Command::Receipt).await;
    }
    // Not durable: no pattern matches and it was not sent persistent.
    p.publish("/queue/scratch", "transient").await;
    let mut c = consumer(&b, "/queue/orders.eu", "client-individual").await;
    let m0 = c.expect(Command::Message).await;
    let m1 = c.expect(Command::Message).await;
    ack(&mut c, Command::Ack, &m0).await;
    ack(&mut c, Command::Ack, &m1).await;
    // m2 is delivered but not acked when the broker stops.
    let m2 = c.expect(Command::Message).await;
    assert_eq!(body(&m2), "order 2");
    drop((c, p));

    let b = restart(b, store.path()).await;
    let mut c = consumer(&b, "/queue/orders.eu", "auto").await;
    let mut got = Vec::new();
    for _ in 2..5 {
        let m = c.expect(Command::Message).await;
        assert_eq!(m.headers.get("redelivered"), Some("true"), "{m:?}");
        got.push((body(&m), m.headers.get("order-id").unwrap().to_owned()));
    }
    assert_eq!(
        got,
        [2, 3, 4].map(|i| (format!("order {i}"), format!("o-{i}")))
    );
    // Nothing else waits on orders.eu: a new message is next. And the transient
    // message on scratch is gone: a new one is the first thing there.
    let mut p = producer(&b).await;
    p.publish("/queue/orders.eu", "after restart").await;
    assert_eq!(body(&c.expect(Command::Message).await), "after restart");
    p.publish("/queue/scratch", "fresh").await;
    let mut s = consumer(&b, "/queue/scratch", "auto").await;
    assert_eq!(body(&s.expect(Command::Message).await), "fresh");
}

#[tokio::test]
async fn persistent_header_makes_one_message_durable_on_any_queue() {
    let store = tempfile::tempdir().unwrap();
    let b = broker_on(store.path(), "");
    let mut p = producer(&b).await;
    p.publish("/queue/jobs", "transient").await;
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/jobs")
            .header("persistent", "true")
            .header("receipt", "kept")
            .body("kept"),
    )
    .await;
    p.expect(Command::Receipt).await;
    drop(p);
    let b = restart(b, store.path()).await;
    let mut c = consumer(&b, "/queue/jobs", "auto").await;
    let m = c.expect(Command::Message).await;
    assert_eq!(body(&m), "kept");
    assert_eq!(m.headers.get("persistent"), Some("true"));
    let mut p = producer(&b).await;
    p.publish("/queue/jobs", "next").await;
    assert_eq!(body(&c.expect(Command::Message).await), "next");
}

#[tokio::test]
async fn a_dead_lettered_durable_message_is_stored_in_its_dlq() {
    let store = tempfile::tempdir().unwrap();
    let b = broker_on(store.path(), "");
    let mut p = producer(&b).await;
    p.publish("/queue/orders.bad", "poison").await;
    let mut c = consumer(&b, "/queue/orders.bad", "client-individual").await;
    // max_redeliveries = 1: the second NACK dead-letters it.
    for _ in 0..2 {
        let m = c.expect(Command::Message).await;
        ack(&mut c, Command::Nack, &m).await;
    }
    // Once the DLQ holds it (a consumer sees it there), restart.
    let mut d = consumer(&b, "/queue/orders.bad.dlq", "client-individual").await;
    let m = d.expect(Command::Message).await;
    assert_eq!(body(&m), "poison");
    drop((c, d, p));
    let b = restart(b, store.path()).await;
    let mut d = consumer(&b, "/queue/orders.bad.dlq", "auto").await;
    let m = d.expect(Command::Message).await;
    assert_eq!(body(&m), "poison");
    assert_eq!(
        m.headers.get("original-destination"),
        Some("/queue/orders.bad")
    );
    // The original is gone from its queue: a new message is the first there.
    let mut p = producer(&b).await;
    p.publish("/queue/orders.bad", "next").await;
    let mut c = consumer(&b, "/queue/orders.bad", "auto").await;
    assert_eq!(body(&c.expect(Command::Message).await), "next");
}

#[tokio::test]
async fn an_expired_message_is_not_delivered_after_a_restart() {
    let store = tempfile::tempdir().unwrap();
    let b = broker_on(store.path(), "");
    let mut p = producer(&b).await;
    for (name, ttl) in [("short", "200"), ("long", "600000")] {
        p.send(
            Frame::new(Command::Send)
                .header("destination", "/queue/orders.ttl")
                .header("ttl", ttl)
                .header("receipt", name)
                .body(name),
        )
        .await;
        p.expect(Command::Receipt).await;
    }
    drop(p);
    let b = restart(b, store.path()).await;
    // The ttl counts from the SEND, not from the restart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = consumer(&b, "/queue/orders.ttl", "auto").await;
    assert_eq!(body(&c.expect(Command::Message).await), "long");
}

#[tokio::test]
async fn the_store_does_not_grow_as_messages_pass_through() {
    let b = broker("[queues]\ndurable = [\"/queue/orders.*\"]\n");
    let file = b.broker.config.store.path.join("queues.redb");
    let mut p = producer(&b).await;
    let mut c = consumer(&b, "/queue/orders.flow", "client").await;
    let payload = "x".repeat(4096);
    let mut sizes = Vec::new();
    // 40 rounds of 200 stored 4 KiB messages: 32 MiB pass through.
    for round in 0..40 {
        for i in 0..200 {
            p.send(
                Frame::new(Command::Send)
                    .header("destination", "/queue/orders.flow")
                    .header("receipt", format!("{round}-{i}"))
                    .body(payload.clone()),
            )
            .await;
        }
        for _ in 0..200 {
            p.expect(Command::Receipt).await;
        }
        for i in 0..200 {
            let m = c.expect(Command::Message).await;
            // `client` acks are cumulative: one ACK per prefetch window (100).
            if i % 100 == 99 {
                ack(&mut c, Command::Ack, &m).await;
            }
        }
        sizes.push(std::fs::metadata(&file).unwrap().len());
    }
    // A round holds 800 KiB; freed pages are reused, so the file stays near the
    // size of one round instead of growing with each.
    let (early, last) = (sizes[4], sizes[39]);
    assert!(
        last <= early.max(4 << 20),
        "store grew from {early} to {last} bytes: {sizes:?}"
    );
}

#[tokio::test]
async fn a_second_broker_cannot_open_the_same_store() {
    let store = tempfile::tempdir().unwrap();
    let _first = broker_on(store.path(), "");
    let toml = format!(
        "[server]\nhttp_addr = \"127.0.0.1:0\"\nstomp_addr = \"\"\n[store]\npath = {:?}\n",
        store.path().display().to_string()
    );
    let config = stompede::config::Config::from_toml(&toml).unwrap();
    let error = stompede::server::start(config).unwrap_err().to_string();
    assert!(error.contains("store.path"), "{error}");
    assert!(error.contains("in use"), "{error}");
}

#[tokio::test]
async fn a_committed_transaction_survives_a_restart_and_an_aborted_one_never_does() {
    let store = tempfile::tempdir().unwrap();
    let b = broker_on(store.path(), "");
    let mut p = producer(&b).await;
    for tx in ["keep", "drop"] {
        p.send(Frame::new(Command::Begin).header("transaction", tx))
            .await;
        for i in 0..2 {
            p.send(
                Frame::new(Command::Send)
                    .header("destination", "/queue/orders.tx")
                    .header("transaction", tx)
                    .body(format!("{tx} {i}")),
            )
            .await;
        }
    }
    p.send(Frame::new(Command::Abort).header("transaction", "drop"))
        .await;
    p.send(
        Frame::new(Command::Commit)
            .header("transaction", "keep")
            .header("receipt", "committed"),
    )
    .await;
    p.expect(Command::Receipt).await;
    drop(p);
    let b = restart(b, store.path()).await;
    let mut c = consumer(&b, "/queue/orders.tx", "auto").await;
    assert_eq!(body(&c.expect(Command::Message).await), "keep 0");
    assert_eq!(body(&c.expect(Command::Message).await), "keep 1");
    let mut p = producer(&b).await;
    p.publish("/queue/orders.tx", "next").await;
    assert_eq!(body(&c.expect(Command::Message).await), "next");
}
