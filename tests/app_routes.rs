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

/// `stompede_app_route_{what}_total` of the route `/app/chat.#`.
async fn route_metric(b: &TestBroker, what: &str) -> f64 {
    let (_, text) = http_get(b.http_addr, "/metrics").await;
    let series = format!("stompede_app_route_{what}_total{{route=\"/app/chat.#\"}}");
    metric(&text, &series).unwrap_or_else(|| panic!("no {series}"))
}

/// BEGINs transaction `t1` and SENDs "in a transaction" to `destination` in it.
async fn begin_with_send(c: &mut Client, destination: &str) {
    c.send(Frame::new(Command::Begin).header("transaction", "t1"))
        .await;
    c.send(
        Frame::new(Command::Send)
            .header("destination", destination)
            .header("transaction", "t1")
            .body("in a transaction"),
    )
    .await;
}

/// SENDs `body` to `destination` (with `receipt`, if given).
async fn send_app(c: &mut Client, destination: &str, receipt: Option<&str>, body: &str) {
    let mut frame = Frame::new(Command::Send).header("destination", destination);
    if let Some(r) = receipt {
        frame = frame.header("receipt", r);
    }
    c.send(frame.body(body.to_owned())).await;
}

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
    // Metrics are the process's: other tests here use the route too.
    assert!(route_metric(&b, "requests").await >= 1.0);
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
    send_app(&mut alice, "/app/admin.reindex", None, "go").await;
    alice
        .expect_error("not allowed to SEND to /app/admin.reindex")
        .await;
    let mut anonymous = Client::tcp(&b).await;
    anonymous.connect_anonymously().await;
    send_app(&mut anonymous, "/app/chat.room1", None, "x").await;
    anonymous
        .expect_error("not allowed to SEND to /app/chat.room1")
        .await;
    // Nothing unrouted is taken.
    let mut bob = as_user(&b, "bob").await;
    send_app(&mut bob, "/app/nowhere", None, "x").await;
    bob.expect_error("no handler for /app/nowhere").await;
}

