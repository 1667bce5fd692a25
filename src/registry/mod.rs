//! Destination registries: who is subscribed to what.
//!
//! Each family has its own: [`TopicRegistry`] for `/topic/**` (exact and wildcard),
//! an [`ExactRegistry`] for user destinations. A key of one family can never be
//! found through another's lookup.

pub mod exact;
pub mod topic;

pub use exact::ExactRegistry;
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
