//! Point-to-point queues (`/queue/NAME`), in memory.
//!
//! Each queue is an actor: one task owns its messages, consumers, prefetch windows
//! and unacknowledged deliveries, and sessions talk to it over a channel. A message
//! goes to exactly one consumer, round-robin among those with room in their
//! prefetch window. With `client` / `client-individual` acks it stays owned by the
//! queue until acked; when its consumer goes away it is redelivered with
//! `redelivered: true`. A NACKed message is redelivered, and once it has been NACKed
//! more than `queues.max_redeliveries` times it moves to `/queue/NAME.dlq`.
//! Queue messages are never dropped to protect memory: they wait in the queue
//! (at most `queues.max_depth` each), not in an outbox.

use crate::codec::{Headers, MessageTemplate, SubscriptionHeader};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outgoing};
use crate::registry::AckMode;
use bytes::Bytes;
use dashmap::DashMap;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a queue refused a message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum QueueError {
    /// The queue holds `queues.max_depth` messages already.
    #[error("queue {0} is full (queues.max_depth)")]
    Full(String),
    /// Creating the queue would pass `queues.max_queues`.
    #[error("too many queues (queues.max_queues)")]
    TooManyQueues,
    /// The queue task has stopped (shutdown).
    #[error("queue {0} is not available")]
    Gone(String),
}

/// Settings shared by every queue.
#[derive(Debug, Clone)]
pub struct QueueLimits {
    /// Messages waiting in one queue.
    pub max_depth: usize,
    /// NACKs a message survives before it moves to the DLQ.
    pub max_redeliveries: u32,
    /// Queues that may exist at once.
    pub max_queues: usize,
}

/// One consumer: a SUBSCRIBE to a queue.
#[derive(Debug)]
pub struct Consumer {
    /// Owning session.
    pub session: u64,
    /// Subscription id.
    pub id: String,
    /// Encoded `subscription` line.
    pub header: SubscriptionHeader,
    /// Ack mode.
    pub ack: AckMode,
    /// Most unacked deliveries at once (`prefetch-count`).
    pub prefetch: usize,
    /// The connection's outbox.
    pub outbox: Outbox,
}

enum Cmd {
    Send {
        headers: Headers,
        body: Bytes,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    Subscribe(Consumer),
    Unsubscribe {
        session: u64,
        id: String,
    },
    Ack {
        session: u64,
        delivery: u64,
        nack: bool,
    },
}

/// A handle to one queue's task.
#[derive(Debug, Clone)]
pub struct QueueHandle {
    name: Arc<str>,
    tx: mpsc::UnboundedSender<Cmd>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("queue command")
    }
}

impl QueueHandle {
    /// Enqueues a message; resolves once the queue has taken it (or refused it).
    pub async fn send(&self, headers: Headers, body: Bytes) -> Result<(), QueueError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Cmd::Send {
                headers,
                body,
                reply,
            })
            .map_err(|_| QueueError::Gone(self.name.to_string()))?;
        answer
            .await
            .map_err(|_| QueueError::Gone(self.name.to_string()))?
    }

    /// Adds a consumer.
    pub fn subscribe(&self, consumer: Consumer) {
        let _ = self.tx.send(Cmd::Subscribe(consumer));
    }

    /// Removes a consumer; its unacked messages are redelivered.
    pub fn unsubscribe(&self, session: u64, id: &str) {
        let _ = self.tx.send(Cmd::Unsubscribe {
            session,
            id: id.to_owned(),
        });
    }

    /// ACK (or NACK) of one delivery by `session`.
    pub fn ack(&self, session: u64, delivery: u64, nack: bool) {
        let _ = self.tx.send(Cmd::Ack {
            session,
            delivery,
            nack,
        });
    }
}

/// The ack id of a queue delivery: `q{delivery}@{queue}`.
pub fn ack_id(queue: &str, delivery: u64) -> String {
    format!("q{delivery}@{queue}")
}

/// Splits an ack id made by [`ack_id`] into (queue, delivery).
pub fn parse_ack_id(id: &str) -> Option<(&str, u64)> {
    let (delivery, queue) = id.strip_prefix('q')?.split_once('@')?;
    Some((queue, delivery.parse().ok()?))
}

/// All queues of the broker, created on first use.
#[derive(Debug)]
pub struct Queues {
    queues: DashMap<String, QueueHandle>,
    limits: QueueLimits,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    /// Stops every queue task at shutdown.
    shutdown: CancellationToken,
    /// Message ids of queue messages.
    next_id: AtomicU64,
    myself: Weak<Queues>,
}

