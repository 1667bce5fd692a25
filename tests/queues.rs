//! Point-to-point queues: one consumer per message, round-robin, waiting messages,
//! ack modes, prefetch, redelivery, NACK and the dead-letter queue, limits.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, broker};
use std::collections::HashSet;
use stompede::codec::{Command, Frame};

async fn consumer(
    b: &stompede::server::RunningBroker,
    queue: &str,
    ack: &str,
    prefetch: Option<&str>,
) -> Client {
    let mut c = Client::tcp(b).await;
    c.connect().await;
    let mut headers = vec![("ack", ack)];
    headers.extend(prefetch.map(|p| ("prefetch-count", p)));
    c.subscribe_with("q", queue, &headers).await;
    c
}

async fn ack(c: &mut Client, command: Command, message: &Frame) {
    let id = message.headers.get("ack").unwrap();
    c.send(
        Frame::new(command)
            .header("id", id)
            .header("receipt", "acked"),
    )
    .await;
    c.expect_receipt_keeping_messages("acked").await;
}

#[tokio::test]
async fn each_message_goes_to_exactly_one_consumer_round_robin() {
    let b = broker("");
    let mut a = consumer(&b, "/queue/jobs", "auto", None).await;
    let mut c = consumer(&b, "/queue/jobs", "auto", None).await;
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    for i in 0..20 {
        p.publish("/queue/jobs", &format!("job {i}")).await;
    }
    let mut seen = HashSet::new();
    for client in [&mut a, &mut c] {
        for _ in 0..10 {
            let m = client.expect(Command::Message).await;
            assert_eq!(m.headers.get("destination"), Some("/queue/jobs"));
            assert!(
                seen.insert(String::from_utf8(m.body.to_vec()).unwrap()),
                "duplicate"
            );
        }
    }
    assert_eq!(seen.len(), 20, "none lost");
}

#[tokio::test]
async fn messages_wait_for_a_consumer_in_order() {
    let b = broker("");
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    for i in 0..3 {
        p.publish("/queue/later", &format!("m{i}")).await;
    }
    let mut c = consumer(&b, "/queue/later", "auto", None).await;
    for i in 0..3 {
        assert_eq!(c.message_on("/queue/later").await, format!("m{i}"));
    }
}

#[tokio::test]
async fn prefetch_limits_unacked_deliveries_until_an_ack() {
    let b = broker("");
    let mut c = consumer(&b, "/queue/pf", "client-individual", Some("2")).await;
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    for i in 0..3 {
        p.publish("/queue/pf", &format!("m{i}")).await;
    }
    let m0 = c.expect(Command::Message).await;
    let m1 = c.expect(Command::Message).await;
    assert_eq!((&m0.body[..], &m1.body[..]), (&b"m0"[..], &b"m1"[..]));
    // The window was full, so m2 comes only after this ACK (before or after its
    // receipt).
    ack(&mut c, Command::Ack, &m0).await;
    let m2 = c.expect(Command::Message).await;
    assert_eq!(&m2.body[..], b"m2");
    assert!(m2.headers.get("ack").is_some());
}

#[tokio::test]
async fn unacked_messages_are_redelivered_when_their_consumer_goes() {
    let b = broker("");
    let mut first = consumer(&b, "/queue/r", "client", Some("10")).await;
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    for i in 0..3 {
        p.publish("/queue/r", &format!("m{i}")).await;
    }
    let m0 = first.expect(Command::Message).await;
    let m1 = first.expect(Command::Message).await;
    let _m2 = first.expect(Command::Message).await;
    // `client` acks are cumulative: acking m1 acks m0 too.
    ack(&mut first, Command::Ack, &m1).await;
    assert_eq!(&m0.body[..], b"m0");
    drop(first);
    let mut second = consumer(&b, "/queue/r", "client", None).await;
    let m = second.expect(Command::Message).await;
    assert_eq!(&m.body[..], b"m2");
    assert_eq!(m.headers.get("redelivered"), Some("true"));
    // Only m2 came back: the next message is a new one.
    p.publish("/queue/r", "m3").await;
    let next = second.expect(Command::Message).await;
    assert_eq!(
        (&next.body[..], next.headers.get("redelivered")),
        (&b"m3"[..], None)
    );
}

