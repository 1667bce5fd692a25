//! Client addresses through trusted proxies, and no one else's word for them.

use crate::common::{Client, broker, http_get_from, proxy_v1, proxy_v2, tcp_with_prefix};
use stompede::codec::{Command, Frame};

fn connect_frame(login: &str, passcode: &str) -> Frame {
    Frame::new(Command::Connect)
        .header("accept-version", "1.2")
        .header("login", login)
        .header("passcode", passcode)
}

/// Through a trusted proxy speaking the PROXY protocol (v1 and v2), on the
/// STOMP and HTTP listeners, each client has its own per-address limit and
/// failed-login throttle.
#[tokio::test]
async fn a_trusted_proxy_header_names_the_client_for_every_per_address_bound() {
    let b = broker(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = true\n\
         [limits]\nmax_connections_per_ip = 2\nmax_failed_logins_per_ip = 2\nfailed_login_window_ms = 60000",
    );
    let stomp = b.stomp_addr.unwrap();
    let mut held = Vec::new();
    // Two connections of client .1 (one per header version): served.
    for header in [proxy_v1("203.0.113.1", 4001), proxy_v2("203.0.113.1", 4002)] {
        let mut c = tcp_with_prefix(stomp, "127.0.0.1", &header).await;
        c.connect_anonymously().await;
        held.push(c);
    }
    // A third, over WebSocket: that client's limit, whoever carries it.
    let third = Client::ws_from_with(
        b.http_addr,
        "127.0.0.1",
        &proxy_v2("203.0.113.1", 4003),
        &[],
    )
    .await;
    assert_eq!(third.err(), Some(503));
    let mut third = tcp_with_prefix(stomp, "127.0.0.1", &proxy_v1("203.0.113.1", 4004)).await;
    third.expect_error("limits.max_connections_per_ip").await;
    // Other clients through the same proxy are not affected (before, every one
    // had the proxy's address and the limit capped the whole site).
    for (i, header) in [proxy_v1("203.0.113.2", 1), proxy_v2("203.0.113.3", 1)]
        .into_iter()
        .enumerate()
    {
        let mut c = match i {
            0 => tcp_with_prefix(stomp, "127.0.0.1", &header).await,
            _ => Client::ws_from_with(b.http_addr, "127.0.0.1", &header, &[])
                .await
                .unwrap(),
        };
        c.connect_anonymously().await;
        held.push(c);
    }
    // Client .4 fails its logins and is throttled; client .5 is not.
    for _ in 0..2 {
        let mut c = tcp_with_prefix(stomp, "127.0.0.1", &proxy_v2("203.0.113.4", 1)).await;
        c.send(connect_frame("alice", "guess")).await;
        c.expect_error("authentication failed").await;
    }
    let mut c = tcp_with_prefix(stomp, "127.0.0.1", &proxy_v2("203.0.113.4", 1)).await;
    c.send(connect_frame("alice", "alice-pw")).await;
    c.expect_error("limits.max_failed_logins_per_ip").await;
    let mut other = tcp_with_prefix(stomp, "127.0.0.1", &proxy_v1("203.0.113.5", 1)).await;
    other.connect_as("alice", "alice-pw").await;
    // HTTP through the proxy: a health check with a LOCAL header (as HAProxy
    // sends them) and a request for a client.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let (status, body) = http_get_from(b.http_addr, "127.0.0.1", local, "/readyz", &[]).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    let header = proxy_v2("203.0.113.9", 1);
    assert_eq!(
        http_get_from(b.http_addr, "127.0.0.1", &header, "/healthz", &[])
            .await
            .0,
        200
    );
}

/// From a peer that is not a trusted proxy, a PROXY header is refused with a
/// message naming the key, on STOMP and on HTTP: otherwise a client could pick
/// any address, dodging its own limits and throttle or using up another's.
#[tokio::test]
async fn an_untrusted_peer_cannot_name_a_client() {
    let b = broker(
        "[server]\ntrusted_proxies = [\"127.0.0.2\"]\nproxy_protocol = true\n[limits]\nmax_connections_per_ip = 3",
    );
    let stomp = b.stomp_addr.unwrap();
    // Positive control: the same peer without a header is served.
    let mut plain = Client::tcp_from(&b, "127.0.0.1").await;
    plain.connect_anonymously().await;
    for header in [proxy_v1("203.0.113.1", 1), proxy_v2("203.0.113.1", 1)] {
        let mut c = tcp_with_prefix(stomp, "127.0.0.1", &header).await;
        c.expect_error("server.trusted_proxies").await;
        let (status, body) =
            http_get_from(b.http_addr, "127.0.0.1", &header, "/healthz", &[]).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("server.trusted_proxies"), "{body}");
    }
    // The trusted proxy itself may connect without a header (its own checks).
    let mut own = Client::tcp_from(&b, "127.0.0.2").await;
    own.connect_anonymously().await;
    // The refusals held no slot: the peer still has its other two.
    let mut more = Vec::new();
    for _ in 0..2 {
        let mut c = Client::tcp_from(&b, "127.0.0.1").await;
        c.connect_anonymously().await;
        more.push(c);
    }
    let (_, metrics) = http_get_from(b.http_addr, "127.0.0.9", b"", "/metrics", &[]).await;
    let refused = crate::common::metric(
        &metrics,
        "stompede_errors_sent_total{reason=\"proxy_header\"}",
    );
    assert!(refused.unwrap_or(0.0) >= 4.0, "{refused:?}");
}

