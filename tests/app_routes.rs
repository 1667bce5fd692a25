//! `[[app.routes]]` to a queue: an `/app` destination served by backend
//! services of any language, consuming the route's queue; the broker says who
//! sent each request and where to answer, and nobody can forge that.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, TestBroker, broker, http_get, metric};
use stompede::codec::{Command, Frame};

const ROUTES: &str = r#"
[[app.routes]]
match = "/app/chat.#"
queue = "chat"
[[app.routes]]
match = "/app/admin.#"
queue = "admin-requests"
[[auth.acl]]
match = "/app/admin.#"
send = ["admin"]
"#;

async fn as_user(b: &TestBroker, login: &str) -> Client {
    let mut c = Client::tcp(b).await;
    c.connect_as(login, &format!("{login}-pw")).await;
    c
}

/// The backend: svc consuming `queue`, acking each message itself.
async fn backend(b: &TestBroker, queue: &str) -> Client {
    let mut c = as_user(b, "svc").await;
    c.subscribe_with("q", queue, &[("ack", "client-individual")])
        .await;
    c
}

#[tokio::test]
async fn a_send_to_a_routed_destination_reaches_the_backend_with_who_sent_it() {
    let b = broker(ROUTES);
    let mut service = backend(&b, "/queue/chat").await;
    let mut alice = as_user(&b, "alice").await;
    alice.subscribe("r", "/user/queue/replies").await;
    alice.subscribe("t", "/topic/chat.room1").await;
    // alice forges the headers only the route sets, and another user's reply-to.
    alice
        .send(
            Frame::new(Command::Send)
                .header("destination", "/app/chat.room1")
                .header("x-app-login", "root")
                .header("x-app-roles", "admin")
                .header("reply-to", "/user/root/queue/replies")
                .header("content-type", "text/plain")
                .header("receipt", "r1")
                .body("hello"),
        )
        .await;
    // The RECEIPT: the queue holds the message.
    assert_eq!(
        alice
            .expect(Command::Receipt)
            .await
            .headers
            .get("receipt-id"),
        Some("r1")
    );
    let m = service.expect(Command::Message).await;
    let h = &m.headers;
    assert_eq!(h.get("destination"), Some("/queue/chat"));
    assert_eq!(h.get("x-app-destination"), Some("/app/chat.room1"));
    assert_eq!(h.get("x-app-login"), Some("alice"));
    assert_eq!(h.get("x-app-roles"), Some("trader"));
    assert_eq!(h.get("reply-to"), Some("/user/alice/queue/replies"));
    assert_eq!(h.get("content-type"), Some("text/plain"));
    assert_eq!(h.get_all("x-app-login").count(), 1, "{m:?}");
    assert_eq!(&m.body[..], b"hello");
    // The backend answers the sender and the room, then acks.
    service
        .send(
            Frame::new(Command::Send)
                .header("destination", h.get("reply-to").unwrap())
                .body("ack: hello"),
        )
        .await;
    service.publish("/topic/chat.room1", "alice: hello").await;
    service
        .send(Frame::new(Command::Ack).header("id", h.get("ack").unwrap()))
        .await;
    let mut got = vec![
        String::from_utf8(alice.expect(Command::Message).await.body.to_vec()).unwrap(),
        String::from_utf8(alice.expect(Command::Message).await.body.to_vec()).unwrap(),
    ];
    got.sort();
    assert_eq!(got, ["ack: hello", "alice: hello"]);
    let (_, text) = http_get(b.http_addr, "/metrics").await;
    // Metrics are the process's: other tests here use the route too.
    let requests = metric(
        &text,
        "stompede_app_route_requests_total{route=\"/app/chat.#\"}",
    );
    assert!(requests.is_some_and(|n| n >= 1.0), "{requests:?}");
}

