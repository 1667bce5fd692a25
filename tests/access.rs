//! Access rules (`[[auth.acl]]`): configurable send and subscribe rights per
//! destination pattern and role, with the pseudo-roles `anonymous` and
//! `authenticated`; the built-in rules wherever no rule matches; and no wildcard
//! subscription that reads past a rule.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, broker};
use stompede::codec::{Command, Frame};

const RULES: &str = r#"
[[auth.acl]]
match = "/queue/test"
send = ["anonymous", "authenticated"]
subscribe = ["anonymous", "authenticated"]

[[auth.acl]]
match = "/topic/private.#"
send = ["service"]
subscribe = ["admin"]

[[auth.acl]]
match = "/app/trade"
send = ["admin"]
"#;

async fn refused(c: &mut Client, frame: Frame, text: &str) {
    c.send(frame).await;
    c.expect_error(text).await;
}

fn subscribe(id: &str, destination: &str) -> Frame {
    Frame::new(Command::Subscribe)
        .header("id", id)
        .header("destination", destination)
}

#[tokio::test]
async fn one_rule_opens_one_queue_to_anonymous_clients_and_keeps_the_rest() {
    let b = broker(RULES);
    let mut anon = Client::tcp(&b).await;
    anon.connect_anonymously().await;
    anon.subscribe("q", "/queue/test").await;
    let mut anon_sender = Client::ws(&b).await;
    anon_sender.connect_anonymously().await;
    anon_sender.publish("/queue/test", "from nobody").await;
    assert_eq!(anon.message_on("/queue/test").await, "from nobody");
    // Everything else is as built in: topics readable, other queues not.
    anon.subscribe("t", "/topic/news").await;
    refused(
        &mut anon,
        subscribe("o", "/queue/orders"),
        "not allowed to SUBSCRIBE to /queue/orders",
    )
    .await;
}

#[tokio::test]
async fn rules_decide_by_role_where_they_match() {
    let b = broker(RULES);
    // Traders lost /app/trade to admins only.
    let mut alice = Client::tcp(&b).await;
    alice.connect_as("alice", "alice-pw").await;
    alice
        .trade(r#"{"symbol":"AAPL","quantity":1,"orderType":"BUY"}"#)
        .await;
    alice
        .expect_error("not allowed to SEND to /app/trade")
        .await;
    // Private topics: services publish, only admins read.
    let mut root = Client::tcp(&b).await;
    root.connect_as("root", "root-pw").await;
    root.subscribe("p", "/topic/private.board").await;
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.publish("/topic/private.board", "minutes").await;
    assert_eq!(root.message_on("/topic/private.board").await, "minutes");
    let mut bob = Client::tcp(&b).await;
    bob.connect_as("bob", "bob-pw").await;
    refused(
        &mut bob,
        subscribe("p", "/topic/private.board"),
        "not allowed to SUBSCRIBE to /topic/private.board",
    )
    .await;
    // A wildcard that names the private topics is refused outright.
    let mut anon = Client::tcp(&b).await;
    anon.connect_anonymously().await;
    refused(
        &mut anon,
        subscribe("w", "/topic/private.*"),
        "not allowed to SUBSCRIBE",
    )
    .await;
}

#[tokio::test]
async fn a_wildcard_subscription_never_reads_past_a_rule() {
    let b = broker(RULES);
    let mut anon = Client::tcp(&b).await;
    anon.connect_anonymously().await;
    for (i, p) in ["/topic/#", "/topic/*.board", "/topic/#.board"]
        .iter()
        .enumerate()
    {
        anon.subscribe(&format!("w{i}"), p).await;
    }
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.publish("/topic/private.board", "secret minutes").await;
    svc.publish("/topic/public.board", "notice").await;
    // The first non-quote MESSAGEs are the public notice, once per pattern.
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = anon.expect(Command::Message).await;
        let d = m.headers.get("destination").unwrap().to_owned();
        if !d.starts_with("/topic/stock-quotes") {
            got.push((d, String::from_utf8(m.body.to_vec()).unwrap()));
        }
    }
    assert!(
        got.iter()
            .all(|(d, b)| d == "/topic/public.board" && b == "notice"),
        "{got:?}"
    );
}

#[test]
fn bad_rules_stop_start_up_naming_the_key() {
    let e = stompede::config::Config::from_toml(
        "[[auth.acl]]\nmatch = \"/topic/x\"\nsend = [\"pilot\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("pilot"), "{e}");
    let e = stompede::config::Config::from_toml("[[auth.acl]]\nmatch = \"/nowhere/x\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("auth.acl"), "{e}");
}
