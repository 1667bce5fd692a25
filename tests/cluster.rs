//! Three stompede nodes over three routed NATS servers, all on loopback: the nodes
//! behave as one broker for topics and user destinations.
//!
//! Subscriptions spread across NATS routes asynchronously, so each test first
//! publishes probes until one arrives (the positive control), and only then counts.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/nats.rs"]
mod nats;

use common::{BrokerProcess, Client, http_get};
use nats::NatsCluster;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use stompede::codec::{Command, Frame};

/// One cluster test at a time: each runs six processes, and on a small machine
/// several at once starve each other past the tests' time bounds.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// NATS servers and stompede nodes; node `i` is given only NATS server `i` (it
/// learns the others from the server, as NATS clients do).
struct Cluster {
    nats: NatsCluster,
    nodes: Vec<BrokerProcess>,
    _dirs: Vec<tempfile::TempDir>,
    /// Dropped last: the next test starts once these processes are gone.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

async fn start_cluster(extra: &str) -> Cluster {
    start_cluster_with(extra, &[]).await
}

/// [`start_cluster`] with environment variables for every node.
async fn start_cluster_with(extra: &str, env: &[(&str, &str)]) -> Cluster {
    let turn = ONE_AT_A_TIME.lock().await;
    let nats = NatsCluster::start();
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let toml = node_toml(&nats.nodes[i].url(), name, dir.path(), extra);
        nodes.push(BrokerProcess::start(dir.path(), &toml, env));
        dirs.push(dir);
    }
    Cluster {
        nats,
        nodes,
        _dirs: dirs,
        _turn: turn,
    }
}

/// The configuration of node `node-{name}` on NATS server `url`, its store in
/// `dir`.
fn node_toml(url: &str, name: &str, dir: &std::path::Path, extra: &str) -> String {
    format!(
        "[cluster]\nnats_url = \"{url}\"\nnode_name = \"node-{name}\"\n[store]\npath = {:?}\n[quotes]\ninterval_ms = 60000\n{extra}",
        dir.join("store").display().to_string(),
    )
}

