//! Prometheus metrics: names, the process-wide recorder, and pre-resolved handles.
//!
//! Handles are looked up once at start-up, so counting on the hot path is an atomic
//! increment, not a registry lookup. Label values are always from small fixed sets
//! (transport, command, reason), never a destination or a login.

use crate::codec::Command;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Metric names, as scraped from `/metrics`.
pub mod names {
    /// Gauge: open connections, label `transport` = `ws` | `tcp`.
    pub const CONNECTIONS: &str = "stompede_connections";
    /// Counter: connections accepted, label `transport`.
    pub const CONNECTIONS_TOTAL: &str = "stompede_connections_total";
    /// Counter: connections refused at `limits.max_connections`, label `transport`.
    pub const CONNECTIONS_REFUSED_TOTAL: &str = "stompede_connections_refused_total";
    /// Counter: frames received, label `command`.
    pub const FRAMES_RECEIVED_TOTAL: &str = "stompede_frames_received_total";
    /// Counter: frames sent, label `command`.
    pub const FRAMES_SENT_TOTAL: &str = "stompede_frames_sent_total";
    /// Counter: messages accepted from SEND (or published by the broker itself).
    pub const MESSAGES_PUBLISHED_TOTAL: &str = "stompede_messages_published_total";
    /// Counter: MESSAGE frames handed to subscribers.
    pub const MESSAGES_DELIVERED_TOTAL: &str = "stompede_messages_delivered_total";
    /// Counter: bytes read from clients.
    pub const BYTES_RECEIVED_TOTAL: &str = "stompede_bytes_received_total";
    /// Counter: bytes written to clients.
    pub const BYTES_SENT_TOTAL: &str = "stompede_bytes_sent_total";
    /// Counter: connections cut off because their outbox passed its limit.
    pub const SLOW_CONSUMER_DISCONNECTS_TOTAL: &str = "stompede_slow_consumer_disconnects_total";
    /// Counter: ERROR frames sent, label `reason`.
    pub const ERRORS_SENT_TOTAL: &str = "stompede_errors_sent_total";
    /// Gauge: live subscriptions.
    pub const SUBSCRIPTIONS: &str = "stompede_subscriptions";
    /// Counter: queue messages dropped because their `expires`/`ttl` passed.
    pub const MESSAGES_EXPIRED_TOTAL: &str = "stompede_messages_expired_total";
    /// Gauge: messages waiting in queues (all queues together).
    pub const QUEUE_MESSAGES: &str = "stompede_queue_messages";
    /// Gauge: queues that exist.
    pub const QUEUES: &str = "stompede_queues";
    /// Counter: queue messages delivered again (consumer gone, or NACK).
    pub const MESSAGES_REDELIVERED_TOTAL: &str = "stompede_messages_redelivered_total";
    /// Counter: queue messages moved to their `.dlq`.
    pub const MESSAGES_DEAD_LETTERED_TOTAL: &str = "stompede_messages_dead_lettered_total";
    /// Counter: dead letters dropped because their DLQ was full or could not be made.
    pub const DEAD_LETTERS_DROPPED_TOTAL: &str = "stompede_dead_letters_dropped_total";
    /// Counter: group commits written to the queue store (each one fsync).
    pub const STORE_COMMITS_TOTAL: &str = "stompede_store_commits_total";
    /// Counter: records written to or deleted from the queue store.
    pub const STORE_WRITES_TOTAL: &str = "stompede_store_writes_total";
    /// Histogram: seconds one group commit took, fsync included.
    pub const STORE_COMMIT_SECONDS: &str = "stompede_store_commit_seconds";
    /// Gauge: durable messages held in the queue store.
    pub const STORED_MESSAGES: &str = "stompede_stored_messages";
    /// Counter: kept history records not written to the store because
    /// `store.max_pending_bytes` were waiting for the disk already.
    pub const STORE_SHED_TOTAL: &str = "stompede_store_shed_total";
    /// Gauge: 1 once the queue store failed a commit and stopped writing.
    pub const STORE_FAILED: &str = "stompede_store_failed";
    /// Gauge: destinations holding a retained message.
    pub const RETAINED_MESSAGES: &str = "stompede_retained_messages";
    /// Counter: refused logins, label `reason` = `bad_credentials` | `bad_token` |
    /// `throttled` | `busy`.
    pub const AUTH_FAILURES_TOTAL: &str = "stompede_auth_failures_total";
    /// Counter: successful logins, label `method` = `password` | `token` | `anonymous`.
    pub const LOGINS_TOTAL: &str = "stompede_logins_total";
    /// Counter: connections closed because their token expired.
    pub const TOKEN_EXPIRIES_TOTAL: &str = "stompede_token_expiries_total";
    /// Counter: password logins answered from the cache of verified credentials.
    pub const AUTH_CACHE_HITS_TOTAL: &str = "stompede_auth_cache_hits_total";
    /// Gauge (cluster nodes only): 1 while connected to NATS.
    pub const CLUSTER_CONNECTED: &str = "stompede_cluster_connected";
    /// Counter (cluster nodes only): reconnections to NATS after the first connect.
    pub const CLUSTER_RECONNECTS_TOTAL: &str = "stompede_cluster_reconnects_total";
    /// Counter (cluster nodes only): messages published to NATS.
    pub const CLUSTER_MESSAGES_OUT_TOTAL: &str = "stompede_cluster_messages_out_total";
    /// Counter (cluster nodes only): messages received from NATS.
    pub const CLUSTER_MESSAGES_IN_TOTAL: &str = "stompede_cluster_messages_in_total";
    /// Counter (cluster nodes only): messages NATS' client dropped for a full
    /// subscription buffer (`cluster.subscription_capacity`).
    pub const CLUSTER_SLOW_CONSUMER_TOTAL: &str = "stompede_cluster_slow_consumer_drops_total";
    /// Gauge (cluster nodes only): NATS subscriptions held for clients' patterns
    /// and user destinations (one per distinct NATS subject they need).
    pub const CLUSTER_SUBSCRIPTIONS: &str = "stompede_cluster_subscriptions";
    /// Counter (cluster nodes only): arrivals on cluster subjects no node wrote.
    pub const CLUSTER_MALFORMED_TOTAL: &str = "stompede_cluster_malformed_total";
    /// Counter (cluster nodes only): publishes NATS refused after the node took them.
    pub const CLUSTER_PUBLISH_FAILURES_TOTAL: &str = "stompede_cluster_publish_failures_total";
    /// Counter: subscribers of a kept destination that fell behind and went on
    /// reading its log at their own pace instead of being cut off.
    pub const LOG_FALLBACKS_TOTAL: &str = "stompede_history_fallbacks_total";
    /// Counter: SENDs an `[[app.routes]]` route took, label `route` (its `match`).
    pub const APP_ROUTE_REQUESTS_TOTAL: &str = "stompede_app_route_requests_total";
    /// Counter: SENDs a route could not serve (its HTTP backend failed, timed
    /// out or was busy), label `route`.
    pub const APP_ROUTE_FAILURES_TOTAL: &str = "stompede_app_route_failures_total";
    /// Histogram: seconds an HTTP route's backend took to answer, label `route`.
    pub const APP_ROUTE_SECONDS: &str = "stompede_app_route_seconds";
    /// Gauge: 1 while the node drains (SIGTERM or `POST /api/drain`).
    pub const DRAINING: &str = "stompede_draining";
    /// Counter: client connections closed by draining, each told to reconnect.
    pub const DRAIN_CLOSED_TOTAL: &str = "stompede_drain_closed_total";
    /// Histogram: seconds from a message's publication to its write to a subscriber.
    pub const PUBLISH_TO_WRITE_SECONDS: &str = "stompede_publish_to_write_seconds";
}

