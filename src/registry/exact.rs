//! Subscriptions by exact key: the non-wildcard topic subscriptions, and the user
//! destinations (`/user/{login}/queue/NAME`), which are a registry of their own so
//! that no topic pattern can ever reach them.

use super::Subscriber;
use dashmap::DashMap;
use std::sync::Arc;

/// Subscriptions by exact key. Publishers read shard by shard; nothing is held
/// across `.await`.
#[derive(Debug, Default)]
pub struct ExactRegistry {
    subs: DashMap<String, Vec<Arc<Subscriber>>>,
}

impl ExactRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscription under `key`.
    pub fn subscribe(&self, key: &str, sub: Arc<Subscriber>) {
        self.subs.entry(key.to_owned()).or_default().push(sub);
    }

    /// Removes a session's subscription; returns whether it existed.
    pub fn unsubscribe(&self, key: &str, session: u64, id: &str) -> bool {
        let found = match self.subs.get_mut(key) {
            Some(mut list) => {
                let before = list.len();
                list.retain(|s| !(s.session == session && s.id == id));
                list.len() != before
            }
            None => false,
        };
        self.subs.remove_if(key, |_, list| list.is_empty());
        found
    }

    /// Calls `deliver` for every subscription under `key`; returns how many.
    pub fn for_each(&self, key: &str, mut deliver: impl FnMut(&Arc<Subscriber>)) -> usize {
        match self.subs.get(key) {
            Some(list) => {
                list.iter().for_each(&mut deliver);
                list.len()
            }
            None => 0,
        }
    }

    /// Whether no destination has a subscription (emptied entries are removed).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }
}