/// Waits (at most 60 s: a fresh NATS cluster elects its JetStream leaders first,
/// slowly on a loaded machine) until `/readyz` of `node` answers `status`.
async fn ready(node: &BrokerProcess, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (got, body) = http_get(node.http_addr, "/readyz").await;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {got}: {body}; log: {:?}",
            node.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connected(node: &BrokerProcess, login: &str) -> Client {
    let mut c = Client::tcp_at(node.stomp_addr).await;
    c.connect_as(login, &format!("{login}-pw")).await;
    c
}

/// The next MESSAGE within `wait`, if any.
async fn message_within(c: &mut Client, wait: Duration) -> Option<Frame> {
    let f = tokio::time::timeout(wait, c.next_frame()).await.ok()??;
    assert_eq!(f.command, Command::Message, "{f:?}");
    Some(f)
}

fn body(f: &Frame) -> String {
    String::from_utf8(f.body.to_vec()).unwrap()
}

/// Publishes probes on `destination` through `publisher` until `subscriber` has
/// one on each subscription in `ids` (at most 15 s): interest has spread.
async fn until_routed(
    publisher: &mut Client,
    subscriber: &mut Client,
    destination: &str,
    ids: &[&str],
) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen: Vec<&str> = Vec::new();
    while seen.len() < ids.len() {
        assert!(
            Instant::now() < deadline,
            "no probe on {ids:?} ({seen:?} seen)"
        );
        publisher.publish(destination, "probe").await;
        while let Some(m) = message_within(subscriber, Duration::from_millis(200)).await {
            assert_eq!(body(&m), "probe");
            let id = m.headers.get("subscription").unwrap();
            if let Some(i) = ids.iter().find(|i| **i == id)
                && !seen.contains(i)
            {
                seen.push(i);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_message_reaches_each_subscription_on_another_node_once() {
    let cluster = start_cluster("").await;
    for node in &cluster.nodes {
        ready(node, 200).await;
    }
    let mut sub = connected(&cluster.nodes[0], "alice").await;
    // Three patterns of one session match `/topic/cluster.x`; each must get each
    // message once, although the node holds three NATS subscriptions for them.
    sub.subscribe("exact", "/topic/cluster.x").await;
    sub.subscribe("star", "/topic/cluster.*").await;
    sub.subscribe("hash", "/topic/#.x").await;
    let mut publisher = connected(&cluster.nodes[1], "svc").await;
    until_routed(
        &mut publisher,
        &mut sub,
        "/topic/cluster.x",
        &["exact", "star", "hash"],
    )
    .await;
    // Late probes may still come: everything is read up to an end marker.
    for i in 0..100 {
        publisher
            .publish("/topic/cluster.x", &format!("m{i}"))
            .await;
    }
    publisher.publish("/topic/cluster.y", "only-star").await;
    publisher.publish("/topic/other", "nobody").await;
    publisher.publish("/topic/cluster.x", "end").await;
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    let mut ended = 0;
    while ended < 3 {
        let m = message_within(&mut sub, Duration::from_secs(5))
            .await
            .expect("a message");
        let (id, text) = (m.headers.get("subscription").unwrap().to_owned(), body(&m));
        assert!(
            m.headers
                .get("message-id")
                .is_some_and(|v| v.starts_with("node-b-")),
            "{m:?}"
        );
        if text == "end" {
            ended += 1;
        } else if text != "probe" {
            got.entry(id).or_default().push(text);
        }
    }
    let numbered: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    assert_eq!(got["exact"], numbered);
    assert_eq!(got["hash"], numbered);
    let mut star = numbered.clone();
    star.push("only-star".into());
    assert_eq!(got["star"], star);
    assert_eq!(got.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_sent_through_one_node_is_confirmed_on_another() {
    let cluster = start_cluster("").await;
    for node in &cluster.nodes {
        ready(node, 200).await;
    }
    let mut alice_c = connected(&cluster.nodes[2], "alice").await;
    alice_c
        .subscribe("conf", "/user/queue/trade-confirmation")
        .await;
    let mut bob_c = connected(&cluster.nodes[2], "bob").await;
    bob_c
        .subscribe("conf", "/user/queue/trade-confirmation")
        .await;
    let mut alice_a = connected(&cluster.nodes[0], "alice").await;
    let mut bob_a = connected(&cluster.nodes[0], "bob").await;
    // Until alice's interest has spread to node A's NATS server, confirmations
    // published there reach nobody: orders are sent until one arrives.
    let deadline = Instant::now() + Duration::from_secs(15);
    let conf = loop {
        assert!(Instant::now() < deadline, "no confirmation on node C");
        alice_a
            .trade(r#"{"symbol":"AAPL","quantity":7,"orderType":"BUY"}"#)
            .await;
        if let Some(m) = message_within(&mut alice_c, Duration::from_millis(300)).await {
            break m;
        }
    };
    assert_eq!(
        conf.headers.get("destination"),
        Some("/user/queue/trade-confirmation")
    );
    let json: serde_json::Value = serde_json::from_slice(&conf.body).unwrap();
    assert_eq!(json["status"], "EXECUTED");
    assert_eq!(json["symbol"], "AAPL");
    assert_eq!(json["quantity"], 7);
    // Bob's own order reaches bob on node C (the positive control), and none of
    // alice's did.
    let deadline = Instant::now() + Duration::from_secs(15);
    let bobs = loop {
        assert!(Instant::now() < deadline, "no confirmation for bob");
        bob_a
            .trade(r#"{"symbol":"MSFT","quantity":3,"orderType":"SELL"}"#)
            .await;
        if let Some(m) = message_within(&mut bob_c, Duration::from_millis(300)).await {
            break m;
        }
    };
    let json: serde_json::Value = serde_json::from_slice(&bobs.body).unwrap();
    assert_eq!(
        (json["symbol"].as_str(), json["quantity"].as_u64()),
        (Some("MSFT"), Some(3))
    );
    while let Some(m) = message_within(&mut bob_c, Duration::from_millis(300)).await {
        let json: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(json["symbol"], "MSFT", "bob got {json}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_keeps_working_when_a_nats_server_dies() {
    let mut cluster = start_cluster("").await;
    for node in &cluster.nodes {
        ready(node, 200).await;
    }
    let mut sub = connected(&cluster.nodes[1], "alice").await;
    sub.subscribe("s", "/topic/survive").await;
    let mut publisher = connected(&cluster.nodes[0], "svc").await;
    until_routed(&mut publisher, &mut sub, "/topic/survive", &["s"]).await;
    // Node A knows NATS server 0 only from its configuration: it must move on to
    // a server it learnt about.
    cluster.nats.nodes[0].kill();
    for node in &cluster.nodes {
        ready(node, 200).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "nothing crossed after the NATS server died"
        );
        // A SEND may be refused while the node reconnects: a fresh client then.
        publisher
            .send(
                Frame::new(Command::Send)
                    .header("destination", "/topic/survive")
                    .header("receipt", "r")
                    .body("after"),
            )
            .await;
        let answer = publisher.next_frame().await.expect("an answer");
        if answer.command == Command::Error {
            assert!(
                answer
                    .headers
                    .get("message")
                    .unwrap()
                    .contains("cluster link"),
                "{answer:?}"
            );
            publisher = connected(&cluster.nodes[0], "svc").await;
            continue;
        }
        assert_eq!(answer.command, Command::Receipt);
        if let Some(m) = message_within(&mut sub, Duration::from_millis(300)).await
            && body(&m) == "after"
        {
            break;
        }
    }
    let (_, metrics) = http_get(cluster.nodes[0].http_addr, "/metrics").await;
    assert_eq!(
        common::metric(&metrics, "stompede_cluster_connected"),
        Some(1.0)
    );
    assert!(common::metric(&metrics, "stompede_cluster_messages_out_total").unwrap() >= 1.0);
    assert!(common::metric(&metrics, "stompede_cluster_reconnects_total").unwrap() >= 1.0);
}

#[tokio::test]
async fn a_node_without_nats_is_not_ready_and_refuses_sends() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[cluster]\nnats_url = \"nats://127.0.0.1:{port}\"\n[store]\npath = {:?}\n",
        dir.path().join("store").display().to_string()
    );
    let node = BrokerProcess::start(dir.path(), &toml, &[]);
    let (status, body) = http_get(node.http_addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("NATS"), "{body}");
    let mut c = connected(&node, "svc").await;
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/x")
            .header("receipt", "r")
            .body("lost?"),
    )
    .await;
    let e = c.expect_error("the cluster link is down").await;
    assert_eq!(e.headers.get("receipt-id"), Some("r"));
    let (_, metrics) = http_get(node.http_addr, "/metrics").await;
    assert_eq!(
        common::metric(&metrics, "stompede_cluster_connected"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_value_published_on_one_node_is_handed_over_on_another() {
    let cluster = start_cluster("[topics]\nretain = [\"/topic/kept.*\"]").await;
    for node in &cluster.nodes {
        ready(node, 200).await;
    }
    let mut publisher = connected(&cluster.nodes[1], "svc").await;
    publisher.publish("/topic/kept.a", "v1").await;
    publisher.publish("/topic/kept.a", "v2").await;
    // Node C learns retained values from the cluster's store shortly after: a
    // subscriber is made until it is handed the newest.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sub = connected(&cluster.nodes[2], "alice").await;
    let mut n = 0;
    let retained = loop {
        assert!(
            Instant::now() < deadline,
            "no retained value on node C: {:?}",
            cluster.nodes[2]
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("retained") || l.contains("NATS"))
                .collect::<Vec<_>>()
        );
        n += 1;
        sub.subscribe(&format!("s{n}"), "/topic/kept.*").await;
        // Node C's copy lags the store by the time a message takes to cross: an
        // older value may be handed over first, never anything else.
        if let Some(m) = message_within(&mut sub, Duration::from_millis(300)).await {
            assert!(["v1", "v2"].contains(&body(&m).as_str()), "{m:?}");
            if body(&m) == "v2" {
                break m;
            }
        }
        sub.send(Frame::new(Command::Unsubscribe).header("id", format!("s{n}")))
            .await;
    };
    assert_eq!(body(&retained), "v2");
    assert_eq!(retained.headers.get("retained"), Some("true"));
    assert_eq!(retained.headers.get("destination"), Some("/topic/kept.a"));
    // Then live messages: v3 once, after the retained value, never v2 again.
    until_routed(
        &mut publisher,
        &mut sub,
        "/topic/kept.probe",
        &[&format!("s{n}")],
    )
    .await;
    publisher.publish("/topic/kept.a", "v3").await;
    publisher.publish("/topic/kept.b", "end").await;
    let mut live = Vec::new();
    loop {
        let m = message_within(&mut sub, Duration::from_secs(5))
            .await
            .expect("a message");
        match body(&m).as_str() {
            "end" => break,
            "probe" => {}
            other => live.push(other.to_owned()),
        }
    }
    assert_eq!(live, ["v3"]);
    // A second subscriber on the same node gets the newest value once.
    let mut second = connected(&cluster.nodes[2], "bob").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            Instant::now() < deadline,
            "retained value did not become v3"
        );
        second.subscribe("x", "/topic/kept.a").await;
        let m = message_within(&mut second, Duration::from_secs(2))
            .await
            .expect("retained");
        assert_eq!(m.headers.get("retained"), Some("true"));
        if body(&m) == "v3" {
            break;
        }
        second
            .send(Frame::new(Command::Unsubscribe).header("id", "x"))
            .await;
    }
    assert!(
        message_within(&mut second, Duration::from_millis(300))
            .await
            .is_none()
    );
}

/// ACKs a MESSAGE by its `ack` header, without a receipt.
async fn ack(c: &mut Client, m: &Frame) {
    let id = m.headers.get("ack").expect("an ack header").to_owned();
    c.send(Frame::new(Command::Ack).header("id", id)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_consumers_on_two_nodes_share_a_queue_with_nothing_lost_or_doubled() {
    let cluster = start_cluster("").await;
    for node in &cluster.nodes {
        ready(node, 200).await;
    }
    let mut a = connected(&cluster.nodes[0], "alice").await;
    a.subscribe_with(
        "qa",
        "/queue/jobs",
        &[("ack", "client-individual"), ("prefetch-count", "5")],
    )
    .await;
    let mut b = connected(&cluster.nodes[1], "bob").await;
    b.subscribe_with(
        "qb",
        "/queue/jobs",
        &[("ack", "client-individual"), ("prefetch-count", "5")],
    )
    .await;
    let mut sender = connected(&cluster.nodes[2], "svc").await;
    for i in 0..200 {
        // Each receipt means JetStream holds the message.
        sender.publish("/queue/jobs", &format!("job-{i}")).await;
    }
    let mut got: Vec<(usize, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 200 {
        assert!(
            Instant::now() < deadline,
            "only {} of 200 arrived",
            got.len()
        );
        for (k, c) in [&mut a, &mut b].into_iter().enumerate() {
            while let Some(m) = message_within(c, Duration::from_millis(50)).await {
                assert_eq!(m.headers.get("destination"), Some("/queue/jobs"));
                ack(c, &m).await;
                got.push((k, body(&m)));
            }
        }
    }
    // Nothing more comes once all are acked.
    sender.publish("/queue/jobs", "last").await;
    let mut last = 0;
    for c in [&mut a, &mut b] {
        while let Some(m) = message_within(c, Duration::from_millis(500)).await {
            assert_eq!(body(&m), "last", "a duplicate: {m:?}");
            ack(c, &m).await;
            last += 1;
        }
    }
    assert_eq!(last, 1);
    let mut bodies: Vec<String> = got.iter().map(|(_, b)| b.clone()).collect();
    bodies.sort();
    let mut want: Vec<String> = (0..200).map(|i| format!("job-{i}")).collect();
    want.sort();
    assert_eq!(bodies, want);
    for k in 0..2 {
        assert!(got.iter().any(|(n, _)| *n == k), "consumer {k} got nothing");
    }
    // What node A says of itself and the queue.
    let auth = common::basic("svc", "svc-pw");
    let (status, stats) = common::http_request(
        cluster.nodes[0].http_addr,
        "GET",
        "/api/stats",
        &[("Authorization", auth.as_str())],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{stats}");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        stats["cluster"],
        serde_json::json!({"mode": "cluster", "node": "node-a", "nats": "connected"})
    );
    // (The market's orders queue is listed too on the node that runs it.)
    let jobs: Vec<&serde_json::Value> = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["name"] != "stompede.market.orders")
        .collect();
    assert_eq!(
        jobs,
        [&serde_json::json!({"name": "jobs", "depth": 0, "consumers": 1, "unacked": 0})]
    );
}

/// Publishes `n` messages to `queue` through node C, then has alice on node A
/// take them all without acking: A's client and the bodies it holds.
async fn held_on_a(cluster: &Cluster, queue: &str, n: usize) -> (Client, Vec<String>) {
    let mut sender = connected(&cluster.nodes[2], "svc").await;
    for i in 0..n {
        sender.publish(queue, &format!("w{i}")).await;
    }
    let mut a = connected(&cluster.nodes[0], "alice").await;
    let prefetch = n.to_string();
    a.subscribe_with(
        "qa",
        queue,
        &[("ack", "client"), ("prefetch-count", prefetch.as_str())],
    )
    .await;
    let mut held = Vec::new();
    while held.len() < n {
        let m = message_within(&mut a, Duration::from_secs(10))
            .await
            .expect("a delivery on A");
        held.push(body(&m));
    }
    (a, held)
}

/// bob on node B, consuming `queue` (client-individual acks).
async fn consumer_on_b(cluster: &Cluster, queue: &str) -> Client {
    let mut b = connected(&cluster.nodes[1], "bob").await;
    b.subscribe_with(
        "qb",
        queue,
        &[("ack", "client-individual"), ("prefetch-count", "50")],
    )
    .await;
    b
}

/// Receives and acks `held.len()` redeliveries on `b` (each within `wait`);
/// they must be exactly what was held.
async fn redelivered(b: &mut Client, mut held: Vec<String>, wait: Duration) {
    let mut again = Vec::new();
    while again.len() < held.len() {
        let m = message_within(b, wait).await.expect("redelivery on B");
        assert_eq!(m.headers.get("redelivered"), Some("true"), "{m:?}");
        ack(b, &m).await;
        again.push(body(&m));
    }
    held.sort();
    again.sort();
    assert_eq!(again, held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_unacked_messages_go_to_a_consumer_on_another_node() {
    let mut cluster = start_cluster_with("", &[("STOMPEDE__CLUSTER__ACK_WAIT_S", "2")]).await;
    for node in &cluster.nodes {
        ready(node, 200).await;
    }
    // Node A's consumer takes messages and acks none; B's has no room yet.
    let (_a, held) = held_on_a(&cluster, "/queue/work", 20).await;
    cluster.nodes[0].kill_9();
    let mut b = consumer_on_b(&cluster, "/queue/work").await;
    redelivered(&mut b, held, Duration::from_secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_nacked_too_often_moves_to_the_dlq_on_any_node() {
    let cluster = start_cluster("[queues]\nmax_redeliveries = 1").await;
    for node in &cluster.nodes {
        ready(node, 200).await;
    }
    let mut a = connected(&cluster.nodes[0], "alice").await;
    a.subscribe_with("qa", "/queue/flaky", &[("ack", "client-individual")])
        .await;
    let mut dlq = connected(&cluster.nodes[1], "bob").await;
    dlq.subscribe("d", "/queue/flaky.dlq").await;
    let mut sender = connected(&cluster.nodes[2], "svc").await;
    sender.publish("/queue/flaky", "poison").await;
    for attempt in 1..=2 {
        let m = message_within(&mut a, Duration::from_secs(10))
            .await
            .expect("a delivery");
        assert_eq!(body(&m), "poison");
        assert_eq!(m.headers.get("redelivered").is_some(), attempt > 1, "{m:?}");
        let id = m.headers.get("ack").unwrap().to_owned();
        a.send(Frame::new(Command::Nack).header("id", id)).await;
    }
    let dead = message_within(&mut dlq, Duration::from_secs(10))
        .await
        .expect("a dead letter");
    assert_eq!(body(&dead), "poison");
    assert_eq!(dead.headers.get("destination"), Some("/queue/flaky.dlq"));
    assert_eq!(
        dead.headers.get("original-destination"),
        Some("/queue/flaky")
    );
    assert!(
        dead.headers
            .get("dlq-reason")
            .is_some_and(|r| r.contains("max_redeliveries"))
    );
    assert!(
        message_within(&mut a, Duration::from_millis(500))
            .await
            .is_none()
    );
}

/// `stompede_cluster_subscriptions` of `node`.
async fn nats_subscriptions(node: &BrokerProcess) -> f64 {
    let (_, metrics) = http_get(node.http_addr, "/metrics").await;
    common::metric(&metrics, "stompede_cluster_subscriptions").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_holds_one_nats_subscription_per_pattern_until_shortly_after_its_last_subscriber() {
    let cluster = start_cluster("").await;
    let node = &cluster.nodes[1];
    ready(node, 200).await;
    assert_eq!(nats_subscriptions(node).await, 0.0);
    let mut a = connected(node, "alice").await;
    let mut b = connected(node, "bob").await;
    a.subscribe("1", "/topic/rc.*").await;
    // After the receipt, a message published through the same node (so the same
    // NATS connection and server) arrives, with no retry.
    let mut publisher = connected(node, "svc").await;
    publisher.publish("/topic/rc.now", "at once").await;
    let m = message_within(&mut a, Duration::from_secs(5))
        .await
        .expect("the first message");
    assert_eq!(body(&m), "at once");
    b.subscribe("1", "/topic/rc.*").await;
    // A trailing `#` is two subjects: the prefix and everything below it.
    b.subscribe("2", "/topic/rc.#").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while nats_subscriptions(node).await != 3.0 {
        assert!(Instant::now() < deadline, "not 3 NATS subscriptions");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One of two subscribers of a pattern goes: its NATS subscription stays.
    a.send(
        Frame::new(Command::Unsubscribe)
            .header("id", "1")
            .header("receipt", "u"),
    )
    .await;
    a.expect(Command::Receipt).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(nats_subscriptions(node).await, 3.0);
    // The last ones go: the subscriptions stay for a moment, then are dropped.
    b.send(Frame::new(Command::Disconnect).header("receipt", "bye"))
        .await;
    b.expect(Command::Receipt).await;
    assert_eq!(nats_subscriptions(node).await, 3.0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while nats_subscriptions(node).await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "NATS subscriptions kept after their last subscriber"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_browser_is_cut_off_and_never_holds_up_the_node_s_nats_link() {
    use tokio::io::AsyncWriteExt;
    const MESSAGES: usize = 5_000;
    const BODY: usize = 4096;
    const WINDOW: usize = 64;
    let cluster =
        start_cluster_with("", &[("STOMPEDE__LIMITS__MAX_OUTBOX_BYTES", "1048576")]).await;
    for node in &cluster.nodes {
        ready(node, 200).await;
    }
    let node_a = &cluster.nodes[0];
    // Subscribes over raw TCP, then never reads again.
    let mut stalled = tokio::net::TcpStream::connect(node_a.stomp_addr)
        .await
        .unwrap();
    stalled
        .write_all(
            b"CONNECT\naccept-version:1.2\nlogin:bob\npasscode:bob-pw\n\n\0SUBSCRIBE\nid:0\ndestination:/topic/flood\nreceipt:r\n\n\0",
        )
        .await
        .unwrap();
    let mut fast = connected(node_a, "alice").await;
    fast.subscribe("0", "/topic/flood").await;
    let mut publisher = connected(&cluster.nodes[1], "svc").await;
    until_routed(&mut publisher, &mut fast, "/topic/flood", &["0"]).await;
    // 20 MiB through node A, far past the stalled client's socket buffers and its
    // 1 MiB outbox; the publisher stays at most WINDOW messages ahead of the fast
    // subscriber.
    let body = vec![b'f'; BODY];
    let mut received = 0;
    for i in 0..MESSAGES {
        publisher
            .send(
                Frame::new(Command::Send)
                    .header("destination", "/topic/flood")
                    .header("seq", i.to_string())
                    .body(body.clone()),
            )
            .await;
        while i >= received + WINDOW {
            let m = message_within(&mut fast, Duration::from_secs(10))
                .await
                .expect("flood");
            if m.body.len() == BODY {
                assert_eq!(m.headers.get("seq"), Some(received.to_string().as_str()));
                received += 1;
            }
        }
    }
    while received < MESSAGES {
        let m = message_within(&mut fast, Duration::from_secs(10))
            .await
            .expect("flood");
        if m.body.len() == BODY {
            assert_eq!(m.headers.get("seq"), Some(received.to_string().as_str()));
            received += 1;
        }
    }
    let (_, metrics) = http_get(node_a.http_addr, "/metrics").await;
    assert!(common::metric(&metrics, "stompede_slow_consumer_disconnects_total").unwrap() >= 1.0);
    assert_eq!(
        common::metric(&metrics, "stompede_cluster_slow_consumer_drops_total"),
        Some(0.0)
    );
    drop(stalled);
}

/// The next `n` MESSAGEs of `c` as (offset, body), each within 10 s.
async fn offsets(c: &mut Client, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let m = message_within(c, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("only {got:?}"));
        let offset = m
            .headers
            .get("x-stream-offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or_else(|| panic!("no offset: {m:?}"));
        got.push((offset, body(&m)));
    }
    got
}

/// Publishes `{prefix}0`..`{prefix}49` to `/topic/feed.x`, a receipt only for the
/// last.
async fn burst(publisher: &mut Client, prefix: &str) {
    for i in 0..49 {
        publisher
            .send(
                Frame::new(Command::Send)
                    .header("destination", "/topic/feed.x")
                    .body(format!("{prefix}{i}")),
            )
            .await;
    }
    publisher
        .publish("/topic/feed.x", &format!("{prefix}49"))
        .await;
}

/// Offsets of a kept destination are the cluster's: the same on every node, one
/// more per message whichever node published it, and a client that lost its node
/// resumes on another one exactly where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_offsets_are_the_cluster_s_and_a_client_resumes_on_another_node() {
    let kept = "[topics]\nhistory = [\"/topic/feed.*\"]\nhistory_max_messages = 100";
    let cluster = start_cluster(kept).await;
    for node in &cluster.nodes {
        ready(node, 200).await;
    }
    let mut on_a = connected(&cluster.nodes[0], "alice").await;
    on_a.subscribe("a", "/topic/feed.*").await;
    let mut on_c = connected(&cluster.nodes[2], "bob").await;
    on_c.subscribe("c", "/topic/feed.x").await;
    let mut pub_a = connected(&cluster.nodes[0], "svc").await;
    let mut pub_b = connected(&cluster.nodes[1], "svc").await;
    // Positive control: the first message reaches both nodes' subscribers.
    pub_b.publish("/topic/feed.x", "first").await;
    let first = offsets(&mut on_a, 1).await;
    assert_eq!(offsets(&mut on_c, 1).await, first);
    let (first, _) = first[0].clone();
    // Two nodes publish to one destination at once, without waiting for
    // receipts, so each node's historian has many waiting: atomic batches from
    // two nodes contend.
    tokio::join!(burst(&mut pub_a, "a"), burst(&mut pub_b, "b"));
    let seen = offsets(&mut on_a, 100).await;
    assert_eq!(offsets(&mut on_c, 100).await, seen, "the same on two nodes");
    let numbers: Vec<u64> = seen.iter().map(|(o, _)| *o).collect();
    assert_eq!(numbers, (first + 1..=first + 100).collect::<Vec<_>>());
    for from in ["a", "b"] {
        let bodies: Vec<&str> = seen
            .iter()
            .map(|(_, b)| b.as_str())
            .filter(|b| b.starts_with(from))
            .collect();
        let sent: Vec<String> = (0..50).map(|i| format!("{from}{i}")).collect();
        assert_eq!(bodies, sent, "each publisher's messages in its order");
    }
    // Bob's connection to node C goes; 20 more are published while he is away
    // (node A's subscriber, still there, is the control that they exist).
    drop(on_c);
    for i in 0..20 {
        pub_b.publish("/topic/feed.x", &format!("m{i}")).await;
    }
    let missed = offsets(&mut on_a, 20).await;
    let expected: Vec<(u64, String)> = (0..20)
        .map(|i| (first + 101 + i, format!("m{i}")))
        .collect();
    assert_eq!(missed, expected);
    // He comes back through node A and resumes after the last offset he saw.
    let mut back = connected(&cluster.nodes[0], "bob").await;
    let resume = format!("offset={}", first + 101);
    back.subscribe_with("r", "/topic/feed.x", &[("x-stream-offset", &resume)])
        .await;
    let first_back = message_within(&mut back, Duration::from_secs(10))
        .await
        .expect("the first missed message");
    assert_eq!(first_back.headers.get("x-stream-gap"), None);
    assert_eq!(body(&first_back), "m0");
    let mut resumed = vec![(first + 101, body(&first_back))];
    resumed.extend(offsets(&mut back, 19).await);
    assert_eq!(resumed, expected, "exactly what he missed, in order");
    pub_b.publish("/topic/feed.x", "live").await;
    assert_eq!(
        offsets(&mut back, 1).await,
        [(first + 121, "live".to_owned())]
    );
    // 122 messages, 100 kept: asking for the very first starts at the oldest
    // kept, and says something is gone.
    let mut late = connected(&cluster.nodes[1], "alice").await;
    let from_first = format!("offset={first}");
    late.subscribe_with("g", "/topic/feed.x", &[("x-stream-offset", &from_first)])
        .await;
    let oldest = message_within(&mut late, Duration::from_secs(10))
        .await
        .expect("the oldest kept message");
    assert_eq!(oldest.headers.get("x-stream-gap"), Some("true"));
    assert_eq!(
        oldest.headers.get("x-stream-offset"),
        Some((first + 22).to_string().as_str())
    );
    assert_eq!(body(&oldest), seen[21].1);
    // A node started now reads the history from the stream: the same offsets.
    let dir = tempfile::tempdir().unwrap();
    let toml = node_toml(&cluster.nats.nodes[2].url(), "d", dir.path(), kept);
    let node_d = BrokerProcess::start(dir.path(), &toml, &[]);
    ready(&node_d, 200).await;
    let mut on_d = connected(&node_d, "bob").await;
    on_d.subscribe_with("d", "/topic/feed.x", &[("x-stream-offset", "last")])
        .await;
    assert_eq!(
        offsets(&mut on_d, 1).await,
        [(first + 121, "live".to_owned())]
    );
}

// One anonymous client's 1000 patterns that NATS sees as one subject
// (`/topic/#.zN`, all `stompede.t.>`) cost the node one NATS subscription, not
// 1000: a plain subscriber on the attacked node gets every message of three
// receipted bursts, and each pattern still gets exactly what it matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_s_patterns_do_not_multiply_the_node_s_nats_subscriptions() {
    let cluster = start_cluster("").await;
    let (attacked, other) = (&cluster.nodes[0], &cluster.nodes[1]);
    ready(attacked, 200).await;
    ready(other, 200).await;
    let before = nats_subscriptions(attacked).await;
    let mut attacker = Client::tcp_at(attacked.stomp_addr).await;
    attacker.connect_anonymously().await;
    for i in 1..=1000 {
        attacker
            .send(
                Frame::new(Command::Subscribe)
                    .header("id", format!("z{i}"))
                    .header("destination", format!("/topic/#.z{i}")),
            )
            .await;
    }
    attacker.subscribe("last", "/topic/#.z1000").await;
    let mut plain = connected(attacked, "alice").await;
    plain.subscribe("n", "/topic/news").await;
    let held = nats_subscriptions(attacked).await - before;
    assert!(
        held <= 2.0,
        "{held} NATS subscriptions for 1001 patterns and one topic"
    );
    let mut publisher = connected(other, "svc").await;
    until_routed(&mut publisher, &mut plain, "/topic/news", &["n"]).await;
    // The attacker's patterns match nothing of /topic/news; one matches this.
    publisher.publish("/topic/x.z7", "for z7").await;
    let m = message_within(&mut attacker, Duration::from_secs(10))
        .await
        .expect("the matching pattern's message");
    assert_eq!(m.headers.get("subscription"), Some("z7"));
    assert_eq!(body(&m), "for z7");
    let body_of = |burst: usize, i: usize| format!("b{burst}-{i}-{}", "x".repeat(1024));
    for burst in 0..3 {
        for i in 0..300 {
            publisher.publish("/topic/news", &body_of(burst, i)).await;
        }
        for i in 0..300 {
            let m = message_within(&mut plain, Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("burst {burst}: message {i} of 300 missing"));
            assert_eq!(body(&m), body_of(burst, i));
        }
    }
    let (_, metrics) = http_get(attacked.http_addr, "/metrics").await;
    assert_eq!(
        common::metric(&metrics, "stompede_cluster_slow_consumer_drops_total"),
        Some(0.0)
    );
    // Nothing else reached the attacker: each pattern gets only what it matches.
    assert!(
        message_within(&mut attacker, Duration::from_millis(300))
            .await
            .is_none()
    );
}

// After NATS restarts, a node reports ready only once kept destinations are
// delivered again, and then at once: a kept message published right after
// /readyz says 200 reaches the subscriber from before within 2 s (it took 16 s
// while an ordered consumer of the old connection was retried).
/// alice subscribed to the kept `/topic/h.x` on `node`, and svc's publisher
/// there, once a first message ("before") went from one to the other.
async fn kept_topic_flowing(node: &BrokerProcess) -> (Client, Client) {
    let mut sub = connected(node, "alice").await;
    sub.subscribe("s", "/topic/h.x").await;
    let mut publisher = connected(node, "svc").await;
    publisher.publish("/topic/h.x", "before").await;
    let m = message_within(&mut sub, Duration::from_secs(10)).await;
    assert_eq!(m.map(|m| body(&m)).as_deref(), Some("before"));
    (sub, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_topics_are_delivered_as_soon_as_a_node_is_ready_after_nats_restarts() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let store = tempfile::tempdir().unwrap();
    let mut server = nats::one(store.path());
    let port = server.client_addr.port();
    let dir = tempfile::tempdir().unwrap();
    let toml = node_toml(
        &server.url(),
        "solo",
        dir.path(),
        "[topics]\nhistory = [\"/topic/h.#\"]",
    );
    let node = BrokerProcess::start(dir.path(), &toml, &[]);
    ready(&node, 200).await;
    let (mut sub, mut publisher) = kept_topic_flowing(&node).await;
    server.kill();
    ready(&node, 503).await;
    let _server = nats::one_on(store.path(), port);
    ready(&node, 200).await;
    let ready_at = Instant::now();
    publisher.publish("/topic/h.x", "after").await;
    let m = message_within(&mut sub, Duration::from_secs(20))
        .await
        .expect("the kept message after the restart");
    let took = ready_at.elapsed();
    assert_eq!(body(&m), "after");
    assert!(
        took < Duration::from_secs(2),
        "delivered {took:?} after /readyz said 200"
    );
}

/// A node whose NATS server is gone still drains and exits on SIGTERM (it
/// used to keep running until a second signal, waiting on NATS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drains_and_exits_on_sigterm_when_nats_is_gone() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let store = tempfile::tempdir().unwrap();
    let mut server = nats::one(store.path());
    let dir = tempfile::tempdir().unwrap();
    let toml = node_toml(
        &server.url(),
        "leaving",
        dir.path(),
        "[topics]\nhistory = [\"/topic/h.#\"]\n[server]\ndrain_grace_s = 1\ndrain_spread_s = 1",
    );
    let mut node = BrokerProcess::start(dir.path(), &toml, &[]);
    ready(&node, 200).await;
    let mut consumer = connected(&node, "svc").await;
    consumer
        .subscribe_with("q", "/queue/work", &[("ack", "client")])
        .await;
    let (_sub, _publisher) = kept_topic_flowing(&node).await;
    server.kill();
    ready(&node, 503).await;
    let asked = Instant::now();
    node.signal("TERM");
    let status = node
        .wait_exit(Duration::from_secs(40))
        .await
        .expect("the node still runs 40 s after SIGTERM without NATS");
    assert!(status.success(), "{status:?}");
    // Grace 1 s, spread 1 s, then at most 10 s for last words and 5 s for the engine.
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    let e = consumer.next_frame().await;
    assert!(
        e.as_ref()
            .and_then(|f| f.headers.get("message"))
            .is_some_and(|m| m.contains("node restarting")),
        "{e:?}"
    );
}

/// Draining a node hands its consumers' unacked messages to a consumer on
/// another node at once (not after `cluster.ack_wait_s`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_s_unacked_messages_go_to_a_consumer_on_another_node_at_once() {
    let cluster = start_cluster_with(
        "[server]\ndrain_grace_s = 0\ndrain_spread_s = 0",
        &[("STOMPEDE__CLUSTER__ACK_WAIT_S", "120")],
    )
    .await;
    for node in &cluster.nodes {
        ready(node, 200).await;
    }
    let (mut a, held) = held_on_a(&cluster, "/queue/drained", 10).await;
    let mut b = consumer_on_b(&cluster, "/queue/drained").await;
    let root = common::basic("root", "root-pw");
    let (status, _) = common::http_request(
        cluster.nodes[0].http_addr,
        "POST",
        "/api/drain",
        &[("Authorization", &root)],
        b"",
    )
    .await;
    assert_eq!(status, 202);
    let error = a.next_frame().await.expect("the drain's ERROR");
    assert!(
        error
            .headers
            .get("message")
            .unwrap()
            .contains("node restarting"),
        "{error:?}"
    );
    // Within seconds, not after the 120 s of cluster.ack_wait_s.
    redelivered(&mut b, held, Duration::from_secs(10)).await;
}

/// A node's hold on a lease, for the lease test.
type Holder = (
    &'static str,
    tokio::sync::watch::Receiver<bool>,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
);

/// Who holds the lease now, as the holders see it.
fn holding(holders: &[Holder]) -> Vec<String> {
    holders
        .iter()
        .filter(|(_, rx, _, _)| *rx.borrow())
        .map(|(n, _, _, _)| n.to_string())
        .collect()
}

/// Waits (sampling every 20 ms, at most 10 s, never seeing two holders) for a
/// holder other than `not`: who, and how long it took.
async fn until_one(holders: &[Holder], not: Option<&str>) -> (String, Duration) {
    let since = Instant::now();
    loop {
        let now = holding(holders);
        assert!(now.len() <= 1, "two holders: {now:?}");
        if let Some(h) = now.first().filter(|h| Some(h.as_str()) != not) {
            return (h.clone(), since.elapsed());
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "no holder in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lease the cluster runs its one market by: one holder at a time; when
/// the holder dies without a word (its task aborted, as by kill -9) another
/// takes it within 10 s; one that stops gives it back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_has_one_holder_and_passes_on_when_it_dies() {
    use stompede::engine::cluster::lease;
    let _turn = ONE_AT_A_TIME.lock().await;
    let store = tempfile::tempdir().unwrap();
    let server = nats::one(store.path());
    let mut holders = Vec::new();
    for node in ["a", "b", "c"] {
        let client = async_nats::connect(server.url()).await.unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(lease::hold(
            client,
            "market".to_owned(),
            node.to_owned(),
            tx,
            stop.clone(),
        ));
        holders.push((node, rx, stop, task));
    }
    // Sampled every 20 ms: never two holders; one within 10 s.
    let (first, _) = until_one(&holders, None).await;
    // Held steadily: still one holder, the same, over three renewals.
    let steady = Instant::now();
    while steady.elapsed() < Duration::from_secs(3) {
        assert_eq!(holding(&holders), std::slice::from_ref(&first));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The holder dies without giving the lease back.
    let i = holders.iter().position(|(n, ..)| *n == first).unwrap();
    let (_, _, _, task) = holders.remove(i);
    task.abort();
    let (second, took) = until_one(&holders, Some(&first)).await;
    assert_ne!(second, first);
    assert!(took < Duration::from_secs(10), "{took:?}");
    // The next holder stops cleanly: the last one takes over at once.
    let i = holders.iter().position(|(n, ..)| *n == second).unwrap();
    let (_, _, stop, task) = holders.remove(i);
    stop.cancel();
    task.await.unwrap();
    let (third, took) = until_one(&holders, Some(&second)).await;
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_ne!(third, first);
}

/// The latest all-symbols quote on `c` within `wait`: symbol → (price, volume).
async fn quotes_within(
    c: &mut Client,
    wait: Duration,
) -> Option<std::collections::BTreeMap<String, (f64, u64)>> {
    let m = message_within(c, wait).await?;
    assert_eq!(m.headers.get("destination"), Some("/topic/stock-quotes"));
    let all: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    Some(
        all.as_array()
            .unwrap()
            .iter()
            .map(|q| {
                let symbol = q["symbol"].as_str().unwrap().to_owned();
                (
                    symbol,
                    (q["price"].as_f64().unwrap(), q["volume"].as_u64().unwrap()),
                )
            })
            .collect(),
    )
}

/// alice's next trade confirmation on `c` within `wait`, as JSON.
async fn confirmation_within(c: &mut Client, wait: Duration) -> Option<serde_json::Value> {
    let m = message_within(c, wait).await?;
    assert_eq!(
        m.headers.get("destination"),
        Some("/user/queue/trade-confirmation")
    );
    Some(serde_json::from_slice(&m.body).unwrap())
}

/// One market for the cluster: quotes once per tick whichever node a client
/// reads, a trade sent on any node confirmed, and when the market's node dies
/// (kill -9) another takes over within 10 s, from the last prices, with its
/// resting limit orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_market_serves_the_cluster_and_moves_when_its_node_dies() {
    let mut cluster = start_cluster_with(
        "",
        &[
            ("STOMPEDE__QUOTES__INTERVAL_MS", "500"),
            ("STOMPEDE__TRADING__LIMIT_ORDER_TTL_MS", "20000"),
        ],
    )
    .await;
    for node in &cluster.nodes {
        ready(node, 200).await;
    }
    // The node holding the market says so in its log.
    let deadline = Instant::now() + Duration::from_secs(20);
    let holder = loop {
        let found = cluster.nodes.iter().position(|n| {
            n.log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("this node runs the market"))
        });
        if let Some(i) = found {
            break i;
        }
        assert!(Instant::now() < deadline, "no node runs the market");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let survivor = (holder + 1) % 3;
    // Quotes once per tick: over 3 s at 500 ms, about 6, never 18.
    let mut reader = connected(&cluster.nodes[survivor], "alice").await;
    reader.subscribe("q", "/topic/stock-quotes").await;
    quotes_within(&mut reader, Duration::from_secs(5))
        .await
        .expect("quotes");
    let since = Instant::now();
    let mut ticks = 0;
    while since.elapsed() < Duration::from_secs(3) {
        if quotes_within(&mut reader, Duration::from_secs(2))
            .await
            .is_some()
        {
            ticks += 1;
        }
    }
    assert!((4..=8).contains(&ticks), "{ticks} ticks in 3 s at 500 ms");
    // A trade sent on each node is confirmed to the trader there.
    let mut traders = Vec::new();
    for node in &cluster.nodes {
        let mut t = connected(node, "alice").await;
        t.subscribe("conf", "/user/queue/trade-confirmation").await;
        traders.push(t);
    }
    for (i, t) in traders.iter_mut().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(15);
        let conf = loop {
            assert!(Instant::now() < deadline, "no confirmation on node {i}");
            t.trade(r#"{"symbol":"AAPL","quantity":2,"orderType":"BUY"}"#)
                .await;
            if let Some(c) = confirmation_within(t, Duration::from_millis(500)).await {
                break c;
            }
        };
        assert_eq!(conf["status"], "EXECUTED", "{conf}");
        // Drain the copies the other nodes' alice sessions got, and any retries.
        while confirmation_within(t, Duration::from_millis(300))
            .await
            .is_some()
        {}
    }
    for t in &mut traders {
        while confirmation_within(t, Duration::from_millis(100))
            .await
            .is_some()
        {}
    }
    // A limit order far below the market rests (and expires 20 s after it was placed).
    let resting = &mut traders[survivor];
    resting
        .trade(r#"{"symbol":"MSFT","quantity":1,"orderType":"BUY","limitPrice":0.01}"#)
        .await;
    let pending = confirmation_within(resting, Duration::from_secs(5))
        .await
        .expect("PENDING");
    assert_eq!(pending["status"], "PENDING", "{pending}");
    let placed = Instant::now();
    // A fresh reader, so the quote before the kill is the latest one.
    drop(reader);
    let mut reader = connected(&cluster.nodes[survivor], "bob").await;
    reader.subscribe("q", "/topic/stock-quotes").await;
    let before = quotes_within(&mut reader, Duration::from_secs(5))
        .await
        .expect("a quote before the kill");
    // The market's node dies.
    cluster.nodes[holder].kill_9();
    let killed = Instant::now();
    let after = loop {
        let q = quotes_within(&mut reader, Duration::from_secs(12)).await;
        let q = q.expect("no quote within 12 s of the kill");
        if killed.elapsed() > Duration::from_millis(600) {
            break q;
        }
    };
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "quotes resumed after {took:?}"
    );
    // From the last prices, not the seed: volumes go on growing, prices move a tick or two.
    for (symbol, (price, volume)) in &before {
        let (p, v) = after[symbol];
        assert!(v > *volume, "{symbol}: volume {volume} then {v}");
        assert!(
            (p - price).abs() / price < 0.1,
            "{symbol}: {price} then {p}"
        );
    }
    // The resting order survived: it expires on time, told by the new market.
    let wait = Duration::from_secs(20).saturating_sub(placed.elapsed()) + Duration::from_secs(8);
    let expired = tokio::time::timeout(wait, async {
        loop {
            let f = resting
                .next_frame_untimed()
                .await
                .expect("alice's session closed");
            let c: serde_json::Value = serde_json::from_slice(&f.body).unwrap();
            if c["tradeId"] == pending["tradeId"] {
                return c;
            }
        }
    })
    .await
    .expect("the resting order's expiry");
    assert_eq!(expired["status"], "EXPIRED", "{expired}");
}
