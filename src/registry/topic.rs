//! Topic subscriptions and matching.
//!
//! Exact destinations live in an [`ExactRegistry`] (a `DashMap` publishers read
//! concurrently, shard by shard). Wildcard patterns live in a word trie behind a
//! `RwLock` that publishers only read, and only when at least one wildcard
//! subscription exists. Only `/topic/` destinations are ever stored or looked up
//! here. No lock is held across `.await`: delivery is a non-blocking push into each
//! subscriber's outbox.
//!
//! A lookup walks the trie as an automaton: the set of trie nodes the words so far
//! can have reached, each at most once, advanced one destination word at a time. It
//! costs (destination words) × (live nodes), never more, and each matching
//! subscription is found exactly once, so nothing is collected twice and sorted away.

use super::{AckMode, ExactRegistry};
use crate::codec::SubscriptionHeader;
use crate::destination::pattern::{TOPIC, collapsed, is_pattern};
use crate::outbox::Outbox;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

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
    /// For a wildcard subscription under access rules: the check every message's
    /// concrete destination must pass, so no pattern reads past a rule.
    pub filter: Filter,
    /// Destinations whose kept history is still being replayed to it.
    pub replay: Replaying,
}

/// The read check of a wildcard subscription: replaced when a reload changes
/// the access rules or the subscriber's roles, so no subscription keeps reading
/// what the new rules close. Off (one flag read per message) when there is none.
#[derive(Debug, Default)]
pub struct Filter {
    on: AtomicBool,
    current: RwLock<Option<crate::auth::acl::ReadFilter>>,
}

impl Filter {
    /// A check of `filter`, if any.
    pub fn new(filter: Option<crate::auth::acl::ReadFilter>) -> Filter {
        Filter {
            on: AtomicBool::new(filter.is_some()),
            current: RwLock::new(filter),
        }
    }

    /// Replaces the check.
    pub fn set(&self, filter: Option<crate::auth::acl::ReadFilter>) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        self.on.store(filter.is_some(), Ordering::Release);
        *current = filter;
    }

    fn allows(&self, destination: &str) -> bool {
        if !self.on.load(Ordering::Acquire) {
            return true;
        }
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(|f| f.allows(destination))
    }
}

impl Subscriber {
    /// Whether this subscription may receive a message published to `destination`.
    pub fn may_read(&self, destination: &str) -> bool {
        self.filter.allows(destination)
    }

    /// Whether and how a live message of `destination` goes to this
    /// subscription now: not if it may not read it, or while a replay of that
    /// destination is still catching up (the replay will bring the message from
    /// the history, in its place); flagged as after a gap if the replay asked for
    /// had nothing left to send.
    pub fn takes(&self, destination: &str) -> Takes {
        if !self.may_read(destination) {
            return Takes::No;
        }
        self.replay.takes(destination)
    }
}

/// What a live message is to one subscription ([`Subscriber::takes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// Not for it (now).
    No,
    /// For it.
    Yes,
    /// For it, marked `x-stream-gap: true`: what it asked to resume from is gone.
    AfterGap,
}

/// Why a destination is held for a subscription that asked for a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Its replay is still catching up: live messages wait in the history.
    Replay,
    /// Nothing asked for is kept any more: the next live message says so.
    Gap,
}

/// The destinations a replay (SUBSCRIBE `x-stream-offset`) still holds for one
/// subscription. Empty, it costs a flag check per message and 16 bytes; holding,
/// a hash lookup per live message of any kept destination, however many a
/// wildcard replay holds.
#[derive(Debug, Default)]
pub struct Replaying {
    /// Whether `destinations` may be non-empty (the fast path reads only this).
    any: AtomicBool,
    destinations: Mutex<Held>,
    /// The subscription went away: the replay stops.
    cancelled: AtomicBool,
}

/// Boxed so a subscription that holds nothing (nearly all) pays one pointer for
/// it, not an empty map's 48 bytes.
#[allow(clippy::box_collection)]
type Held = Option<Box<HashMap<String, Hold>>>;

