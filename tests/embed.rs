//! A broker embedded in a Rust program with an `/app` handler of its own: the
//! chat of `examples/embed.rs`, run here as it is written, beside the built-in
//! trading app, which is registered through the same public API.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

#[allow(dead_code)]
#[path = "../examples/embed.rs"]
mod embed;

use common::{Client, test_config};
use std::sync::Arc;
use stompede::codec::{Command, Frame};
use stompede::server::{Builder, StartError};

fn json(frame: &Frame) -> serde_json::Value {
    serde_json::from_slice(&frame.body).unwrap()
}

#[tokio::test]
async fn the_embedded_chat_handler_serves_its_rooms() {
    let (config, _store) = test_config("");
    let b = embed::chat_broker(config).unwrap();
    let mut alice = Client::tcp_at(b.stomp_addr.unwrap()).await;
    alice.connect_as("alice", "alice-pw").await;
    alice.subscribe("s", "/topic/chat.room1").await;
    let mut anonymous = Client::tcp_at(b.stomp_addr.unwrap()).await;
    anonymous.connect_anonymously().await;
    anonymous.subscribe("s", "/topic/chat.room1").await;
    let mut bob = Client::tcp_at(b.stomp_addr.unwrap()).await;
    bob.connect_as("bob", "bob-pw").await;
    bob.subscribe("e", "/user/queue/errors").await;
    // A header claiming another sender changes nothing: the login is the session's.
    bob.send(
        Frame::new(Command::Send)
            .header("destination", "/app/chat.room1")
            .header("from", "alice")
            .header("receipt", "r1")
            .body("hello, room 1"),
    )
    .await;
    assert_eq!(
        bob.expect(Command::Receipt).await.headers.get("receipt-id"),
        Some("r1")
    );
    let want = serde_json::json!({"room": "room1", "from": "bob", "text": "hello, room 1"});
    for c in [&mut alice, &mut anonymous] {
        let m = c.expect(Command::Message).await;
        assert_eq!(m.headers.get("destination"), Some("/topic/chat.room1"));
        assert_eq!(json(&m), want);
    }
    // A bad line: the sender is told on its own error queue, and stays.
    bob.send(
        Frame::new(Command::Send)
            .header("destination", "/app/chat.room1")
            .header("receipt", "r2")
            .body("   "),
    )
    .await;
    // The handler answers before the session's RECEIPT is queued.
    let e = bob.expect(Command::Message).await;
    bob.expect(Command::Receipt).await;
    assert_eq!(e.headers.get("receipt-id"), Some("r2"));
    assert_eq!(json(&e)["error"], "EMPTY_OR_TOO_LONG");
    bob.publish("/app/chat.room1", "still here").await;
    for c in [&mut alice, &mut anonymous] {
        assert_eq!(
            json(&c.expect(Command::Message).await)["text"],
            "still here"
        );
    }
    // Only one word after chat.: no handler for deeper destinations.
    bob.send(
        Frame::new(Command::Send)
            .header("destination", "/app/chat.room1.sub")
            .body("x"),
    )
    .await;
    bob.expect_error("no handler for /app/chat.room1.sub").await;
    // An anonymous session never reaches a handler.
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
}

#[tokio::test]
async fn the_trading_app_is_registered_through_the_same_api() {
    let (config, _store) = test_config("");
    let b = embed::chat_broker(config).unwrap();
    let mut alice = Client::tcp_at(b.stomp_addr.unwrap()).await;
    alice.connect_as("alice", "alice-pw").await;
    alice.subscribe("e", "/user/queue/errors").await;
    alice.trade("not an order").await;
    let e = alice.expect(Command::Message).await;
    assert_eq!(e.headers.get("destination"), Some("/user/queue/errors"));
    assert!(json(&e)["error"].is_string(), "{e:?}");
}

#[tokio::test]
async fn a_handler_outside_app_or_on_a_taken_destination_stops_the_start() {
    let (config, _store) = test_config("");
    let refused = Builder::new(config)
        .app("/topic/chat", embed::Chat::handler)
        .start()
        .err()
        .unwrap();
    assert!(matches!(refused, StartError::App(_)), "{refused}");
    assert!(refused.to_string().contains("/topic/chat"), "{refused}");
    // The trading app holds /app/trade when it is enabled.
    let (config, _store) = test_config("");
    let refused = Builder::new(config)
        .app("/app/trade", |ctx| embed::Chat::handler(ctx))
        .start()
        .err()
        .unwrap();
    assert!(
        refused.to_string().contains("has a handler already"),
        "{refused}"
    );
    // With trading off, /app/trade is free for the embedder's own handler.
    let (config, _store) = test_config("[trading]\nenabled = false");
    let b = Builder::new(config)
        .app("/app/trade", |ctx| {
            Arc::new(Echo(ctx.engine())) as Arc<dyn stompede::app::AppHandler>
        })
        .start()
        .unwrap();
    let mut alice = Client::tcp_at(b.stomp_addr.unwrap()).await;
    alice.connect_as("alice", "alice-pw").await;
    alice.subscribe("s", "/topic/echo").await;
    alice.trade("an order?").await;
    assert_eq!(alice.message_on("/topic/echo").await, "alice: an order?");
}

