//! Transactions: every frame is checked when it joins, whole frames count against
//! the connection's transaction memory, and COMMIT is all or nothing.

use crate::common::{Client, broker};
use stompede::codec::{Command, Frame};

fn send_in(tx: &str, destination: &str, body: &str) -> Frame {
    Frame::new(Command::Send)
        .header("destination", destination)
        .header("transaction", tx)
        .header("receipt", format!("r-{body}"))
        .body(body.to_owned())
}

#[tokio::test]
async fn headers_count_against_the_transaction_limit() {
    let b = broker("[limits]\nmax_transaction_bytes = 4194304");
    let mut watcher = Client::ws(&b).await;
    watcher.connect_anonymously().await;
    watcher.subscribe("w", "/topic/news").await;
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.send(Frame::new(Command::Begin).header("transaction", "t"))
        .await;
    // 60 headers of 8,000 bytes and an empty body: ~483 KB held per frame.
    let mut receipts = 0;
    let error = loop {
        let mut f = Frame::new(Command::Send)
            .header("destination", "/topic/held")
            .header("transaction", "t")
            .header("receipt", format!("r{receipts}"));
        for h in 0..60 {
            f = f.header(format!("x-{h}"), "v".repeat(8000));
        }
        svc.send(f).await;
        let answer = svc.next_frame().await.unwrap();
        if answer.command == Command::Error {
            break answer;
        }
        assert_eq!(answer.command, Command::Receipt);
        receipts += 1;
        assert!(receipts < 100, "no limit on held headers");
    };
    let message = error.headers.get("message").unwrap();
    assert!(
        message.contains("limits.max_transaction_bytes"),
        "{message}"
    );
    // 4 MiB holds 8 such frames, not a 9th.
    assert_eq!(receipts, 8, "{message}");
    svc.expect_closed().await;
    // Everybody else is served meanwhile and after.
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.publish("/topic/news", "still served").await;
    assert_eq!(watcher.message_on("/topic/news").await, "still served");
}

#[tokio::test]
async fn rights_are_checked_when_a_frame_joins_and_nothing_runs() {
    let b = broker("");
    // Alice's second session watches her confirmations.
    let mut watch = Client::ws(&b).await;
    watch.connect_as("alice", "alice-pw").await;
    watch.subscribe("c", "/user/queue/trade-confirmation").await;
    let mut alice = Client::tcp(&b).await;
    alice.connect_as("alice", "alice-pw").await;
    alice
        .send(Frame::new(Command::Begin).header("transaction", "t"))
        .await;
    alice
        .send(send_in(
            "t",
            "/app/trade",
            r#"{"symbol":"AAPL","quantity":3,"orderType":"BUY"}"#,
        ))
        .await;
    alice.expect(Command::Receipt).await;
    alice.send(send_in("t", "/topic/forbidden", "x")).await;
    alice
        .expect_error("not allowed to SEND to /topic/forbidden")
        .await;
    // Anonymous: refused at the first SEND, before anything is held.
    let mut anon = Client::tcp(&b).await;
    anon.connect_anonymously().await;
    anon.send(Frame::new(Command::Begin).header("transaction", "t"))
        .await;
    anon.send(send_in("t", "/topic/x", "x")).await;
    anon.expect_error("not allowed to SEND to /topic/x").await;
    let mut anon = Client::tcp(&b).await;
    anon.connect_anonymously().await;
    anon.send(Frame::new(Command::Begin).header("transaction", "t"))
        .await;
    anon.send(
        Frame::new(Command::Ack)
            .header("id", "q1@junk")
            .header("transaction", "t"),
    )
    .await;
    anon.expect_error("not delivered to this session").await;
    // The control trade (quantity 7) is the first confirmation: the 3 never ran.
    let mut alice = Client::tcp(&b).await;
    alice.connect_as("alice", "alice-pw").await;
    alice
        .trade(r#"{"symbol":"AAPL","quantity":7,"orderType":"BUY"}"#)
        .await;
    let conf = watch.message_on("/user/queue/trade-confirmation").await;
    let conf: serde_json::Value = serde_json::from_str(&conf).unwrap();
    assert_eq!(conf["quantity"], 7, "{conf}");
}

#[tokio::test]
async fn a_commit_that_cannot_apply_everything_applies_nothing() {
    let b = broker("[queues]\nmax_depth = 2");
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.send(Frame::new(Command::Begin).header("transaction", "t"))
        .await;
    svc.send(send_in("t", "/topic/seen", "topic")).await;
    svc.expect(Command::Receipt).await;
    svc.send(send_in("t", "/queue/roomy", "roomy")).await;
    svc.expect(Command::Receipt).await;
    for n in 0..3 {
        svc.send(send_in("t", "/queue/small", &format!("small{n}")))
            .await;
        svc.expect(Command::Receipt).await;
    }
    let mut seen = Client::tcp(&b).await;
    seen.connect().await;
    seen.subscribe("s", "/topic/seen").await;
    svc.send(
        Frame::new(Command::Commit)
            .header("transaction", "t")
            .header("receipt", "c"),
    )
    .await;
    svc.expect_error("queue /queue/small is full").await;
    // Nothing of the transaction took effect: each first message is a control.
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    for q in ["/queue/roomy", "/queue/small"] {
        svc.publish(q, "control").await;
    }
    svc.publish("/topic/seen", "control").await;
    assert_eq!(seen.message_on("/topic/seen").await, "control");
    let mut c = Client::tcp(&b).await;
    c.connect().await;
    for q in ["/queue/roomy", "/queue/small"] {
        c.subscribe(q, q).await;
        assert_eq!(c.message_on(q).await, "control");
    }
}