/// Through a trusted HTTP proxy, the right-most untrusted `X-Forwarded-For` (or
/// `Forwarded`) hop is the client: per-address limits and the login throttle
/// apply to it. From anyone else the headers change nothing.
#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let b = broker(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [limits]\nmax_connections_per_ip = 2\nmax_failed_logins_per_ip = 2\nfailed_login_window_ms = 60000",
    );
    let ws = |local: &'static str, headers: Vec<(&'static str, String)>| {
        let addr = b.http_addr;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Client::ws_from_with(addr, local, b"", &headers).await
        }
    };
    let xff = |v: &str| vec![("X-Forwarded-For", v.to_owned())];
    let mut held = Vec::new();
    // Client .5 forged a hop of its own; the one the proxy appended counts.
    for _ in 0..2 {
        let mut c = ws("127.0.0.1", xff("6.6.6.6, 203.0.113.5")).await.unwrap();
        c.connect_anonymously().await;
        held.push(c);
    }
    assert_eq!(
        ws("127.0.0.1", xff("7.7.7.7, 203.0.113.5")).await.err(),
        Some(503)
    );
    let forwarded = vec![("Forwarded", "for=\"203.0.113.5:4711\"".to_owned())];
    assert_eq!(ws("127.0.0.1", forwarded).await.err(), Some(503));
    // Other clients through the same proxy connect.
    for client in ["203.0.113.6", "203.0.113.7"] {
        let mut c = ws("127.0.0.1", xff(client)).await.unwrap();
        c.connect_anonymously().await;
        held.push(c);
    }
    // An untrusted peer's headers change nothing: it is counted as itself.
    for forged in ["203.0.113.20", "203.0.113.21"] {
        let mut c = ws("127.0.0.3", xff(forged)).await.unwrap();
        c.connect_anonymously().await;
        held.push(c);
    }
    assert_eq!(ws("127.0.0.3", xff("203.0.113.22")).await.err(), Some(503));
    // The login throttle follows the forwarded client too.
    for _ in 0..2 {
        let mut c = ws("127.0.0.1", xff("203.0.113.8")).await.unwrap();
        c.send(connect_frame("alice", "guess")).await;
        c.expect_error("authentication failed").await;
    }
    let mut c = ws("127.0.0.1", xff("203.0.113.8")).await.unwrap();
    c.send(connect_frame("alice", "alice-pw")).await;
    c.expect_error("limits.max_failed_logins_per_ip").await;
    let mut other = ws("127.0.0.1", xff("203.0.113.9")).await.unwrap();
    other.connect_as("alice", "alice-pw").await;
}

/// `server.trusted_proxies` is reloadable: a proxy removed by a reload is a
/// client like any other from its next connection on.
#[tokio::test]
async fn trusted_proxies_change_on_reload() {
    let b =
        broker("[server]\ntrusted_proxies = [\"127.0.0.1\"]\n[limits]\nmax_connections_per_ip = 1");
    let mut one = Client::ws_from_with(
        b.http_addr,
        "127.0.0.1",
        b"",
        &[("X-Forwarded-For", "203.0.113.1")],
    )
    .await
    .unwrap();
    one.connect_anonymously().await;
    let mut two = Client::ws_from_with(
        b.http_addr,
        "127.0.0.1",
        b"",
        &[("X-Forwarded-For", "203.0.113.2")],
    )
    .await
    .unwrap();
    two.connect_anonymously().await;
    let mut config = b.broker.config.clone();
    config.server.trusted_proxies.clear();
    let reloaded = b.broker.apply(&config);
    assert!(
        reloaded.applied.contains(&"server.trusted_proxies"),
        "{reloaded:?}"
    );
    assert!(!reloaded.need_restart.contains(&"server"), "{reloaded:?}");
    // Now 127.0.0.1 is a client: its header is ignored, and it has one slot.
    let mut three = Client::ws_from_with(
        b.http_addr,
        "127.0.0.1",
        b"",
        &[("X-Forwarded-For", "203.0.113.3")],
    )
    .await
    .unwrap();
    three.connect_anonymously().await;
    let four = Client::ws_from_with(
        b.http_addr,
        "127.0.0.1",
        b"",
        &[("X-Forwarded-For", "203.0.113.4")],
    )
    .await;
    assert_eq!(four.err(), Some(503));
}

/// A trusted proxy's connection that never finishes its PROXY header holds
/// nothing past `limits.connect_timeout_ms`: it is closed, and the proxy's
/// next connection is served.
#[tokio::test]
async fn a_proxy_header_that_never_ends_is_cut_off_in_time() {
    let b = broker(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = true\n[limits]\nconnect_timeout_ms = 300",
    );
    let stomp = b.stomp_addr.unwrap();
    let mut stuck = tcp_with_prefix(stomp, "127.0.0.1", b"PROXY TCP4 203.0.113.1").await;
    let began = std::time::Instant::now();
    // Told and closed once the timeout passes.
    stuck
        .expect_error("no complete PROXY protocol header in time")
        .await;
    assert!(began.elapsed() < std::time::Duration::from_secs(3));
    let mut next = tcp_with_prefix(stomp, "127.0.0.1", &proxy_v1("203.0.113.1", 1)).await;
    next.connect_anonymously().await;
}
