//! Session protocol over real sockets: CONNECT negotiation, receipts, DISCONNECT,
//! heart-beats, timeouts, and every protocol error path.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, broker};
use std::time::Duration;
use stompede::codec::{Command, Frame};

#[tokio::test]
async fn connect_negotiates_the_highest_common_version() {
    let b = broker("");
    for (accept, expected) in [
        (Some("1.0,1.1,1.2"), "1.2"),
        (Some("1.1,1.0"), "1.1"),
        (None, "1.0"),
    ] {
        let mut c = Client::tcp(&b).await;
        let mut f = Frame::new(Command::Connect).header("host", "localhost");
        if let Some(a) = accept {
            f = f.header("accept-version", a);
        }
        c.send(f).await;
        let connected = c.expect(Command::Connected).await;
        assert_eq!(connected.headers.get("version"), Some(expected));
        assert!(
            connected
                .headers
                .get("server")
                .unwrap()
                .starts_with("stompede/")
        );
        assert!(
            connected
                .headers
                .get("session")
                .unwrap()
                .starts_with("session-")
        );
        assert_eq!(connected.headers.get("heart-beat"), Some("0,0"));
    }
}

#[tokio::test]
async fn stomp_command_connects_like_connect() {
    let b = broker("");
    let mut c = Client::ws(&b).await;
    c.send(
        Frame::new(Command::Stomp)
            .header("accept-version", "1.2")
            .header("host", "h"),
    )
    .await;
    assert_eq!(
        c.expect(Command::Connected).await.headers.get("version"),
        Some("1.2")
    );
}

#[tokio::test]
async fn unsupported_version_is_an_error() {
    let b = broker("");
    let mut c = Client::tcp(&b).await;
    c.send(Frame::new(Command::Connect).header("accept-version", "2.0,3.0"))
        .await;
    c.expect_error("supported protocol versions are 1.0,1.1,1.2")
        .await;
}

#[tokio::test]
async fn frames_before_connect_are_errors() {
    let b = broker("");
    let mut c = Client::tcp(&b).await;
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/a")
            .header("receipt", "r9"),
    )
    .await;
    let e = c.expect_error("expected CONNECT or STOMP, got SEND").await;
    assert_eq!(e.headers.get("receipt-id"), Some("r9"));
}

#[tokio::test]
async fn second_connect_is_an_error() {
    let b = broker("");
    let mut c = Client::tcp(&b).await;
    c.connect().await;
    c.send(Frame::new(Command::Connect).header("accept-version", "1.2"))
        .await;
    c.expect_error("already connected").await;
}

