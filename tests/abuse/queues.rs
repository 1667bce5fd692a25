//! Queues are created only by SEND and SUBSCRIBE; an ACK or NACK touches only
//! deliveries of its own session; idle empty queues are reclaimed.

use crate::common::{Client, TIMEOUT, broker};
use std::time::Duration;
use stompede::codec::{Command, Frame};

#[tokio::test]
async fn acks_for_ids_never_given_create_nothing_and_are_refused() {
    let b = broker("[queues]\nmax_queues = 4");
    let before = b.broker.engine.queue_count();
    for who in ["anonymous", "alice"] {
        let mut attacker = Client::tcp(&b).await;
        match who {
            "anonymous" => attacker.connect_anonymously().await,
            _ => attacker.connect_as("alice", "alice-pw").await,
        };
        for i in 0..100 {
            let command = if i % 2 == 0 {
                Command::Ack
            } else {
                Command::Nack
            };
            attacker
                .send(Frame::new(command).header("id", format!("q1@junk-{i}")))
                .await;
        }
        attacker.expect_error("not delivered to this session").await;
    }
    assert_eq!(
        b.broker.engine.queue_count(),
        before,
        "no queue was created"
    );
    // Everybody else can still make the queues they need.
    let mut alice = Client::ws(&b).await;
    alice.connect_as("alice", "alice-pw").await;
    alice.subscribe("o", "/queue/orders").await;
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.publish("/queue/jobs", "job").await;
    svc.publish("/queue/orders", "order").await;
    assert_eq!(alice.message_on("/queue/orders").await, "order");
}

#[tokio::test]
async fn an_ack_of_a_real_queue_by_another_session_changes_nothing() {
    let b = broker("");
    let mut alice = Client::tcp(&b).await;
    alice.connect_as("alice", "alice-pw").await;
    alice
        .subscribe_with("a", "/queue/work", &[("ack", "client-individual")])
        .await;
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.publish("/queue/work", "w1").await;
    let m = alice.expect(Command::Message).await;
    let ack = m.headers.get("ack").unwrap().to_owned();
    // Bob subscribes to the same queue, then tries to ACK alice's delivery.
    let mut bob = Client::tcp(&b).await;
    bob.connect_as("bob", "bob-pw").await;
    bob.subscribe_with("b", "/queue/work", &[("ack", "client-individual")])
        .await;
    bob.send(
        Frame::new(Command::Ack)
            .header("id", ack.as_str())
            .header("receipt", "r"),
    )
    .await;
    bob.expect(Command::Receipt).await;
    // Alice leaves without acking: the message is still the queue's, and goes to bob.
    drop(alice);
    let m = bob.expect(Command::Message).await;
    assert_eq!(&m.body[..], b"w1");
    assert_eq!(m.headers.get("redelivered"), Some("true"));
}

#[tokio::test]
async fn idle_empty_queues_are_reclaimed() {
    let b = broker("[queues]\nmax_queues = 3\nidle_reclaim_ms = 100");
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    // A queue holding a message is kept even when nobody consumes it.
    svc.publish("/queue/a", "waiting").await;
    for q in ["b", "c"] {
        svc.subscribe(q, &format!("/queue/{q}")).await;
    }
    // The limit holds while the queues are in use.
    let mut other = Client::tcp(&b).await;
    other.connect().await;
    other
        .send(
            Frame::new(Command::Subscribe)
                .header("id", "d")
                .header("destination", "/queue/d"),
        )
        .await;
    other.expect_error("queues.max_queues").await;
    for q in ["b", "c"] {
        svc.send(Frame::new(Command::Unsubscribe).header("id", q))
            .await;
    }
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while b.broker.engine.queue_count() > 1 {
        assert!(tokio::time::Instant::now() < deadline, "not reclaimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    svc.subscribe("d", "/queue/d").await;
    svc.subscribe("a", "/queue/a").await;
    assert_eq!(svc.message_on("/queue/a").await, "waiting");
}

#[tokio::test]
async fn a_cumulative_ack_covers_many_unacked_messages_at_once() {
    let b = broker("[queues]\nmax_depth = 1000000");
    let mut consumer = Client::tcp(&b).await;
    consumer.connect().await;
    consumer
        .subscribe_with(
            "c",
            "/queue/many",
            &[("ack", "client"), ("prefetch-count", "100000")],
        )
        .await;
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    let n = 20_000;
    let mut batch = bytes::BytesMut::new();
    for i in 0..n {
        let f = Frame::new(Command::Send)
            .header("destination", "/queue/many")
            .body(format!("{i}"));
        stompede::codec::encode(&f, stompede::codec::Version::V1_2, &mut batch);
    }
    svc.send_raw(&batch).await;
    let mut last = String::new();
    for i in 0..n {
        let m = consumer.expect(Command::Message).await;
        assert_eq!(m.body, format!("{i}").as_bytes());
        last = m.headers.get("ack").unwrap().to_owned();
    }
    consumer
        .send(
            Frame::new(Command::Ack)
                .header("id", last.as_str())
                .header("receipt", "all"),
        )
        .await;
    consumer.expect(Command::Receipt).await;
    // Everything was acked: leaving redelivers nothing to the next consumer.
    drop(consumer);
    svc.publish("/queue/many", "control").await;
    let mut next = Client::tcp(&b).await;
    next.connect().await;
    next.subscribe("n", "/queue/many").await;
    assert_eq!(next.message_on("/queue/many").await, "control");
}