/// Latency buckets, 50 µs to 5 s: the broker aims at sub-millisecond delivery.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 5.0,
];

/// Every `reason` label of `stompede_errors_sent_total`: each series exists from
/// the start at zero (the dashboard and the alerts name them).
pub const ERROR_REASONS: &[&str] = &[
    "authentication_failed",
    "bad_destination",
    "bad_header",
    "body_too_large",
    "connect_timeout",
    "destination_too_long",
    "duplicate_subscription",
    "engine_unavailable",
    "forbidden",
    "frame_timeout",
    "frame_too_large",
    "handler_failed",
    "header_too_long",
    "heartbeat_timeout",
    "login_busy",
    "login_removed",
    "login_throttled",
    "malformed_frame",
    "missing_header",
    "node_restarting",
    "pending_frames_full",
    "proxy_header",
    "queue_refused",
    "replay_too_wide",
    "slow_consumer",
    "store_failed",
    "token_expired",
    "too_many_connections",
    "too_many_connections_per_ip",
    "too_many_headers",
    "too_many_subscriptions",
    "too_many_topic_wildcards",
    "too_many_topic_words",
    "transaction",
    "transaction_too_large",
    "unexpected_frame",
    "unknown_ack",
    "unsupported_version",
];

/// How often the recorder's upkeep runs. Histogram samples pile up in the
/// recorder until it (or a scrape) folds them into buckets: on a timer, memory
/// does not depend on whether or how often Prometheus scrapes.
pub const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls reuse it) and
/// returns the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(names::PUBLISH_TO_WRITE_SECONDS.to_owned()),
                    LATENCY_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::STORE_COMMIT_SECONDS.to_owned()),
                        LATENCY_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::APP_ROUTE_SECONDS.to_owned()),
                        LATENCY_BUCKETS,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            spawn_upkeep(handle.clone(), UPKEEP_EVERY);
            handle
        })
        .clone()
}