#[tokio::test]
async fn receipts_follow_each_frame_that_asks() {
    let b = broker("");
    let mut c = Client::ws(&b).await;
    c.connect().await;
    for (i, frame) in [
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/topic/r"),
        Frame::new(Command::Send)
            .header("destination", "/topic/nobody")
            .body("x"),
        Frame::new(Command::Ack).header("id", "whatever"),
        Frame::new(Command::Unsubscribe).header("id", "s"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("receipt-{i}");
        c.send(frame.header("receipt", id.as_str())).await;
        let r = c.expect(Command::Receipt).await;
        assert_eq!(r.headers.get("receipt-id"), Some(id.as_str()));
    }
}

#[tokio::test]
async fn disconnect_with_receipt_answers_then_closes() {
    let b = broker("");
    for mut c in [Client::tcp(&b).await, Client::ws(&b).await] {
        c.connect().await;
        c.send(Frame::new(Command::Disconnect).header("receipt", "bye"))
            .await;
        assert_eq!(
            c.expect(Command::Receipt).await.headers.get("receipt-id"),
            Some("bye")
        );
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn protocol_errors_carry_a_message_and_the_receipt_id() {
    let b = broker("[limits]\nmax_subscriptions = 1");
    let cases: Vec<(Vec<Frame>, &str)> = vec![
        (
            vec![Frame::new(Command::Send).body("x")],
            "missing required header 'destination' in SEND",
        ),
        (
            vec![Frame::new(Command::Subscribe).header("destination", "/topic/a")],
            "missing required header 'id'",
        ),
        (
            vec![
                Frame::new(Command::Subscribe)
                    .header("id", "1")
                    .header("destination", "/topic/a")
                    .header("ack", "sometimes"),
            ],
            "invalid ack mode",
        ),
        (
            vec![
                Frame::new(Command::Subscribe)
                    .header("id", "1")
                    .header("destination", "/topic/a"),
                Frame::new(Command::Subscribe)
                    .header("id", "1")
                    .header("destination", "/topic/b"),
            ],
            "subscription id \"1\" is already in use",
        ),
        (
            vec![
                Frame::new(Command::Subscribe)
                    .header("id", "1")
                    .header("destination", "/topic/a"),
                Frame::new(Command::Subscribe)
                    .header("id", "2")
                    .header("destination", "/topic/b"),
            ],
            "subscription limit reached: at most 1",
        ),
        (
            vec![Frame::new(Command::Send).header("destination", "/nowhere/x")],
            "unknown destination \"/nowhere/x\"",
        ),
        (
            vec![Frame::new(Command::Send).header("destination", "/topic/a.*")],
            "cannot send to wildcard",
        ),
        (
            vec![Frame::new(Command::Message).header("destination", "/topic/a")],
            "MESSAGE frames are sent by servers",
        ),
        (
            vec![Frame::new(Command::Ack)],
            "missing required header 'id' in ACK",
        ),
    ];
    for (frames, expected) in cases {
        let mut c = Client::tcp(&b).await;
        c.connect().await;
        let n = frames.len();
        for (i, f) in frames.into_iter().enumerate() {
            let last = i + 1 == n;
            c.send(f.header("receipt", if last { "bad" } else { "ok" }))
                .await;
            if !last {
                c.expect(Command::Receipt).await;
            }
        }
        let e = c.expect_error(expected).await;
        assert_eq!(e.headers.get("receipt-id"), Some("bad"), "{expected}");
        assert_eq!(e.headers.get("content-type"), Some("text/plain"));
        assert!(!e.body.is_empty());
    }
}

#[tokio::test]
async fn malformed_frames_get_an_error_and_disturb_nobody() {
    let b = broker("");
    let mut bystander = Client::ws(&b).await;
    bystander.connect().await;
    bystander.subscribe("0", "/topic/calm").await;
    let mut publisher = Client::tcp(&b).await;
    publisher.connect().await;
    for (raw, expected) in [
        (&b"FLY\n\n\0"[..], "unknown command \"FLY\""),
        (b"SEND\nno colon here\n\n\0", "malformed header line"),
        (
            b"SEND\ndestination:/topic/a\\tb\n\n\0",
            "invalid escape sequence",
        ),
        (
            b"SEND\ndestination:/topic/a\ncontent-length:x\n\n\0",
            "invalid content-length",
        ),
        (
            b"SEND\ndestination:/topic/a\ncontent-length:1\n\nab\0",
            "not terminated by NUL",
        ),
        (
            b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\nbody\0",
            "SUBSCRIBE frames must not have a body",
        ),
    ] {
        let mut bad = Client::tcp(&b).await;
        bad.connect().await;
        bad.send_raw(raw).await;
        bad.expect_error(expected).await;
        publisher.publish("/topic/calm", expected).await;
        assert_eq!(bystander.message_on("/topic/calm").await, expected);
    }
}

#[tokio::test]
async fn oversized_frames_are_refused_with_the_limit_named() {
    let b = broker("[limits]\nmax_frame_bytes = 1000");
    let mut c = Client::tcp(&b).await;
    c.connect().await;
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/a")
            .body(vec![b'x'; 2000]),
    )
    .await;
    c.expect_error("max_frame_bytes exceeded").await;
    // A frame that never ends is cut off too, once it passes the limit.
    let mut c = Client::tcp(&b).await;
    c.connect().await;
    c.send_raw(b"SEND\ndestination:/topic/a\n\n").await;
    c.send_raw(&[b'y'; 1500]).await;
    c.expect_error("exceeded").await;
}

#[tokio::test]
async fn connect_must_come_within_the_timeout() {
    let b = broker("[limits]\nconnect_timeout_ms = 300");
    let mut silent = Client::tcp(&b).await;
    let mut prompt = Client::tcp(&b).await;
    prompt.connect().await;
    silent
        .expect_error("CONNECT not completed within 300 ms")
        .await;
    // The prompt client is unaffected by the timeout.
    prompt.publish("/topic/x", "still here").await;
}

#[tokio::test]
async fn broker_sends_heartbeats_when_asked() {
    let b = broker("[heartbeat]\nserver_ms = 100");
    for mut c in [Client::tcp(&b).await, Client::ws(&b).await] {
        c.send(
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("heart-beat", "0,50"),
        )
        .await;
        let connected = c.expect(Command::Connected).await;
        assert_eq!(connected.headers.get("heart-beat"), Some("100,0"));
        // Negotiated max(100, 50) = 100 ms: several beats arrive within a second.
        for _ in 0..3 {
            assert!(
                c.heartbeat_within(Duration::from_secs(1)).await,
                "no heart-beat"
            );
        }
    }
}

#[tokio::test]
async fn silent_client_is_closed_after_its_heartbeat_timeout() {
    let b = broker("[heartbeat]\nserver_ms = 100\ngrace_ms = 100");
    let mut c = Client::tcp(&b).await;
    c.send(
        Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("heart-beat", "100,0"),
    )
    .await;
    assert_eq!(
        c.expect(Command::Connected).await.headers.get("heart-beat"),
        Some("0,100")
    );
    // Closed after 100 + 100 ms of silence. That a beating client stays, and that
    // the deadline falls on the exact millisecond, is tested with paused time in
    // the session's unit tests.
    c.expect_error("no heart-beat or frame from client for 200 ms")
        .await;
}

#[tokio::test]
async fn client_heartbeats_and_crlf_between_frames_are_accepted() {
    let b = broker("");
    let mut c = Client::tcp(&b).await;
    c.send_raw(
        b"\n\r\nCONNECT\r\naccept-version:1.2\r\nlogin:svc\r\npasscode:svc-pw\r\n\r\n\0\n\n",
    )
    .await;
    c.expect(Command::Connected).await;
    c.send_raw(b"\r\n\nSEND\ndestination:/topic/x\nreceipt:r\n\nbody\0\n")
        .await;
    c.expect(Command::Receipt).await;
}

#[tokio::test]
async fn stomp_1_0_subscribe_without_id_uses_the_destination() {
    let b = broker("");
    let mut c = Client::tcp(&b).await;
    c.send(Frame::new(Command::Connect)).await;
    assert_eq!(
        c.expect(Command::Connected).await.headers.get("version"),
        Some("1.0")
    );
    c.send(
        Frame::new(Command::Subscribe)
            .header("destination", "/topic/old")
            .header("receipt", "r"),
    )
    .await;
    c.expect(Command::Receipt).await;
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    p.publish("/topic/old", "hi").await;
    let m = c.expect(Command::Message).await;
    assert_eq!(m.headers.get("subscription"), Some("/topic/old"));
    c.send(
        Frame::new(Command::Unsubscribe)
            .header("destination", "/topic/old")
            .header("receipt", "u"),
    )
    .await;
    c.expect(Command::Receipt).await;
}