#[tokio::test]
async fn a_reply_to_of_the_sender_s_own_is_kept_and_forged_headers_never_pass_elsewhere() {
    let b = broker(ROUTES);
    let mut service = backend(&b, "/queue/chat").await;
    let mut bob = as_user(&b, "bob").await;
    bob.send(
        Frame::new(Command::Send)
            .header("destination", "/app/chat.x")
            .header("reply-to", "/user/queue/chat-answers")
            .body("q"),
    )
    .await;
    let m = service.expect(Command::Message).await;
    assert_eq!(
        m.headers.get("reply-to"),
        Some("/user/bob/queue/chat-answers")
    );
    // A direct SEND to the queue (a service may) cannot carry the route's headers.
    let mut other = as_user(&b, "svc").await;
    other
        .send(
            Frame::new(Command::Send)
                .header("destination", "/queue/chat")
                .header("x-app-login", "alice")
                .header("x-app-destination", "/app/chat.x")
                .body("forged"),
        )
        .await;
    let m = service.expect(Command::Message).await;
    assert_eq!(&m.body[..], b"forged");
    assert_eq!(m.headers.get("x-app-login"), None, "{m:?}");
    assert_eq!(m.headers.get("x-app-destination"), None, "{m:?}");
}

#[tokio::test]
async fn routes_obey_the_access_rules_and_refuse_anonymous_senders() {
    let b = broker(ROUTES);
    let mut service = backend(&b, "/queue/admin-requests").await;
    let mut root = as_user(&b, "root").await;
    root.publish("/app/admin.reindex", "go").await;
    let m = service.expect(Command::Message).await;
    assert_eq!(m.headers.get("x-app-login"), Some("root"));
    assert_eq!(m.headers.get("x-app-roles"), Some("admin"));
    let mut alice = as_user(&b, "alice").await;
    alice
        .send(
            Frame::new(Command::Send)
                .header("destination", "/app/admin.reindex")
                .body("go"),
        )
        .await;
    alice
        .expect_error("not allowed to SEND to /app/admin.reindex")
        .await;
    let mut anonymous = Client::tcp(&b).await;
    anonymous.connect_anonymously().await;
    anonymous
        .send(
            Frame::new(Command::Send)
                .header("destination", "/app/chat.room1")
                .body("x"),
        )
        .await;
    anonymous
        .expect_error("not allowed to SEND to /app/chat.room1")
        .await;
    // Nothing unrouted is taken.
    let mut bob = as_user(&b, "bob").await;
    bob.send(
        Frame::new(Command::Send)
            .header("destination", "/app/nowhere")
            .body("x"),
    )
    .await;
    bob.expect_error("no handler for /app/nowhere").await;
}

#[tokio::test]
async fn a_routed_send_in_a_transaction_arrives_at_commit_only() {
    let b = broker(ROUTES);
    let mut service = backend(&b, "/queue/chat").await;
    let mut alice = as_user(&b, "alice").await;
    alice
        .send(Frame::new(Command::Begin).header("transaction", "t1"))
        .await;
    alice
        .send(
            Frame::new(Command::Send)
                .header("destination", "/app/chat.tx")
                .header("transaction", "t1")
                .body("in a transaction"),
        )
        .await;
    // Positive control first, outside the transaction.
    alice.publish("/app/chat.now", "now").await;
    assert_eq!(&service.expect(Command::Message).await.body[..], b"now");
    alice
        .send(
            Frame::new(Command::Commit)
                .header("transaction", "t1")
                .header("receipt", "c"),
        )
        .await;
    alice.expect(Command::Receipt).await;
    let m = service.expect(Command::Message).await;
    assert_eq!(&m.body[..], b"in a transaction");
    assert_eq!(m.headers.get("x-app-destination"), Some("/app/chat.tx"));
}

#[test]
fn a_route_that_could_not_work_stops_the_start() {
    for (toml, says) in [
        (
            "[[app.routes]]\nmatch = \"/topic/x\"\nqueue = \"q\"",
            "not an /app/",
        ),
        (
            "[[app.routes]]\nmatch = \"/app/x\"",
            "exactly one of queue or url",
        ),
        (
            "[[app.routes]]\nmatch = \"/app/x\"\nqueue = \"a/b\"",
            "not a queue name",
        ),
        (
            "[[app.routes]]\nmatch = \"/app/x\"\nqueue = \"q\"\nurl = \"http://h/\"",
            "exactly one",
        ),
    ] {
        let e = stompede::config::Config::from_toml(toml)
            .unwrap_err()
            .to_string();
        assert!(e.contains("app.routes") && e.contains(says), "{toml}: {e}");
    }
}