/// Runs `handle`'s upkeep every `every` on a thread of its own for the life of
/// the process (the recorder is process-wide; a thread needs no runtime).
fn spawn_upkeep(handle: PrometheusHandle, every: std::time::Duration) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "no thread for the metrics upkeep: histograms grow until scraped");
    }
}

/// Which listener a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// WebSocket on the HTTP listener.
    Ws,
    /// Plain TCP.
    Tcp,
}

impl Transport {
    /// The `transport` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Ws => "ws",
            Transport::Tcp => "tcp",
        }
    }
}

/// Per-transport handles.
#[derive(Debug, Clone)]
pub struct TransportMetrics {
    /// Open connections.
    pub open: Gauge,
    /// Accepted connections.
    pub total: Counter,
    /// Refused at the connection limit.
    pub refused: Counter,
}

/// Pre-resolved metric handles shared by the whole broker.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// WebSocket connections.
    pub ws: TransportMetrics,
    /// TCP connections.
    pub tcp: TransportMetrics,
    received: Vec<Counter>,
    sent: Vec<Counter>,
    /// Messages published.
    pub published: Counter,
    /// Messages delivered.
    pub delivered: Counter,
    /// Bytes read.
    pub bytes_in: Counter,
    /// Bytes written.
    pub bytes_out: Counter,
    /// Slow consumers cut off.
    pub slow_consumers: Counter,
    /// Subscribers of kept destinations that fell back to reading the log.
    pub log_fallbacks: Counter,
    /// Live subscriptions.
    pub subscriptions: Gauge,
    /// Publish-to-write latency.
    pub publish_to_write: Histogram,
    /// Retained destinations.
    pub retained: Gauge,
    /// Expired queue messages.
    pub expired: Counter,
    /// Waiting queue messages.
    pub queue_messages: Gauge,
    /// Existing queues.
    pub queues: Gauge,
    /// Redelivered queue messages.
    pub redelivered: Counter,
    /// Dead-lettered queue messages.
    pub dead_lettered: Counter,
    /// Dead letters dropped.
    pub dropped: Counter,
    /// Store group commits.
    pub store_commits: Counter,
    /// Store records written or deleted.
    pub store_writes: Counter,
    /// Store commit time.
    pub store_commit_seconds: Histogram,
    /// Durable messages in the store.
    pub stored_messages: Gauge,
    /// 1 once the store has failed a commit and stopped writing (fail-stop).
    pub store_failed: Gauge,
    /// History records not written for a full store channel.
    pub store_shed: Counter,
    /// 1 while draining.
    pub draining: Gauge,
    /// Connections closed by draining.
    pub drain_closed: Counter,
}

