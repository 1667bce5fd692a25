//! Queues on JetStream: `/queue/NAME` shared by every node of a cluster.
//!
//! Every queue message lives in the work-queue stream `STOMPEDE_QUEUES` (file
//! storage, replicated), on subject `stompede.q.<words>`, until it is acked. Each
//! queue has one durable pull consumer that all nodes share, so a message goes to
//! one consumer in the whole cluster. On each node a task per queue speaks the
//! same commands as the single-node queue actor (behind the same
//! [`QueueHandle`]): it fetches as many messages as its local consumers' prefetch
//! windows have room for, hands them out round-robin, and maps STOMP ACK/NACK to
//! JetStream ack/nak. A message NACKed on its `queues.max_redeliveries + 1`-th
//! delivery is published to `NAME.dlq` and terminated. Messages a departing
//! consumer (or node shutdown) leaves unacked are nak'ed at once; those of a node
//! that died come back after `cluster.ack_wait_s`, while a live node keeps its
//! unacked messages alive with progress acks.

use super::subject;
use crate::codec::{Headers, MessageTemplate};
use crate::metrics::Metrics;
use crate::outbox::Outgoing;
use crate::queue::{
    Cmd, Consumer, QueueError, QueueHandle, QueueStats, Reply, ack_id, expiry, now_ms, round_robin,
    take_covered,
};
use crate::registry::AckMode;
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use bytes::Bytes;
use dashmap::DashMap;
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// The JetStream stream holding every queue's messages.
pub const STREAM: &str = "STOMPEDE_QUEUES";
/// Its subjects.
pub const SUBJECTS: &str = "stompede.q.>";
/// Events a JetStream queue task may have waiting: its consumer's creation and
/// its one fetch at a time.
const EVENTS: usize = 2;
/// Most messages one fetch asks for.
const MAX_FETCH: usize = 256;
/// How long one fetch waits for messages before asking again.
const FETCH_WAIT: Duration = Duration::from_secs(1);

/// Settings of cluster queues.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// `queues.max_depth`: messages one queue's subject holds.
    pub max_depth: usize,
    /// `queues.max_redeliveries`.
    pub max_redeliveries: u32,
    /// `queues.max_queues`: queue tasks on this node.
    pub max_queues: usize,
    /// `queues.idle_reclaim_ms`.
    pub idle_reclaim: Duration,
    /// `cluster.ack_wait_s`: how long JetStream waits for an ack before giving
    /// the message to another consumer (a node that died).
    pub ack_wait: Duration,
    /// `cluster.max_ack_pending`: unacked messages of one queue, cluster-wide.
    pub max_ack_pending: usize,
}

/// The stream's configuration.
pub(super) fn stream_config(
    settings: &QueueSettings,
    replicas: usize,
) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![SUBJECTS.to_owned()],
        retention: jetstream::stream::RetentionPolicy::WorkQueue,
        storage: jetstream::stream::StorageType::File,
        max_messages_per_subject: i64::try_from(settings.max_depth).unwrap_or(i64::MAX),
        discard: jetstream::stream::DiscardPolicy::New,
        discard_new_per_subject: true,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// The subject of queue `name`.
fn queue_subject(name: &str) -> Result<String, subject::TooLong> {
    subject::under("stompede.q", name)
}

/// The durable consumer's name for queue `name`: its bytes in hex (consumer
/// names may not hold `.`, `*`, `>` or spaces), or for a name longer than 64
/// bytes its first 64 bytes in hex and a 64-bit FNV-1a hash of the whole, so a
/// client's long queue name cannot make a name NATS refuses.
fn consumer_name(name: &str) -> String {
    let mut out = String::from("q-");
    for b in name.bytes().take(64) {
        out.push_str(&format!("{b:02x}"));
    }
    if name.len() > 64 {
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        out.push_str(&format!("-{hash:016x}"));
    }
    out
}

/// This node's queue tasks, by name.
#[derive(Debug)]
pub(super) struct ClusterQueues {
    queues: DashMap<String, QueueHandle>,
    settings: QueueSettings,
    link: Arc<super::link::Link>,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
}

impl ClusterQueues {
    pub(super) fn new(
        settings: QueueSettings,
        link: Arc<super::link::Link>,
        metrics: Arc<Metrics>,
    ) -> Arc<ClusterQueues> {
        Arc::new(ClusterQueues {
            queues: DashMap::new(),
            settings,
            link,
            metrics,
            tasks: TaskTracker::new(),
        })
    }

