//! The engine: everything a session, an `/app` handler or the HTTP API needs
//! from the world outside its own connection.
//!
//! Sessions decide *whether* a frame may go somewhere (rights, limits, families:
//! the `session` module); the engine decides *who gets it*. Everything above this
//! module holds an `Arc<dyn Engine>` and never a registry, so a second engine (a
//! cluster over NATS) can replace [`LocalEngine`] without sessions noticing.
//!
//! # What an engine must do, and guarantee
//!
//! | call | effect | guarantee |
//! |---|---|---|
//! | [`Engine::publish_topic`] | every topic subscription matching the destination gets the message once; a `topics.retain` destination keeps it as its retained value | per publisher and destination, subscribers see messages in publish order; returns when the message is handed to every local outbox (no waiting on slow clients), or [`Refused`] when it cannot be taken (the sender gets an ERROR: never a silent loss) |
//! | [`Engine::subscribe_topic`] | registers a subscription (exact or `*`/`#` pattern); the retained value of every matching destination is handed over first | a message published after the call returns is delivered; the retained value comes before any newer message and never twice |
//! | [`Engine::unsubscribe_topic`] | removes it | nothing is delivered to it after the call returns |
//! | [`Engine::kept_matching`] | how many kept destinations (and their names' bytes) a pattern matches | what a replay of it may hold, for the session to bound before it subscribes |
//! | [`Engine::publish_user`] | every session of `login` subscribed to `/user/queue/NAME` gets it | as topics; no other login's subscription can match |
//! | [`Engine::subscribe_user`], [`Engine::unsubscribe_user`] | as topics, keyed by the session's own login | |
//! | [`Engine::queue`] | a handle to queue `NAME`'s actor, created on first use | commands from one caller apply in order; a caller waits while the actor's channel is full (`queue::QUEUE_COMMANDS`); a SEND's answer means the queue holds the message (durably for a durable one); each message goes to one consumer; unacked messages go back when their consumer goes |
//! | [`Engine::ready`] | whether the engine can take work (store, cluster link) | drives `/readyz` |
//! | [`Engine::close`] | at shutdown, after every session and queue task ended | what was accepted is persisted |
//! | [`Engine::lease`] | holds a named lease while it can | at most one node of a cluster holds it at a time (a JetStream KV key, renewed; the holder counts itself one only 2.5 s past its last renewal, the key lives 4 s); a dead holder's lease is taken by another within 10 s; on one node always held |
//! | [`Engine::load_state`], [`Engine::save_state`] | a value under a key, cluster-wide (JetStream KV) | what the last holder saved is what the next loads; on one node nothing is kept |
//! | [`Engine::topic_subscribers`], [`Engine::queue_count`], [`Engine::stats`] | counts, for tests and `GET /api/stats` | a snapshot, not a consistent cut |
//!
//! Calls never block on I/O and never hold a lock a caller could wait on across
//! `.await`: topic and user publishing is a synchronous push into bounded outboxes,
//! queue work is a command to the queue's actor. A subscription of a kept
//! destination whose outbox is full is not cut off: it reads the destination's
//! log at its own pace until it has caught up (only what leaves the log
//! meanwhile is lost to it, flagged `x-stream-gap`).

pub mod cluster;
pub mod history;
mod local;
mod replay;

pub use cluster::{ClusterEngine, ClusterOptions};
pub use local::LocalEngine;

use crate::codec::Headers;
use crate::command::StreamOffset;
use crate::queue::{QueueError, QueueHandle};
use crate::registry::Subscriber;
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Why the engine refused a publish. The sender gets an ERROR saying so: a message
/// is either handed on or refused, never dropped in silence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The engine cannot reach where messages go (a cluster engine: its NATS
    /// link is down or its outgoing buffer full).
    #[error("the broker cannot take messages right now: {0}")]
    Unavailable(String),
    /// The destination is too long to be a cluster subject.
    #[error(
        "destination too long for the cluster: its NATS subject would be {bytes} bytes; at most {max} allowed"
    )]
    TooLong {
        /// The subject's length.
        bytes: usize,
        /// The most a subject may have.
        max: usize,
    },
}

impl Refused {
    /// A short, bounded label for `stompede_errors_sent_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Unavailable(_) => "engine_unavailable",
            Refused::TooLong { .. } => "destination_too_long",
        }
    }
}

/// What the engine holds, for `GET /api/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EngineStats {
    /// Every queue with its counts, by name.
    pub queues: Vec<crate::queue::QueueStats>,
    /// Topic destinations holding a retained message.
    pub retained_topics: usize,
    /// Whether the node is on its own or in a cluster, and its link.
    pub cluster: ClusterStats,
    /// Whether the queue store failed a commit and stopped writing.
    pub store_failed: bool,
    /// What the topic history holds.
    pub history: HistoryStats,
}

/// The `history` part of [`EngineStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HistoryStats {
    /// Destinations with a log (`topics.history_max_destinations` bounds them).
    pub destinations: usize,
    /// Messages kept.
    pub messages: usize,
    /// What they count against `topics.history_max_bytes`.
    pub bytes: usize,
}

/// The `cluster` part of [`EngineStats`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClusterStats {
    /// `single` for one node on its own, `cluster` for a node of a cluster.
    pub mode: &'static str,
    /// The node's name (`cluster.node_name`), in a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `connected` or `disconnected` (from NATS), in a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<&'static str>,
}

