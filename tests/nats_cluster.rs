//! The NATS cluster the cluster tests stand on: three servers installed by the
//! project's own script, routed together, with JetStream replicated across them.

#![allow(clippy::unwrap_used)]

#[path = "common/nats.rs"]
mod nats;

use futures_util::StreamExt;
use nats::NatsCluster;
use std::time::{Duration, Instant};

#[tokio::test]
async fn three_servers_route_messages_and_replicate_a_stream() {
    let cluster = NatsCluster::start();
    let a = async_nats::connect(cluster.nodes[0].url()).await.unwrap();
    let c = async_nats::connect(cluster.nodes[2].url()).await.unwrap();
    // Routes: a subscription on one server gets what is published on another, once
    // the subscription has spread (retried until it has, within 10 s).
    let mut sub = c.subscribe("probe.routes").await.unwrap();
    c.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        assert!(Instant::now() < deadline, "no message across the route");
        a.publish("probe.routes", "across".into()).await.unwrap();
        a.flush().await.unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            break m;
        }
    };
    assert_eq!(&got.payload[..], b"across");
    // JetStream with three peers: a stream with three replicas can be made (the
    // meta leader is elected shortly after start: retried within 10 s).
    let js = async_nats::jetstream::new(a.clone());
    let config = async_nats::jetstream::stream::Config {
        name: "PROBE".into(),
        subjects: vec!["probe.js".into()],
        num_replicas: 3,
        ..Default::default()
    };
    let stream = loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline + Duration::from_secs(10), "{e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let ack = js
        .publish("probe.js", "kept".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 1);
    let mut stream = stream;
    let info = stream.info().await.unwrap();
    assert_eq!(info.state.messages, 1);
    assert_eq!(info.cluster.as_ref().map(|c| c.replicas.len()), Some(2));
}
