//! Unauthenticated clients cannot starve logins or use up descriptors: password
//! checks are bounded and fair per address, the connect timeout covers them, failed
//! logins are throttled per address, connections are limited per address, and the
//! connection limit stays below the descriptor limit with room for /healthz.

use crate::common::{BrokerProcess, Client, TIMEOUT, broker, http_get, metric};
use std::time::Duration;
use stompede::codec::{Command, Frame};

fn connect_frame(login: &str, passcode: &str) -> Frame {
    Frame::new(Command::Connect)
        .header("accept-version", "1.2")
        .header("login", login)
        .header("passcode", passcode)
}

/// `[[auth.users]]` for login `slow` (password `slow-pw`) hashed at the real,
/// default argon2id cost, so each check takes tens of milliseconds.
fn slow_user() -> String {
    let hash = stompede::auth::hash_password(b"slow-pw").unwrap();
    format!("[[auth.users]]\nlogin = \"slow\"\npassword_hash = \"{hash}\"\nroles = [\"trader\"]\n")
}

#[tokio::test]
async fn connections_are_limited_per_address() {
    let b = broker("[limits]\nmax_connections_per_ip = 5");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Client::tcp_from(&b, "127.0.0.3").await;
        c.connect_anonymously().await;
        held.push(c);
    }
    for _ in 0..2 {
        let mut c = Client::ws_from(&b, "127.0.0.3").await.unwrap();
        c.connect_anonymously().await;
        held.push(c);
    }
    let mut sixth = Client::tcp_from(&b, "127.0.0.3").await;
    sixth.expect_error("limits.max_connections_per_ip").await;
    assert_eq!(Client::ws_from(&b, "127.0.0.3").await.err(), Some(503));
    // Other addresses are not affected.
    let mut other = Client::tcp_from(&b, "127.0.0.4").await;
    other.connect_anonymously().await;
    let mut alice = Client::ws(&b).await;
    alice.connect_as("alice", "alice-pw").await;
    assert_eq!(http_get(b.http_addr, "/healthz").await.0, 200);
    // A freed slot can be taken again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let mut c = Client::tcp_from(&b, "127.0.0.3").await;
        c.send(Frame::new(Command::Connect).header("accept-version", "1.2"))
            .await;
        if c.next_frame().await.map(|f| f.command) == Some(Command::Connected) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot not freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address() {
    let b = broker("[limits]\nmax_failed_logins_per_ip = 3\nfailed_login_window_ms = 60000");
    let (_, before) = http_get(b.http_addr, "/metrics").await;
    for _ in 0..3 {
        let mut c = Client::tcp_from(&b, "127.0.0.5").await;
        c.send(connect_frame("alice", "guess")).await;
        c.expect_error("authentication failed").await;
    }
    // Now even the right password is not checked from that address.
    let mut c = Client::tcp_from(&b, "127.0.0.5").await;
    c.send(connect_frame("alice", "alice-pw")).await;
    c.expect_error("limits.max_failed_logins_per_ip").await;
    // Another address logs in, and anonymous reading still works from the first.
    let mut alice = Client::tcp_from(&b, "127.0.0.6").await;
    alice.connect_as("alice", "alice-pw").await;
    let mut anon = Client::tcp_from(&b, "127.0.0.5").await;
    anon.connect_anonymously().await;
    let (_, after) = http_get(b.http_addr, "/metrics").await;
    for reason in ["bad_credentials", "throttled"] {
        let key = format!("stompede_auth_failures_total{{reason=\"{reason}\"}}");
        let (a, b) = (
            metric(&after, &key).unwrap_or(0.0),
            metric(&before, &key).unwrap_or(0.0),
        );
        assert!(a >= b + 1.0, "{key}: {b} -> {a}");
    }
}

