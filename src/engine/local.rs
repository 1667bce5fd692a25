//! The single-node engine: topic and user registries, retained values and the
//! queue actors of this process.

use super::history::{HistoryLimits, Log};
use super::replay;
use super::{Engine, EngineStats, Refused, Subscribed, Unready};
use crate::codec::{Headers, MessageTemplate};
use crate::command::StreamOffset;
use crate::destination::pattern::{is_pattern, matches};
use crate::destination::{RESERVED, user_key};
use crate::metrics::Metrics;
use crate::outbox::{Offered, Outgoing};
use crate::queue::{QueueError, QueueHandle, Queues};
use crate::registry::{AckMode, ExactRegistry, Hold, Subscriber, Takes, TopicRegistry};
use crate::store::{Recovered, Store};
use bytes::Bytes;
use dashmap::DashMap;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The last message of a retained destination.
#[derive(Debug, Clone)]
struct Retained {
    message_id: String,
    headers: Headers,
    body: Bytes,
}

/// Today's single-node behaviour: delivers to the subscribers of this process,
/// and owns its queues.
#[derive(Debug)]
pub struct LocalEngine {
    /// Topic subscriptions (`/topic/**` only).
    topics: TopicRegistry,
    /// User destinations by [`user_key`]: a registry of their own, so no topic
    /// pattern can reach them.
    users: ExactRegistry,
    /// `topics.retain` patterns; replaced whole by a reload.
    retain: RwLock<Arc<Vec<String>>>,
    max_retained: usize,
    retained: DashMap<String, Retained>,
    /// Recent messages of `topics.history` destinations, by destination.
    history: Arc<DashMap<String, Log>>,
    /// `topics.history` and its bounds; replaced whole by a reload.
    history_limits: RwLock<Arc<HistoryLimits>>,
    /// Whether `topics.history` names anything (read on every topic publish).
    history_on: std::sync::atomic::AtomicBool,
    /// What all logs hold together, against `topics.history_max_bytes`.
    history_bytes: std::sync::atomic::AtomicUsize,
    /// Where kept history messages are written, to survive a restart.
    store: Store,
    /// Orders retained delivery against live delivery: publishers to retained
    /// destinations hold it shared from storing to fan-out, a subscribe holds it
    /// exclusively from registering to handing over retained messages. So a new
    /// subscriber gets the retained message first and never twice. Never held
    /// across `.await`; publishes to other destinations do not take it.
    retain_order: RwLock<()>,
    metrics: Arc<Metrics>,
    /// `/queue/**` destinations: one actor task per queue.
    queues: Arc<Queues>,
    /// Distinguishes message ids of this broker run from earlier runs.
    boot: u64,
    next_id: AtomicU64,
}

impl LocalEngine {
    /// An engine with no subscriptions over `queues`, retaining the last message
    /// of destinations matching `retain` (at most `max_retained` destinations).
    pub fn new(
        metrics: Arc<Metrics>,
        queues: Arc<Queues>,
        retain: Vec<String>,
        max_retained: usize,
        history_limits: HistoryLimits,
        (store, kept): (Store, Vec<Recovered>),
    ) -> Self {
        let (logs, stale) = super::history::restore(kept, &history_limits, now_ms());
        let kept_bytes = logs.values().map(Log::bytes).sum();
        for key in stale {
            store.delete(key);
        }
        if !logs.is_empty() {
            tracing::info!(destinations = logs.len(), "recovered topic history");
        }
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        LocalEngine {
            topics: TopicRegistry::new(),
            users: ExactRegistry::new(),
            retain: RwLock::new(Arc::new(retain)),
            max_retained,
            retained: DashMap::new(),
            history: Arc::new(logs.into_iter().collect()),
            history_on: std::sync::atomic::AtomicBool::new(!history_limits.patterns.is_empty()),
            history_bytes: std::sync::atomic::AtomicUsize::new(kept_bytes),
            history_limits: RwLock::new(Arc::new(history_limits)),
            store,
            retain_order: RwLock::new(()),
            metrics,
            queues,
            boot,
            next_id: AtomicU64::new(1),
        }
    }

