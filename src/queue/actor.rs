//! One queue's task: its waiting messages, consumers, prefetch windows and
//! unacknowledged deliveries, changed only by the commands it receives.

use super::{Cmd, Consumer, QueueError, QueueLimits, Queues, Reply, ack_id};
use crate::codec::{Headers, MessageTemplate};
use crate::metrics::Metrics;
use crate::outbox::Outgoing;
use crate::registry::AckMode;
use crate::store::{Record, Store};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A message held by a single-node queue.
#[derive(Debug, Clone)]
pub(crate) struct QueuedMessage {
    /// Past this (ms since the Unix epoch) the message is dropped, not delivered.
    pub(super) expires_at: Option<u64>,
    pub(super) id: String,
    pub(super) headers: Headers,
    pub(super) body: Bytes,
    pub(super) nacks: u32,
    pub(super) redelivered: bool,
    /// Its key in the store, when it is durable.
    pub(super) stored: Option<u64>,
}

#[derive(Debug)]
pub(super) struct ConsumerState {
    consumer: Consumer,
    /// Unacked deliveries, in ascending order (deliveries are numbered as made).
    in_flight: Vec<u64>,
}

#[derive(Debug)]
pub(super) struct QueueActor {
    /// Room promised to COMMITs and not yet used: counts against `max_depth`.
    pub(super) reserved: usize,
    pub(super) name: String,
    /// How long the queue may be empty and unused before it is removed.
    pub(super) idle_reclaim: std::time::Duration,
    /// Every message is stored (`queues.durable`), not only `persistent: true` ones.
    pub(super) durable: bool,
    pub(super) waiting: VecDeque<QueuedMessage>,
    pub(super) consumers: Vec<ConsumerState>,
    pub(super) next_consumer: usize,
    /// delivery id -> (message, consumer's session, consumer id)
    pub(super) unacked: HashMap<u64, (QueuedMessage, u64, String)>,
    pub(super) next_delivery: u64,
    pub(super) limits: QueueLimits,
    /// Where queues are found and created: for the dead-letter queue, and to
    /// leave the directory when idle.
    pub(super) queues: Arc<Queues>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) store: Store,
}

/// Answers `reply` once what the store was asked so far is durable.
fn reply_when_durable(store: &Store, reply: Reply) {
    store.when_durable(Box::new(move |r| {
        let _ = reply.send(r.map_err(QueueError::from));
    }));
}