impl Queues {
    /// No queues yet; their tasks will run on `tasks` until `shutdown`.
    pub fn new(
        limits: QueueLimits,
        metrics: Arc<Metrics>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Queues> {
        Arc::new_cyclic(|myself| Queues {
            queues: DashMap::new(),
            limits,
            metrics,
            tasks,
            shutdown,
            next_id: AtomicU64::new(1),
            myself: myself.clone(),
        })
    }

    /// The queue named `name` (the part after `/queue/`), created if needed.
    pub fn get(&self, name: &str) -> Result<QueueHandle, QueueError> {
        if let Some(q) = self.queues.get(name) {
            return Ok(q.clone());
        }
        if self.queues.len() >= self.limits.max_queues {
            return Err(QueueError::TooManyQueues);
        }
        let handle = self
            .queues
            .entry(name.to_owned())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                let queue = Queue {
                    name: name.to_owned(),
                    waiting: VecDeque::new(),
                    consumers: Vec::new(),
                    next_consumer: 0,
                    unacked: HashMap::new(),
                    next_delivery: 1,
                    limits: self.limits.clone(),
                    queues: self.myself.clone(),
                    metrics: self.metrics.clone(),
                };
                self.metrics.queues.increment(1.0);
                self.tasks.spawn(queue.run(rx, self.shutdown.clone()));
                QueueHandle {
                    name: name.into(),
                    tx,
                }
            })
            .clone();
        Ok(handle)
    }

    fn message_id(&self) -> String {
        format!("qm-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

#[derive(Debug, Clone)]
struct Message {
    /// Past this (ms since the Unix epoch) the message is dropped, not delivered.
    expires_at: Option<u64>,
    id: String,
    headers: Headers,
    body: Bytes,
    nacks: u32,
    redelivered: bool,
}

#[derive(Debug)]
struct ConsumerState {
    consumer: Consumer,
    /// Unacked deliveries, oldest first.
    in_flight: Vec<u64>,
}

#[derive(Debug)]
struct Queue {
    name: String,
    waiting: VecDeque<Message>,
    consumers: Vec<ConsumerState>,
    next_consumer: usize,
    /// delivery id -> (message, consumer's session, consumer id)
    unacked: HashMap<u64, (Message, u64, String)>,
    next_delivery: u64,
    limits: QueueLimits,
    queues: Weak<Queues>,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// Puts a message back at the front, marked redelivered.
    fn redeliver(&mut self, mut m: Message) {
        m.redelivered = true;
        self.metrics.redelivered.increment(1);
        self.metrics.queue_messages.increment(1.0);
        self.waiting.push_front(m);
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>, shutdown: CancellationToken) {
        loop {
            let cmd = tokio::select! {
                _ = shutdown.cancelled() => return,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => return,
                },
            };
            match cmd {
                Cmd::Send {
                    headers,
                    body,
                    reply,
                } => {
                    // Dispatch before answering: once a sender has its receipt, the
                    // message is with a consumer or waiting, never in between.
                    let accepted = self.accept(headers, body);
                    self.dispatch();
                    let _ = reply.send(accepted);
                }
                Cmd::Subscribe(consumer) => self.consumers.push(ConsumerState {
                    consumer,
                    in_flight: Vec::new(),
                }),
                Cmd::Unsubscribe { session, id } => self.remove_consumer(session, &id),
                Cmd::Ack {
                    session,
                    delivery,
                    nack,
                } => self.ack(session, delivery, nack),
            }
            self.dispatch();
        }
    }

    fn accept(&mut self, headers: Headers, body: Bytes) -> Result<(), QueueError> {
        if self.waiting.len() >= self.limits.max_depth {
            return Err(QueueError::Full(format!("/queue/{}", self.name)));
        }
        let Some(queues) = self.queues.upgrade() else {
            return Err(QueueError::Gone(self.name.clone()));
        };
        queues.metrics.published.increment(1);
        let expires_at = expiry(&headers, now_ms());
        self.metrics.queue_messages.increment(1.0);
        self.waiting.push_back(Message {
            expires_at,
            id: queues.message_id(),
            headers,
            body,
            nacks: 0,
            redelivered: false,
        });
        Ok(())
    }

    /// Hands waiting messages to consumers with room, round-robin.
    fn dispatch(&mut self) {
        while !self.waiting.is_empty() && !self.consumers.is_empty() {
            let n = self.consumers.len();
            let Some(pick) = (0..n)
                .map(|k| (self.next_consumer + k) % n)
                .find(|&i| self.consumers[i].in_flight.len() < self.consumers[i].consumer.prefetch)
            else {
                return;
            };
            self.next_consumer = (pick + 1) % n;
            let Some(message) = self.waiting.pop_front() else {
                return;
            };
            self.metrics.queue_messages.decrement(1.0);
            if message.expires_at.is_some_and(|at| at <= now_ms()) {
                if let Some(queues) = self.queues.upgrade() {
                    queues.metrics.expired.increment(1);
                }
                continue;
            }
            let delivery = self.next_delivery;
            self.next_delivery += 1;
            let state = &mut self.consumers[pick];
            // Per delivery, like RabbitMQ: the message-id doubles as the ack id, so
            // 1.0/1.1 clients that ACK by message-id reach the right delivery.
            let ack = ack_id(&self.name, delivery);
            let destination = format!("/queue/{}", self.name);
            let mut extra: Vec<(&str, &str)> = Vec::new();
            if state.consumer.ack != AckMode::Auto {
                extra.push(("ack", &ack));
            }
            if message.redelivered {
                extra.push(("redelivered", "true"));
            }
            let shared = [
                ("destination", destination.as_str()),
                ("message-id", ack.as_str()),
            ]
            .into_iter()
            .chain(
                message
                    .headers
                    .iter()
                    .filter(|(k, _)| !crate::router::RESERVED.contains(k)),
            );
            let encoded = MessageTemplate::new(shared, message.body.clone())
                .deliver(&state.consumer.header, &extra);
            let pushed = state.consumer.outbox.push(Outgoing::Message {
                message: encoded,
                published: Instant::now(),
            });
            if pushed.is_err() {
                // The connection is going; its session will unsubscribe it. Keep the message.
                self.metrics.queue_messages.increment(1.0);
                self.waiting.push_front(message);
                let gone = self.consumers.remove(pick);
                self.requeue(gone);
                continue;
            }
            if state.consumer.ack != AckMode::Auto {
                state.in_flight.push(delivery);
                let owner = (state.consumer.session, state.consumer.id.clone());
                self.unacked.insert(delivery, (message, owner.0, owner.1));
            }
        }
    }

    fn remove_consumer(&mut self, session: u64, id: &str) {
        if let Some(i) = self
            .consumers
            .iter()
            .position(|c| c.consumer.session == session && c.consumer.id == id)
        {
            let gone = self.consumers.remove(i);
            self.requeue(gone);
        }
    }

    /// Returns a departed consumer's unacked messages to the front, in order.
    fn requeue(&mut self, gone: ConsumerState) {
        for delivery in gone.in_flight.into_iter().rev() {
            if let Some((m, _, _)) = self.unacked.remove(&delivery) {
                self.redeliver(m);
            }
        }
    }

    fn ack(&mut self, session: u64, delivery: u64, nack: bool) {
        let Some((_, owner_session, owner_id)) = self.unacked.get(&delivery) else {
            return;
        };
        if *owner_session != session {
            return;
        }
        let owner_id = owner_id.clone();
        let Some(state) = self
            .consumers
            .iter_mut()
            .find(|c| c.consumer.session == session && c.consumer.id == owner_id)
        else {
            return;
        };
        // `client` acks are cumulative: everything delivered before this one too.
        let covered: Vec<u64> = match state.consumer.ack {
            AckMode::Client => state
                .in_flight
                .iter()
                .copied()
                .take_while(|d| *d <= delivery)
                .collect(),
            _ => vec![delivery],
        };
        state.in_flight.retain(|d| !covered.contains(d));
        for d in covered {
            let Some((mut m, _, _)) = self.unacked.remove(&d) else {
                continue;
            };
            if !nack {
                continue;
            }
            m.nacks += 1;
            if m.nacks > self.limits.max_redeliveries {
                self.dead_letter(m);
            } else {
                self.redeliver(m);
            }
        }
    }

    fn dead_letter(&self, m: Message) {
        let Some(queues) = self.queues.upgrade() else {
            return;
        };
        self.metrics.dead_lettered.increment(1);
        let mut headers = m.headers.clone();
        headers.push(
            "dlq-reason",
            format!("nacked {} times (queues.max_redeliveries)", m.nacks),
        );
        headers.push("original-destination", format!("/queue/{}", self.name));
        headers.push("original-message-id", m.id.clone());
        let dlq = format!("{}.dlq", self.name);
        if let Ok(q) = queues.get(&dlq) {
            let body = m.body.clone();
            tokio::spawn(async move {
                let _ = q.send(headers, body).await;
            });
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// When a message expires: the `expires` header (ms since the epoch, as in ActiveMQ;
/// 0 means never) or `ttl` (ms from now), whichever comes first.
fn expiry(headers: &Headers, now: u64) -> Option<u64> {
    let expires = headers
        .get("expires")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|v| *v > 0);
    let ttl = headers
        .get("ttl")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|t| now.saturating_add(t));
    match (expires, ttl) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_from_expires_or_ttl() {
        let h = |pairs: &[(&str, &str)]| pairs.iter().copied().collect::<Headers>();
        assert_eq!(expiry(&h(&[]), 1000), None);
        assert_eq!(expiry(&h(&[("expires", "5000")]), 1000), Some(5000));
        assert_eq!(expiry(&h(&[("expires", "0")]), 1000), None);
        assert_eq!(expiry(&h(&[("ttl", "250")]), 1000), Some(1250));
        assert_eq!(
            expiry(&h(&[("ttl", "250"), ("expires", "1100")]), 1000),
            Some(1100)
        );
        assert_eq!(expiry(&h(&[("ttl", "soon")]), 1000), None);
    }

    #[test]
    fn ack_ids_round_trip() {
        assert_eq!(
            parse_ack_id(&ack_id("jobs.a@b", 42)),
            Some(("jobs.a@b", 42))
        );
        assert_eq!(parse_ack_id("m-1"), None);
        assert_eq!(parse_ack_id("qx@jobs"), None);
    }
}