/// Publishes what it is sent to `/topic/echo`.
#[derive(Debug)]
struct Echo(Arc<dyn stompede::engine::Engine>);

impl stompede::app::AppHandler for Echo {
    fn handle(&self, sender: stompede::app::Sender<'_>, send: &stompede::command::Send) {
        let body = format!("{}: {}", sender.login, String::from_utf8_lossy(&send.body));
        let _ = self
            .0
            .publish_topic("/topic/echo", &Default::default(), body.into());
    }
}

/// An in-process worker for the route `/app/orders.#` → `/queue/orders`:
/// confirms each order to its sender; gives back an order saying "retry" the
/// first time it sees it.
fn order_worker(ctx: &stompede::app::AppContext) {
    let engine = ctx.engine();
    let context = ctx.clone();
    let stop = ctx.shutdown();
    ctx.spawn(async move {
        let mut orders = context.consume("orders", 10).await.unwrap();
        loop {
            let delivery = tokio::select! {
                () = stop.cancelled() => return,
                d = orders.next() => match d { Some(d) => d, None => return },
            };
            let body = String::from_utf8_lossy(&delivery.body).into_owned();
            let again = delivery.headers.get("redelivered") == Some("true");
            if body == "retry" && !again {
                orders.nack(&delivery).await.unwrap();
                continue;
            }
            let login = delivery.headers.get("x-app-login").unwrap().to_owned();
            let confirmation = format!("confirmed: {body}{}", if again { " (again)" } else { "" });
            let _ = engine.publish_user(
                &login,
                "confirmations",
                &Default::default(),
                confirmation.into(),
            );
            orders.ack(&delivery).await.unwrap();
        }
    });
}

/// SENDs an order, without a receipt (the confirmation may come before one).
async fn order(c: &mut Client, body: &str) {
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/app/orders.new")
            .body(body.to_owned()),
    )
    .await;
}

#[tokio::test]
async fn an_in_process_worker_consumes_a_queue_route_beside_stomp_consumers() {
    let (config, _store) = test_config(
        "[trading]\nenabled = false\n[[app.routes]]\nmatch = \"/app/orders.#\"\nqueue = \"orders\"",
    );
    let b = Builder::new(config).service(order_worker).start().unwrap();
    let mut alice = Client::tcp_at(b.stomp_addr.unwrap()).await;
    alice.connect_as("alice", "alice-pw").await;
    alice.subscribe("c", "/user/queue/confirmations").await;
    order(&mut alice, "buy 1").await;
    assert_eq!(
        alice.message_on("/user/queue/confirmations").await,
        "confirmed: buy 1"
    );
    // Given back once, then confirmed on its redelivery.
    order(&mut alice, "retry").await;
    assert_eq!(
        alice.message_on("/user/queue/confirmations").await,
        "confirmed: retry (again)"
    );
    // A STOMP consumer of the same queue competes with the worker: every order
    // is handled once, by one of them.
    let mut svc = Client::tcp_at(b.stomp_addr.unwrap()).await;
    svc.connect().await;
    svc.subscribe_with("q", "/queue/orders", &[("ack", "auto"), ("receipt", "s")])
        .await;
    for i in 0..20 {
        order(&mut alice, &format!("o{i}")).await;
    }
    let mut by_worker = 0;
    let mut by_svc = 0;
    let mut seen = std::collections::BTreeSet::new();
    while by_worker + by_svc < 20 {
        tokio::select! {
            m = alice.next_frame() => {
                let body = String::from_utf8(m.unwrap().body.to_vec()).unwrap();
                assert!(seen.insert(body.trim_start_matches("confirmed: ").to_owned()), "twice: {body}");
                by_worker += 1;
            }
            m = svc.next_frame() => {
                let m = m.unwrap();
                assert_eq!(m.command, Command::Message, "{m:?}");
                let body = String::from_utf8(m.body.to_vec()).unwrap();
                assert!(seen.insert(body.clone()), "twice: {body}");
                by_svc += 1;
            }
        }
    }
    assert_eq!(seen.len(), 20);
}
