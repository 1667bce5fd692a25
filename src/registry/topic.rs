//! Topic subscriptions and matching.
//!
//! Exact destinations live in a `DashMap` (publishers read it concurrently, shard by
//! shard). Wildcard patterns (`*` = one dot-separated word, `#` = zero or more, as in
//! RabbitMQ) live in a word trie behind a `RwLock` that publishers only read, and only
//! when at least one wildcard subscription exists. No lock is held across `.await`:
//! delivery is a non-blocking push into each subscriber's outbox.

use super::AckMode;
use crate::codec::SubscriptionHeader;
use crate::outbox::Outbox;
use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// One subscription of one session, as the registry sees it.
#[derive(Debug)]
pub struct Subscriber {
    /// The owning session's id.
    pub session: u64,
    /// The subscription id chosen by the client.
    pub id: String,
    /// The encoded `subscription` header line, made once.
    pub header: SubscriptionHeader,
    /// Ack mode from SUBSCRIBE.
    pub ack: AckMode,
    /// The owning connection's outbox.
    pub outbox: Outbox,
}

/// Whether a topic destination is a wildcard pattern.
pub fn is_pattern(destination: &str) -> bool {
    words(destination).any(|w| w == "*" || w == "#")
}

/// Whether topic `destination` matches `pattern` (RabbitMQ semantics: `*` is exactly
/// one word, `#` zero or more). A pattern without wildcards matches only itself.
pub fn matches(pattern: &str, destination: &str) -> bool {
    matches_in("/topic/", pattern, destination)
}

/// [`matches`] for the destinations under `family` (`/topic/` or `/queue/`): the
/// words are the dot-separated parts after it.
pub fn matches_in(family: &str, pattern: &str, destination: &str) -> bool {
    fn go(p: &[&str], d: &[&str]) -> bool {
        match p.split_first() {
            None => d.is_empty(),
            Some((&"#", rest)) => (0..=d.len()).any(|skip| go(rest, &d[skip..])),
            Some((&"*", rest)) => !d.is_empty() && go(rest, &d[1..]),
            Some((w, rest)) => d.first() == Some(w) && go(rest, &d[1..]),
        }
    }
    if !pattern.starts_with(family) || !destination.starts_with(family) || !is_pattern(pattern) {
        return pattern == destination;
    }
    // Cheap rejection without allocating (this runs on every publish to check the
    // retain patterns): the words before the first wildcard must match literally.
    let literal = pattern
        .match_indices(['*', '#'])
        .map(|(i, _)| i)
        .find(|&i| matches!(pattern.as_bytes().get(i.wrapping_sub(1)), Some(b'.' | b'/')))
        .map(|i| &pattern[..i])
        .unwrap_or(pattern);
    let literal = literal.strip_suffix('.').unwrap_or(literal);
    if !destination.starts_with(literal) {
        return false;
    }
    let p: Vec<&str> = pattern[family.len()..].split('.').collect();
    let d: Vec<&str> = destination[family.len()..].split('.').collect();
    go(&p, &d)
}

/// The dot-separated words of a topic destination, after `/topic/`.
fn words(destination: &str) -> impl Iterator<Item = &str> {
    destination
        .strip_prefix("/topic/")
        .unwrap_or(destination)
        .split('.')
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<String, Node>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    subs: Vec<Arc<Subscriber>>,
}