impl Replaying {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.destinations.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn takes(&self, destination: &str) -> Takes {
        if !self.any.load(Ordering::Acquire) {
            return Takes::Yes;
        }
        let mut held = self.held();
        let Some(map) = held.as_mut() else {
            return Takes::Yes;
        };
        match map.get(destination) {
            None => Takes::Yes,
            Some(Hold::Replay) => Takes::No,
            Some(Hold::Gap) => {
                map.remove(destination);
                Self::settle(&self.any, &mut held);
                Takes::AfterGap
            }
        }
    }

    fn settle(any: &AtomicBool, held: &mut Held) {
        if held.as_ref().is_some_and(|m| m.is_empty()) {
            *held = None;
            any.store(false, Ordering::Release);
        }
    }

    /// Holds `destination` for this subscription from now on. The caller holds
    /// the lock publishers of `destination` take to deliver.
    pub fn hold(&self, destination: &str, why: Hold) {
        let mut held = self.held();
        held.get_or_insert_default()
            .insert(destination.to_owned(), why);
        self.any.store(true, Ordering::Release);
    }

    /// Stops the replay: the subscription is gone. Once this returns, no more of
    /// it is queued ([`Replaying::release_after`] runs only before).
    pub fn cancel(&self) {
        let _held = self.held();
        self.cancelled.store(true, Ordering::Release);
    }

    /// Runs `f` (which queues replayed messages of `destination`) unless the
    /// replay was cancelled, excluding [`Replaying::cancel`] meanwhile; when `f`
    /// says it is done, live messages of `destination` go to the subscription
    /// again. The caller holds the lock publishers of `destination` take to
    /// deliver.
    pub fn release_after<R>(&self, destination: &str, f: impl FnOnce() -> (R, bool)) -> Option<R> {
        let mut held = self.held();
        if self.cancelled.load(Ordering::Acquire) {
            return None;
        }
        let (r, done) = f();
        if let Some(map) = held.as_mut().filter(|_| done)
            && map.get(destination) == Some(&Hold::Replay)
        {
            map.remove(destination);
            Self::settle(&self.any, &mut held);
        }
        Some(r)
    }

    /// Destinations held now.
    pub fn held_count(&self) -> usize {
        if !self.any.load(Ordering::Acquire) {
            return 0;
        }
        self.held().as_ref().map_or(0, |m| m.len())
    }

    /// Whether the subscription is gone.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<String, Node>,
    star: Option<Box<Node>>,
    /// The node after a `#`: it may also take any number of further words.
    hash: Option<Box<Node>>,
    subs: Vec<Arc<Subscriber>>,
}