    /// Queue `name`'s handle on this node, its task started if needed.
    pub(super) fn get(self: &Arc<Self>, name: &str) -> Result<QueueHandle, QueueError> {
        if let Some(q) = self.queues.get(name) {
            return Ok(q.clone());
        }
        if self.queues.len() >= self.settings.max_queues {
            return Err(QueueError::TooManyQueues);
        }
        let subject = queue_subject(name).map_err(|e| QueueError::Unavailable {
            destination: format!("/queue/{name}"),
            reason: format!(
                "its NATS subject would be {} bytes; at most {} allowed",
                e.bytes,
                subject::MAX_SUBJECT_BYTES
            ),
        })?;
        let handle = self
            .queues
            .entry(name.to_owned())
            .or_insert_with(|| {
                let (tx, rx) = crate::queue::command_channel();
                let task = JetQueue {
                    name: name.to_owned(),
                    subject,
                    queues: self.clone(),
                    consumer: None,
                    consumers: Vec::new(),
                    next_consumer: 0,
                    waiting: VecDeque::new(),
                    unacked: HashMap::new(),
                    next_delivery: 1,
                    fetching: false,
                };
                self.metrics.queues.increment(1.0);
                self.tasks.spawn(task.run(rx));
                QueueHandle::new(name, tx)
            })
            .clone();
        Ok(handle)
    }

    pub(super) fn len(&self) -> usize {
        self.queues.len()
    }

    /// Every queue's counts on this node (depth from JetStream).
    pub(super) async fn stats(&self) -> Vec<QueueStats> {
        let asked: Vec<_> = self
            .queues
            .iter()
            .map(|q| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                q.value().stats(tx);
                rx
            })
            .collect();
        let mut stats = Vec::with_capacity(asked.len());
        for rx in asked {
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), rx).await {
                stats.push(s);
            }
        }
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    /// Ends every queue task (their unacked messages go back to JetStream at
    /// once) and waits for them, at most 5 s.
    pub(super) async fn close(&self) {
        self.queues.clear();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
    }
}

/// A local consumer and its unacked deliveries (ascending).
#[derive(Debug)]
struct Local {
    consumer: Consumer,
    in_flight: Vec<u64>,
}

/// What a queue task hears besides commands.
enum Event {
    /// The durable consumer exists.
    Ready(Box<PullConsumer>),
    /// A fetch came back.
    Fetched(Vec<jetstream::Message>),
}

/// One queue on this node.
struct JetQueue {
    name: String,
    subject: String,
    queues: Arc<ClusterQueues>,
    consumer: Option<PullConsumer>,
    consumers: Vec<Local>,
    next_consumer: usize,
    /// Fetched, not yet handed to a consumer.
    waiting: VecDeque<jetstream::Message>,
    /// delivery -> (message, consumer's session, consumer id)
    unacked: HashMap<u64, (jetstream::Message, u64, String)>,
    next_delivery: u64,
    fetching: bool,
}

impl JetQueue {
    fn destination(&self) -> String {
        format!("/queue/{}", self.name)
    }

    fn unavailable(&self, reason: impl Into<String>) -> QueueError {
        QueueError::Unavailable {
            destination: self.destination(),
            reason: reason.into(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        // Bounded by construction: one consumer creation and at most one fetch
        // at a time ([`JetQueue::fetch`]) each send one event.
        let (events_tx, mut events) = mpsc::channel(EVENTS);
        tokio::spawn(create_consumer(
            self.queues.clone(),
            self.name.clone(),
            self.subject.clone(),
            events_tx.clone(),
        ));
        let settings = self.queues.settings.clone();
        let mut progress =
            tokio::time::interval((settings.ack_wait / 3).max(Duration::from_millis(100)));
        loop {
            let idle = self.is_idle();
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await,
                    None => break,
                },
                Some(event) = events.recv() => match event {
                    Event::Ready(consumer) => self.consumer = Some(*consumer),
                    Event::Fetched(messages) => {
                        self.fetching = false;
                        self.waiting.extend(messages);
                    }
                },
                _ = progress.tick() => self.keep_alive(),
                () = tokio::time::sleep(settings.idle_reclaim), if idle => {
                    let reclaimed = self.queues.queues.remove_if(&self.name, |_, _| {
                        rx.sender_strong_count() == 1 && rx.is_empty()
                    });
                    if reclaimed.is_some() {
                        break;
                    }
                }
            }
            self.dispatch();
            self.fetch(&events_tx);
        }
        // Whatever this node holds goes back for others at once.
        let held: Vec<_> = self
            .waiting
            .drain(..)
            .chain(self.unacked.drain().map(|(_, (m, _, _))| m))
            .collect();
        for m in held {
            let _ = m.ack_with(AckKind::Nak(None)).await;
        }
        self.queues.metrics.queues.decrement(1.0);
    }