impl Node {
    fn insert<'a>(&mut self, mut words: impl Iterator<Item = &'a str>, sub: Arc<Subscriber>) {
        match words.next() {
            None => self.subs.push(sub),
            Some("*") => self
                .star
                .get_or_insert_with(Default::default)
                .insert(words, sub),
            Some("#") => self
                .hash
                .get_or_insert_with(Default::default)
                .insert(words, sub),
            Some(w) => self
                .children
                .entry(w.to_owned())
                .or_default()
                .insert(words, sub),
        }
    }

    /// Removes the subscription; returns whether it was found.
    fn remove(&mut self, words: &[&str], session: u64, id: &str) -> bool {
        let Some((first, rest)) = words.split_first() else {
            let before = self.subs.len();
            self.subs.retain(|s| !(s.session == session && s.id == id));
            return self.subs.len() != before;
        };
        let (found, now_empty) = match *first {
            "*" | "#" => {
                let slot = if *first == "*" {
                    &mut self.star
                } else {
                    &mut self.hash
                };
                match slot {
                    Some(child) => {
                        let found = child.remove(rest, session, id);
                        let empty = child.is_empty();
                        if empty {
                            *slot = None;
                        }
                        (found, false)
                    }
                    None => (false, false),
                }
            }
            w => match self.children.get_mut(w) {
                Some(child) => {
                    let found = child.remove(rest, session, id);
                    (found, child.is_empty())
                }
                None => (false, false),
            },
        };
        if now_empty {
            self.children.remove(*first);
        }
        found
    }

    fn is_empty(&self) -> bool {
        self.subs.is_empty()
            && self.children.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }

    fn collect(&self, words: &[&str], out: &mut Vec<Arc<Subscriber>>) {
        if let Some(hash) = &self.hash {
            // `#` takes zero or more words: try every split.
            for skip in 0..=words.len() {
                hash.collect(&words[skip..], out);
            }
        }
        let Some((first, rest)) = words.split_first() else {
            out.extend(self.subs.iter().cloned());
            return;
        };
        if let Some(child) = self.children.get(*first) {
            child.collect(rest, out);
        }
        if let Some(star) = &self.star {
            star.collect(rest, out);
        }
    }
}

/// All topic subscriptions of the broker.
#[derive(Debug, Default)]
pub struct TopicRegistry {
    exact: DashMap<String, Vec<Arc<Subscriber>>>,
    wildcards: RwLock<Node>,
    wildcard_count: AtomicUsize,
}