impl Metrics {
    /// Resolves every handle against the installed recorder. Every series whose
    /// labels are known in advance exists from the start, at zero, so a dashboard
    /// shows it and an alert's `rate()` has a value before the first event.
    pub fn new() -> Self {
        for method in ["password", "token", "anonymous"] {
            counter!(names::LOGINS_TOTAL, "method" => method).absolute(0);
        }
        for reason in ["bad_credentials", "bad_token", "throttled", "busy"] {
            counter!(names::AUTH_FAILURES_TOTAL, "reason" => reason).absolute(0);
        }
        for reason in ERROR_REASONS {
            counter!(names::ERRORS_SENT_TOTAL, "reason" => *reason).absolute(0);
        }
        counter!(names::TOKEN_EXPIRIES_TOTAL).absolute(0);
        counter!(names::AUTH_CACHE_HITS_TOTAL).absolute(0);
        let transport = |t: Transport| TransportMetrics {
            open: gauge!(names::CONNECTIONS, "transport" => t.as_str()),
            total: counter!(names::CONNECTIONS_TOTAL, "transport" => t.as_str()),
            refused: counter!(names::CONNECTIONS_REFUSED_TOTAL, "transport" => t.as_str()),
        };
        Metrics {
            ws: transport(Transport::Ws),
            tcp: transport(Transport::Tcp),
            received: Command::ALL
                .iter()
                .map(|c| counter!(names::FRAMES_RECEIVED_TOTAL, "command" => c.as_str()))
                .collect(),
            sent: Command::ALL
                .iter()
                .map(|c| counter!(names::FRAMES_SENT_TOTAL, "command" => c.as_str()))
                .collect(),
            published: counter!(names::MESSAGES_PUBLISHED_TOTAL),
            delivered: counter!(names::MESSAGES_DELIVERED_TOTAL),
            bytes_in: counter!(names::BYTES_RECEIVED_TOTAL),
            bytes_out: counter!(names::BYTES_SENT_TOTAL),
            slow_consumers: counter!(names::SLOW_CONSUMER_DISCONNECTS_TOTAL),
            log_fallbacks: counter!(names::LOG_FALLBACKS_TOTAL),
            subscriptions: gauge!(names::SUBSCRIPTIONS),
            publish_to_write: histogram!(names::PUBLISH_TO_WRITE_SECONDS),
            retained: gauge!(names::RETAINED_MESSAGES),
            expired: counter!(names::MESSAGES_EXPIRED_TOTAL),
            queue_messages: gauge!(names::QUEUE_MESSAGES),
            queues: gauge!(names::QUEUES),
            redelivered: counter!(names::MESSAGES_REDELIVERED_TOTAL),
            dead_lettered: counter!(names::MESSAGES_DEAD_LETTERED_TOTAL),
            dropped: counter!(names::DEAD_LETTERS_DROPPED_TOTAL),
            store_commits: counter!(names::STORE_COMMITS_TOTAL),
            store_writes: counter!(names::STORE_WRITES_TOTAL),
            store_commit_seconds: histogram!(names::STORE_COMMIT_SECONDS),
            stored_messages: gauge!(names::STORED_MESSAGES),
            store_shed: {
                let shed = counter!(names::STORE_SHED_TOTAL);
                shed.absolute(0);
                shed
            },
            store_failed: {
                let failed = gauge!(names::STORE_FAILED);
                failed.set(0.0);
                failed
            },
            draining: {
                let draining = gauge!(names::DRAINING);
                draining.set(0.0);
                draining
            },
            drain_closed: {
                let closed = counter!(names::DRAIN_CLOSED_TOTAL);
                closed.absolute(0);
                closed
            },
        }
    }

    /// Handles for one transport.
    pub fn transport(&self, t: Transport) -> &TransportMetrics {
        match t {
            Transport::Ws => &self.ws,
            Transport::Tcp => &self.tcp,
        }
    }

    /// Counts a received frame.
    pub fn frame_received(&self, c: Command) {
        self.received[c as usize].increment(1);
    }

    /// Counts `n` sent frames of one command.
    pub fn frames_sent(&self, c: Command, n: u64) {
        self.sent[c as usize].increment(n);
    }

    /// Counts a successful login by method.
    pub fn login(&self, method: &'static str) {
        counter!(names::LOGINS_TOTAL, "method" => method).increment(1);
    }

    /// Counts a connection closed at its token's expiry.
    pub fn token_expired(&self) {
        counter!(names::TOKEN_EXPIRIES_TOTAL).increment(1);
    }

    /// Counts a login answered from the credential cache.
    pub fn auth_cache_hit(&self) {
        counter!(names::AUTH_CACHE_HITS_TOTAL).increment(1);
    }

    /// Counts a refused login by its bounded reason label.
    pub fn auth_failure(&self, reason: &'static str) {
        counter!(names::AUTH_FAILURES_TOTAL, "reason" => reason).increment(1);
    }

    /// Counts a SEND taken by the route `pattern` (a configured pattern: a
    /// bounded label set).
    pub fn app_route_request(&self, pattern: &str) {
        counter!(names::APP_ROUTE_REQUESTS_TOTAL, "route" => pattern.to_owned()).increment(1);
    }

    /// Makes the series of route `pattern` exist from the start, at zero.
    pub fn app_route_known(&self, pattern: &str) {
        counter!(names::APP_ROUTE_REQUESTS_TOTAL, "route" => pattern.to_owned()).absolute(0);
        counter!(names::APP_ROUTE_FAILURES_TOTAL, "route" => pattern.to_owned()).absolute(0);
        let _ = histogram!(names::APP_ROUTE_SECONDS, "route" => pattern.to_owned());
    }

    /// Counts a SEND the route `pattern` could not serve.
    pub fn app_route_failure(&self, pattern: &str) {
        counter!(names::APP_ROUTE_FAILURES_TOTAL, "route" => pattern.to_owned()).increment(1);
    }

    /// Records how long the route `pattern`'s backend took.
    pub fn app_route_latency(&self, pattern: &str, took: std::time::Duration) {
        histogram!(names::APP_ROUTE_SECONDS, "route" => pattern.to_owned())
            .record(took.as_secs_f64());
    }

    /// Counts an ERROR frame by its bounded reason label.
    pub fn error_sent(&self, reason: &'static str) {
        counter!(names::ERRORS_SENT_TOTAL, "reason" => reason).increment(1);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
