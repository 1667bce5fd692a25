//! WebSocket specifics: subprotocols, frames split over and packed into messages,
//! ping/pong, close handshakes, origins.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, TIMEOUT, broker};
use futures_util::{SinkExt, StreamExt};
use stompede::codec::{Command, Frame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn highest_offered_stomp_subprotocol_is_echoed() {
    let b = broker("");
    for (offer, chosen) in [
        (Some("v10.stomp, v12.stomp, v11.stomp"), Some("v12.stomp")),
        (Some("v11.stomp"), Some("v11.stomp")),
        (Some("v10.stomp,mqtt"), Some("v10.stomp")),
        (None, None),
    ] {
        let mut c = Client::ws_with(b.http_addr, offer, None).await.unwrap();
        assert_eq!(c.subprotocol.as_deref(), chosen, "offered {offer:?}");
        // Either way, the connection speaks STOMP 1.2 when the client asks for it.
        assert_eq!(c.connect().await.headers.get("version"), Some("1.2"));
    }
}

#[tokio::test]
async fn several_frames_in_one_message_and_one_frame_over_several() {
    let b = broker("");
    let mut c = Client::ws(&b).await;
    c.send_raw(
        b"CONNECT\naccept-version:1.2\nhost:h\nlogin:svc\npasscode:svc-pw\n\n\0SUBSCRIBE\nid:0\ndestination:/topic/w\nreceipt:r\n\n\0SEND\ndestination:/topic/w\n\npacked\0",
    )
    .await;
    c.expect(Command::Connected).await;
    c.expect(Command::Receipt).await;
    assert_eq!(c.message_on("/topic/w").await, "packed");
    // One SEND split over many messages, like stompjs's splitLargeFrames.
    let frame = b"SEND\ndestination:/topic/w\ncontent-length:11\n\nsplit apart\0";
    for chunk in frame.chunks(5) {
        c.send_raw(chunk).await;
    }
    assert_eq!(c.message_on("/topic/w").await, "split apart");
}

#[tokio::test]
async fn binary_websocket_messages_carry_frames_too() {
    let b = broker("");
    let mut c = Client::ws(&b).await;
    c.send_ws(Message::binary(&b"CONNECT\naccept-version:1.2\n\n\0"[..]))
        .await;
    c.expect(Command::Connected).await;
    c.send_ws(Message::binary(
        &b"SUBSCRIBE\nid:0\ndestination:/topic/b\nreceipt:r\n\n\0"[..],
    ))
    .await;
    c.expect(Command::Receipt).await;
}

#[tokio::test]
async fn ping_is_answered_with_pong_and_close_is_clean() {
    let b = broker("");
    let req = format!("ws://{}/ws", b.http_addr)
        .into_client_request()
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text("CONNECT\naccept-version:1.2\n\n\0"))
        .await
        .unwrap();
    let connected = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(connected.to_text().unwrap().starts_with("CONNECTED"));
    ws.send(Message::Ping("are you there".into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong("are you there".into()));
    ws.close(None).await.unwrap();
    // The broker answers the close handshake, then the stream ends.
    let mut saw_close = false;
    while let Some(msg) = tokio::time::timeout(TIMEOUT, ws.next()).await.unwrap() {
        match msg {
            Ok(Message::Close(_)) => saw_close = true,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => {
                eprintln!("client read error: {e}");
                break;
            }
        }
    }
    assert!(saw_close);
}

#[tokio::test]
async fn foreign_origins_are_refused_when_origins_are_configured() {
    let b = broker("[server]\nallowed_origins = [\"http://good.example\"]");
    assert_eq!(
        Client::ws_with(b.http_addr, Some("v12.stomp"), Some("http://evil.example"))
            .await
            .err(),
        Some(403)
    );
    let mut good = Client::ws_with(b.http_addr, Some("v12.stomp"), Some("http://good.example"))
        .await
        .unwrap();
    good.connect().await;
    // Non-browser clients send no Origin and are let in.
    let mut service = Client::ws_with(b.http_addr, Some("v12.stomp"), None)
        .await
        .unwrap();
    service.connect().await;
}

#[tokio::test]
async fn any_origin_is_accepted_when_none_are_configured() {
    let b = broker("");
    let mut c = Client::ws_with(b.http_addr, None, Some("http://anywhere.example"))
        .await
        .unwrap();
    c.connect().await;
}

#[tokio::test]
async fn oversized_websocket_messages_get_an_error() {
    let b = broker("[limits]\nmax_frame_bytes = 32768");
    // Within the WebSocket limit but over the frame limit: the codec names the limit.
    let mut c = Client::ws(&b).await;
    c.connect().await;
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/a")
            .body(vec![b'x'; 40_000]),
    )
    .await;
    c.expect_error("max_frame_bytes exceeded").await;
    // Over the WebSocket message limit (twice the frame limit, at least 64 KiB).
    let mut c = Client::ws(&b).await;
    c.connect().await;
    c.send_raw(&vec![b'x'; 200_000]).await;
    c.expect_error("too large").await;
}

#[tokio::test]
async fn plain_http_on_ws_path_is_a_bad_request() {
    let b = broker("");
    let (status, body) = common::http_get(b.http_addr, "/ws").await;
    assert_eq!(status, 400);
    assert!(body.contains("WebSocket upgrade"));
}

/// `server.ws_paths`: the paths a Spring page connects to (`/stock-trading`)
/// serve STOMP over WebSocket, with the same origin check; a path not listed
/// does not.
#[tokio::test]
async fn the_websocket_paths_are_configurable() {
    let b = common::broker(
        "[server]\nws_paths = [\"/stock-trading\", \"/gs-guide-websocket\"]\nallowed_origins = [\"https://shop.example\"]",
    );
    for path in ["/stock-trading", "/gs-guide-websocket"] {
        let mut c = common::Client::ws_at(
            b.http_addr,
            path,
            Some("v12.stomp"),
            Some("https://shop.example"),
        )
        .await
        .unwrap();
        c.connect_anonymously().await;
        let refused = common::Client::ws_at(
            b.http_addr,
            path,
            Some("v12.stomp"),
            Some("https://evil.example"),
        )
        .await;
        assert_eq!(refused.err(), Some(403), "{path}");
    }
    assert_eq!(
        common::Client::ws_at(b.http_addr, "/ws", Some("v12.stomp"), None)
            .await
            .err(),
        Some(404)
    );
}

#[test]
fn a_websocket_path_must_be_a_path_of_its_own() {
    for bad in [
        "[]",
        "[\"ws\"]",
        "[\"/\"]",
        "[\"/metrics\"]",
        "[\"/api/x\"]",
        "[\"/a/../b\"]",
        "[\"/ws\", \"/ws\"]",
        "[\"/ws?x=1\"]",
    ] {
        let e = stompede::config::Config::from_toml(&format!("[server]\nws_paths = {bad}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.ws_paths"), "{bad}: {e}");
    }
}
