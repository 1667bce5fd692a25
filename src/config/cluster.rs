//! `[cluster]`: how a node joins a cluster of nodes over NATS.

use serde::Deserialize;

/// `[cluster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server URLs, comma separated (JetStream enabled); empty: one node on
    /// its own.
    pub nats_url: String,
    /// This node's name; empty: host name and HTTP port.
    pub node_name: String,
    /// Messages one NATS subscription buffers before NATS' client drops them
    /// (counted in `stompede_cluster_slow_consumer_drops_total`).
    pub subscription_capacity: usize,
    /// Publishes waiting for the NATS connection before SENDs get an ERROR.
    pub max_pending_publishes: usize,
    /// Seconds JetStream waits for a queue message's ack before giving it to a
    /// consumer on another node (when the node holding it died).
    pub ack_wait_s: u64,
    /// Unacked messages of one queue across the cluster (JetStream's
    /// max-ack-pending): bounds prefetch windows together.
    pub max_ack_pending: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: String::new(),
            node_name: String::new(),
            subscription_capacity: 65_536,
            max_pending_publishes: 8192,
            ack_wait_s: 30,
            max_ack_pending: 10_000,
        }
    }
}

impl ClusterConfig {
    /// Whether the node joins a cluster.
    pub fn enabled(&self) -> bool {
        !self.nats_url.trim().is_empty()
    }

    /// `node_name`, or the host name and `http_port` when it is empty.
    pub fn node_name(&self, http_port: u16) -> String {
        if !self.node_name.is_empty() {
            return self.node_name.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{host}:{http_port}")
    }
}
