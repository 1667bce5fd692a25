//! The operators' listener: `/metrics`, health and the admin API outside the
//! client limits, answering however the public port is flooded.

use crate::common::{TIMEOUT, basic, broker, connect_from, http_get, http_request, metric};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const OPS: &str = "[server]\nops_addr = \"127.0.0.1:0\"\n";

#[tokio::test]
async fn metrics_and_the_admin_api_move_to_the_operators_listener() {
    let b = broker(OPS);
    let ops = b.ops_addr.unwrap();
    let public = b.http_addr;
    let (status, text) = http_get(ops, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metric(&text, "stompede_draining").is_some(), "{text}");
    for path in ["/healthz", "/readyz"] {
        assert_eq!(http_get(ops, path).await.0, 200, "{path} on ops");
        assert_eq!(
            http_get(public, path).await.0,
            200,
            "{path} on the public port"
        );
    }
    let root = basic("root", "root-pw");
    let auth = [("Authorization", root.as_str())];
    let (status, stats) = http_request(ops, "GET", "/api/stats", &auth, b"").await;
    assert_eq!(status, 200, "{stats}");
    assert!(stats.contains("\"draining\":false"), "{stats}");
    let publish = "/api/publish?destination=/topic/ops";
    assert_eq!(
        http_request(ops, "POST", publish, &auth, b"hi").await.0,
        202
    );
    // Gone from the public port, whatever the credentials.
    let (status, body) = http_get(public, "/metrics").await;
    assert_eq!(status, 404);
    assert!(body.contains("server.ops_addr"), "{body}");
    for (method, path) in [
        ("GET", "/api/stats"),
        ("POST", publish),
        ("POST", "/api/reload"),
        ("POST", "/api/drain"),
    ] {
        let (status, _) = http_request(public, method, path, &auth, b"").await;
        assert_eq!(status, 404, "{method} {path} on the public port");
    }
    // And the clients' routes are not on the operators' listener.
    assert_eq!(http_get(ops, "/").await.0, 404);
    assert_eq!(http_get(ops, "/ws").await.0, 404);
    assert_eq!(http_get(public, "/").await.0, 200);
}

/// Every HTTP slot of the public port taken, and clients connecting as fast as
/// they can: the operators' listener answers every request at once, and is
/// not counted per address.
#[tokio::test]
async fn a_client_flood_on_the_public_port_does_not_reach_the_operators() {
    let b = broker(&format!(
        "{OPS}[limits]\nmax_http_connections = 16\nmax_connections_per_ip = 4"
    ));
    let (ops, public) = (b.ops_addr.unwrap(), b.http_addr);
    // Hold every HTTP slot, from four addresses (a quarter each).
    let mut idle = Vec::new();
    for i in 0..16 {
        let local = format!("127.0.0.{}", 10 + i / 4);
        idle.push(connect_from(&local, public).await.unwrap());
    }
    // Positive control: the public port is full for a new client.
    let mut s = connect_from("127.0.0.20", public).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // A flood of new connections, bounded in count and time.
    let flood = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut n = 0;
        while n < 20_000 && tokio::time::Instant::now() < deadline {
            let local = format!("127.0.1.{}", n % 200 + 1);
            let _ = connect_from(&local, public).await;
            n += 1;
        }
        n
    });
    // Meanwhile, more operator connections than one address may hold on the
    // public port, each answered within two seconds (in milliseconds, unloaded).
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(connect_from("127.0.0.1", ops).await.unwrap());
    }
    for _ in 0..20 {
        let answered =
            tokio::time::timeout(Duration::from_secs(2), http_get(ops, "/metrics")).await;
        let (status, text) = answered.expect("the operators' listener was slow under the flood");
        assert_eq!(status, 200);
        assert!(text.contains("stompede_connections"));
    }
    assert!(flood.await.unwrap() > 0);
}

/// A connection from `local` to `ops` that answers a request (so it holds a
/// place), or `None` when it is closed unanswered.
async fn held_from(local: &str, ops: std::net::SocketAddr) -> Option<tokio::net::TcpStream> {
    let mut s = connect_from(local, ops).await.expect("connect");
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(TIMEOUT, s.read(&mut buf))
        .await
        .expect("an answer or a close in time")
        .unwrap_or(0);
    buf[..n].starts_with(b"HTTP/1.1 200").then_some(s)
}

/// The operators' listener has its own small cap, a quarter of it per
/// address: past either a connection is closed at once, and a freed place is
/// taken again.
#[tokio::test]
async fn the_operators_listener_has_its_own_cap() {
    let b = broker(OPS);
    let ops = b.ops_addr.unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(held_from("127.0.0.1", ops).await.expect("a place"));
    }
    // One address holds its quarter: a ninth is closed, another address served.
    assert!(
        held_from("127.0.0.1", ops).await.is_none(),
        "a ninth from one address"
    );
    for local in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        for _ in 0..8 {
            held.push(held_from(local, ops).await.expect("a place"));
        }
    }
    assert_eq!(held.len(), 32);
    assert!(
        held_from("127.0.0.5", ops).await.is_none(),
        "the 33rd was served"
    );
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while held_from("127.0.0.5", ops).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the freed place was not taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
