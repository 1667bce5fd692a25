//! `[topics]`: retained values and topic history.

use serde::Deserialize;

/// `[topics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Topic destinations or patterns whose last message is kept and given to new
    /// subscribers at once, marked `retained: true`.
    pub retain: Vec<String>,
    /// Most destinations with a retained message; past it, new ones are not retained.
    pub max_retained: usize,
    /// Topic destinations or patterns that keep their recent messages, numbered by
    /// `x-stream-offset`, for a SUBSCRIBE to replay.
    pub history: Vec<String>,
    /// Messages kept per history destination.
    pub history_max_messages: usize,
    /// Seconds a history message is kept.
    pub history_max_age_s: u64,
    /// Destinations with a history; past it, new destinations keep none.
    pub history_max_destinations: usize,
    /// Bytes all histories together may hold; past it, the destination being
    /// published to drops its oldest messages.
    pub history_max_bytes: u64,
    /// Most kept destinations one SUBSCRIBE with `x-stream-offset` may replay; a
    /// pattern matching more is refused.
    pub max_replay_destinations: usize,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            retain: vec![
                "/topic/stock-quotes".to_owned(),
                "/topic/stock-quotes.*".to_owned(),
            ],
            max_retained: 10_000,
            history: Vec::new(),
            history_max_messages: 1000,
            history_max_age_s: 3600,
            history_max_destinations: 10_000,
            history_max_bytes: 256 * 1024 * 1024,
            max_replay_destinations: 256,
        }
    }
}