    pub(super) fn message_id(&self) -> String {
        format!(
            "{:x}-{}",
            self.boot,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl LocalEngine {
    /// Builds the MESSAGE template for one publish; MESSAGE frames show `shown` as
    /// their destination. Counts the publish.
    fn template(&self, shown: &str, headers: &Headers, body: Bytes) -> (MessageTemplate, String) {
        let message_id = self.message_id();
        let template = build_template(shown, &message_id, headers, body);
        self.metrics.published.increment(1);
        (template, message_id)
    }

    /// The broker's metric handles.
    pub(super) fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Counts a message taken for publishing elsewhere (a cluster engine).
    pub(super) fn count_published(&self) {
        self.metrics.published.increment(1);
    }

    /// Delivers to the topic subscribers of `destination`, keeping its last message
    /// when `retain`, and keeping it in the destination's history (with its offset
    /// on every MESSAGE) when it matches `topics.history`.
    fn deliver_topic(
        &self,
        destination: &str,
        headers: &Headers,
        body: Bytes,
        retain: bool,
    ) -> usize {
        // With no history configured, a publish reads one flag, not the settings.
        let limits = self
            .history_on
            .load(Ordering::Acquire)
            .then(|| self.history_limits())
            .filter(|l| l.patterns.iter().any(|p| matches(p, destination)));
        let _order = (retain || limits.is_some())
            .then(|| self.retain_order.read().unwrap_or_else(|p| p.into_inner()));
        // Held from numbering to fan-out, so publishers to one destination hand
        // over their messages in offset order.
        let mut log = limits
            .as_ref()
            .and_then(|l| self.log(destination, l.max_destinations));
        let message_id = self.message_id();
        self.metrics.published.increment(1);
        let kept = log.as_mut().zip(limits.as_ref()).map(|(log, limits)| {
            let before = log.bytes();
            let key = self.store.next_key();
            let offset = log.push(key, now_ms(), &message_id, headers, body.clone(), limits);
            // Shed when the disk is far behind (counted): the log keeps it.
            if let Some(record) = log.record_of_last(destination) {
                self.store.put_if_room(key, record);
            }
            // After the store has the newest: shedding may drop it too.
            self.account(before, log, limits.max_bytes);
            for dropped in log.take_dropped() {
                self.store.delete(dropped);
            }
            offset
        });
        let offset = kept.map(|o| o.to_string());
        let template = topic_template(
            destination,
            &message_id,
            offset.as_deref(),
            false,
            headers,
            &body,
        );
        let published = Instant::now();
        let flagged = || {
            topic_template(
                destination,
                &message_id,
                offset.as_deref(),
                true,
                headers,
                &body,
            )
        };
        let n =
            self.topics
                .for_each_match(destination, |sub| match (sub.takes(destination), kept) {
                    (Takes::No, _) => {}
                    (Takes::Yes, None) => {
                        hand_to(sub, &template, &message_id, published);
                    }
                    (Takes::AfterGap, None) => {
                        hand_to(sub, &flagged(), &message_id, published);
                    }
                    (Takes::Yes, Some(offset)) => {
                        let at = (destination, offset);
                        self.hand_kept(sub, &template, &message_id, published, at, false);
                    }
                    (Takes::AfterGap, Some(offset)) => {
                        let at = (destination, offset);
                        self.hand_kept(sub, &flagged(), &message_id, published, at, true);
                    }
                });
        if retain {
            self.store_retained(destination, &message_id, headers.clone(), body);
        }
        n
    }

    /// Counts what `log` holds now against `topics.history_max_bytes` (it held
    /// `before`); past the bound, `log` drops its oldest messages to make room.
    /// The destination being published to pays: an idle one is not robbed.
    fn account(&self, before: usize, log: &mut Log, max_bytes: usize) {
        let after = log.bytes();
        let total = if after >= before {
            self.history_bytes
                .fetch_add(after - before, Ordering::AcqRel)
                .saturating_add(after - before)
        } else {
            self.history_bytes
                .fetch_sub(before - after, Ordering::AcqRel)
                .saturating_sub(before - after)
        };
        if total > max_bytes {
            let freed = log.shed(total - max_bytes);
            self.history_bytes.fetch_sub(freed, Ordering::AcqRel);
        }
    }

    /// Drops what `log` holds past `history_max_age_s` at `now`, from the byte
    /// count and the store too.
    fn expire(&self, log: &mut Log, now: u64, limits: &HistoryLimits) {
        let before = log.bytes();
        log.expire(now, limits.max_age);
        self.account(before, log, limits.max_bytes);
        for dropped in log.take_dropped() {
            self.store.delete(dropped);
        }
    }

    /// What the topic history holds.
    fn history_stats(&self) -> super::HistoryStats {
        super::HistoryStats {
            destinations: self.history.len(),
            messages: self.history.iter().map(|e| e.value().len()).sum(),
            bytes: self.history_bytes.load(Ordering::Acquire),
        }
    }

    /// Expires old messages of every log, idle ones too (publishes and replays
    /// expire only the log they touch). Logs left empty stay, so offsets go on
    /// from where they were.
    pub fn sweep_history(&self) {
        if self.history.is_empty() {
            return;
        }
        let limits = self.history_limits();
        let now = now_ms();
        for mut entry in self.history.iter_mut() {
            let log = entry.value_mut();
            self.expire(log, now, &limits);
        }
    }

    /// Sweeps the history ([`LocalEngine::sweep_history`]) every quarter of
    /// `topics.history_max_age_s` (between 1 s and 60 s) until `shutdown`.
    pub async fn sweep_history_until(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let every = (self.history_limits().max_age / 4)
                .clamp(Duration::from_secs(1), Duration::from_secs(60));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => self.sweep_history(),
            }
        }
    }

    /// The history patterns and bounds in force.
    fn history_limits(&self) -> Arc<HistoryLimits> {
        self.history_limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The history log of `destination`, made if there is room for another
    /// (fewer than `max_destinations`).
    fn log(
        &self,
        destination: &str,
        max_destinations: usize,
    ) -> Option<dashmap::mapref::one::RefMut<'_, String, Log>> {
        if let Some(log) = self.history.get_mut(destination) {
            return Some(log);
        }
        if self.history.len() >= max_destinations {
            return None;
        }
        // Offsets of a log made in this run start past any of an earlier run.
        let first = now_ms().saturating_mul(1000);
        Some(
            self.history
                .entry(destination.to_owned())
                .or_insert_with(|| Log::new(first)),
        )
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The MESSAGE template of one topic message: its offset if it is kept, marked
/// as after a gap when `gap`, the sender's headers without the reserved ones.
fn topic_template(
    destination: &str,
    message_id: &str,
    offset: Option<&str>,
    gap: bool,
    headers: &Headers,
    body: &Bytes,
) -> MessageTemplate {
    let shared = [("destination", destination), ("message-id", message_id)]
        .into_iter()
        .chain(offset.map(|o| ("x-stream-offset", o)))
        .chain(gap.then_some(("x-stream-gap", "true")))
        .chain(headers.iter().filter(|(k, _)| !RESERVED.contains(k)));
    MessageTemplate::new(shared, body.clone())
}

/// The MESSAGE template of a retained value handed over, marked `retained:
/// true` (with its offset when it is a kept message).
fn retained_template(
    destination: &str,
    message_id: &str,
    offset: Option<&str>,
    headers: &Headers,
    body: &Bytes,
) -> MessageTemplate {
    let shared = [
        ("destination", destination),
        ("message-id", message_id),
        ("retained", "true"),
    ]
    .into_iter()
    .chain(offset.map(|o| ("x-stream-offset", o)))
    .chain(headers.iter().filter(|(k, _)| !RESERVED.contains(k)));
    MessageTemplate::new(shared, body.clone())
}

/// The MESSAGE template of one message: `shown` as its destination, the sender's
/// headers without the reserved ones.
pub(super) fn build_template(
    shown: &str,
    message_id: &str,
    headers: &Headers,
    body: Bytes,
) -> MessageTemplate {
    let shared = [("destination", shown), ("message-id", message_id)]
        .into_iter()
        .chain(headers.iter().filter(|(k, _)| !RESERVED.contains(k)));
    MessageTemplate::new(shared, body)
}

/// The MESSAGE frame of `template` for `sub`.
pub(super) fn delivery(
    sub: &Subscriber,
    template: &MessageTemplate,
    message_id: &str,
) -> crate::codec::EncodedMessage {
    match sub.ack {
        AckMode::Auto => template.deliver(&sub.header, &[]),
        // Topic messages need no ack to be kept; the header lets client-ack code
        // written for queues work unchanged.
        _ => template.deliver(&sub.header, &[("ack", message_id)]),
    }
}

/// Queues one delivery of `template` for `sub`; false when its outbox refused
/// it (a slow consumer being cut off).
pub(super) fn hand_to(
    sub: &Subscriber,
    template: &MessageTemplate,
    message_id: &str,
    published: Instant,
) -> bool {
    let message = delivery(sub, template, message_id);
    // A full outbox means a slow consumer that is being cut off already.
    sub.outbox
        .push(Outgoing::Message { message, published })
        .is_ok()
}

impl LocalEngine {
    /// Queues a live message of a kept destination (at `offset` in its log, whose
    /// lock the caller holds) for `sub`. With no room in its outbox the
    /// subscriber is not cut off: the log is its buffer. The destination is held
    /// for it and the rest follows as it reads ([`super::replay::pace`]), from this
    /// message on, until it has caught up; only what leaves the log meanwhile is
    /// lost to it, and flagged `x-stream-gap` where it resumes.
    fn hand_kept(
        &self,
        sub: &Arc<Subscriber>,
        template: &MessageTemplate,
        message_id: &str,
        published: Instant,
        (destination, offset): (&str, u64),
        gap: bool,
    ) {
        let message = delivery(sub, template, message_id);
        let Offered::Full(need) = sub
            .outbox
            .push_if_room(Outgoing::Message { message, published })
        else {
            return;
        };
        // A subscriber reading as many destinations from the logs as a replay may
        // cover (`topics.max_replay_destinations`) holds no more: it is a slow
        // consumer after all, and is cut off.
        if sub.replay.held_count() >= self.history_limits().max_held {
            hand_to(sub, template, message_id, published);
            return;
        }
        self.metrics.log_fallbacks.increment(1);
        tracing::debug!(
            session = sub.session,
            destination,
            offset,
            "subscriber reads the log"
        );
        sub.replay.hold(destination, Hold::Replay);
        let cursor = replay::Cursor { offset, gap };
        let pending = VecDeque::from([(destination.to_owned(), cursor, need)]);
        tokio::spawn(replay::pace(self.history.clone(), sub.clone(), pending));
    }

    /// Subscribes to a topic destination or pattern and hands the subscriber, at
    /// once, the retained message of every destination it matches, marked
    /// `retained: true`, ahead of anything newer.
    fn subscribe_retained(&self, destination: &str, sub: Arc<Subscriber>, from: StreamOffset) {
        let _order = self.retain_order.write().unwrap_or_else(|p| p.into_inner());
        if !self.topics.subscribe(destination, sub.clone()) {
            return;
        }
        let replayed = self.replay(destination, &sub, from);
        self.hand_over_retained_except(destination, &sub, &replayed, |_, _| {});
    }

    /// Hands `sub` the kept history of every destination `pattern` matches, from
    /// where `from` says; returns the destinations replayed (their retained value
    /// is part of the replay). The caller holds `retain_order` exclusively, so no
    /// live message comes between a replay and what follows it. What does not fit
    /// in half the outbox now follows as the client reads ([`super::replay`]).
    fn replay(&self, pattern: &str, sub: &Arc<Subscriber>, from: StreamOffset) -> Vec<String> {
        if from == StreamOffset::Next || self.history.is_empty() {
            return Vec::new();
        }
        let now = now_ms();
        let limits = self.history_limits();
        let budget = replay::budget(sub);
        let mut replayed = Vec::new();
        let mut pending = VecDeque::new();
        for mut entry in self.history.iter_mut() {
            let dest = entry.key().clone();
            if !matches(pattern, &dest) || !sub.may_read(&dest) {
                continue;
            }
            let log = entry.value_mut();
            self.expire(log, now, &limits);
            let Some(start) = log.start(from) else {
                if log.lost_all(from) {
                    sub.replay.hold(&dest, Hold::Gap);
                }
                continue;
            };
            let Some(first) = log.from(start.index).next() else {
                continue;
            };
            let cursor = replay::Cursor {
                offset: first.offset,
                gap: start.gap,
            };
            let step = match pending.is_empty() {
                true => replay::send_some(&dest, log, sub, cursor, budget),
                false => replay::Step::More(cursor, 0),
            };
            match step {
                replay::Step::Done => {}
                replay::Step::More(cursor, need) => {
                    sub.replay.hold(&dest, Hold::Replay);
                    pending.push_back((dest.clone(), cursor, need));
                }
                replay::Step::Gone => {
                    replayed.push(dest);
                    return replayed;
                }
            }
            replayed.push(dest);
        }
        if !pending.is_empty() {
            tokio::spawn(replay::pace(self.history.clone(), sub.clone(), pending));
        }
        replayed
    }

    /// Hands `sub` the retained message of every destination `pattern` matches
    /// that it may read, marked `retained: true`; tells `handed` each destination
    /// and message id. The caller orders this against live deliveries.
    /// Destinations with kept messages are left out: on a cluster node their
    /// subscribers get the newest kept message instead
    /// ([`LocalEngine::subscribe_kept`]).
    pub(super) fn hand_over_retained(
        &self,
        pattern: &str,
        sub: &Subscriber,
        handed: impl FnMut(&str, &str),
    ) {
        let kept: Vec<String> = self
            .history
            .iter()
            .filter(|e| !e.value().is_empty() && matches(pattern, e.key()))
            .map(|e| e.key().clone())
            .collect();
        self.hand_over_retained_except(pattern, sub, &kept, handed);
    }

    /// [`LocalEngine::hand_over_retained`], leaving out the destinations in
    /// `replayed`.
    fn hand_over_retained_except(
        &self,
        pattern: &str,
        sub: &Subscriber,
        replayed: &[String],
        mut handed: impl FnMut(&str, &str),
    ) {
        let mut hand_over = |dest: &str, r: &Retained| {
            if !sub.may_read(dest) || replayed.iter().any(|d| d == dest) {
                return;
            }
            let template = retained_template(dest, &r.message_id, None, &r.headers, &r.body);
            hand_to(sub, &template, &r.message_id, Instant::now());
            handed(dest, &r.message_id);
        };
        if is_pattern(pattern) {
            for entry in self.retained.iter() {
                if matches(pattern, entry.key()) {
                    hand_over(entry.key(), entry.value());
                }
            }
        } else if let Some(r) = self.retained.get(pattern) {
            hand_over(pattern, &r);
        }
    }

    /// Whether `destination` matches a `topics.retain` pattern.
    pub(super) fn retains(&self, destination: &str) -> bool {
        self.retain
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|p| matches(p, destination))
    }

    /// Keeps a message as the retained value of `destination` (at most
    /// `topics.max_retained` destinations); a cluster node stores what its
    /// cluster's shared store holds.
    pub(super) fn store_retained(
        &self,
        destination: &str,
        message_id: &str,
        headers: Headers,
        body: Bytes,
    ) {
        if self.retained.len() < self.max_retained || self.retained.contains_key(destination) {
            self.retained.insert(
                destination.to_owned(),
                Retained {
                    message_id: message_id.to_owned(),
                    headers,
                    body,
                },
            );
            self.metrics.retained.set(self.retained.len() as f64);
        }
    }

    /// `topics.max_retained`.
    pub(super) fn max_retained(&self) -> usize {
        self.max_retained
    }
}

/// What a cluster node's history needs: the logs are a copy of the cluster's
/// history stream, numbered there; local subscribers get kept destinations'
/// messages from that copy only, so a replay and what follows it come from one
/// feed, in one order.
impl LocalEngine {
    /// Drops the logs restored from the embedded store: on a cluster node the
    /// cluster's stream is the history.
    pub(super) fn forget_history(&self) {
        self.history.clear();
        self.history_bytes.store(0, Ordering::Release);
    }

    /// Whether a message published to `destination` now is kept: it matches
    /// `topics.history` and has a log or room for one.
    pub(super) fn keeps_history(&self, destination: &str) -> bool {
        if !self.history_on.load(Ordering::Acquire) {
            return false;
        }
        let limits = self.history_limits();
        limits.patterns.iter().any(|p| matches(p, destination))
            && (self.history.contains_key(destination)
                || self.history.len() < limits.max_destinations)
    }

    /// The stream sequence and offset of `destination`'s newest kept message,
    /// and the offset its next one would have.
    pub(super) fn last_kept(&self, destination: &str) -> (Option<(u64, u64)>, Option<u64>) {
        match self.history.get(destination) {
            Some(log) => (log.last(), Some(log.next_offset())),
            None => (None, None),
        }
    }

    /// The history limits in force.
    pub(super) fn history_settings(&self) -> Arc<HistoryLimits> {
        self.history_limits()
    }

    /// Keeps a message of the cluster's history stream (stream sequence `seq`)
    /// and, when `live`, delivers it to the local subscribers with its offset.
    /// A message the log is past already is neither kept nor delivered.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn keep_arrival(
        &self,
        destination: &str,
        seq: u64,
        offset: u64,
        at_ms: u64,
        message_id: &str,
        headers: Headers,
        body: Bytes,
        live: bool,
    ) -> bool {
        let limits = self.history_limits();
        let _order = self.retain_order.read().unwrap_or_else(|p| p.into_inner());
        let mut log = match self.history.get_mut(destination) {
            Some(log) => log,
            None if self.history.len() < limits.max_destinations => self
                .history
                .entry(destination.to_owned())
                .or_insert_with(Log::numbered_elsewhere),
            None => return false,
        };
        let offset_text = offset.to_string();
        let make = |gap| {
            topic_template(
                destination,
                message_id,
                Some(&offset_text),
                gap,
                &headers,
                &body,
            )
        };
        let template = live.then(|| make(false));
        let before = log.bytes();
        if !log.insert(
            seq,
            offset,
            at_ms,
            message_id,
            headers.clone(),
            body.clone(),
            &limits,
        ) {
            return false;
        }
        self.account(before, &mut log, limits.max_bytes);
        if let Some(template) = template {
            let published = Instant::now();
            self.topics
                .for_each_match(destination, |sub| match sub.takes(destination) {
                    Takes::No => {}
                    Takes::Yes => {
                        let at = (destination, offset);
                        self.hand_kept(sub, &template, message_id, published, at, false);
                    }
                    Takes::AfterGap => {
                        let at = (destination, offset);
                        self.hand_kept(sub, &make(true), message_id, published, at, true);
                    }
                });
        }
        true
    }

    /// Adds a topic subscriber fed from the history copy: replays what `from`
    /// asks for, and for a retained destination not replayed hands over its
    /// newest kept message as the retained value (the copy of the retained store
    /// is fed separately, and could be ahead of or behind this feed).
    pub(super) fn subscribe_kept(&self, pattern: &str, sub: Arc<Subscriber>, from: StreamOffset) {
        let _order = self.retain_order.write().unwrap_or_else(|p| p.into_inner());
        if !self.topics.subscribe(pattern, sub.clone()) {
            return;
        }
        let replayed = self.replay(pattern, &sub, from);
        for entry in self.history.iter() {
            let dest = entry.key();
            if !matches(pattern, dest)
                || replayed.iter().any(|d| d == dest)
                || !sub.may_read(dest)
                || !self.retains(dest)
            {
                continue;
            }
            if let Some(k) = entry.value().newest() {
                let offset = k.offset.to_string();
                let template =
                    retained_template(dest, &k.message_id, Some(&offset), &k.headers, &k.body);
                hand_to(&sub, &template, &k.message_id, Instant::now());
            }
        }
    }

    /// Removes a subscriber added by [`LocalEngine::subscribe_kept`].
    pub(super) fn unsubscribe_kept(&self, pattern: &str, session: u64, id: &str) -> bool {
        self.topics.unsubscribe(pattern, session, id)
    }
}

impl Engine for LocalEngine {
    fn kept_matching(&self, pattern: &str) -> super::KeptSpan {
        let mut span = super::KeptSpan::default();
        if !is_pattern(pattern) {
            if self.history.contains_key(pattern) {
                span.destinations = 1;
                span.name_bytes = pattern.len();
            }
            return span;
        }
        for entry in self.history.iter() {
            if matches(pattern, entry.key()) {
                span.destinations += 1;
                span.name_bytes += entry.key().len();
            }
        }
        span
    }

