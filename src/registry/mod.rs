//! Destination registries: who is subscribed to what.

pub mod topic;

pub use topic::{Subscriber, TopicRegistry};

/// How a subscription acknowledges messages (the SUBSCRIBE `ack` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// No acks: a message counts as delivered when written.
    Auto,
    /// Cumulative acks (an ACK covers every earlier message of the subscription).
    Client,
    /// Each message is acked on its own.
    ClientIndividual,
}

impl AckMode {
    /// Parses the `ack` header; absent means `auto`.
    pub fn from_header(v: Option<&str>) -> Option<AckMode> {
        match v {
            None | Some("auto") => Some(AckMode::Auto),
            Some("client") => Some(AckMode::Client),
            Some("client-individual") => Some(AckMode::ClientIndividual),
            Some(_) => None,
        }
    }
}