impl Node {
    fn insert<'a>(&mut self, words: impl Iterator<Item = &'a str>, sub: Arc<Subscriber>) {
        let mut node = self;
        for w in words {
            node = match w {
                "*" => node.star.get_or_insert_with(Default::default),
                "#" => node.hash.get_or_insert_with(Default::default),
                w => node.children.entry(w.to_owned()).or_default(),
            };
        }
        node.subs.push(sub);
    }

    /// Removes the subscription and prunes emptied nodes; returns whether it was found.
    fn remove(&mut self, words: &[&str], session: u64, id: &str) -> bool {
        let Some((first, rest)) = words.split_first() else {
            let before = self.subs.len();
            self.subs.retain(|s| !(s.session == session && s.id == id));
            return self.subs.len() != before;
        };
        match *first {
            "*" | "#" => {
                let slot = if *first == "*" {
                    &mut self.star
                } else {
                    &mut self.hash
                };
                let Some(child) = slot else {
                    return false;
                };
                let found = child.remove(rest, session, id);
                if child.is_empty() {
                    *slot = None;
                }
                found
            }
            w => {
                let Some(child) = self.children.get_mut(w) else {
                    return false;
                };
                let found = child.remove(rest, session, id);
                if child.is_empty() {
                    self.children.remove(w);
                }
                found
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.subs.is_empty()
            && self.children.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }
}

/// A set of live trie nodes, each held once. `after_hash` marks a node reached
/// through a `#` edge: it may take the next word itself.
#[derive(Default)]
struct Live<'t> {
    nodes: Vec<(&'t Node, bool)>,
    seen: HashSet<*const Node>,
}

impl<'t> Live<'t> {
    fn clear(&mut self) {
        self.nodes.clear();
        self.seen.clear();
    }

    /// Adds `node` and what it reaches without a word (its `#` child, zero words).
    fn add(&mut self, mut node: &'t Node, mut after_hash: bool) {
        loop {
            if !self.seen.insert(node as *const Node) {
                return;
            }
            self.nodes.push((node, after_hash));
            match &node.hash {
                Some(h) => (node, after_hash) = (h, true),
                None => return,
            }
        }
    }
}

/// All topic subscriptions of the broker.
#[derive(Debug, Default)]
pub struct TopicRegistry {
    exact: ExactRegistry,
    wildcards: RwLock<Node>,
    wildcard_count: AtomicUsize,
}

impl TopicRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscription to a `/topic/` destination or pattern. Anything else is
    /// not a topic and is not registered (returns false).
    pub fn subscribe(&self, destination: &str, sub: Arc<Subscriber>) -> bool {
        let Some(name) = destination.strip_prefix(TOPIC) else {
            return false;
        };
        if is_pattern(destination) {
            let mut trie = self.wildcards.write().unwrap_or_else(|p| p.into_inner());
            trie.insert(collapsed(name), sub);
            self.wildcard_count.fetch_add(1, Ordering::Release);
        } else {
            self.exact.subscribe(destination, sub);
        }
        true
    }

    /// Removes a session's subscription; returns whether it existed.
    pub fn unsubscribe(&self, destination: &str, session: u64, id: &str) -> bool {
        let Some(name) = destination.strip_prefix(TOPIC) else {
            return false;
        };
        if !is_pattern(destination) {
            return self.exact.unsubscribe(destination, session, id);
        }
        let mut trie = self.wildcards.write().unwrap_or_else(|p| p.into_inner());
        let path: Vec<&str> = collapsed(name).collect();
        let found = trie.remove(&path, session, id);
        if found {
            self.wildcard_count.fetch_sub(1, Ordering::Release);
        }
        found
    }

    /// Calls `deliver` once for every subscription matching `destination` (a
    /// concrete `/topic/` destination, not a pattern). Returns the number of
    /// subscriptions.
    pub fn for_each_match(
        &self,
        destination: &str,
        mut deliver: impl FnMut(&Arc<Subscriber>),
    ) -> usize {
        let Some(name) = destination.strip_prefix(TOPIC) else {
            return 0;
        };
        let mut n = self.exact.for_each(destination, &mut deliver);
        if self.wildcard_count.load(Ordering::Acquire) == 0 {
            return n;
        }
        let trie = self.wildcards.read().unwrap_or_else(|p| p.into_inner());
        let mut live = Live::default();
        let mut next = Live::default();
        live.add(&trie, false);
        for word in name.split('.') {
            next.clear();
            for &(node, after_hash) in &live.nodes {
                if after_hash {
                    next.add(node, true);
                }
                if let Some(child) = node.children.get(word) {
                    next.add(child, false);
                }
                if let Some(star) = &node.star {
                    next.add(star, false);
                }
            }
            std::mem::swap(&mut live, &mut next);
            if live.nodes.is_empty() {
                return n;
            }
        }
        for (node, _) in &live.nodes {
            node.subs.iter().for_each(&mut deliver);
            n += node.subs.len();
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
            filter: Filter::default(),
            replay: Replaying::default(),
        })
    }

    fn matches(reg: &TopicRegistry, dest: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let n = reg.for_each_match(dest, |s| ids.push(s.id.clone()));
        assert_eq!(n, ids.len());
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
            assert!(reg.subscribe(pattern, sub(1, id)));
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
    fn the_trie_agrees_with_the_pattern_matcher() {
        let patterns = [
            "#", "*", "a.#", "#.a", "#.a.#", "*.#", "#.*", "a.*.#.b", "#.#.a", "*.*", "a.#.#.b",
            "#.*.#", "b.#.a.*",
        ];
        let reg = TopicRegistry::new();
        for p in patterns {
            reg.subscribe(&format!("/topic/{p}"), sub(1, p));
        }
        for d in [
            "a",
            "b",
            "a.a",
            "a.b",
            "b.a",
            "a.b.a",
            "b.b.a.a",
            "a.x.y.b",
            "b.a.a.a.c",
        ] {
            let destination = format!("/topic/{d}");
            let mut want: Vec<String> = patterns
                .iter()
                .filter(|p| {
                    crate::destination::pattern::matches(&format!("/topic/{p}"), &destination)
                })
                .map(|p| p.to_string())
                .collect();
            want.sort();
            assert_eq!(matches(&reg, &destination), want, "{d}");
        }
    }

    #[test]
    fn ambiguous_patterns_deliver_once() {
        let reg = TopicRegistry::new();
        reg.subscribe("/topic/a.#.#", sub(1, "x"));
        reg.subscribe("/topic/#.#.#.#.#.#.#.#", sub(1, "y"));
        reg.subscribe("/topic/#.a.#.a.#", sub(1, "z"));
        assert_eq!(matches(&reg, "/topic/a.b.c"), ["x", "y"]);
        let long = format!("/topic/{}a", "a.".repeat(63));
        assert_eq!(matches(&reg, &long), ["x", "y", "z"]);
    }

    #[test]
    fn only_topics_are_registered_or_found() {
        let reg = TopicRegistry::new();
        assert!(!reg.subscribe("/user/alice/queue/x", sub(1, "u")));
        assert!(!reg.subscribe("/queue/#", sub(1, "q")));
        reg.subscribe("/topic/#", sub(2, "all"));
        reg.subscribe("/topic/*", sub(2, "one"));
        assert!(matches(&reg, "/user/alice/queue/x").is_empty());
        assert!(matches(&reg, "/queue/x").is_empty());
        assert_eq!(matches(&reg, "/topic/x"), ["all", "one"]);
    }

    #[test]
    fn a_replay_holds_its_destinations_until_released_and_a_gap_flags_one_message() {
        let s = sub(1, "a");
        assert_eq!(s.takes("/topic/x"), Takes::Yes);
        // A wildcard replay may hold many destinations; each is looked up, not scanned.
        for i in 0..10_000 {
            s.replay.hold(&format!("/topic/d{i}"), Hold::Replay);
        }
        s.replay.hold("/topic/gone", Hold::Gap);
        assert_eq!(s.takes("/topic/d42"), Takes::No);
        assert_eq!(s.takes("/topic/x"), Takes::Yes);
        assert_eq!(s.takes("/topic/gone"), Takes::AfterGap);
        assert_eq!(s.takes("/topic/gone"), Takes::Yes, "flagged once");
        assert_eq!(s.replay.release_after("/topic/d42", || (7, false)), Some(7));
        assert_eq!(s.takes("/topic/d42"), Takes::No, "not done yet");
        assert_eq!(
            s.replay.release_after("/topic/d42", || ((), true)),
            Some(())
        );
        assert_eq!(s.takes("/topic/d42"), Takes::Yes);
        for i in 0..10_000 {
            s.replay
                .release_after(&format!("/topic/d{i}"), || ((), true));
        }
        assert!(
            !s.replay.any.load(Ordering::Acquire),
            "nothing held: the fast path"
        );
        s.replay.hold("/topic/d1", Hold::Replay);
        s.replay.cancel();
        assert_eq!(s.replay.release_after("/topic/d1", || ((), true)), None);
        assert!(s.replay.is_cancelled());
    }

    #[test]
    fn unsubscribe_removes_exactly_one_subscription_and_prunes() {
        let reg = TopicRegistry::new();
        reg.subscribe("/topic/t", sub(1, "a"));
        reg.subscribe("/topic/t", sub(1, "b"));
        reg.subscribe("/topic/t.*", sub(2, "a"));
        reg.subscribe("/topic/t.#.#.x", sub(2, "b"));
        assert!(reg.unsubscribe("/topic/t", 1, "a"));
        assert!(!reg.unsubscribe("/topic/t", 1, "a"));
        assert_eq!(matches(&reg, "/topic/t"), ["b"]);
        assert!(reg.unsubscribe("/topic/t.*", 2, "a"));
        assert!(reg.unsubscribe("/topic/t.#.#.x", 2, "b"));
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
