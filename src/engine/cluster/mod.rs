//! The cluster engine: nodes of one cluster share topics and user destinations
//! through NATS, and stay one broker to their clients.
//!
//! Every topic and user message goes out through NATS only, never straight to
//! local subscribers, and comes back in through the node's own NATS
//! subscriptions: one per distinct NATS subject the node's subscribers need,
//! shared by every local pattern that maps to it (reference counted, dropped
//! [`LINGER`] after the last one goes), so however many patterns a client holds,
//! the node asks NATS for each message at most once per subject. A pattern maps to
//! one or two disjoint subjects ([`subject::topic_interest`]); an arrival through
//! subject S goes to the local subscribers whose pattern maps to S and matches the
//! destination, found by a topic trie of S's subscribers. So a subscriber gets each
//! message once, even when several of the node's subjects carry it.
//!
//! The NATS connection belongs to one task (the link, [`link`]); engine calls
//! never wait on it. A publish is queued to the link in a bounded channel and is
//! refused (an ERROR to the sender, never a silent loss) while the node is not
//! connected or the channel is full. Retained values, topic history and queues
//! live in JetStream ([`retained`], [`history`], [`queue`]).

mod history;
pub mod lease;
mod link;
mod queue;
mod retained;
mod state;
mod subject;
mod wire;

use super::local::{build_template, hand_to};
use super::{Engine, EngineStats, LocalEngine, Refused, Subscribed, Unready};
use crate::codec::Headers;
use crate::destination::RESERVED;
use crate::queue::{QueueError, QueueHandle};
use crate::registry::{Subscriber, TopicRegistry};
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use link::LinkMetrics;
pub use queue::QueueSettings;

/// How long a NATS subscription outlives its last local subscriber, so a client
/// that resubscribes at once (a page reload) does not churn subscriptions.
pub const LINGER: Duration = Duration::from_secs(2);

/// How a node joins its cluster (`[cluster]`).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// NATS server URLs, comma separated (`cluster.nats_url`).
    pub nats_url: String,
    /// This node's name, in NATS' connection list and message ids
    /// (`cluster.node_name`).
    pub node_name: String,
    /// Messages one NATS subscription may hold before NATS' client drops them
    /// (`cluster.subscription_capacity`).
    pub subscription_capacity: usize,
    /// Publishes waiting for the NATS link before SENDs are refused
    /// (`cluster.max_pending_publishes`).
    pub max_pending_publishes: usize,
    /// How queues behave on JetStream.
    pub queues: QueueSettings,
}

/// The NATS servers of `cluster.nats_url` (comma separated), or why one is not a
/// server URL.
pub fn server_addrs(nats_url: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    nats_url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.parse().map_err(|e| format!("{u:?}: {e}")))
        .collect()
}

/// What a NATS subscription of this node is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A topic subject, shared by every local pattern that needs it.
    Topic(String),
    /// `/user/{login}/queue/{queue}`.
    User { login: String, queue: String },
}

/// The local subscribers one NATS subscription feeds.
#[derive(Debug)]
enum Members {
    /// Topic subscribers under their patterns: an arrival goes to those whose
    /// pattern matches its destination, found by the trie.
    Topic(TopicRegistry),
    /// The subscribers of one user destination.
    User(RwLock<Vec<Arc<Subscriber>>>),
}

/// Retained values handed to recent subscribers: by session, then subscription id.
type HandedBySession = HashMap<u64, Vec<(String, Arc<Handed>)>>;

/// One NATS subscription (one subject) and the local subscribers it feeds.
#[derive(Debug)]
struct Interest {
    key: Key,
    /// The one subject subscribed to.
    subjects: Vec<String>,
    /// What the first subscriber asked for, for errors.
    label: String,
    members: Members,
    /// Local subscriptions using it; changed under the interests' map lock.
    count: AtomicUsize,
    /// Written while a new subscriber is handed its retained values and added,
    /// read by every arrival: no live message reaches a new subscriber before
    /// its retained values. Never held across `.await`.
    order: RwLock<()>,
    /// Retained values handed to recent subscribers (by session, then id).
    handed: Mutex<HandedBySession>,
    /// Whether `handed` may hold anything (arrivals read only this otherwise).
    any_handed: AtomicBool,
    /// Subscribers waiting for the NATS subscription to be in place.
    waiting: Mutex<Waiting>,
}

