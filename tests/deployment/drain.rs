//! Draining for a rolling restart: not ready at once, new clients still taken
//! for the grace, then every connection told and closed, spread out; nothing
//! receipted is lost.

use crate::common::{
    BrokerProcess, Client, TIMEOUT, TestBroker, basic, broker, http_get, http_request, metric,
};
use std::time::{Duration, Instant};
use stompede::codec::{Command, Frame};

/// Reads until the connection closes; the ERROR it got first.
async fn restart_error(c: &mut Client) -> Frame {
    let f = c
        .next_frame_untimed()
        .await
        .expect("closed without an ERROR");
    assert_eq!(f.command, Command::Error, "{f:?}");
    assert!(
        c.next_frame_untimed().await.is_none(),
        "a frame after the ERROR"
    );
    f
}

#[tokio::test]
async fn a_drain_is_not_ready_at_once_then_closes_everyone_spread_out() {
    let b = broker("[server]\ndrain_grace_s = 1\ndrain_spread_s = 2");
    let mut clients = Vec::new();
    for i in 0..16 {
        let mut c = match i % 4 {
            0 => Client::tcp(&b).await,
            _ => Client::ws(&b).await,
        };
        c.connect_anonymously().await;
        clients.push(c);
    }
    let began = Instant::now();
    let checks = async {
        let (status, body) = http_get(b.http_addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (503, "draining\n"));
        assert_eq!(http_get(b.http_addr, "/healthz").await.0, 200);
        let (_, text) = http_get(b.http_addr, "/metrics").await;
        assert_eq!(metric(&text, "stompede_draining "), Some(1.0));
        // In the grace, a new client is still served (and closed with the rest).
        let mut late = Client::ws(&b).await;
        late.connect_anonymously().await;
        clients.push(late);
        // Every client: the ERROR, then the close (1012 on WebSocket), each at
        // its own moment after the grace.
        let closes = clients.into_iter().map(|mut c| async move {
            let error = restart_error(&mut c).await;
            (began.elapsed(), error, c.close.clone())
        });
        futures_util::future::join_all(closes).await
    };
    let (clean, closes) = tokio::join!(b.drain(Duration::from_secs(5)), checks);
    assert!(clean);
    let mut times = Vec::new();
    for (at, error, close) in &closes {
        let message = error.headers.get("message").unwrap();
        assert!(message.contains("node restarting"), "{message}");
        times.push(at.as_secs_f64());
        if let Some((code, reason)) = close {
            assert_eq!((*code, reason.as_str()), (1012, "service restart"));
        }
    }
    let websockets = closes.iter().filter(|(_, _, c)| c.is_some()).count();
    assert_eq!(websockets, 13, "every WebSocket closed with a close frame");
    let first = times.iter().cloned().fold(f64::MAX, f64::min);
    let last = times.iter().cloned().fold(0.0, f64::max);
    assert!(first >= 0.9, "closed before the grace ended: {times:?}");
    // 17 moments over a two-second spread, not one instant.
    assert!(last - first >= 1.0, "not spread: {times:?}");
    // The client listeners are closed now.
    assert!(
        tokio::net::TcpStream::connect(b.stomp_addr.unwrap())
            .await
            .is_err()
    );
}

/// A broker whose store lives in `store`, with a durable queue and a kept topic.
fn broker_on(store: &std::path::Path) -> TestBroker {
    broker(&format!(
        "[store]\npath = {:?}\n[queues]\ndurable = [\"/queue/orders\"]\n\
         [topics]\nhistory = [\"/topic/kept\"]\n[server]\ndrain_grace_s = 0\ndrain_spread_s = 1",
        store.display().to_string()
    ))
}

