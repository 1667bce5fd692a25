//! Transactions: BEGIN/COMMIT/ABORT for SEND and ACK/NACK. A "never happened" check
//! always follows a control message that did arrive.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, broker};
use stompede::codec::{Command, Frame};

fn tx(command: Command, id: &str) -> Frame {
    Frame::new(command)
        .header("transaction", id)
        .header("receipt", format!("{command}-{id}"))
}

async fn sub(b: &stompede::server::RunningBroker, destination: &str, ack: &str) -> Client {
    let mut c = Client::tcp(b).await;
    c.connect().await;
    c.subscribe_with("s", destination, &[("ack", ack)]).await;
    c
}

#[tokio::test]
async fn commit_applies_held_sends_in_order_and_not_before() {
    let b = broker("");
    let mut s = sub(&b, "/topic/tx", "auto").await;
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    p.send(tx(Command::Begin, "t1")).await;
    p.expect(Command::Receipt).await;
    for body in ["one", "two"] {
        p.send(
            Frame::new(Command::Send)
                .header("destination", "/topic/tx")
                .header("transaction", "t1")
                .header("receipt", body)
                .body(body),
        )
        .await;
        p.expect(Command::Receipt).await;
    }
    p.publish("/topic/tx", "control").await;
    // The control arrives first: the held SENDs have not taken effect.
    assert_eq!(s.message_on("/topic/tx").await, "control");
    p.send(tx(Command::Commit, "t1")).await;
    p.expect(Command::Receipt).await;
    assert_eq!(s.message_on("/topic/tx").await, "one");
    assert_eq!(s.message_on("/topic/tx").await, "two");
}

#[tokio::test]
async fn abort_and_disconnect_drop_everything_held() {
    let b = broker("");
    let mut s = sub(&b, "/queue/txq", "auto").await;
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    p.send(tx(Command::Begin, "a")).await;
    p.expect(Command::Receipt).await;
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/txq")
            .header("transaction", "a")
            .body("aborted"),
    )
    .await;
    p.send(tx(Command::Abort, "a")).await;
    p.expect(Command::Receipt).await;
    // A second publisher goes away mid-transaction.
    let mut gone = Client::tcp(&b).await;
    gone.connect().await;
    gone.send(tx(Command::Begin, "g")).await;
    gone.expect(Command::Receipt).await;
    gone.send(
        Frame::new(Command::Send)
            .header("destination", "/queue/txq")
            .header("transaction", "g")
            .body("disconnected"),
    )
    .await;
    drop(gone);
    p.publish("/queue/txq", "control").await;
    assert_eq!(s.message_on("/queue/txq").await, "control");
    p.publish("/queue/txq", "control 2").await;
    assert_eq!(s.message_on("/queue/txq").await, "control 2");
}

#[tokio::test]
async fn transactional_acks_count_only_when_committed() {
    let b = broker("");
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    p.publish("/queue/acks", "m0").await;
    p.publish("/queue/acks", "m1").await;
    let mut c = sub(&b, "/queue/acks", "client-individual").await;
    let m0 = c.expect(Command::Message).await;
    let m1 = c.expect(Command::Message).await;
    c.send(tx(Command::Begin, "k")).await;
    c.expect(Command::Receipt).await;
    c.send(
        Frame::new(Command::Ack)
            .header("id", m0.headers.get("ack").unwrap())
            .header("transaction", "k"),
    )
    .await;
    c.send(tx(Command::Commit, "k")).await;
    c.expect(Command::Receipt).await;
    c.send(tx(Command::Begin, "x")).await;
    c.expect(Command::Receipt).await;
    c.send(
        Frame::new(Command::Ack)
            .header("id", m1.headers.get("ack").unwrap())
            .header("transaction", "x"),
    )
    .await;
    c.send(tx(Command::Abort, "x")).await;
    c.expect(Command::Receipt).await;
    drop(c);
    // m0's ACK was committed, m1's aborted: only m1 comes back.
    let mut again = sub(&b, "/queue/acks", "auto").await;
    let m = again.expect(Command::Message).await;
    assert_eq!(
        (&m.body[..], m.headers.get("redelivered")),
        (&b"m1"[..], Some("true"))
    );
    p.publish("/queue/acks", "m2").await;
    assert_eq!(again.message_on("/queue/acks").await, "m2");
}

#[tokio::test]
async fn unknown_and_duplicate_transactions_are_errors() {
    let b = broker("");
    let cases: Vec<(Vec<Frame>, &str)> = vec![
        (
            vec![
                Frame::new(Command::Send)
                    .header("destination", "/topic/a")
                    .header("transaction", "nope"),
            ],
            "unknown transaction \"nope\"",
        ),
        (
            vec![tx(Command::Commit, "nope")],
            "unknown transaction \"nope\"",
        ),
        (
            vec![tx(Command::Abort, "nope")],
            "unknown transaction \"nope\"",
        ),
        (
            vec![tx(Command::Begin, "d"), tx(Command::Begin, "d")],
            "transaction \"d\" is already open",
        ),
        (
            vec![Frame::new(Command::Begin)],
            "missing required header 'transaction'",
        ),
    ];
    for (frames, expected) in cases {
        let mut c = Client::tcp(&b).await;
        c.connect().await;
        let n = frames.len();
        for (i, f) in frames.into_iter().enumerate() {
            c.send(f).await;
            if i + 1 < n {
                c.expect(Command::Receipt).await;
            }
        }
        c.expect_error(expected).await;
    }
}