#[tokio::test]
async fn nacked_messages_are_redelivered_then_dead_lettered() {
    let b = broker("[queues]\nmax_redeliveries = 1");
    let mut c = consumer(&b, "/queue/n", "client-individual", None).await;
    let mut dlq = consumer(&b, "/queue/n.dlq", "auto", None).await;
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    p.publish("/queue/n", "poison").await;
    let first = c.expect(Command::Message).await;
    ack(&mut c, Command::Nack, &first).await;
    let again = c.expect(Command::Message).await;
    assert_eq!(
        (&again.body[..], again.headers.get("redelivered")),
        (&b"poison"[..], Some("true"))
    );
    ack(&mut c, Command::Nack, &again).await;
    let dead = dlq.expect(Command::Message).await;
    assert_eq!(&dead.body[..], b"poison");
    assert_eq!(dead.headers.get("original-destination"), Some("/queue/n"));
    assert!(
        dead.headers
            .get("dlq-reason")
            .unwrap()
            .contains("nacked 2 times")
    );
    let (_, text) = common::http_get(b.http_addr, "/metrics").await;
    let at_least = |key: &str, min: f64| {
        let v = common::metric(&text, key).unwrap_or_else(|| panic!("{key} missing"));
        assert!(v >= min, "{key} = {v}");
    };
    at_least("stompede_messages_redelivered_total", 1.0);
    at_least("stompede_messages_dead_lettered_total", 1.0);
    at_least("stompede_queues", 2.0);
    assert!(text.contains("stompede_queue_messages"));
    assert!(!text.contains("/queue/n"), "no queue names in labels");
}

#[tokio::test]
async fn a_full_queue_refuses_with_an_error() {
    let b = broker("[queues]\nmax_depth = 2");
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    p.publish("/queue/small", "1").await;
    p.publish("/queue/small", "2").await;
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/small")
            .header("receipt", "r")
            .body("3"),
    )
    .await;
    let e = p.expect_error("queue /queue/small is full").await;
    assert_eq!(e.headers.get("receipt-id"), Some("r"));
    // The two accepted messages are still there.
    let mut c = consumer(&b, "/queue/small", "auto", None).await;
    assert_eq!(c.message_on("/queue/small").await, "1");
    assert_eq!(c.message_on("/queue/small").await, "2");
}

#[tokio::test]
async fn bad_prefetch_and_trader_sends_are_refused() {
    let b = broker("");
    let mut c = Client::tcp(&b).await;
    c.connect().await;
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "1")
            .header("destination", "/queue/x")
            .header("prefetch-count", "0"),
    )
    .await;
    c.expect_error("invalid prefetch-count").await;
    let mut t = Client::tcp(&b).await;
    t.connect_as("alice", "alice-pw").await;
    t.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/x")
            .body("x"),
    )
    .await;
    t.expect_error("not allowed to SEND to /queue/x").await;
}

#[tokio::test]
async fn expired_messages_are_dropped_and_counted() {
    let b = broker("");
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    let past = "1000"; // 1970: long expired
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/stale")
            .header("expires", past)
            .header("receipt", "a")
            .body("old"),
    )
    .await;
    p.expect(Command::Receipt).await;
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/stale")
            .header("ttl", "100")
            .header("receipt", "b")
            .body("brief"),
    )
    .await;
    p.expect(Command::Receipt).await;
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/stale")
            .header("ttl", "60000")
            .header("receipt", "c")
            .body("fresh"),
    )
    .await;
    p.expect(Command::Receipt).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut c = consumer(&b, "/queue/stale", "auto", None).await;
    // Only the fresh one: the expired two were dropped, not delivered late.
    assert_eq!(c.message_on("/queue/stale").await, "fresh");
    p.publish("/queue/stale", "control").await;
    assert_eq!(c.message_on("/queue/stale").await, "control");
    let (_, text) = common::http_get(b.http_addr, "/metrics").await;
    assert!(common::metric(&text, "stompede_messages_expired_total").unwrap() >= 2.0);
}

#[tokio::test]
async fn stomp_1_1_clients_ack_by_message_id() {
    let b = broker("");
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    p.publish("/queue/old", "kept?").await;
    p.publish("/queue/old", "returned").await;
    let mut c = Client::tcp(&b).await;
    c.send(
        Frame::new(Command::Connect)
            .header("accept-version", "1.1")
            .header("login", "svc")
            .header("passcode", "svc-pw"),
    )
    .await;
    assert_eq!(
        c.expect(Command::Connected).await.headers.get("version"),
        Some("1.1")
    );
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/queue/old")
            .header("ack", "client-individual"),
    )
    .await;
    let first = c.expect(Command::Message).await;
    let _second = c.expect(Command::Message).await;
    c.send(
        Frame::new(Command::Ack)
            .header("message-id", first.headers.get("message-id").unwrap())
            .header("subscription", "s")
            .header("receipt", "acked"),
    )
    .await;
    c.expect(Command::Receipt).await;
    drop(c);
    // Only the unacked one comes back.
    let mut again = consumer(&b, "/queue/old", "auto", None).await;
    let m = again.expect(Command::Message).await;
    assert_eq!(
        (&m.body[..], m.headers.get("redelivered")),
        (&b"returned"[..], Some("true"))
    );
}
