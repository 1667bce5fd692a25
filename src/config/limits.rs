//! `[limits]` and `[heartbeat]`: what one client, one address and the whole broker may cost.

use serde::Deserialize;
use std::time::Duration;

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest frame a client may send.
    pub max_frame_bytes: usize,
    /// Most header lines in one frame.
    pub max_header_count: usize,
    /// Longest header line.
    pub max_header_line: usize,
    /// Open connections, both listeners together; more are refused.
    pub max_connections: usize,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout_ms: u64,
    /// Bytes waiting to be written to one client before it counts as slow.
    pub max_outbox_bytes: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Bytes of subscription ids and destinations one connection may hold.
    pub max_subscription_bytes: usize,
    /// Time one batch write may take before the client counts as gone.
    pub write_timeout_ms: u64,
    /// Dot-separated words in one topic destination or pattern (SEND and SUBSCRIBE).
    pub max_topic_words: usize,
    /// `*` and `#` words in one topic pattern.
    pub max_topic_wildcards: usize,
    /// Bytes of frames (headers and bodies) all open transactions of one
    /// connection may hold before COMMIT.
    pub max_transaction_bytes: usize,
    /// Open transactions one connection may have.
    pub max_open_transactions: usize,
    /// Time a frame may take from its first byte to its last.
    pub frame_timeout_ms: u64,
    /// Bytes all connections together may hold in frames that have started and
    /// not finished.
    pub max_pending_frame_bytes: usize,
    /// Open sockets (STOMP over TCP, WebSocket, plain HTTP) per client address
    /// (IPv4 address or IPv6 /64).
    pub max_connections_per_ip: usize,
    /// Open plain HTTP connections (page, metrics, health; WebSocket handshakes
    /// until they upgrade).
    pub max_http_connections: usize,
    /// Threads that run password checks (each check takes ~19 MiB while it runs).
    pub max_concurrent_password_checks: usize,
    /// Logins that may wait for a password check, broker-wide.
    pub max_queued_logins: usize,
    /// Logins that may wait for a password check from one client address.
    pub max_queued_logins_per_ip: usize,
    /// Failed logins from one address within `failed_login_window_ms` after which
    /// its logins are refused without a check until the window ends.
    pub max_failed_logins_per_ip: u32,
    /// The window of `max_failed_logins_per_ip`.
    pub failed_login_window_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_frame_bytes: 1024 * 1024,
            max_header_count: 64,
            max_header_line: 8 * 1024,
            max_connections: 100_000,
            connect_timeout_ms: 10_000,
            max_outbox_bytes: 8 * 1024 * 1024,
            max_subscriptions: 1024,
            max_subscription_bytes: 128 * 1024,
            write_timeout_ms: 10_000,
            max_topic_words: 64,
            max_topic_wildcards: 16,
            max_transaction_bytes: 8 * 1024 * 1024,
            max_open_transactions: 16,
            frame_timeout_ms: 30_000,
            max_pending_frame_bytes: 256 * 1024 * 1024,
            max_connections_per_ip: 1000,
            max_http_connections: 1024,
            max_concurrent_password_checks: 2,
            max_queued_logins: 256,
            max_queued_logins_per_ip: 32,
            max_failed_logins_per_ip: 10,
            failed_login_window_ms: 60_000,
        }
    }
}

impl LimitsConfig {
    /// The codec limits derived from these settings (a body may fill a whole frame).
    pub fn codec(&self) -> crate::codec::Limits {
        crate::codec::Limits {
            max_frame_bytes: self.max_frame_bytes,
            max_header_count: self.max_header_count,
            max_header_line: self.max_header_line,
            max_body_bytes: self.max_frame_bytes,
        }
    }

    /// The bounds on topic destinations and patterns.
    pub fn topic(&self) -> crate::destination::pattern::TopicLimits {
        crate::destination::pattern::TopicLimits {
            max_words: self.max_topic_words,
            max_wildcards: self.max_topic_wildcards,
        }
    }

    /// `connect_timeout_ms` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// `frame_timeout_ms` as a duration.
    pub fn frame_timeout(&self) -> Duration {
        Duration::from_millis(self.frame_timeout_ms)
    }

    /// `write_timeout_ms` as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

/// `[heartbeat]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// The broker's preferred interval both ways, in ms; 0 disables heart-beats.
    pub server_ms: u64,
    /// Extra silence tolerated past the negotiated client interval before closing.
    pub grace_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            server_ms: 10_000,
            grace_ms: 5_000,
        }
    }
}
