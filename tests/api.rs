//! `POST /api/publish`: a backend publishes over HTTP with the rights of a STOMP
//! SEND, and every refusal has its status and a JSON body naming the problem.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Client, basic, broker, http_post};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::Value;
use stompede::codec::Command;

const SECRET: &str = "the backends' shared token secret";

fn bearer(login: &str, roles: &[&str]) -> String {
    let claims = serde_json::json!({
        "sub": login,
        "roles": roles,
        "exp": stompede::auth::token::now_s() + 600,
    });
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    format!("Bearer {token}")
}

fn error_of(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (
        v["error"].as_str().unwrap().to_owned(),
        v["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_json_publish_reaches_a_stomp_subscriber_with_its_headers() {
    let b = broker(&format!("[auth.jwt]\nsecret = {SECRET:?}\n"));
    let mut sub = Client::ws(&b).await;
    sub.connect_anonymously().await;
    sub.subscribe("n", "/topic/news").await;
    let request = serde_json::json!({
        "destination": "/topic/news",
        "body": "rates unchanged",
        "headers": {"content-type": "text/plain", "x-source": "cron"},
    });
    for auth in [basic("svc", "svc-pw"), bearer("feed", &["service"])] {
        let (status, body) = http_post(
            b.http_addr,
            "/api/publish",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            request.to_string().as_bytes(),
        )
        .await;
        assert_eq!((status, body.as_str()), (202, "{}"));
        let m = sub.expect(Command::Message).await;
        assert_eq!(m.headers.get("destination"), Some("/topic/news"));
        assert_eq!(m.headers.get("x-source"), Some("cron"));
        assert_eq!(m.headers.get("content-type"), Some("text/plain"));
        assert_eq!(&m.body[..], b"rates unchanged");
    }
}

#[tokio::test]
async fn a_raw_body_keeps_its_content_type_and_a_queue_publish_is_held_when_answered() {
    let b = broker("[queues]\ndurable = [\"/queue/jobs.*\"]\n");
    let auth = basic("svc", "svc-pw");
    let (status, _) = http_post(
        b.http_addr,
        "/api/publish?destination=%2Fqueue%2Fjobs.nightly",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/octet-stream"),
        ],
        &[0, 159, 146, 150],
    )
    .await;
    // 202 came after the store had the message: a consumer that comes later gets it.
    assert_eq!(status, 202);
    let mut c = Client::tcp(&b).await;
    c.connect().await;
    c.subscribe("q", "/queue/jobs.nightly").await;
    let m = c.expect(Command::Message).await;
    assert_eq!(
        m.headers.get("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(&m.body[..], &[0, 159, 146, 150]);
}

#[tokio::test]
async fn every_refusal_has_its_status_and_a_json_error() {
    let b = broker("[limits]\nmax_frame_bytes = 4096\n");
    let svc = basic("svc", "svc-pw");
    let alice = basic("alice", "alice-pw");
    let wrong = basic("svc", "wrong");
    let topic = |dest: &str| serde_json::json!({"destination": dest, "body": "x"}).to_string();
    let cases: Vec<(Option<&str>, String, u16, &str, &str)> = vec![
        (
            None,
            topic("/topic/a"),
            401,
            "unauthorized",
            "credentials required",
        ),
        (
            Some("Basic !!!"),
            topic("/topic/a"),
            401,
            "unauthorized",
            "malformed Basic",
        ),
        (
            Some(&wrong),
            topic("/topic/a"),
            401,
            "unauthorized",
            "authentication failed",
        ),
        (
            Some(&alice),
            topic("/topic/a"),
            403,
            "forbidden",
            "not allowed to SEND to /topic/a",
        ),
        (
            Some(&svc),
            topic("/nowhere/x"),
            400,
            "bad_destination",
            "unknown destination",
        ),
        (
            Some(&svc),
            topic("/topic/a.*"),
            400,
            "bad_destination",
            "wildcard",
        ),
        (
            Some(&svc),
            "{\"body\": 1}".into(),
            400,
            "bad_request",
            "expected JSON",
        ),
        (
            Some(&svc),
            "x".repeat(5000),
            413,
            "too_large",
            "limits.max_frame_bytes",
        ),
    ];
    for (auth, body, status, error, message) in cases {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        let (got, text) = http_post(b.http_addr, "/api/publish", &headers, body.as_bytes()).await;
        assert_eq!(got, status, "{text}");
        let (e, m) = error_of(&text);
        assert_eq!(e, error, "{m}");
        assert!(m.contains(message), "{m:?} lacks {message:?}");
    }
    // The broker served them all and still publishes.
    let mut sub = Client::tcp(&b).await;
    sub.connect().await;
    sub.subscribe("a", "/topic/a").await;
    let (status, _) = http_post(
        b.http_addr,
        "/api/publish?destination=/topic/a",
        &[("Authorization", &svc)],
        b"after",
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(sub.message_on("/topic/a").await, "after");
}

#[tokio::test]
async fn bodies_share_the_pending_budget_and_a_slow_one_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = broker(
        "[limits]\nframe_timeout_ms = 400\nmax_pending_frame_bytes = 3000\nmax_frame_bytes = 2048\n",
    );
    let svc = basic("svc", "svc-pw");
    // A body that never finishes holds the 1,990 bytes it sent of the budget.
    let mut slow = tokio::net::TcpStream::connect(b.http_addr).await.unwrap();
    let head = format!(
        "POST /api/publish?destination=/topic/a HTTP/1.1\r\nHost: x\r\nAuthorization: {svc}\r\nContent-Length: 2000\r\n\r\n{}",
        "0123456789".repeat(199)
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    // Until it is held, another 1,500 bytes fit; from then on they get a 503.
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    let body = "x".repeat(1500);
    let path = "/api/publish?destination=/topic/a";
    let refused = loop {
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        let (status, text) = http_post(
            b.http_addr,
            path,
            &[("Authorization", &svc)],
            body.as_bytes(),
        )
        .await;
        if status == 503 {
            break text;
        }
        assert_eq!(status, 202, "{text}");
    };
    let (error, message) = error_of(&refused);
    assert_eq!(error, "busy");
    assert!(
        message.contains("limits.max_pending_frame_bytes"),
        "{message}"
    );
    // The slow body runs out of time...
    let mut answer = Vec::new();
    tokio::time::timeout(common::TIMEOUT, slow.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("limits.frame_timeout_ms"), "{answer}");
    // ...and gives its bytes back.
    let (status, _) = http_post(
        b.http_addr,
        path,
        &[("Authorization", &svc)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn stats_show_connections_subscriptions_and_queues_to_admins_and_services_only() {
    let b = broker("[topics]\nretain = [\"/topic/news\"]\n");
    let mut ws = Client::ws(&b).await;
    ws.connect_anonymously().await;
    ws.subscribe("n", "/topic/news").await;
    let mut consumer = Client::tcp(&b).await;
    consumer.connect().await;
    consumer
        .subscribe_with(
            "q",
            "/queue/jobs",
            &[("ack", "client-individual"), ("prefetch-count", "1")],
        )
        .await;
    let mut producer = Client::tcp(&b).await;
    producer.connect().await;
    for n in 0..3 {
        producer.publish("/queue/jobs", &format!("job {n}")).await;
    }
    producer.publish("/topic/news", "retained").await;
    // One delivered and unacked (prefetch 1), two waiting.
    consumer.expect(Command::Message).await;
    ws.expect(Command::Message).await;
    let get = |auth: String| {
        let addr = b.http_addr;
        async move {
            common::http_request(addr, "GET", "/api/stats", &[("Authorization", &auth)], b"").await
        }
    };
    let (status, text) = get(basic("root", "root-pw")).await;
    assert_eq!(status, 200, "{text}");
    let stats: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(stats["connections"], serde_json::json!({"ws": 1, "tcp": 2}));
    assert_eq!(stats["subscriptions"], 2);
    assert_eq!(
        stats["queues"],
        serde_json::json!([{"name": "jobs", "depth": 2, "consumers": 1, "unacked": 1}])
    );
    assert_eq!(stats["retained_topics"], 1);
    assert_eq!(stats["store"]["failed"], false);
    assert!(stats["store"]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["cluster"]["mode"], "single");
    let (status, _) = get(basic("svc", "svc-pw")).await;
    assert_eq!(status, 200);
    let (status, text) = get(basic("alice", "alice-pw")).await;
    assert_eq!((status, error_of(&text).0.as_str()), (403, "forbidden"));
    let (status, _) = common::http_get(b.http_addr, "/api/stats").await;
    assert_eq!(status, 401);
}

/// Sends the head of a `POST /api/publish` by alice from 127.0.0.1 declaring
/// `length` bytes, then `sent` bytes of it, and keeps the connection open.
async fn stalled_publish(
    b: &common::TestBroker,
    query: &str,
    length: usize,
    sent: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = common::connect_from("127.0.0.1", b.http_addr)
        .await
        .unwrap();
    let head = format!(
        "POST /api/publish{query} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        basic("alice", "alice-pw")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b' '; sent]).await.unwrap();
    s
}

/// The status line's code of what `s` has answered, within a second (None if
/// nothing came).
async fn answered(s: &mut tokio::net::TcpStream) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(1), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.split(' ').nth(1)?.parse().ok()
}

// A trader's publish requests cannot take the unfinished-frame budget from
// everyone: rights are checked from the head before any body is held; a head that
// declares a megabyte holds nothing until bytes arrive; and what does arrive
// counts against her address's and login's share (an eighth). A service from
// another address then still sends its 512 KiB over STOMP and over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_requests_cannot_take_the_frame_budget_from_others() {
    let b = broker("[limits]\nmax_pending_frame_bytes = 16777216\nmax_frame_bytes = 1048576");
    let mut held = Vec::new();
    // Where she may not publish: refused from the head, the body never read.
    for _ in 0..40 {
        let mut s = stalled_publish(&b, "?destination=/app/none", 1 << 20, 0).await;
        assert_eq!(answered(&mut s).await, Some(400));
        held.push(s);
    }
    // Heads declaring 1 MiB each (40 MiB, past the 16 MiB budget): nothing held.
    for _ in 0..40 {
        held.push(stalled_publish(&b, "", 1 << 20, 0).await);
    }
    // Bodies that arrive: 600 KiB each; her share is 2 MiB, so the fourth is refused.
    let mut partial = Vec::new();
    for _ in 0..3 {
        partial.push(stalled_publish(&b, "", 1 << 20, 600 * 1024).await);
    }
    // (It sends its whole body, which is read and dropped, so it reads its 503.)
    let mut fourth = stalled_publish(&b, "", 1 << 20, 1 << 20).await;
    assert_eq!(answered(&mut fourth).await, Some(503), "past her share");
    for s in &mut partial {
        assert_eq!(answered(s).await, None, "within her share, still waiting");
    }
    // Everyone else: a service on another address, over STOMP and HTTP.
    let mut svc = Client::tcp_from(&b, "127.0.0.2").await;
    svc.connect_as("svc", "svc-pw").await;
    let mut sub = Client::tcp(&b).await;
    sub.connect().await;
    sub.subscribe("s", "/topic/big").await;
    let big = "y".repeat(512 * 1024);
    svc.publish("/topic/big", &big).await;
    assert_eq!(sub.message_on("/topic/big").await.len(), big.len());
    let mut s = common::connect_from("127.0.0.2", b.http_addr)
        .await
        .unwrap();
    let request = format!(
        "POST /api/publish?destination=/topic/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n{big}",
        basic("svc", "svc-pw"),
        big.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut s, request.as_bytes())
        .await
        .unwrap();
    assert_eq!(answered(&mut s).await, Some(202));
    assert_eq!(sub.message_on("/topic/big").await.len(), big.len());
    drop((held, partial));
}
