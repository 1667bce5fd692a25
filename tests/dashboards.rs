//! The Grafana dashboard (docs/grafana/stompede.json) and the alert rules
//! (docs/prometheus/alerts.yml) name only metrics that a running broker serves at
//! /metrics. (`promtool check rules` and `promtool test rules` run in
//! scripts/test.)

#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/nats.rs"]
mod nats;

use common::{Client, broker, http_get, metric};
use std::collections::BTreeSet;

/// Every `stompede_...` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("stompede_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        names.insert(name);
    }
    names
}

fn file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_name_is_served() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&file("docs/grafana/stompede.json")).unwrap();
    let mut queries = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert!(!expr.is_empty());
            queries.push_str(expr);
            queries.push('\n');
        }
    }
    let alerts = file("docs/prometheus/alerts.yml");
    let named: BTreeSet<String> = metric_names(&queries)
        .into_iter()
        .chain(metric_names(&alerts))
        .collect();
    assert!(named.len() >= 20, "{named:?}");
    // A fresh cluster node (the cluster link's metrics exist only there) that has
    // sent no ERROR yet: every named series is there from the start.
    let store = tempfile::tempdir().unwrap();
    let nats = nats::one(store.path());
    // With a route, whose series exist from the start too.
    let b = broker(&format!(
        "[cluster]\nnats_url = \"{}\"\n[[app.routes]]\nmatch = \"/app/x.#\"\nurl = \"http://127.0.0.1:1/\"",
        nats.url()
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while http_get(b.http_addr, "/readyz").await.0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the node never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, served) = http_get(b.http_addr, "/metrics").await;
    assert_eq!(status, 200);
    let families: BTreeSet<&str> = served
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = named
        .iter()
        .filter(|n| !families.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "not served at /metrics: {missing:?}");
    for reason in [
        "slow_consumer",
        "malformed_frame",
        "forbidden",
        "frame_too_large",
    ] {
        let series = format!("stompede_errors_sent_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&served, &series), Some(0.0), "{series}");
    }
    // And it counts: one ERROR for a frame that is not STOMP.
    let mut c = Client::tcp(&b).await;
    c.send_raw(b"NONSENSE\n\n\0").await;
    c.expect(stompede::codec::Command::Error).await;
    let (_, served) = http_get(b.http_addr, "/metrics").await;
    let series = "stompede_errors_sent_total{reason=\"malformed_frame\"}";
    assert_eq!(metric(&served, series), Some(1.0), "{series}");
}

#[test]
fn the_name_finder_reads_queries() {
    let names =
        metric_names("sum(rate(stompede_a_total[5m])) / stompede_b_seconds_bucket{le=\"1\"}");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["stompede_a_total", "stompede_b_seconds_bucket"]
    );
}
