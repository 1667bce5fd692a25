//! Hostile frames: header injection, heart-beat overflow, bad handshakes.

use crate::common::{Client, broker};
use stompede::codec::Command;

#[tokio::test]
async fn a_nul_in_a_header_is_refused_and_never_forwarded() {
    let b = broker("");
    let mut sub = Client::tcp(&b).await;
    sub.connect_anonymously().await;
    sub.subscribe("s", "/topic/inj").await;
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    // A header value with a raw NUL and, escaped, the head of a forged MESSAGE.
    svc.send_raw(
        b"SEND\ndestination:/topic/inj\nx-evil:a\0\\nMESSAGE\\nsubscription\\cs\\nmessage-id\\cforged\\n\\nforged\nreceipt:r\n\nreal\0",
    )
    .await;
    let e = svc.expect_error("NUL").await;
    assert!(e.headers.get("message").unwrap().contains("header"));
    // A NUL in a header name is refused the same way.
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.send_raw(b"SEND\ndestination:/topic/inj\nx\0y:1\n\nreal\0")
        .await;
    svc.expect_error("NUL").await;
    // Nothing reached the subscriber: its first MESSAGE is this control.
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.publish("/topic/inj", "control").await;
    let m = sub.expect(Command::Message).await;
    assert_eq!(&m.body[..], b"control");
    assert!(m.headers.get("x-evil").is_none());
}

#[tokio::test]
async fn an_overflowing_heart_beat_does_not_drop_the_client() {
    let b = broker("");
    let mut c = Client::tcp(&b).await;
    c.send(
        stompede::codec::Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header("heart-beat", "18446744073709546616,18446744073709546616"),
    )
    .await;
    let connected = c.expect(Command::Connected).await;
    assert_eq!(connected.headers.get("heart-beat"), Some("10000,10000"));
    c.subscribe("s", "/topic/hb").await;
    let mut svc = Client::tcp(&b).await;
    svc.connect().await;
    svc.publish("/topic/hb", "one").await;
    assert_eq!(c.message_on("/topic/hb").await, "one");
    // That such a session also outlives long silences is tested with paused time
    // in the session's unit tests (huge heart-beats wrapped around and dropped the
    // client at once).
}

#[tokio::test]
async fn subscriptions_are_bounded_in_bytes() {
    let b = broker("[limits]\nmax_subscription_bytes = 65536");
    let mut c = Client::tcp(&b).await;
    c.connect_anonymously().await;
    let mut made = 0;
    let error = loop {
        let id = format!("{made:08}{}", "i".repeat(8000));
        c.send(
            stompede::codec::Frame::new(Command::Subscribe)
                .header("id", id)
                .header("destination", "/topic/a")
                .header("receipt", "r"),
        )
        .await;
        let answer = c.next_frame().await.unwrap();
        if answer.command == Command::Error {
            break answer;
        }
        made += 1;
        assert!(made < 1024, "no byte limit on subscriptions");
    };
    assert!(
        error
            .headers
            .get("message")
            .unwrap()
            .contains("limits.max_subscription_bytes")
    );
    // 64 KiB holds 8 subscriptions of 8,008-byte ids on /topic/a, not 9.
    assert_eq!(made, 8);
    // Unsubscribing gives the bytes back.
    let mut c = Client::tcp(&b).await;
    c.connect_anonymously().await;
    for round in 0..20 {
        let id = format!("{round}{}", "i".repeat(8000));
        c.subscribe(&id, "/topic/a").await;
        c.send(stompede::codec::Frame::new(Command::Unsubscribe).header("id", id))
            .await;
    }
    c.subscribe("last", "/topic/a").await;
}

#[tokio::test]
async fn a_websocket_handshake_needs_a_real_key() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = broker("");
    let handshake = |key: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
    };
    for (key, status) in [
        ("!!!", "400"),
        ("dGhlIHNhbXBsZSBub25jZQ", "400"),
        ("dGhlIHNhbXBsZSBub25jZQ==x", "400"),
        ("dGhlIHNhbXBsZSBub25jZR==", "400"),
        ("dGhlIHNhbXBsZSBub25jZQ==", "101"),
    ] {
        let mut s = tokio::net::TcpStream::connect(b.http_addr).await.unwrap();
        s.write_all(handshake(key).as_bytes()).await.unwrap();
        let mut head = vec![0u8; 12];
        tokio::time::timeout(crate::common::TIMEOUT, s.read_exact(&mut head))
            .await
            .unwrap()
            .unwrap();
        let head = String::from_utf8_lossy(&head).into_owned();
        assert_eq!(&head[9..12], status, "{key}: {head}");
    }
}
