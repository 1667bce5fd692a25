//! Connection limits, HTTP endpoints and metrics.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, broker, http_get, metric};
use std::time::Duration;
use stompede::codec::Command;

#[tokio::test]
async fn connections_past_the_limit_are_refused_cleanly_and_counted() {
    let b = broker("[limits]\nmax_connections = 2");
    let mut first = Client::tcp(&b).await;
    first.connect().await;
    let mut second = Client::ws(&b).await;
    second.connect().await;
    let (_, before) = http_get(b.http_addr, "/metrics").await;
    // TCP: an ERROR saying why, then close.
    let mut third = Client::tcp(&b).await;
    third.expect_error("too many connections").await;
    // WebSocket: HTTP 503 before the upgrade.
    assert_eq!(
        Client::ws_with(b.http_addr, Some("v12.stomp"), None)
            .await
            .err(),
        Some(503)
    );
    let (_, after) = http_get(b.http_addr, "/metrics").await;
    for t in ["tcp", "ws"] {
        let key = format!("stompede_connections_refused_total{{transport=\"{t}\"}}");
        assert!(
            metric(&after, &key).unwrap() >= metric(&before, &key).unwrap_or(0.0) + 1.0,
            "{t}"
        );
    }
    // The connections inside the limit still work, and a freed slot can be reused.
    first.publish("/topic/x", "ok").await;
    drop(second);
    let mut again = None;
    for _ in 0..50 {
        if b.broker.connection_count() < 2 {
            again = Some(Client::ws(&b).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    again.expect("slot freed").connect().await;
}

#[tokio::test]
async fn health_readiness_and_not_found() {
    let b = broker("");
    assert_eq!(
        http_get(b.http_addr, "/healthz").await,
        (200, "ok\n".to_owned())
    );
    assert_eq!(
        http_get(b.http_addr, "/readyz").await,
        (200, "ready\n".to_owned())
    );
    assert_eq!(http_get(b.http_addr, "/nope").await.0, 404);
    let (status, page) = http_get(b.http_addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("stompede"));
}

#[tokio::test]
async fn metrics_count_connections_frames_messages_and_errors() {
    let b = broker("");
    let mut sub = Client::ws(&b).await;
    sub.connect().await;
    sub.subscribe("0", "/topic/m").await;
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    p.publish("/topic/m", "counted").await;
    sub.message_on("/topic/m").await;
    let mut bad = Client::tcp(&b).await;
    bad.connect().await;
    bad.send_raw(b"BOGUS\n\n\0").await;
    bad.expect(Command::Error).await;
    let (status, text) = http_get(b.http_addr, "/metrics").await;
    assert_eq!(status, 200);
    let at_least = |key: &str, min: f64| {
        let v = metric(&text, key).unwrap_or_else(|| panic!("{key} missing from /metrics"));
        assert!(v >= min, "{key} = {v} < {min}");
    };
    at_least("stompede_connections{transport=\"ws\"}", 1.0);
    at_least("stompede_connections{transport=\"tcp\"}", 1.0);
    at_least("stompede_connections_total{transport=\"tcp\"}", 2.0);
    at_least("stompede_frames_received_total{command=\"SEND\"}", 1.0);
    at_least("stompede_frames_received_total{command=\"SUBSCRIBE\"}", 1.0);
    at_least("stompede_frames_sent_total{command=\"MESSAGE\"}", 1.0);
    at_least("stompede_messages_published_total", 1.0);
    at_least("stompede_messages_delivered_total", 1.0);
    at_least("stompede_bytes_received_total", 1.0);
    at_least("stompede_bytes_sent_total", 1.0);
    at_least(
        "stompede_errors_sent_total{reason=\"malformed_frame\"}",
        1.0,
    );
    at_least("stompede_subscriptions", 1.0);
    at_least("stompede_publish_to_write_seconds_count", 1.0);
    assert!(text.contains("stompede_slow_consumer_disconnects_total"));
    // Label values come from fixed sets: no destination names leak into labels.
    assert!(!text.contains("/topic/m"));
}