#[tokio::test]
async fn a_storm_of_bogus_logins_does_not_starve_a_real_one() {
    let b = broker(&format!(
        "[limits]\nmax_queued_logins_per_ip = 8\nmax_failed_logins_per_ip = 10\n{}",
        slow_user()
    ));
    // 1,000 concurrent wrong passwords for a real login, from ten addresses.
    let mut attackers = tokio::task::JoinSet::new();
    for n in 0..1000 {
        let local = format!("127.0.0.{}", 10 + n % 10);
        let addr = b.stomp_addr.unwrap();
        attackers.spawn(async move {
            let s = crate::common::connect_from(&local, addr).await;
            let Ok(s) = s else { return None };
            let mut c = Client::from_tcp(s);
            c.send(connect_frame("slow", "guess")).await;
            let f = tokio::time::timeout(Duration::from_secs(60), c.next_frame_untimed()).await;
            f.ok()
                .flatten()
                .map(|f| f.headers.get("message").unwrap_or("").to_owned())
        });
    }
    // Once the storm is being refused, alice's login, from her own address, is
    // answered within the usual bound.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let (_, text) = http_get(b.http_addr, "/metrics").await;
        if metric(&text, "stompede_auth_failures_total{").unwrap_or(0.0) >= 1.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no login refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut alice = Client::tcp_from(&b, "127.0.0.1").await;
    alice.connect_as("alice", "alice-pw").await;
    alice.subscribe("q", "/topic/news").await;
    // Every attacker got an ERROR saying why.
    let mut answers = std::collections::BTreeMap::new();
    while let Some(a) = attackers.join_next().await {
        let message = a.unwrap().expect("every bogus login is answered");
        let kind = if message.contains("authentication failed") {
            "failed"
        } else if message.contains("limits.max_queued_logins_per_ip") {
            "busy"
        } else if message.contains("limits.max_failed_logins_per_ip") {
            "throttled"
        } else {
            panic!("unexpected answer {message:?}")
        };
        *answers.entry(kind).or_insert(0) += 1;
    }
    // Real checks per address: up to the throttle's 10 failures, plus the 8 that
    // may already be waiting when it trips; the rest cost nothing.
    let failed = answers.get("failed").copied().unwrap_or(0);
    assert!(failed <= 10 * (10 + 8), "{answers:?}");
    assert!(answers.get("busy").copied().unwrap_or(0) > 0, "{answers:?}");
}

#[tokio::test]
async fn the_connect_timeout_covers_the_password_check() {
    let b = broker(&format!(
        "[limits]\nconnect_timeout_ms = 300\nmax_concurrent_password_checks = 1\n{}",
        slow_user()
    ));
    let mut logins = tokio::task::JoinSet::new();
    for n in 0..40 {
        let local = format!("127.0.1.{}", 1 + n);
        let addr = b.stomp_addr.unwrap();
        logins.spawn(async move {
            let s = crate::common::connect_from(&local, addr).await.unwrap();
            let mut c = Client::from_tcp(s);
            c.send(connect_frame("slow", "slow-pw")).await;
            c.next_frame().await.unwrap()
        });
    }
    let (mut connected, mut timed_out) = (0, 0);
    while let Some(f) = logins.join_next().await {
        let f = f.unwrap();
        match f.command {
            Command::Connected => connected += 1,
            Command::Error => {
                let m = f.headers.get("message").unwrap();
                assert!(m.contains("limits.connect_timeout_ms"), "{m}");
                timed_out += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert!(
        connected >= 1,
        "{connected} connected, {timed_out} timed out"
    );
    assert!(
        timed_out >= 1,
        "{connected} connected, {timed_out} timed out"
    );
}

#[test]
fn max_connections_stays_below_the_descriptor_limit() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start_with_fd_limit(
        dir.path(),
        &format!("[store]\npath = {:?}\n", dir.path().join("data")),
        &[],
        256,
    );
    // 256 descriptors: a quarter for plain HTTP, 64 for the broker's own files.
    let chosen = broker
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("max_connections") && l.contains("open-file limit"))
        .cloned()
        .expect("the chosen limit is logged");
    assert!(chosen.contains("128"), "{chosen}");
    runtime.block_on(async {
        let mut held = Vec::new();
        let mut refused = 0;
        for n in 0..200 {
            let local = format!("127.0.2.{}", 1 + n % 50);
            let s = crate::common::connect_from(&local, broker.stomp_addr)
                .await
                .unwrap();
            let mut c = Client::from_tcp(s);
            c.send(Frame::new(Command::Connect).header("accept-version", "1.2"))
                .await;
            match c.next_frame().await.unwrap().command {
                Command::Connected => held.push(c),
                _ => refused += 1,
            }
        }
        assert_eq!(held.len(), 128);
        assert_eq!(refused, 72);
        // The HTTP reserve keeps health checks and metrics answering.
        assert_eq!(http_get(broker.http_addr, "/healthz").await.0, 200);
        assert_eq!(http_get(broker.http_addr, "/metrics").await.0, 200);
    });
}

#[tokio::test]
async fn reconnecting_users_skip_the_password_check() {
    // One checking thread and room for 4 waiting: a storm of real checks would be
    // refused almost entirely.
    let b = broker(&format!(
        "[limits]\nmax_concurrent_password_checks = 1\nmax_queued_logins = 4\n{}",
        slow_user()
    ));
    let (_, before) = http_get(b.http_addr, "/metrics").await;
    let mut first = Client::tcp(&b).await;
    first.connect_as("slow", "slow-pw").await;
    // 100 reconnects at once from 20 addresses: all answered from the cache.
    let mut storm = tokio::task::JoinSet::new();
    for n in 0..100 {
        let local = format!("127.0.3.{}", 1 + n % 20);
        let addr = b.stomp_addr.unwrap();
        storm.spawn(async move {
            let s = crate::common::connect_from(&local, addr).await.unwrap();
            let mut c = Client::from_tcp(s);
            c.send(connect_frame("slow", "slow-pw")).await;
            c.next_frame().await.unwrap()
        });
    }
    while let Some(f) = storm.join_next().await {
        let f = f.unwrap();
        assert_eq!(f.command, Command::Connected, "{f:?}");
    }
    let (_, after) = http_get(b.http_addr, "/metrics").await;
    let hits = |t: &str| metric(t, "stompede_auth_cache_hits_total").unwrap_or(0.0);
    assert!(hits(&after) >= hits(&before) + 100.0);
    // A wrong password for the cached login is still checked, and refused.
    let mut wrong = Client::tcp(&b).await;
    wrong.send(connect_frame("slow", "nope")).await;
    wrong.expect_error("authentication failed").await;
}

/// A plain HTTP request from loopback address `local`: (status, body); `None`
/// when the connection closed without an answer.
async fn http_from(
    local: &str,
    addr: std::net::SocketAddr,
    request: &str,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = crate::common::connect_from(local, addr).await.ok()?;
    s.write_all(request.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n")?.1.to_owned()))
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
}

/// `n` idle sockets from `local` to the HTTP port, held open.
async fn idle_http(
    b: &crate::common::TestBroker,
    local: &str,
    n: usize,
) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(
            crate::common::connect_from(local, b.http_addr)
                .await
                .unwrap(),
        );
    }
    held
}

