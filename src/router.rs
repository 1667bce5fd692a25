//! Routing: which family a destination belongs to, and the publish seam.
//!
//! Sessions publish through [`Bus`]. The single-node implementation,
//! [`LocalBus`], delivers to this broker's subscribers; a cluster implementation
//! can wrap it and forward to other nodes without the sessions knowing.

use crate::codec::{Headers, MessageTemplate};
use crate::metrics::Metrics;
use crate::outbox::Outgoing;
use crate::registry::{AckMode, TopicRegistry};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The destination families of the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// `/topic/...`: broadcast.
    Topic(&'a str),
    /// `/queue/...`: point-to-point.
    Queue(&'a str),
    /// `/user/...`: one user's sessions.
    User(&'a str),
    /// `/app/...`: the broker's own application handlers.
    App(&'a str),
}

impl<'a> Destination<'a> {
    /// Classifies a destination by prefix; `None` for an unknown prefix or an empty name.
    pub fn classify(destination: &'a str) -> Option<Destination<'a>> {
        let (family, name) = destination.strip_prefix('/')?.split_once('/')?;
        if name.is_empty() {
            return None;
        }
        match family {
            "topic" => Some(Destination::Topic(name)),
            "queue" => Some(Destination::Queue(name)),
            "user" => Some(Destination::User(name)),
            "app" => Some(Destination::App(name)),
            _ => None,
        }
    }
}

/// Headers a sender may not pass through to receivers: the broker sets them.
const RESERVED: &[&str] = &[
    "destination",
    "message-id",
    "subscription",
    "ack",
    "receipt",
    "transaction",
    "content-length",
];

/// The publish interface between sessions and destinations.
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// Publishes a message to a concrete topic destination; returns how many
    /// subscriptions it was handed to.
    fn publish_topic(&self, destination: &str, headers: &Headers, body: Bytes) -> usize;
}

/// Delivers to the subscribers of this node.
#[derive(Debug)]
pub struct LocalBus {
    /// Topic subscriptions.
    pub topics: TopicRegistry,
    metrics: Arc<Metrics>,
    /// Distinguishes message ids of this broker run from earlier runs.
    boot: u64,
    next_id: AtomicU64,
}

impl LocalBus {
    /// A bus with no subscriptions.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        LocalBus {
            topics: TopicRegistry::new(),
            metrics,
            boot,
            next_id: AtomicU64::new(1),
        }
    }

    fn message_id(&self) -> String {
        format!(
            "{:x}-{}",
            self.boot,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl Bus for LocalBus {
    fn publish_topic(&self, destination: &str, headers: &Headers, body: Bytes) -> usize {
        let message_id = self.message_id();
        let shared = [
            ("destination", destination),
            ("message-id", message_id.as_str()),
        ]
        .into_iter()
        .chain(headers.iter().filter(|(k, _)| !RESERVED.contains(k)));
        let template = MessageTemplate::new(shared, body);
        let published = Instant::now();
        self.metrics.published.increment(1);
        self.topics.for_each_match(destination, |sub| {
            let message = match sub.ack {
                AckMode::Auto => template.deliver(&sub.header, &[]),
                // Topic messages need no ack to be kept; the header lets client-ack
                // code written for queues work unchanged.
                _ => template.deliver(&sub.header, &[("ack", message_id.as_str())]),
            };
            // A full outbox means a slow consumer that is being cut off already.
            let _ = sub.outbox.push(Outgoing::Message { message, published });
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_prefix() {
        assert_eq!(
            Destination::classify("/topic/a.b"),
            Some(Destination::Topic("a.b"))
        );
        assert_eq!(
            Destination::classify("/queue/jobs"),
            Some(Destination::Queue("jobs"))
        );
        assert_eq!(
            Destination::classify("/user/queue/x"),
            Some(Destination::User("queue/x"))
        );
        assert_eq!(
            Destination::classify("/app/trade"),
            Some(Destination::App("trade"))
        );
        assert_eq!(Destination::classify("/topic/"), None);
        assert_eq!(Destination::classify("/exchange/x"), None);
        assert_eq!(Destination::classify("topic/x"), None);
        assert_eq!(Destination::classify(""), None);
    }
}