/// Whether an interest's NATS subscription is in place, and who waits for it.
#[derive(Debug, Default)]
struct Waiting {
    in_place: bool,
    replies: Vec<crate::queue::Reply>,
}

impl Interest {
    fn new(key: Key, subject: String, label: &str) -> Interest {
        let members = match key {
            Key::Topic(_) => Members::Topic(TopicRegistry::new()),
            Key::User { .. } => Members::User(RwLock::default()),
        };
        Interest {
            key,
            subjects: vec![subject],
            label: label.to_owned(),
            members,
            count: AtomicUsize::new(0),
            order: RwLock::new(()),
            handed: Mutex::default(),
            any_handed: AtomicBool::new(false),
            waiting: Mutex::default(),
        }
    }

    /// An answer for a new subscriber: none when the NATS subscription is in
    /// place already.
    fn wait(&self) -> Subscribed {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.in_place {
            return None;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        waiting.replies.push(reply);
        Some(answer)
    }

    /// The NATS subscription is in place (or could not be made): answers every
    /// subscriber waiting for it.
    fn settle(&self, result: Result<(), String>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.in_place = result.is_ok();
        for reply in waiting.replies.drain(..) {
            let _ = reply.send(result.clone().map_err(|reason| QueueError::Unavailable {
                destination: self.label.clone(),
                reason,
            }));
        }
    }

    /// Adds `sub` (under `pattern`, for a topic); the caller holds `order`.
    fn add(&self, pattern: &str, sub: Arc<Subscriber>, handed: Option<&Arc<Handed>>) {
        if let Some(h) = handed {
            let mut map = self.handed.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(sub.session)
                .or_default()
                .push((sub.id.clone(), h.clone()));
            self.any_handed.store(true, Ordering::Release);
        }
        match &self.members {
            Members::Topic(registry) => {
                registry.subscribe(pattern, sub);
            }
            Members::User(list) => list.write().unwrap_or_else(|p| p.into_inner()).push(sub),
        }
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// Removes a subscriber; returns whether it was here.
    fn remove(&self, pattern: &str, session: u64, id: &str) -> bool {
        let found = match &self.members {
            Members::Topic(registry) => registry.unsubscribe(pattern, session, id),
            Members::User(list) => {
                let mut list = list.write().unwrap_or_else(|p| p.into_inner());
                let before = list.len();
                list.retain(|s| !(s.session == session && s.id == id));
                list.len() != before
            }
        };
        if found {
            self.count.fetch_sub(1, Ordering::AcqRel);
            let mut map = self.handed.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(ids) = map.get_mut(&session) {
                ids.retain(|(i, _)| i != id);
                if ids.is_empty() {
                    map.remove(&session);
                }
            }
        }
        found
    }

    /// No local subscriber uses it any more.
    fn is_unused(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
    }
}

/// Retained values handed to a new subscriber, by destination. The node's copy
/// of the retained store and its live subscriptions are fed by separate NATS
/// streams, so for a short while a live message may arrive that the subscriber
/// already got as its retained value, or an older one: those are skipped.
#[derive(Debug)]
struct Handed {
    /// Past this, live messages are far behind anything handed over.
    until: Instant,
    ids: HashMap<String, String>,
}

/// How long after subscribing live messages are checked against what was handed.
const HANDED_WINDOW: Duration = Duration::from_secs(10);

/// Whether message `id` is the same as, or older than, `than` from the same
/// publisher (ids are `NODE-BOOT-N`, counting up per publishing node run).
fn not_newer(id: &str, than: &str) -> bool {
    match (id.rsplit_once('-'), than.rsplit_once('-')) {
        (Some((p, n)), Some((q, m))) if p == q => {
            matches!((n.parse::<u64>(), m.parse::<u64>()), (Ok(n), Ok(m)) if n <= m)
        }
        _ => false,
    }
}

impl Interest {
    /// Hands one arrival on `subject` to the local subscribers. A topic message
    /// must name the destination its subject stands for: anything else on a
    /// cluster subject was not published by a node, and is dropped.
    fn deliver(&self, subject: &str, message: wire::Wire) -> Result<usize, wire::WireError> {
        let shown = match &self.key {
            Key::Topic(_) => {
                if message
                    .destination
                    .starts_with(crate::destination::pattern::TOPIC)
                    && subject::topic(&message.destination).is_ok_and(|s| s == subject)
                {
                    message.destination
                } else {
                    return Err(wire::WireError::Malformed);
                }
            }
            Key::User { queue, .. } => format!("/user/queue/{queue}"),
        };
        let shown = shown.as_str();
        let template = build_template(shown, &message.message_id, &message.headers, message.body);
        let published = Instant::now();
        let _order = self.order.read().unwrap_or_else(|p| p.into_inner());
        let handed = self.recent_handovers(published);
        // A retained value handed at subscription may be this message or newer.
        let handed_already = |sub: &Subscriber| {
            handed.as_ref().is_some_and(|map| {
                map.get(&sub.session)
                    .and_then(|ids| ids.iter().find(|(id, _)| *id == sub.id))
                    .and_then(|(_, h)| h.ids.get(shown))
                    .is_some_and(|id| not_newer(&message.message_id, id))
            })
        };
        let mut n = 0;
        match &self.members {
            Members::Topic(registry) => {
                registry.for_each_match(shown, |sub| {
                    if !handed_already(sub) && sub.may_read(shown) {
                        hand_to(sub, &template, &message.message_id, published);
                        n += 1;
                    }
                });
            }
            Members::User(list) => {
                for sub in list.read().unwrap_or_else(|p| p.into_inner()).iter() {
                    if !handed_already(sub) {
                        hand_to(sub, &template, &message.message_id, published);
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
    }

    /// The retained values handed to subscribers within [`HANDED_WINDOW`] of
    /// `now`, forgetting older ones; `None` (one flag read) when there are none.
    fn recent_handovers(&self, now: Instant) -> Option<std::sync::MutexGuard<'_, HandedBySession>> {
        if !self.any_handed.load(Ordering::Acquire) {
            return None;
        }
        let mut map = self.handed.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, ids| {
            ids.retain(|(_, h)| now < h.until);
            !ids.is_empty()
        });
        if map.is_empty() {
            self.any_handed.store(false, Ordering::Release);
            return None;
        }
        Some(map)
    }
}

/// The interests of this node, by key. Locked only for map changes, never across
/// `.await` and never on a publish.
#[derive(Debug, Default)]
struct Interests {
    map: Mutex<HashMap<Key, Arc<Interest>>>,
}

/// A node of a cluster: topics and user destinations through NATS, queues and
/// retained values on JetStream.
#[derive(Debug)]
pub struct ClusterEngine {
    local: Arc<LocalEngine>,
    node: String,
    link: Arc<link::Link>,
    publishes: mpsc::Sender<link::Publish>,
    /// Messages of kept destinations, for the node's historian.
    kept: mpsc::Sender<history::ToKeep>,
    /// The history settings, for the task that keeps the stream's bounds.
    history_limits: tokio::sync::watch::Sender<Arc<super::history::HistoryLimits>>,
    /// Opens and closes of NATS subscriptions, for the link task. Unbounded,
    /// because they are sent under the interests' lock where nothing may wait;
    /// bounded by what makes them: one open and one close per distinct NATS
    /// subject the node's subscriptions need (each subscription at most two,
    /// within `limits.max_subscriptions` per connection), and a close comes only
    /// [`LINGER`] after an open. `tests/cluster.rs` shows 1001 patterns making
    /// one subscription.
    control: mpsc::UnboundedSender<link::Control>,
    interests: Arc<Interests>,
    queues: Arc<queue::ClusterQueues>,
}

impl ClusterEngine {
    /// Starts the link to NATS (connecting, and reconnecting, in the background)
    /// and returns the engine at once; it refuses publishes until connected.
    /// Must be called inside a Tokio runtime.
    pub fn start(options: ClusterOptions, local: Arc<LocalEngine>) -> Arc<ClusterEngine> {
        let (publishes, publish_rx) = mpsc::channel(options.max_pending_publishes.max(1));
        let (kept, taken) = mpsc::channel(options.max_pending_publishes.max(1));
        let (control, control_rx) = mpsc::unbounded_channel();
        // The cluster's history stream is the history: logs a single-node run
        // left in the store would disagree with its offsets.
        local.forget_history();
        let (history_limits, limits) = tokio::sync::watch::channel(local.history_settings());
        let link = link::Link::start(
            &options,
            publish_rx,
            control_rx,
            link::HistoryFeed { taken, limits },
            local.clone(),
        );
        let queues =
            queue::ClusterQueues::new(options.queues.clone(), link.clone(), local.metrics());
        Arc::new(ClusterEngine {
            local,
            node: options.node_name,
            queues,
            link,
            publishes,
            kept,
            history_limits,
            control,
            interests: Arc::default(),
        })
    }

    /// The subject of the retained copy when `destination` is a retained topic
    /// (it also goes to the cluster's retained store).
    fn retained_subject(&self, destination: &str) -> Result<Option<String>, Refused> {
        match destination.starts_with(crate::destination::pattern::TOPIC)
            && self.local.retains(destination)
        {
            true => Ok(Some(subject::retained(destination).map_err(too_long)?)),
            false => Ok(None),
        }
    }

    /// The message as NATS carries it, once the streams a retained copy needs
    /// are there and if it is not larger than NATS takes.
    fn encode(
        &self,
        destination: &str,
        headers: &Headers,
        body: &Bytes,
        retained: bool,
    ) -> Result<Bytes, Refused> {
        if retained {
            self.link.check_streams()?;
        }
        let message_id = format!("{}-{}", self.node, self.local.message_id());
        let payload = wire::encode(
            destination,
            &message_id,
            headers.iter().filter(|(k, _)| !RESERVED.contains(k)),
            body,
        );
        self.link.check_payload(payload.len())?;
        Ok(payload)
    }

    /// Queues a message for NATS, or says why it cannot be taken.
    fn publish(
        &self,
        subject: Result<String, subject::TooLong>,
        destination: &str,
        headers: &Headers,
        body: &Bytes,
    ) -> Result<usize, Refused> {
        let subject = subject.map_err(too_long)?;
        let keep = self.retained_subject(destination)?;
        self.link.check_connected()?;
        let payload = self.encode(destination, headers, body, keep.is_some())?;
        // Both or neither: room for the retained copy is taken with the message's.
        let mut permits = self
            .publishes
            .try_reserve_many(1 + usize::from(keep.is_some()))
            .map_err(link_full)?;
        for subject in std::iter::once(subject).chain(keep) {
            if let Some(permit) = permits.next() {
                permit.send(link::Publish {
                    subject,
                    payload: payload.clone(),
                });
            }
        }
        self.local.count_published();
        Ok(0)
    }

    /// Hands a message of a kept destination to the node's historian (its
    /// subscribers everywhere get it from the history stream, with its offset).
    fn publish_kept(
        &self,
        destination: &str,
        headers: &Headers,
        body: &Bytes,
    ) -> Result<usize, Refused> {
        let subject = subject::history(destination).map_err(too_long)?;
        let keep = self.retained_subject(destination)?;
        self.link.check_connected()?;
        self.link.check_history()?;
        let payload = self.encode(destination, headers, body, keep.is_some())?;
        let permit = self.kept.try_reserve().map_err(link_full)?;
        // Both or neither: room for the retained copy is taken with the message's.
        let retained = match keep {
            Some(subject) => Some((self.publishes.try_reserve().map_err(link_full)?, subject)),
            None => None,
        };
        if let Some((retained, subject)) = retained {
            retained.send(link::Publish {
                subject,
                payload: payload.clone(),
            });
        }
        permit.send(history::ToKeep {
            destination: destination.to_owned(),
            subject,
            payload,
        });
        self.local.count_published();
        Ok(0)
    }

    /// Adds `sub` (of `pattern`, a topic pattern or the user destination it
    /// reads) to the interest of every subject in `keys`, opening each NATS
    /// subscription that is new; hands it the retained values `pattern` matches
    /// (topics) first, under the interests' `order`, so no live message comes
    /// before them.
    fn join(
        &self,
        keys: Vec<(Key, String)>,
        pattern: &str,
        sub: Arc<Subscriber>,
    ) -> Result<Subscribed, Refused> {
        let mut map = self.interests.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut joined = Vec::with_capacity(keys.len());
        for (key, subject) in keys {
            let (interest, created) = match map.get(&key) {
                Some(existing) => (existing.clone(), false),
                None => {
                    let created = Arc::new(Interest::new(key.clone(), subject, pattern));
                    map.insert(key, created.clone());
                    (created, true)
                }
            };
            joined.push((interest, created));
        }
        let orders: Vec<_> = joined
            .iter()
            .map(|(i, _)| i.order.write().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let handed = self.hand_over(&joined[0].0.key, pattern, &sub);
        for (interest, _) in &joined {
            interest.add(pattern, sub.clone(), handed.as_ref());
        }
        drop(orders);
        let mut answers = Vec::new();
        for (interest, created) in joined {
            answers.extend(interest.wait());
            if created {
                // Sent under the map's lock, so opens and closes of one key
                // reach the link in the order the map saw them.
                let _ = self.control.send(link::Control::Open(interest));
            }
        }
        Ok(all_of(answers))
    }

    /// Hands a new topic subscriber the retained values `pattern` matches;
    /// what was handed, if anything.
    fn hand_over(&self, key: &Key, pattern: &str, sub: &Arc<Subscriber>) -> Option<Arc<Handed>> {
        let Key::Topic(_) = key else {
            return None;
        };
        let mut ids = HashMap::new();
        self.local.hand_over_retained(pattern, sub, |dest, id| {
            ids.insert(dest.to_owned(), id.to_owned());
        });
        (!ids.is_empty()).then(|| {
            Arc::new(Handed {
                until: Instant::now() + HANDED_WINDOW,
                ids,
            })
        })
    }

    /// Removes a subscriber from the interests of `keys`; a NATS subscription
    /// goes [`LINGER`] after its last subscriber.
    fn leave(&self, keys: Vec<Key>, pattern: &str, session: u64, id: &str) -> bool {
        let mut found = false;
        for key in keys {
            let map = self.interests.map.lock().unwrap_or_else(|p| p.into_inner());
            let Some(interest) = map.get(&key).cloned() else {
                continue;
            };
            let removed = interest.remove(pattern, session, id);
            drop(map);
            found |= removed;
            if removed && interest.is_unused() {
                self.close_later(key, interest);
            }
        }
        found
    }

    /// Closes `interest`'s NATS subscription [`LINGER`] from now if nobody has
    /// joined it by then.
    fn close_later(&self, key: Key, interest: Arc<Interest>) {
        let interests = self.interests.clone();
        let control = self.control.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            let mut map = interests.map.lock().unwrap_or_else(|p| p.into_inner());
            let idle = map
                .get(&key)
                .is_some_and(|i| Arc::ptr_eq(i, &interest) && i.is_unused());
            if idle {
                map.remove(&key);
                let _ = control.send(link::Control::Close(interest));
            }
        });
    }
}

/// One answer for several: in place when every one of `answers` is.
fn all_of(mut answers: Vec<crate::queue::Answer>) -> Subscribed {
    match answers.len() {
        0 => None,
        1 => answers.pop(),
        _ => {
            let (reply, answer) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let mut result = Ok(());
                for mut a in answers {
                    if let Err(e) = crate::queue::answered(&mut a).await {
                        result = Err(e);
                    }
                }
                let _ = reply.send(result);
            });
            Some(answer)
        }
    }
}

/// The interests of a topic pattern's subjects.
fn topic_keys(pattern: &str) -> Result<Vec<(Key, String)>, Refused> {
    let wanted = subject::topic_interest(pattern).map_err(too_long)?;
    Ok(wanted
        .subjects
        .into_iter()
        .map(|s| (Key::Topic(s.clone()), s))
        .collect())
}

/// The interest of a user destination.
fn user_key(login: &str, queue: &str) -> Result<(Key, String), Refused> {
    let subject = subject::user(login, queue).map_err(too_long)?;
    let key = Key::User {
        login: login.to_owned(),
        queue: queue.to_owned(),
    };
    Ok((key, subject))
}

/// Why a publish found no room on its way to NATS.
fn link_full(e: mpsc::error::TrySendError<()>) -> Refused {
    match e {
        mpsc::error::TrySendError::Full(()) => Refused::Unavailable(
            "too many messages waiting for the cluster link (cluster.max_pending_publishes)".into(),
        ),
        mpsc::error::TrySendError::Closed(()) => {
            Refused::Unavailable("the cluster link has stopped".into())
        }
    }
}

fn too_long(e: subject::TooLong) -> Refused {
    Refused::TooLong {
        bytes: e.bytes,
        max: subject::MAX_SUBJECT_BYTES,
    }
}

impl Engine for ClusterEngine {
    fn kept_matching(&self, pattern: &str) -> super::KeptSpan {
        self.local.kept_matching(pattern)
    }