// Idle sockets from one address (then a few from a second) cannot take every HTTP
// slot: an address holds at most a quarter of them, so a third address still gets
// /healthz, the WebSocket handshake and /api/publish. And when the slots are full
// all the same (four addresses), /healthz and /readyz still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http_sockets_from_one_address_cannot_take_every_slot() {
    let b = broker("[limits]\nmax_http_connections = 64");
    let mut held = idle_http(&b, "127.0.0.1", 60).await;
    held.extend(idle_http(&b, "127.0.0.2", 10).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        http_from("127.0.0.3", b.http_addr, &get("/healthz")).await,
        Some((200, "ok\n".to_owned()))
    );
    let mut ws = Client::ws_from(&b, "127.0.0.3").await.expect("a WebSocket");
    ws.connect().await;
    ws.subscribe("s", "/topic/t").await;
    let publish = format!(
        "POST /api/publish?destination=/topic/t HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {}\r\nContent-Length: 2\r\n\r\nhi",
        crate::common::basic("svc", "svc-pw")
    );
    assert_eq!(
        http_from("127.0.0.3", b.http_addr, &publish)
            .await
            .map(|a| a.0),
        Some(202)
    );
    assert_eq!(ws.message_on("/topic/t").await, "hi");
    // The first address is past its quarter: the page is refused, naming why.
    let (status, body) = http_from("127.0.0.1", b.http_addr, &get("/"))
        .await
        .unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("limits.max_http_connections"), "{body}");
    // Every slot taken (a quarter each by four addresses): probes still answer.
    for local in ["127.0.0.4", "127.0.0.5", "127.0.0.6"] {
        held.extend(idle_http(&b, local, 16).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = http_from("127.0.0.7", b.http_addr, &get("/"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        http_from("127.0.0.7", b.http_addr, &get("/healthz")).await,
        Some((200, "ok\n".to_owned()))
    );
    assert_eq!(
        http_from("127.0.0.7", b.http_addr, &get("/readyz")).await,
        Some((200, "ready\n".to_owned()))
    );
    drop(held);
}

// An address at `limits.max_connections_per_ip` with STOMP connections still
// gets its /healthz and /readyz answered (a 503 naming the limit for anything else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_an_address_that_holds_all_its_connections() {
    let b = broker("[limits]\nmax_connections_per_ip = 20");
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = Client::tcp_from(&b, "127.0.0.8").await;
        c.connect().await;
        clients.push(c);
    }
    let (status, body) = http_from("127.0.0.8", b.http_addr, &get("/"))
        .await
        .unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("limits.max_connections_per_ip"), "{body}");
    assert_eq!(
        http_from("127.0.0.8", b.http_addr, &get("/healthz")).await,
        Some((200, "ok\n".to_owned()))
    );
    assert_eq!(
        http_from("127.0.0.8", b.http_addr, &get("/readyz")).await,
        Some((200, "ready\n".to_owned()))
    );
    drop(clients);
}