/// What a replay of one pattern would cover ([`Engine::kept_matching`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeptSpan {
    /// Kept destinations it matches.
    pub destinations: usize,
    /// Bytes of their names.
    pub name_bytes: usize,
}

impl KeptSpan {
    /// Bytes a replay is counted at for each destination it may hold, besides
    /// the name: its place in the replay's queue and in the held map.
    pub const PER_DESTINATION: usize = 96;

    /// What a replay over this span is counted at against the connection's
    /// subscription bytes.
    pub fn cost(&self) -> usize {
        self.name_bytes + self.destinations * Self::PER_DESTINATION
    }
}

/// What a subscribe leaves to wait for: nothing when it is in effect at once, or
/// an answer that comes once it is (a cluster node: when its NATS subscription
/// has reached NATS). The SUBSCRIBE's receipt waits for it.
pub type Subscribed = Option<crate::queue::Answer>;

/// Why the engine cannot take work right now (`/readyz` answers 503 with it).
#[derive(Debug, thiserror::Error)]
pub enum Unready {
    /// The queue store stopped writing (fail-stop after a failed commit).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A cluster node is not connected to NATS.
    #[error("not connected to NATS ({0})")]
    Cluster(String),
}

/// Where sessions, application handlers and backends publish and subscribe.
/// See the [module documentation](self) for the guarantees each call carries.
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// Publishes to a concrete topic destination (`/topic/...`, no wildcard);
    /// returns how many local subscriptions it was handed to, or why it could not
    /// take the message.
    fn publish_topic(
        &self,
        destination: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<usize, Refused>;

    /// Publishes to `/user/{login}/queue/{queue}`; returns how many local
    /// subscriptions it was handed to, or why it could not take the message.
    fn publish_user(
        &self,
        login: &str,
        queue: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<usize, Refused>;

    /// Subscribes to a topic destination or pattern (`/topic/...`, already checked
    /// against the topic limits), handing over matching retained values first.
    /// `from` says where a destination with history starts (SUBSCRIBE
    /// `x-stream-offset`): kept messages are replayed first, then live ones, with
    /// no gap and no duplicate between them.
    fn subscribe_topic(
        &self,
        pattern: &str,
        subscriber: Arc<Subscriber>,
        from: StreamOffset,
    ) -> Result<Subscribed, Refused>;

    /// Removes a topic subscription; returns whether it existed.
    fn unsubscribe_topic(&self, pattern: &str, session: u64, id: &str) -> bool;

    /// The kept destinations (those with history) that `pattern` matches: how
    /// many, and their names' bytes. What a replay of `pattern` may hold per
    /// destination, for the session to bound and count.
    fn kept_matching(&self, pattern: &str) -> KeptSpan;

    /// Subscribes a session of `login` to its `/user/queue/{queue}`.
    fn subscribe_user(
        &self,
        login: &str,
        queue: &str,
        subscriber: Arc<Subscriber>,
    ) -> Result<Subscribed, Refused>;

    /// Removes a user destination subscription; returns whether it existed.
    fn unsubscribe_user(&self, login: &str, queue: &str, session: u64, id: &str) -> bool;

    /// The queue named `name` (the part after `/queue/`), created on first use.
    fn queue(&self, name: &str) -> Result<QueueHandle, QueueError>;

    /// `Ok` when the engine can take work.
    fn ready(&self) -> Result<(), Unready>;

    /// Local subscriptions that a message to `destination` would reach.
    fn topic_subscribers(&self, destination: &str) -> usize;

    /// Queues that exist right now.
    fn queue_count(&self) -> usize;

    /// Replaces the `topics.retain` patterns (a reload). Values already retained
    /// stay until their destination is published to again.
    fn set_retain(&self, patterns: Vec<String>);

    /// Replaces the `topics.history` patterns and bounds (a reload). Kept
    /// messages stay; destinations no longer matching keep no new ones, and the
    /// new bounds apply from each destination's next message.
    fn set_history(&self, limits: history::HistoryLimits);

    /// Counts of what the engine holds (asks every queue).
    fn stats(&self) -> Pin<Box<dyn Future<Output = EngineStats> + Send + '_>>;

    /// Persists what must outlast the process; called once at shutdown, after
    /// every session and queue task has ended.
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// Holds the lease on `name` for this node until `stop`, saying on `held`
    /// whether it holds it now: the one node of a cluster that runs something
    /// there must be one of (the trading market). On one node it is always
    /// held. The future is the holder's task, for the caller to run.
    fn lease(
        &self,
        name: &str,
        held: tokio::sync::watch::Sender<bool>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let _ = name;
        Box::pin(async move {
            held.send_replace(true);
            stop.cancelled().await;
        })
    }

    /// The state saved under `key` by [`Engine::save_state`] on any node of the
    /// cluster; `None` when there is none (or on one node, which keeps none).
    fn load_state(&self, key: &str) -> Pin<Box<dyn Future<Output = Option<Bytes>> + Send + '_>> {
        let _ = key;
        Box::pin(async { None })
    }

    /// Saves `value` under `key` for whichever node holds the lease next;
    /// whether it was stored (on one node, nothing is, and nothing needs to be).
    fn save_state(
        &self,
        key: &str,
        value: Bytes,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        let _ = (key, value);
        Box::pin(async { true })
    }
}