    fn publish_topic(
        &self,
        destination: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<usize, Refused> {
        if self.local.keeps_history(destination) {
            return self.publish_kept(destination, headers, &body);
        }
        self.publish(subject::topic(destination), destination, headers, &body)
    }

    fn publish_user(
        &self,
        login: &str,
        queue: &str,
        headers: &Headers,
        body: Bytes,
    ) -> Result<usize, Refused> {
        let shown = format!("/user/queue/{queue}");
        self.publish(subject::user(login, queue), &shown, headers, &body)
    }

    /// Kept destinations reach the subscriber from the node's copy of the
    /// history stream (a replay first, as `from` asks), every other one through
    /// its NATS subscription.
    fn subscribe_topic(
        &self,
        pattern: &str,
        subscriber: Arc<Subscriber>,
        from: crate::command::StreamOffset,
    ) -> Result<Subscribed, Refused> {
        let subscribed = self.join(topic_keys(pattern)?, pattern, subscriber.clone())?;
        self.local.subscribe_kept(pattern, subscriber, from);
        Ok(subscribed)
    }

    fn unsubscribe_topic(&self, pattern: &str, session: u64, id: &str) -> bool {
        let kept = self.local.unsubscribe_kept(pattern, session, id);
        let keys = topic_keys(pattern).map_or_else(
            |_| Vec::new(),
            |k| k.into_iter().map(|(key, _)| key).collect(),
        );
        self.leave(keys, pattern, session, id) || kept
    }

    fn subscribe_user(
        &self,
        login: &str,
        queue: &str,
        subscriber: Arc<Subscriber>,
    ) -> Result<Subscribed, Refused> {
        let shown = format!("/user/queue/{queue}");
        self.join(vec![user_key(login, queue)?], &shown, subscriber)
    }

    fn unsubscribe_user(&self, login: &str, queue: &str, session: u64, id: &str) -> bool {
        let key = Key::User {
            login: login.to_owned(),
            queue: queue.to_owned(),
        };
        let shown = format!("/user/queue/{queue}");
        self.leave(vec![key], &shown, session, id)
    }

    fn queue(&self, name: &str) -> Result<QueueHandle, QueueError> {
        self.queues.get(name)
    }

    fn ready(&self) -> Result<(), Unready> {
        self.local.ready()?;
        self.link.ready()
    }

    /// Every topic subscriber of this node is in the local registry too (it
    /// feeds kept destinations), so it counts them.
    fn topic_subscribers(&self, destination: &str) -> usize {
        self.local.topic_subscribers(destination)
    }

    fn queue_count(&self) -> usize {
        self.queues.len()
    }

    fn set_retain(&self, patterns: Vec<String>) {
        self.local.set_retain(patterns);
    }

    fn set_history(&self, limits: super::history::HistoryLimits) {
        self.local.set_history(limits);
        self.history_limits
            .send_replace(self.local.history_settings());
    }

    fn stats(&self) -> Pin<Box<dyn Future<Output = EngineStats> + Send + '_>> {
        Box::pin(async move {
            let mut stats = self.local.stats().await;
            stats.queues = self.queues.stats().await;
            stats.cluster = super::ClusterStats {
                mode: "cluster",
                node: Some(self.node.clone()),
                nats: Some(if self.link.ready().is_ok() {
                    "connected"
                } else {
                    "disconnected"
                }),
            };
            stats
        })
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.queues.close().await;
            self.link.close().await;
            self.local.close().await;
        })
    }

    fn lease(
        &self,
        name: &str,
        held: tokio::sync::watch::Sender<bool>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let (link, name, node) = (self.link.clone(), name.to_owned(), self.node.clone());
        Box::pin(async move {
            // The connection is made in the background: wait for it.
            let client = loop {
                if let Some(client) = link.client() {
                    break client;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                }
            };
            lease::hold(client, name, node, held, stop).await;
        })
    }

    fn load_state(&self, key: &str) -> Pin<Box<dyn Future<Output = Option<Bytes>> + Send + '_>> {
        let key = key.to_owned();
        Box::pin(async move {
            let client = self.link.client()?;
            let js = async_nats::jetstream::new(client.clone());
            state::load(&js, retained::replicas(&client), &key).await
        })
    }

    fn save_state(
        &self,
        key: &str,
        value: Bytes,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        let key = key.to_owned();
        Box::pin(async move {
            let Some(client) = self.link.client() else {
                return false;
            };
            let js = async_nats::jetstream::new(client.clone());
            state::save(&js, retained::replicas(&client), &key, value).await
        })
    }
}
