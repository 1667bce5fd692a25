//! Topic publish/subscribe over TCP and WebSocket.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, WsKind, broker};
use stompede::codec::{Command, Frame};

#[tokio::test]
async fn every_subscriber_gets_every_message_across_transports() {
    let b = broker("");
    let mut subs = [
        Client::tcp(&b).await,
        Client::ws(&b).await,
        Client::ws(&b).await,
    ];
    for (i, s) in subs.iter_mut().enumerate() {
        s.connect().await;
        s.subscribe(&format!("sub-{i}"), "/topic/prices").await;
    }
    let mut tcp_pub = Client::tcp(&b).await;
    tcp_pub.connect().await;
    let mut ws_pub = Client::ws(&b).await;
    ws_pub.connect().await;
    tcp_pub.publish("/topic/prices", "from tcp").await;
    ws_pub.publish("/topic/prices", "from ws").await;
    for (i, s) in subs.iter_mut().enumerate() {
        let m = s.expect(Command::Message).await;
        assert_eq!(
            m.headers.get("subscription"),
            Some(format!("sub-{i}").as_str())
        );
        assert_eq!(&m.body[..], b"from tcp");
        assert_eq!(s.message_on("/topic/prices").await, "from ws");
    }
}

#[tokio::test]
async fn message_frames_carry_the_required_and_custom_headers() {
    let b = broker("");
    let mut sub = Client::ws(&b).await;
    sub.connect().await;
    sub.subscribe("mine", "/topic/h").await;
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/h")
            .header("content-type", "application/json")
            .header("x-trace", "abc:def")
            .header("subscription", "forged")
            .header("message-id", "forged")
            .header("receipt", "r")
            .body("{\"a\":1}"),
    )
    .await;
    p.expect(Command::Receipt).await;
    let m = sub.expect(Command::Message).await;
    assert_eq!(m.headers.get("destination"), Some("/topic/h"));
    assert_eq!(m.headers.get("subscription"), Some("mine"));
    assert_eq!(m.headers.get("content-type"), Some("application/json"));
    assert_eq!(m.headers.get("content-length"), Some("7"));
    assert_eq!(m.headers.get("x-trace"), Some("abc:def"));
    let id = m.headers.get("message-id").unwrap();
    assert_ne!(id, "forged");
    assert!(
        m.headers.get("receipt").is_none(),
        "the sender's receipt is not forwarded"
    );
    assert_eq!(m.headers.get_all("subscription").count(), 1);
    assert_eq!(&m.body[..], b"{\"a\":1}");
    // Message ids are unique.
    p.publish("/topic/h", "2").await;
    let m2 = sub.expect(Command::Message).await;
    assert_ne!(m2.headers.get("message-id").unwrap(), id);
}

#[tokio::test]
async fn wildcards_follow_rabbitmq_semantics() {
    let b = broker("");
    let mut star = Client::tcp(&b).await;
    star.connect().await;
    star.subscribe("s", "/topic/stock.*").await;
    let mut hash = Client::ws(&b).await;
    hash.connect().await;
    hash.subscribe("h", "/topic/stock.#").await;
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    p.publish("/topic/stock", "zero words").await;
    p.publish("/topic/stock.ACME", "one word").await;
    p.publish("/topic/stock.ACME.bid", "two words").await;
    p.publish("/topic/other.ACME", "elsewhere").await;
    assert_eq!(hash.message_on("/topic/stock").await, "zero words");
    assert_eq!(hash.message_on("/topic/stock.ACME").await, "one word");
    assert_eq!(hash.message_on("/topic/stock.ACME.bid").await, "two words");
    assert_eq!(star.message_on("/topic/stock.ACME").await, "one word");
    // Positive control passed; a marker proves nothing else was queued for `star`.
    p.publish("/topic/stock.END", "marker").await;
    assert_eq!(star.message_on("/topic/stock.END").await, "marker");
}

#[tokio::test]
async fn two_subscriptions_to_one_destination_get_one_copy_each() {
    let b = broker("");
    let mut c = Client::ws(&b).await;
    c.connect().await;
    c.subscribe("a", "/topic/dup").await;
    c.subscribe("b", "/topic/dup").await;
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/dup")
            .header("receipt", "r")
            .body("once"),
    )
    .await;
    let mut ids = vec![];
    for _ in 0..2 {
        let m = c.expect(Command::Message).await;
        assert_eq!(&m.body[..], b"once");
        ids.push(m.headers.get("subscription").unwrap().to_owned());
    }
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    // The receipt comes after the routing it confirms.
    c.expect(Command::Receipt).await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let b = broker("");
    let mut c = Client::tcp(&b).await;
    c.connect().await;
    c.subscribe("gone", "/topic/u").await;
    c.subscribe("kept", "/topic/u2").await;
    c.send(
        Frame::new(Command::Unsubscribe)
            .header("id", "gone")
            .header("receipt", "u"),
    )
    .await;
    c.expect(Command::Receipt).await;
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    p.publish("/topic/u", "not for you").await;
    p.publish("/topic/u2", "for you").await;
    // The only message is the one for the kept subscription.
    let m = c.expect(Command::Message).await;
    assert_eq!(m.headers.get("subscription"), Some("kept"));
    assert_eq!(&m.body[..], b"for you");
}

