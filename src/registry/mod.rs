//! Destination registries: who is subscribed to what.
//!
//! Each family has its own: [`TopicRegistry`] for `/topic/**` (exact and wildcard),
//! an [`ExactRegistry`] for user destinations. A key of one family can never be
//! found through another's lookup.

pub mod exact;
pub mod topic;

pub use exact::ExactRegistry;
pub use topic::{Filter, Hold, Subscriber, Takes, TopicRegistry};

pub use crate::command::AckMode;