    fn publish_topic(
        &self,
        destination: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<usize, Refused> {
        Ok(self.deliver_topic(destination, headers, body, self.retains(destination)))
    }

    fn publish_user(
        &self,
        login: &str,
        queue: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<usize, Refused> {
        let (template, message_id) = self.template(&format!("/user/queue/{queue}"), headers, body);
        let published = Instant::now();
        Ok(self.users.for_each(&user_key(login, queue), |sub| {
            hand_to(sub, &template, &message_id, published);
        }))
    }

    fn subscribe_topic(
        &self,
        pattern: &str,
        subscriber: Arc<Subscriber>,
        from: StreamOffset,
    ) -> Result<Subscribed, Refused> {
        self.subscribe_retained(pattern, subscriber, from);
        Ok(None)
    }

    fn unsubscribe_topic(&self, pattern: &str, session: u64, id: &str) -> bool {
        self.topics.unsubscribe(pattern, session, id)
    }

    fn subscribe_user(
        &self,
        login: &str,
        queue: &str,
        subscriber: Arc<Subscriber>,
    ) -> Result<Subscribed, Refused> {
        self.users.subscribe(&user_key(login, queue), subscriber);
        Ok(None)
    }

    fn unsubscribe_user(&self, login: &str, queue: &str, session: u64, id: &str) -> bool {
        self.users.unsubscribe(&user_key(login, queue), session, id)
    }

    fn queue(&self, name: &str) -> Result<QueueHandle, QueueError> {
        self.queues.get(name)
    }

    fn ready(&self) -> Result<(), Unready> {
        match self.queues.store_failure() {
            Some(e) => Err(Unready::Store(e)),
            None => Ok(()),
        }
    }

    fn topic_subscribers(&self, destination: &str) -> usize {
        self.topics.for_each_match(destination, |_| {})
    }

    fn queue_count(&self) -> usize {
        self.queues.len()
    }

    fn set_retain(&self, patterns: Vec<String>) {
        *self.retain.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(patterns);
    }

    fn set_history(&self, limits: HistoryLimits) {
        let on = !limits.patterns.is_empty();
        *self
            .history_limits
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(limits);
        self.history_on.store(on, Ordering::Release);
    }

    fn stats(&self) -> Pin<Box<dyn Future<Output = EngineStats> + Send + '_>> {
        Box::pin(async move {
            EngineStats {
                queues: self.queues.stats().await,
                retained_topics: self.retained.len(),
                cluster: super::ClusterStats {
                    mode: "single",
                    ..Default::default()
                },
                store_failed: self.queues.store_failure().is_some(),
                history: self.history_stats(),
            }
        })
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.queues.close_store())
    }
}