#[tokio::test]
async fn bodies_with_nuls_survive_and_choose_binary_websocket_messages() {
    let b = broker("");
    let mut sub = Client::ws(&b).await;
    sub.connect().await;
    sub.subscribe("0", "/topic/bin").await;
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/bin")
            .body(&b"text"[..]),
    )
    .await;
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/bin")
            .body(&b"\0\xff\xfe\0"[..]),
    )
    .await;
    assert_eq!(&sub.expect(Command::Message).await.body[..], b"text");
    assert_eq!(
        &sub.expect(Command::Message).await.body[..],
        b"\0\xff\xfe\0"
    );
    // CONNECTED and RECEIPT (text), the text message, then the binary one.
    assert_eq!(sub.ws_kinds.last(), Some(&WsKind::Binary));
    assert!(
        sub.ws_kinds[..sub.ws_kinds.len() - 1]
            .iter()
            .all(|k| *k == WsKind::Text)
    );
}

#[tokio::test]
async fn a_large_body_is_delivered_whole() {
    let b = broker("[limits]\nmax_frame_bytes = 2097152");
    let body: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    let mut sub = Client::tcp(&b).await;
    sub.connect().await;
    sub.subscribe("0", "/topic/big").await;
    let mut p = Client::ws(&b).await;
    p.connect().await;
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/big")
            .body(body.clone()),
    )
    .await;
    let m = sub.expect(Command::Message).await;
    assert_eq!(m.body.len(), body.len());
    assert_eq!(&m.body[..], &body[..]);
}

#[tokio::test]
async fn subscribing_to_other_families_is_refused_for_now() {
    let b = broker("");
    let mut c = Client::tcp(&b).await;
    c.connect().await;
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", "1")
            .header("destination", "/nowhere/x"),
    )
    .await;
    c.expect_error("unknown destination \"/nowhere/x\"").await;
}

// A sender cannot make a subscriber's stompjs (which trims header names) see a
// header only the broker sets: names padded with whitespace or holding a control
// character are refused with an ERROR, over STOMP and `POST /api/publish`, and an
// exact `retained` is stripped like every reserved header.
#[tokio::test]
async fn reserved_headers_cannot_be_spoofed_through_whitespace_or_control_characters() {
    let b = broker("[topics]\nhistory = [\"/topic/h.#\"]");
    let mut sub = Client::tcp(&b).await;
    sub.connect().await;
    sub.subscribe("s", "/topic/h.x").await;
    let padded = [
        " x-stream-gap",
        "x-stream-gap\t",
        "x-stream-offset ",
        "\u{feff}retained",
        "x-stream-gap\u{b}",
        "x\u{1}y",
    ];
    for name in padded {
        let mut evil = Client::tcp(&b).await;
        evil.connect_as("svc", "svc-pw").await;
        let frame = format!("SEND\ndestination:/topic/h.x\n{name}:999999999999999999\n\nfake\0");
        evil.send_raw(frame.as_bytes()).await;
        let e = evil
            .expect_error("whitespace at an end or a control character")
            .await;
        assert!(e.headers.get("message").is_some(), "{name:?}");
    }
    let auth = common::basic("svc", "svc-pw");
    for name in padded {
        let request = serde_json::json!({
            "destination": "/topic/h.x", "body": "fake", "headers": {name: "true"},
        });
        let (status, body) = common::http_post(
            b.http_addr,
            "/api/publish",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            request.to_string().as_bytes(),
        )
        .await;
        assert_eq!(status, 400, "{name:?}: {body}");
        assert!(body.contains("bad_header"), "{body}");
    }
    // The exact names are stripped; the message itself goes through.
    let mut honest = Client::tcp(&b).await;
    honest.connect_as("svc", "svc-pw").await;
    honest
        .send(
            Frame::new(Command::Send)
                .header("destination", "/topic/h.x")
                .header("retained", "true")
                .header("x-stream-gap", "true")
                .header("x-stream-offset", "999999999999999999")
                .header("receipt", "r")
                .body("real"),
        )
        .await;
    honest.expect(Command::Receipt).await;
    let m = sub.expect(Command::Message).await;
    assert_eq!(&m.body[..], b"real", "nothing refused arrived before it");
    assert_eq!(m.headers.get("retained"), None);
    assert_eq!(m.headers.get("x-stream-gap"), None);
    assert_ne!(m.headers.get("x-stream-offset"), Some("999999999999999999"));
    for (k, _) in m.headers.iter() {
        assert_eq!(k, k.trim(), "{:?}", m.headers);
    }
}

// At most `topics.max_retained` destinations keep a retained value: a fourth new
// destination is delivered live but not retained.
#[tokio::test]
async fn at_most_max_retained_destinations_keep_a_value() {
    let b = broker("[topics]\nretain = [\"/topic/r.*\"]\nmax_retained = 3");
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    for d in ["a", "b", "c", "d"] {
        publisher.publish(&format!("/topic/r.{d}"), d).await;
    }
    let mut late = Client::tcp(&b).await;
    late.connect().await;
    late.subscribe("s", "/topic/r.*").await;
    publisher.publish("/topic/r.live", "live").await;
    let mut got = Vec::new();
    loop {
        let m = late.expect(Command::Message).await;
        let body = String::from_utf8(m.body.to_vec()).unwrap();
        if body == "live" {
            break;
        }
        assert_eq!(m.headers.get("retained"), Some("true"));
        got.push(body);
    }
    got.sort();
    assert_eq!(got, ["a", "b", "c"]);
}