    fn is_idle(&self) -> bool {
        self.consumers.is_empty() && self.unacked.is_empty() && self.waiting.is_empty()
    }

    async fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Send {
                headers,
                body,
                reply,
                ..
            } => self.send(headers, body, reply).await,
            // Room is checked by JetStream on each publish (queues.max_depth per
            // subject); across nodes it cannot be held for a COMMIT beforehand.
            Cmd::Reserve { reply, .. } => {
                let _ = reply.send(Ok(()));
            }
            Cmd::Release { .. } | Cmd::Take(_) => {}
            Cmd::Subscribe(consumer) => self.consumers.push(Local {
                consumer,
                in_flight: Vec::new(),
            }),
            Cmd::Unsubscribe { session, id } => {
                if let Some(i) = self
                    .consumers
                    .iter()
                    .position(|c| c.consumer.session == session && c.consumer.id == id)
                {
                    let gone = self.consumers.remove(i);
                    for d in gone.in_flight {
                        if let Some((m, _, _)) = self.unacked.remove(&d) {
                            settle(m, AckKind::Nak(None), None);
                        }
                    }
                    if self.consumers.is_empty() {
                        for m in self.waiting.drain(..) {
                            settle(m, AckKind::Nak(None), None);
                        }
                    }
                }
            }
            Cmd::Ack {
                session,
                delivery,
                nack,
                reply,
            } => self.ack(session, delivery, nack, reply),
            Cmd::Stats(reply) => {
                let consumer = self.consumer.clone();
                let local = (self.name.clone(), self.consumers.len(), self.unacked.len());
                tokio::spawn(async move {
                    let depth = match consumer {
                        Some(mut c) => c.info().await.map(|i| i.num_pending as usize).unwrap_or(0),
                        None => 0,
                    };
                    let _ = reply.send(QueueStats {
                        name: local.0,
                        depth,
                        consumers: local.1,
                        unacked: local.2,
                    });
                });
            }
        }
    }

    /// Publishes to the stream; the answer comes with JetStream's acknowledgement
    /// (the message is stored on a majority of replicas). The message is handed
    /// to the NATS client here, in command order; only the acknowledgement is
    /// awaited aside.
    async fn send(&mut self, headers: Headers, body: Bytes, reply: Reply) {
        let link = &self.queues.link;
        if let Err(e) = link.check_connected().and_then(|()| link.check_streams()) {
            let _ = reply.send(Err(self.unavailable(e.to_string())));
            return;
        }
        let Some(js) = link.jetstream() else {
            let _ = reply.send(Err(self.unavailable("not connected")));
            return;
        };
        let mut nats_headers = async_nats::HeaderMap::new();
        nats_headers.insert("Nats-Expected-Stream", STREAM);
        // STOMP headers travel in the payload: NATS header values cannot hold
        // every byte a STOMP header can.
        let payload = super::wire::encode(
            &self.destination(),
            "",
            headers
                .iter()
                .filter(|(k, _)| !crate::destination::RESERVED.contains(k)),
            &body,
        );
        let queue = self.destination();
        match js
            .publish_with_headers(self.subject.clone(), nats_headers, payload)
            .await
        {
            Ok(ack) => {
                self.queues.metrics.published.increment(1);
                tokio::spawn(async move {
                    let answer = ack.await.map(|_| ()).map_err(|e| {
                        let text = e.to_string();
                        if text.contains("maximum messages per subject") {
                            QueueError::Full(queue.clone())
                        } else {
                            QueueError::Unavailable {
                                destination: queue.clone(),
                                reason: text,
                            }
                        }
                    });
                    let _ = reply.send(answer);
                });
            }
            Err(e) => {
                let _ = reply.send(Err(QueueError::Unavailable {
                    destination: queue,
                    reason: e.to_string(),
                }));
            }
        }
    }

    /// Room left in the local consumers' prefetch windows, less what is fetched
    /// and waiting.
    fn room(&self) -> usize {
        let windows: usize = self
            .consumers
            .iter()
            .map(|c| c.consumer.prefetch.saturating_sub(c.in_flight.len()))
            .sum();
        windows.saturating_sub(self.waiting.len())
    }

    /// Asks JetStream for as many messages as there is room for (one fetch at a
    /// time; it waits up to [`FETCH_WAIT`] for messages to come).
    fn fetch(&mut self, events: &mpsc::Sender<Event>) {
        let room = self.room().min(MAX_FETCH);
        let Some(consumer) = self.consumer.clone() else {
            return;
        };
        if self.fetching || room == 0 {
            return;
        }
        self.fetching = true;
        let events = events.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            match consumer
                .fetch()
                .max_messages(room)
                .expires(FETCH_WAIT)
                .messages()
                .await
            {
                Ok(mut batch) => {
                    while let Some(m) = batch.next().await {
                        match m {
                            Ok(m) => got.push(m),
                            Err(e) => {
                                tracing::debug!(error = %e, "queue fetch ended");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "queue fetch failed");
                    tokio::time::sleep(FETCH_WAIT).await;
                }
            }
            let _ = events.send(Event::Fetched(got)).await;
        });
    }

    /// Hands fetched messages to local consumers with room, round-robin.
    fn dispatch(&mut self) {
        let destination = self.destination();
        while !self.waiting.is_empty() && !self.consumers.is_empty() {
            let Some(pick) = round_robin(self.next_consumer, self.consumers.len(), |i| {
                self.consumers[i].in_flight.len() < self.consumers[i].consumer.prefetch
            }) else {
                return;
            };
            self.next_consumer = (pick + 1) % self.consumers.len();
            let Some(message) = self.waiting.pop_front() else {
                return;
            };
            let (delivered, published_ms) = match message.info() {
                Ok(info) => (
                    info.delivered,
                    (info.published.unix_timestamp_nanos() / 1_000_000) as u64,
                ),
                Err(_) => (1, now_ms()),
            };
            let Ok(wire) = super::wire::decode(message.payload.clone()) else {
                tracing::warn!(queue = %self.name, "dropped a queue message no node wrote");
                settle(message, AckKind::Term, None);
                continue;
            };
            if expiry(&wire.headers, published_ms).is_some_and(|at| at <= now_ms()) {
                self.queues.metrics.expired.increment(1);
                settle(message, AckKind::Ack, None);
                continue;
            }
            let delivery = self.next_delivery;
            self.next_delivery += 1;
            let state = &mut self.consumers[pick];
            let ack = ack_id(&self.name, delivery);
            let mut extra: Vec<(&str, &str)> = Vec::new();
            if state.consumer.ack != AckMode::Auto {
                extra.push(("ack", &ack));
            }
            if delivered > 1 {
                extra.push(("redelivered", "true"));
                self.queues.metrics.redelivered.increment(1);
            }
            let shared = [
                ("destination", destination.as_str()),
                ("message-id", ack.as_str()),
            ]
            .into_iter()
            .chain(wire.headers.iter());
            let encoded =
                MessageTemplate::new(shared, wire.body).deliver(&state.consumer.header, &extra);
            let pushed = state.consumer.outbox.push(Outgoing::Message {
                message: encoded,
                published: Instant::now(),
            });
            if pushed.is_err() {
                // The connection is going; keep the message for another consumer.
                self.waiting.push_front(message);
                let gone = self.consumers.remove(pick);
                for d in gone.in_flight {
                    if let Some((m, _, _)) = self.unacked.remove(&d) {
                        settle(m, AckKind::Nak(None), None);
                    }
                }
                continue;
            }
            if state.consumer.ack == AckMode::Auto {
                settle(message, AckKind::Ack, None);
            } else {
                state.in_flight.push(delivery);
                let owner = (state.consumer.session, state.consumer.id.clone());
                self.unacked.insert(delivery, (message, owner.0, owner.1));
            }
        }
    }

    /// ACK or NACK of a delivery (cumulative for `client` acks, as on one node).
    fn ack(&mut self, session: u64, delivery: u64, nack: bool, reply: Option<Reply>) {
        let owner = match self.unacked.get(&delivery) {
            Some((_, s, id)) if *s == session => id.clone(),
            _ => {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
                return;
            }
        };
        let Some(state) = self
            .consumers
            .iter_mut()
            .find(|c| c.consumer.session == session && c.consumer.id == owner)
        else {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(()));
            }
            return;
        };
        let cumulative = state.consumer.ack == AckMode::Client;
        let covered = take_covered(&mut state.in_flight, delivery, cumulative);
        let mut messages: Vec<jetstream::Message> = covered
            .into_iter()
            .filter_map(|d| self.unacked.remove(&d).map(|(m, _, _)| m))
            .collect();
        // The receipt waits for the last one (acks of one queue are applied in order).
        let last = messages.pop();
        for m in messages {
            self.settle_one(m, nack, None);
        }
        match last {
            Some(m) => self.settle_one(m, nack, reply),
            None => {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }

    /// Acks, naks or dead-letters one message.
    fn settle_one(&self, m: jetstream::Message, nack: bool, reply: Option<Reply>) {
        if !nack {
            settle(m, AckKind::Ack, reply);
            return;
        }
        let delivered = m.info().map(|i| i.delivered).unwrap_or(1);
        if delivered <= i64::from(self.queues.settings.max_redeliveries) {
            settle(m, AckKind::Nak(None), reply);
            return;
        }
        // To NAME.dlq, then terminated here: a crash in between keeps both.
        let dlq = format!("{}.dlq", self.name);
        let Some(js) = self.queues.link.jetstream() else {
            settle(m, AckKind::Nak(None), reply);
            return;
        };
        let Ok(subject) = queue_subject(&dlq) else {
            settle(m, AckKind::Term, reply);
            return;
        };
        self.queues.metrics.dead_lettered.increment(1);
        let name = self.name.clone();
        tokio::spawn(async move {
            let Ok(mut wire) = super::wire::decode(m.payload.clone()) else {
                settle(m, AckKind::Term, reply);
                return;
            };
            wire.headers.push(
                "dlq-reason",
                format!("nacked on delivery {delivered} (queues.max_redeliveries)"),
            );
            wire.headers
                .push("original-destination", format!("/queue/{name}"));
            let payload = super::wire::encode(
                &format!("/queue/{dlq}"),
                "",
                wire.headers.iter(),
                &wire.body,
            );
            let stored = match js.publish(subject, payload).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            let kind = if stored {
                AckKind::Term
            } else {
                AckKind::Nak(None)
            };
            if !stored {
                tracing::warn!(queue = %name, "could not dead-letter a message; it stays queued");
            }
            settle(m, kind, reply);
        });
    }

    /// Tells JetStream this node still holds its unacked messages, so they are
    /// not given to another node after `cluster.ack_wait_s`.
    fn keep_alive(&self) {
        let held: Vec<jetstream::Message> = self
            .unacked
            .values()
            .map(|(m, _, _)| m.clone())
            .chain(self.waiting.iter().cloned())
            .collect();
        if held.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for m in held {
                let _ = m.ack_with(AckKind::Progress).await;
            }
        });
    }
}