impl QueueActor {
    /// Puts a message back at the front, marked redelivered.
    fn redeliver(&mut self, mut m: QueuedMessage) {
        m.redelivered = true;
        self.metrics.redelivered.increment(1);
        self.metrics.queue_messages.increment(1.0);
        self.waiting.push_front(m);
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, shutdown: CancellationToken) {
        loop {
            let idle = self.is_idle();
            let cmd = tokio::select! {
                _ = shutdown.cancelled() => return,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => return,
                },
                _ = tokio::time::sleep(self.idle_reclaim), if idle => {
                    if self.reclaim(&rx) {
                        return;
                    }
                    continue;
                }
            };
            match cmd {
                Cmd::Reserve { n, reply } => {
                    let answer = if self.waiting.len() + self.reserved + n > self.limits.max_depth {
                        Err(QueueError::Full(format!("/queue/{}", self.name)))
                    } else {
                        self.reserved += n;
                        Ok(())
                    };
                    let _ = reply.send(answer);
                }
                Cmd::Release { n } => self.reserved = self.reserved.saturating_sub(n),
                Cmd::Send {
                    headers,
                    body,
                    reply,
                    reserved,
                } => {
                    // Dispatch before answering: once a sender has its receipt, the
                    // message is with a consumer or waiting, never in between.
                    let accepted = self.accept(headers, body, reserved);
                    self.dispatch();
                    match accepted {
                        Ok(true) => reply_when_durable(&self.store, reply),
                        Ok(false) => {
                            let _ = reply.send(Ok(()));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                Cmd::Take(message) => self.take(message),
                Cmd::Subscribe(consumer) => self.consumers.push(ConsumerState {
                    consumer,
                    in_flight: Vec::new(),
                }),
                Cmd::Unsubscribe { session, id } => self.remove_consumer(session, &id),
                Cmd::Stats(reply) => {
                    let _ = reply.send(super::QueueStats {
                        name: self.name.clone(),
                        depth: self.waiting.len(),
                        consumers: self.consumers.len(),
                        unacked: self.unacked.len(),
                    });
                }
                Cmd::Ack {
                    session,
                    delivery,
                    nack,
                    reply,
                } => {
                    let touched_store = self.ack(session, delivery, nack);
                    if let Some(reply) = reply {
                        if touched_store {
                            reply_when_durable(&self.store, reply);
                        } else {
                            let _ = reply.send(Ok(()));
                        }
                    }
                }
            }
            self.dispatch();
        }
    }

    /// Empty, with no consumers and nothing unacked: nothing would be lost if the
    /// queue went away.
    fn is_idle(&self) -> bool {
        self.waiting.is_empty()
            && self.consumers.is_empty()
            && self.unacked.is_empty()
            && self.reserved == 0
    }

    /// Removes this idle queue from the broker's map if no one else holds its
    /// handle and no command is on its way: then nobody can reach it any more and
    /// the task may end. Otherwise the queue stays and waits for the next idle spell.
    fn reclaim(&self, rx: &mpsc::Receiver<Cmd>) -> bool {
        // The map's handle is the only sender left, and nothing is queued: checked
        // with the map entry locked, so no one can take a new handle meanwhile.
        let removed = self.queues.reclaim(&self.name, || {
            rx.sender_strong_count() == 1 && rx.is_empty()
        });
        if removed {
            tracing::debug!(queue = %self.name, "idle empty queue reclaimed");
            self.metrics.queues.decrement(1.0);
        }
        removed
    }

    /// Takes a message in; `Ok(true)` when it was written to the store, so that the
    /// sender's answer must wait for the write to be durable.
    fn accept(
        &mut self,
        headers: Headers,
        body: Bytes,
        reserved: bool,
    ) -> Result<bool, QueueError> {
        if reserved {
            self.reserved = self.reserved.saturating_sub(1);
        } else if self.waiting.len() + self.reserved >= self.limits.max_depth {
            return Err(QueueError::Full(format!("/queue/{}", self.name)));
        }
        self.metrics.published.increment(1);
        let expires_at = expiry(&headers, now_ms());
        let stored = (self.durable || headers.get("persistent") == Some("true")).then(|| {
            let key = self.store.next_key();
            self.store
                .put(key, Record::encode(&self.name, expires_at, &headers, &body));
            key
        });
        self.metrics.queue_messages.increment(1.0);
        self.waiting.push_back(QueuedMessage {
            expires_at,
            id: self.queues.message_id(),
            headers,
            body,
            nacks: 0,
            redelivered: false,
            stored,
        });
        Ok(stored.is_some())
    }

    /// Takes a message moved here from another queue; past `max_depth` it is
    /// dropped (and counted), since its sender is not there to be told.
    fn take(&mut self, message: QueuedMessage) {
        if self.waiting.len() >= self.limits.max_depth {
            tracing::warn!(queue = %self.name, "queue full: dropping a dead-lettered message");
            self.metrics.dropped.increment(1);
            self.forget(&message);
            return;
        }
        self.metrics.queue_messages.increment(1.0);
        self.waiting.push_back(message);
    }

    /// Deletes a message's record, if it has one; true if it had.
    fn forget(&self, m: &QueuedMessage) -> bool {
        if let Some(key) = m.stored {
            self.store.delete(key);
        }
        m.stored.is_some()
    }

    /// Hands waiting messages to consumers with room, round-robin.
    fn dispatch(&mut self) {
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
            self.metrics.queue_messages.decrement(1.0);
            if message.expires_at.is_some_and(|at| at <= now_ms()) {
                self.metrics.expired.increment(1);
                self.forget(&message);
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
                    .filter(|(k, _)| !crate::destination::RESERVED.contains(k)),
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
            if state.consumer.ack == AckMode::Auto {
                // Consumed on delivery: nothing will ack it.
                self.forget(&message);
            } else {
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

    /// Applies an ACK or NACK; true if it changed what the store holds.
    fn ack(&mut self, session: u64, delivery: u64, nack: bool) -> bool {
        let Some((_, owner_session, owner_id)) = self.unacked.get(&delivery) else {
            return false;
        };
        if *owner_session != session {
            return false;
        }
        let owner_id = owner_id.clone();
        let Some(state) = self
            .consumers
            .iter_mut()
            .find(|c| c.consumer.session == session && c.consumer.id == owner_id)
        else {
            return false;
        };
        let covered = take_covered(
            &mut state.in_flight,
            delivery,
            state.consumer.ack == AckMode::Client,
        );
        let mut touched_store = false;
        for d in covered {
            let Some((mut m, _, _)) = self.unacked.remove(&d) else {
                continue;
            };
            if !nack {
                touched_store |= self.forget(&m);
                continue;
            }
            m.nacks += 1;
            if m.nacks > self.limits.max_redeliveries {
                self.dead_letter(m);
            } else {
                self.redeliver(m);
            }
        }
        touched_store
    }

    /// Moves a message to `NAME.dlq`, with headers saying why. A stored message's
    /// DLQ copy is written before the original is deleted (in that order, so a
    /// crash in between at worst keeps both). Like RabbitMQ, the copy does not
    /// expire.
    fn dead_letter(&self, m: QueuedMessage) {
        let dlq = format!("{}.dlq", self.name);
        let Ok(q) = self.queues.get(&dlq) else {
            tracing::warn!(queue = %self.name, "too many queues: dropping a dead letter");
            self.metrics.dropped.increment(1);
            self.forget(&m);
            return;
        };
        self.metrics.dead_lettered.increment(1);
        let mut headers = m.headers;
        headers.push(
            "dlq-reason",
            format!("nacked {} times (queues.max_redeliveries)", m.nacks),
        );
        headers.push("original-destination", format!("/queue/{}", self.name));
        headers.push("original-message-id", m.id);
        let stored = m.stored.map(|original| {
            let key = self.store.next_key();
            self.store
                .put(key, Record::encode(&dlq, None, &headers, &m.body));
            self.store.delete(original);
            key
        });
        q.take(QueuedMessage {
            expires_at: None,
            id: self.queues.message_id(),
            headers,
            body: m.body,
            nacks: 0,
            redelivered: false,
            stored,
        });
    }
}

/// The first of `n` consumers, starting at `next` and wrapping around, that
/// `has_room` (room in its prefetch window).
pub(crate) fn round_robin(
    next: usize,
    n: usize,
    has_room: impl Fn(usize) -> bool,
) -> Option<usize> {
    (0..n).map(|k| (next + k) % n).find(|&i| has_room(i))
}

/// Removes from `in_flight` (ascending) what an ACK/NACK of `delivery` covers and
/// returns it: with `cumulative` (`client` acks) every delivery up to and including
/// it, otherwise that one. One binary search and one drain: linear at worst, where
/// a cumulative ack over 60,000 unacked messages was once quadratic.
pub(crate) fn take_covered(in_flight: &mut Vec<u64>, delivery: u64, cumulative: bool) -> Vec<u64> {
    if cumulative {
        let end = in_flight.partition_point(|d| *d <= delivery);
        in_flight.drain(..end).collect()
    } else {
        match in_flight.binary_search(&delivery) {
            Ok(i) => vec![in_flight.remove(i)],
            Err(_) => Vec::new(),
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// When a message expires: the `expires` header (ms since the epoch, as in ActiveMQ;
/// 0 means never) or `ttl` (ms from now), whichever comes first.
pub(crate) fn expiry(headers: &Headers, now: u64) -> Option<u64> {
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
    fn acks_take_what_they_cover() {
        let mut f: Vec<u64> = vec![2, 3, 5, 8, 9];
        assert_eq!(take_covered(&mut f, 5, true), [2, 3, 5]);
        assert_eq!(f, [8, 9]);
        assert_eq!(take_covered(&mut f, 4, true), Vec::<u64>::new());
        assert_eq!(take_covered(&mut f, 9, false), [9]);
        assert_eq!(take_covered(&mut f, 7, false), Vec::<u64>::new());
        assert_eq!(f, [8]);
    }

    #[test]
    fn a_cumulative_ack_over_a_million_unacked_is_one_pass() {
        // Quadratic, this would be 5 * 10^11 steps; linear it is a few milliseconds.
        let mut f: Vec<u64> = (1..=1_000_000).collect();
        let covered = take_covered(&mut f, 999_999, true);
        assert_eq!(covered.len(), 999_999);
        assert_eq!(f, [1_000_000]);
        let mut f: Vec<u64> = (1..=1_000_000).collect();
        for d in (1..=1_000_000).step_by(1000) {
            assert_eq!(take_covered(&mut f, d, false), [d]);
        }
    }

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
}
