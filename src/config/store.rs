//! `[store]` and `[queues]`: where durable messages live and how queues behave.

use serde::Deserialize;
use std::path::PathBuf;

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The embedded store's directory (created if missing), relative to the working
    /// directory unless absolute.
    pub path: PathBuf,
    /// Bytes of pages the embedded store (redb) caches in memory.
    pub cache_bytes: usize,
    /// Bytes of records waiting for the disk past which kept topic history is not
    /// written to the store (it stays in memory; counted). Queue records always are.
    pub max_pending_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("data"),
            cache_bytes: 16 * 1024 * 1024,
            max_pending_bytes: 16 * 1024 * 1024,
        }
    }
}

/// `[queues]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueuesConfig {
    /// Messages one queue holds; a SEND past it gets an ERROR.
    pub max_depth: usize,
    /// A message is delivered at most 1 + N times through NACKs, then moved to
    /// `/queue/NAME.dlq`.
    pub max_redeliveries: u32,
    /// Queues that may exist at once (they are created on first use).
    pub max_queues: usize,
    /// `prefetch-count` when a SUBSCRIBE gives none.
    pub default_prefetch: usize,
    /// `/queue/...` destinations or patterns whose every message is stored, so it
    /// survives a restart. A SEND with `persistent: true` is stored on any queue.
    pub durable: Vec<String>,
    /// An empty queue without consumers is removed after this many ms unused, so
    /// that queues made once do not hold `max_queues` slots for ever.
    pub idle_reclaim_ms: u64,
}

impl Default for QueuesConfig {
    fn default() -> Self {
        QueuesConfig {
            max_depth: 100_000,
            max_redeliveries: 3,
            max_queues: 10_000,
            default_prefetch: 100,
            durable: Vec::new(),
            idle_reclaim_ms: 60_000,
        }
    }
}