#[tokio::test]
async fn a_drain_loses_no_receipted_queue_or_kept_topic_message() {
    let store = tempfile::tempdir().unwrap();
    let b = broker_on(store.path());
    let mut p = Client::tcp(&b).await;
    p.connect().await;
    for i in 0..4 {
        for destination in ["/queue/orders", "/topic/kept"] {
            p.send(
                Frame::new(Command::Send)
                    .header("destination", destination)
                    .header("receipt", format!("r{i}"))
                    .body(format!("m{i}")),
            )
            .await;
            p.expect(Command::Receipt).await;
        }
    }
    // A consumer holds two deliveries it never acks.
    let mut c = Client::tcp(&b).await;
    c.connect().await;
    c.subscribe_with(
        "s",
        "/queue/orders",
        &[("ack", "client-individual"), ("prefetch-count", "2")],
    )
    .await;
    let m0 = c.expect(Command::Message).await;
    let m1 = c.expect(Command::Message).await;
    assert_eq!((&m0.body[..], &m1.body[..]), (&b"m0"[..], &b"m1"[..]));
    let (clean, ()) = tokio::join!(b.drain(Duration::from_secs(5)), async {
        restart_error(&mut c).await;
        restart_error(&mut p).await;
    });
    assert!(clean);
    drop(b);
    // The node comes back: all four queue messages wait (the two unacked ones
    // redelivered), and the kept topic replays all four.
    let b = broker_on(store.path());
    let mut c = Client::tcp(&b).await;
    c.connect().await;
    c.subscribe_with("s", "/queue/orders", &[("ack", "auto")])
        .await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let m = c.expect(Command::Message).await;
        got.push(String::from_utf8(m.body.to_vec()).unwrap());
    }
    assert_eq!(got, ["m0", "m1", "m2", "m3"]);
    let mut t = Client::tcp(&b).await;
    t.connect().await;
    t.subscribe_with("t", "/topic/kept", &[("x-stream-offset", "first")])
        .await;
    let mut kept = Vec::new();
    for _ in 0..4 {
        let m = t.expect(Command::Message).await;
        kept.push(String::from_utf8(m.body.to_vec()).unwrap());
    }
    assert_eq!(kept, ["m0", "m1", "m2", "m3"]);
}

#[tokio::test]
async fn post_api_drain_is_for_admins_only() {
    let b = broker("[server]\ndrain_grace_s = 60\ndrain_spread_s = 1");
    let http = b.http_addr;
    assert_eq!(
        http_request(http, "POST", "/api/drain", &[], b"").await.0,
        401
    );
    for (login, password) in [("alice", "alice-pw"), ("svc", "svc-pw")] {
        let auth = basic(login, password);
        let (status, _) =
            http_request(http, "POST", "/api/drain", &[("Authorization", &auth)], b"").await;
        assert_eq!(status, 403, "{login}");
    }
    // Positive control and the refusals' proof: still ready until an admin asks.
    assert_eq!(http_get(http, "/readyz").await.0, 200);
    let root = basic("root", "root-pw");
    let (status, body) =
        http_request(http, "POST", "/api/drain", &[("Authorization", &root)], b"").await;
    assert_eq!(status, 202, "{body}");
    let plan: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plan["draining"], true);
    assert_eq!(plan["grace_s"], 60.0);
    assert_eq!(http_get(http, "/readyz").await.0, 503);
    // A second request changes nothing.
    let (status, again) =
        http_request(http, "POST", "/api/drain", &[("Authorization", &root)], b"").await;
    assert_eq!((status, again), (202, body));
    // Clients are still served in the grace.
    let mut c = Client::ws(&b).await;
    c.connect_anonymously().await;
}

/// The binary drains on SIGTERM and exits once its clients are gone.
#[tokio::test]
async fn the_binary_drains_on_sigterm_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = BrokerProcess::start(
        dir.path(),
        &format!(
            "[store]\npath = {:?}\n[server]\ndrain_grace_s = 1\ndrain_spread_s = 1",
            dir.path().join("data").display().to_string()
        ),
        &[],
    );
    let mut c = Client::tcp_at(process.stomp_addr).await;
    c.connect_anonymously().await;
    let began = Instant::now();
    process.signal("TERM");
    process.log_line("draining: /readyz answers 503", 1).await;
    assert_eq!(http_get(process.http_addr, "/readyz").await.0, 503);
    let error = tokio::time::timeout(TIMEOUT, restart_error(&mut c))
        .await
        .unwrap();
    assert!(
        error
            .headers
            .get("message")
            .unwrap()
            .contains("node restarting")
    );
    let status = process.wait_exit(TIMEOUT).await.expect("still running");
    assert!(status.success(), "{status:?}");
    assert!(
        began.elapsed() >= Duration::from_secs(1),
        "exited before the grace ended"
    );
}