#[tokio::test]
async fn a_routed_send_in_a_transaction_arrives_at_commit_only() {
    let b = broker(ROUTES);
    let mut service = backend(&b, "/queue/chat").await;
    let mut alice = as_user(&b, "alice").await;
    begin_with_send(&mut alice, "/app/chat.tx").await;
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

/// An HTTP backend on loopback: answers each POST with what `answer` returns
/// for its JSON (status, body, delay), keeping the requests it got.
struct Backend {
    url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

type Answer = (u16, String, std::time::Duration);

async fn http_backend(answer: fn(&serde_json::Value) -> Answer) -> Backend {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let bytes = req.into_body().collect().await.unwrap().to_bytes();
                            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                            let (status, body, delay) = answer(&json);
                            seen.lock().unwrap().push(json);
                            tokio::time::sleep(delay).await;
                            let mut res = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(body),
                            ));
                            *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            if status == 302 {
                                res.headers_mut()
                                    .insert("location", "http://127.0.0.1:1/".parse().unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(res)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend { url, got }
}

fn http_route(url: &str, extra: &str) -> String {
    format!(
        "[[app.routes]]\nmatch = \"/app/chat.#\"\nurl = \"{url}\"\npublish = [\"/topic/chat.#\"]\n{extra}"
    )
}

/// What the chat backend answers: the sender's own reply, the room, and two
/// destinations its route may not publish to (dropped).
fn chat_answer(request: &serde_json::Value) -> Answer {
    let room = request["destination"]
        .as_str()
        .unwrap()
        .trim_start_matches("/app/chat.")
        .to_owned();
    let body = serde_json::json!({"messages": [
        {"destination": "/user/queue/replies", "body": format!("got: {}", request["body"].as_str().unwrap())},
        {"destination": format!("/topic/chat.{room}"), "headers": {"x-from": request["login"]}, "body": "posted"},
        {"destination": "/topic/elsewhere", "body": "no"},
        {"destination": "/user/bob/queue/replies", "body": "not bob's"},
    ]});
    (200, body.to_string(), std::time::Duration::ZERO)
}

#[tokio::test]
async fn an_http_route_posts_the_send_and_publishes_what_the_backend_answers() {
    let backend = http_backend(chat_answer).await;
    let b = broker(&http_route(&backend.url, ""));
    let mut alice = as_user(&b, "alice").await;
    alice.subscribe("r", "/user/queue/replies").await;
    alice.subscribe("t", "/topic/chat.room1").await;
    let mut bob = as_user(&b, "bob").await;
    bob.subscribe("r", "/user/queue/replies").await;
    bob.subscribe("e", "/topic/elsewhere").await;
    alice
        .send(
            Frame::new(Command::Send)
                .header("destination", "/app/chat.room1")
                .header("content-type", "text/plain")
                .header("receipt", "r1")
                .body("hi"),
        )
        .await;
    // Published in order, then the RECEIPT: the backend answered 2xx.
    let reply = alice.expect(Command::Message).await;
    assert_eq!(
        (reply.headers.get("destination"), &reply.body[..]),
        (Some("/user/queue/replies"), &b"got: hi"[..])
    );
    let room = alice.expect(Command::Message).await;
    assert_eq!(room.headers.get("destination"), Some("/topic/chat.room1"));
    assert_eq!(room.headers.get("x-from"), Some("alice"));
    assert_eq!(
        alice
            .expect(Command::Receipt)
            .await
            .headers
            .get("receipt-id"),
        Some("r1")
    );
    let request = backend.got.lock().unwrap()[0].clone();
    assert_eq!(request["destination"], "/app/chat.room1");
    assert_eq!(request["login"], "alice");
    assert_eq!(request["roles"], serde_json::json!(["trader"]));
    assert_eq!(request["headers"]["content-type"], "text/plain");
    assert_eq!(request["body"], "hi");
    // Nothing reached bob or the topic the route may not publish to: his own
    // SEND's answer is the first thing he gets.
    send_app(&mut bob, "/app/chat.room2", None, "me").await;
    let first = bob.expect(Command::Message).await;
    assert_eq!(&first.body[..], b"got: me");
}

fn failing(_: &serde_json::Value) -> Answer {
    (500, "oops".into(), std::time::Duration::ZERO)
}

fn redirecting(_: &serde_json::Value) -> Answer {
    (302, String::new(), std::time::Duration::ZERO)
}

fn slow(_: &serde_json::Value) -> Answer {
    (200, "{}".into(), std::time::Duration::from_secs(3))
}

/// Sends `body` with a receipt; the sender is told on its error queue, gets
/// no RECEIPT, and its session goes on (a second SEND's failure arrives too).
async fn told(b: &TestBroker, code: &str) -> serde_json::Value {
    let mut alice = as_user(b, "alice").await;
    alice.subscribe("e", "/user/queue/errors").await;
    let mut last = serde_json::Value::Null;
    for receipt in ["r1", "r2"] {
        send_app(&mut alice, "/app/chat.room1", Some(receipt), "hi").await;
        let e = alice.expect(Command::Message).await;
        assert_eq!(e.headers.get("receipt-id"), Some(receipt), "{e:?}");
        last = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(last["error"], code, "{last}");
        assert_eq!(last["receipt-id"], receipt);
    }
    last
}

#[tokio::test]
async fn a_failing_backend_is_reported_to_the_sender_not_lost() {
    let backend = http_backend(failing).await;
    let b = broker(&http_route(&backend.url, ""));
    let told = told(&b, "BACKEND_FAILED").await;
    assert!(told["message"].as_str().unwrap().contains("500"), "{told}");
    // A redirect is not followed: a failure too.
    let backend = http_backend(redirecting).await;
    let b = broker(&http_route(&backend.url, ""));
    let told = crate::told(&b, "BACKEND_FAILED").await;
    assert!(told["message"].as_str().unwrap().contains("302"), "{told}");
    // Nobody listening: refused at once, reported, not a hang.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = broker(&http_route(&format!("http://127.0.0.1:{port}/hook"), ""));
    crate::told(&b, "BACKEND_FAILED").await;
    assert!(route_metric(&b, "failures").await >= 2.0);
}

#[tokio::test]
async fn a_slow_backend_times_out_and_a_full_route_says_busy() {
    let backend = http_backend(slow).await;
    let b = broker(&http_route(
        &backend.url,
        "timeout_ms = 300\nmax_in_flight = 1",
    ));
    let mut alice = as_user(&b, "alice").await;
    alice.subscribe("e", "/user/queue/errors").await;
    for receipt in ["slow", "meanwhile"] {
        send_app(&mut alice, "/app/chat.room1", Some(receipt), "hi").await;
    }
    // The second finds the one place taken at once; the first times out.
    let mut errors = Vec::new();
    for _ in 0..2 {
        let e = alice.expect(Command::Message).await;
        let json: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
        errors.push((
            json["receipt-id"].as_str().unwrap().to_owned(),
            json["error"].as_str().unwrap().to_owned(),
        ));
    }
    errors.sort();
    assert_eq!(
        errors,
        [
            ("meanwhile".to_owned(), "BACKEND_BUSY".to_owned()),
            ("slow".to_owned(), "BACKEND_TIMEOUT".to_owned())
        ]
    );
}

/// alice's requests hang; everyone else's are answered at once.
fn slow_for_alice(request: &serde_json::Value) -> Answer {
    match request["login"].as_str() {
        Some("alice") => (200, "{}".into(), std::time::Duration::from_secs(3)),
        _ => chat_answer(request),
    }
}

#[tokio::test]
async fn one_sender_cannot_take_every_place_of_a_route() {
    let backend = http_backend(slow_for_alice).await;
    // Four places; one login may hold a quarter of them.
    let b = broker(&http_route(
        &backend.url,
        "timeout_ms = 2000\nmax_in_flight = 4",
    ));
    let mut alice = as_user(&b, "alice").await;
    alice.subscribe("e", "/user/queue/errors").await;
    for receipt in ["a1", "a2", "a3"] {
        send_app(&mut alice, "/app/chat.room1", Some(receipt), "hang").await;
    }
    // Her second and third are refused at once; her first still hangs.
    for receipt in ["a2", "a3"] {
        let e = alice.expect(Command::Message).await;
        let json: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(
            (json["receipt-id"].as_str(), json["error"].as_str()),
            (Some(receipt), Some("BACKEND_BUSY"))
        );
    }
    // Meanwhile bob is served.
    let mut bob = as_user(&b, "bob").await;
    bob.subscribe("r", "/user/queue/replies").await;
    send_app(&mut bob, "/app/chat.room1", Some("b1"), "me").await;
    assert_eq!(&bob.expect(Command::Message).await.body[..], b"got: me");
    assert_eq!(
        bob.expect(Command::Receipt).await.headers.get("receipt-id"),
        Some("b1")
    );
}

fn huge(_: &serde_json::Value) -> Answer {
    let body = serde_json::json!({"messages": [{"destination": "/user/queue/replies", "body": "x".repeat(2 << 20)}]});
    (200, body.to_string(), std::time::Duration::ZERO)
}

fn too_many(_: &serde_json::Value) -> Answer {
    let messages: Vec<_> = (0..101)
        .map(|i| serde_json::json!({"destination": "/user/queue/replies", "body": i.to_string()}))
        .collect();
    (
        200,
        serde_json::json!({"messages": messages}).to_string(),
        std::time::Duration::ZERO,
    )
}

#[tokio::test]
async fn a_backend_answer_is_bounded_in_bytes_and_messages() {
    for (answer, says) in [
        (huge as fn(&serde_json::Value) -> Answer, "larger than"),
        (too_many, "more than 100 messages"),
    ] {
        let backend = http_backend(answer).await;
        let b = broker(&http_route(&backend.url, ""));
        let told = told(&b, "BACKEND_FAILED").await;
        assert!(told["message"].as_str().unwrap().contains(says), "{told}");
    }
}

#[tokio::test]
async fn an_http_route_failing_inside_a_transaction_is_told_and_the_session_goes_on() {
    let backend = http_backend(failing).await;
    let b = broker(&http_route(&backend.url, ""));
    let mut alice = as_user(&b, "alice").await;
    alice.subscribe("e", "/user/queue/errors").await;
    begin_with_send(&mut alice, "/app/chat.room1").await;
    alice
        .send(
            Frame::new(Command::Commit)
                .header("transaction", "t1")
                .header("receipt", "c1"),
        )
        .await;
    let told = alice.expect(Command::Message).await;
    let json: serde_json::Value = serde_json::from_slice(&told.body).unwrap();
    assert_eq!(json["error"], "BACKEND_FAILED");
    assert_eq!(
        alice
            .expect(Command::Receipt)
            .await
            .headers
            .get("receipt-id"),
        Some("c1")
    );
    // Still connected.
    alice.subscribe("t", "/topic/after").await;
}

/// What senders give a route is for its backends: a trader cannot read the
/// route's queue (by default traders may read queues), so it cannot take other
/// users' requests from the backend.
#[tokio::test]
async fn a_route_s_queue_is_for_backends_only() {
    let b = broker(ROUTES);
    // Positive control: the backend (a service) subscribes and gets a request.
    let mut service = backend(&b, "/queue/chat").await;
    let mut alice = as_user(&b, "alice").await;
    alice.publish("/app/chat.x", "for the backend").await;
    assert_eq!(
        &service.expect(Command::Message).await.body[..],
        b"for the backend"
    );
    // bob tries to read the requests himself.
    let mut bob = as_user(&b, "bob").await;
    bob.send(
        Frame::new(Command::Subscribe)
            .header("id", "steal")
            .header("destination", "/queue/chat"),
    )
    .await;
    bob.expect_error("not allowed to SUBSCRIBE to /queue/chat")
        .await;
    // Other queues keep the built-in rules.
    let mut carol = as_user(&b, "alice").await;
    carol.subscribe("q", "/queue/elsewhere").await;
}