impl TopicRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscription to `destination` (exact or pattern).
    pub fn subscribe(&self, destination: &str, sub: Arc<Subscriber>) {
        if is_pattern(destination) {
            let mut trie = self.wildcards.write().unwrap_or_else(|p| p.into_inner());
            trie.insert(words(destination), sub);
            self.wildcard_count.fetch_add(1, Ordering::Release);
        } else {
            self.exact
                .entry(destination.to_owned())
                .or_default()
                .push(sub);
        }
    }

    /// Removes a session's subscription; returns whether it existed.
    pub fn unsubscribe(&self, destination: &str, session: u64, id: &str) -> bool {
        if is_pattern(destination) {
            let mut trie = self.wildcards.write().unwrap_or_else(|p| p.into_inner());
            let path: Vec<&str> = words(destination).collect();
            let found = trie.remove(&path, session, id);
            if found {
                self.wildcard_count.fetch_sub(1, Ordering::Release);
            }
            found
        } else {
            let found = match self.exact.get_mut(destination) {
                Some(mut list) => {
                    let before = list.len();
                    list.retain(|s| !(s.session == session && s.id == id));
                    list.len() != before
                }
                None => false,
            };
            self.exact.remove_if(destination, |_, list| list.is_empty());
            found
        }
    }

    /// Calls `deliver` once for every subscription matching `destination` (a concrete
    /// topic, not a pattern). Returns the number of subscriptions.
    pub fn for_each_match(
        &self,
        destination: &str,
        mut deliver: impl FnMut(&Arc<Subscriber>),
    ) -> usize {
        let mut n = 0;
        if let Some(list) = self.exact.get(destination) {
            for s in list.iter() {
                deliver(s);
            }
            n += list.len();
        }
        if self.wildcard_count.load(Ordering::Acquire) > 0 {
            let mut matched = Vec::new();
            {
                let trie = self.wildcards.read().unwrap_or_else(|p| p.into_inner());
                let path: Vec<&str> = words(destination).collect();
                trie.collect(&path, &mut matched);
            }
            // One pattern can match in several ways (`a.#.#`); deliver once per subscription.
            matched.sort_unstable_by_key(|s| Arc::as_ptr(s) as usize);
            matched.dedup_by_key(|s| Arc::as_ptr(s) as usize);
            for s in &matched {
                deliver(s);
            }
            n += matched.len();
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Version;
    use crate::outbox::outbox;

    fn sub(session: u64, id: &str) -> Arc<Subscriber> {
        Arc::new(Subscriber {
            session,
            id: id.to_owned(),
            header: SubscriptionHeader::new(id, Version::V1_2),
            ack: AckMode::Auto,
            outbox: outbox(1024).0,
        })
    }

    fn matches(reg: &TopicRegistry, dest: &str) -> Vec<String> {
        let mut ids = Vec::new();
        reg.for_each_match(dest, |s| ids.push(s.id.clone()));
        ids.sort();
        ids
    }

    #[test]
    fn rabbitmq_wildcard_semantics() {
        let reg = TopicRegistry::new();
        for (id, pattern) in [
            ("star", "/topic/a.*"),
            ("hash", "/topic/a.#"),
            ("mid", "/topic/a.*.c"),
            ("all", "/topic/#"),
            ("exact", "/topic/a.b"),
            ("hashmid", "/topic/a.#.c"),
        ] {
            reg.subscribe(pattern, sub(1, id));
        }
        assert_eq!(matches(&reg, "/topic/a"), ["all", "hash"]);
        assert_eq!(
            matches(&reg, "/topic/a.b"),
            ["all", "exact", "hash", "star"]
        );
        assert_eq!(
            matches(&reg, "/topic/a.b.c"),
            ["all", "hash", "hashmid", "mid"]
        );
        assert_eq!(
            matches(&reg, "/topic/a.c"),
            ["all", "hash", "hashmid", "star"]
        );
        assert_eq!(matches(&reg, "/topic/a.x.y.c"), ["all", "hash", "hashmid"]);
        assert_eq!(matches(&reg, "/topic/b"), ["all"]);
    }

    #[test]
    fn pattern_matching_agrees_with_the_trie() {
        assert!(super::matches(
            "/topic/stock-quotes.*",
            "/topic/stock-quotes.AAPL"
        ));
        assert!(!super::matches(
            "/topic/stock-quotes.*",
            "/topic/stock-quotes"
        ));
        assert!(super::matches(
            "/topic/stock-quotes.#",
            "/topic/stock-quotes"
        ));
        assert!(super::matches("/topic/a.#.c", "/topic/a.b.x.c"));
        assert!(!super::matches("/topic/a.*.c", "/topic/a.c"));
        assert!(super::matches("/topic/x", "/topic/x") && !super::matches("/topic/x", "/topic/y"));
    }

    #[test]
    fn queue_patterns_match_queue_destinations_only() {
        let m = |p, d| super::matches_in("/queue/", p, d);
        assert!(m("/queue/orders.*", "/queue/orders.eu"));
        assert!(!m("/queue/orders.*", "/queue/orders.eu.late"));
        assert!(m("/queue/jobs.#", "/queue/jobs"));
        assert!(m("/queue/jobs.#", "/queue/jobs.a.b"));
        assert!(m("/queue/exact", "/queue/exact"));
        assert!(!m("/queue/exact", "/queue/exactly"));
        assert!(!m("/queue/orders.*", "/topic/orders.eu"));
    }

    #[test]
    fn ambiguous_patterns_deliver_once() {
        let reg = TopicRegistry::new();
        reg.subscribe("/topic/a.#.#", sub(1, "x"));
        assert_eq!(matches(&reg, "/topic/a.b.c"), ["x"]);
    }

    #[test]
    fn unsubscribe_removes_exactly_one_subscription_and_prunes() {
        let reg = TopicRegistry::new();
        reg.subscribe("/topic/t", sub(1, "a"));
        reg.subscribe("/topic/t", sub(1, "b"));
        reg.subscribe("/topic/t.*", sub(2, "a"));
        assert!(reg.unsubscribe("/topic/t", 1, "a"));
        assert!(!reg.unsubscribe("/topic/t", 1, "a"));
        assert_eq!(matches(&reg, "/topic/t"), ["b"]);
        assert!(reg.unsubscribe("/topic/t.*", 2, "a"));
        assert!(reg.wildcards.read().unwrap().is_empty());
        assert!(reg.unsubscribe("/topic/t", 1, "b"));
        assert!(reg.exact.is_empty());
    }

    #[test]
    fn words_that_merely_contain_wildcards_are_literal() {
        assert!(!is_pattern("/topic/a*.b#"));
        assert!(is_pattern("/topic/x.*"));
        let reg = TopicRegistry::new();
        reg.subscribe("/topic/a*", sub(1, "lit"));
        assert_eq!(matches(&reg, "/topic/a*"), ["lit"]);
        assert!(matches(&reg, "/topic/ab").is_empty());
    }
}