/// Sends `kind` for `m` aside; with `reply`, waits for JetStream to confirm it
/// (a receipted ACK) and answers.
fn settle(m: jetstream::Message, kind: AckKind, reply: Option<Reply>) {
    tokio::spawn(async move {
        match reply {
            Some(reply) => {
                let done = m
                    .double_ack_with(kind)
                    .await
                    .map_err(|e| QueueError::Unavailable {
                        destination: m.subject.to_string(),
                        reason: e.to_string(),
                    });
                let _ = reply.send(done);
            }
            None => {
                if let Err(e) = m.ack_with(kind).await {
                    tracing::warn!(error = %e, "could not settle a queue message");
                }
            }
        }
    });
}

/// Creates (or finds) queue `name`'s durable consumer once the stream exists,
/// retrying every second.
async fn create_consumer(
    queues: Arc<ClusterQueues>,
    name: String,
    subject: String,
    events: mpsc::Sender<Event>,
) {
    let settings = &queues.settings;
    let config = jetstream::consumer::pull::Config {
        durable_name: Some(consumer_name(&name)),
        filter_subject: subject,
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        max_deliver: -1,
        max_ack_pending: i64::try_from(settings.max_ack_pending).unwrap_or(i64::MAX),
        ..Default::default()
    };
    loop {
        if events.is_closed() {
            return;
        }
        if let (Some(js), Ok(())) = (queues.link.jetstream(), queues.link.check_streams()) {
            let made = async {
                let stream = js.get_stream(STREAM).await?;
                stream
                    .get_or_create_consumer(&consumer_name(&name), config.clone())
                    .await
                    .map_err(async_nats::Error::from)
            };
            match tokio::time::timeout(Duration::from_secs(5), made).await {
                Ok(Ok(consumer)) => {
                    let _ = events.send(Event::Ready(Box::new(consumer))).await;
                    return;
                }
                Ok(Err(e)) => tracing::warn!(queue = %name, error = %e, "queue consumer: retrying"),
                Err(_) => tracing::warn!(queue = %name, "queue consumer: timed out, retrying"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_safe_and_bounded() {
        assert_eq!(consumer_name("jobs.a b"), "q-6a6f62732e612062");
        let long = "x".repeat(5000);
        let name = consumer_name(&long);
        assert_eq!(name.len(), 2 + 128 + 17);
        assert_ne!(name, consumer_name(&"x".repeat(5001)));
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'q')
        );
    }
}
