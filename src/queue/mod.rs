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
//!
//! Durable messages (queues matching `queues.durable`, or a SEND with
//! `persistent: true`) are also written to the [`Store`]; the sender's answer waits
//! until the write is durable, and an ack deletes the record. At start-up, what the
//! store holds is put back in its queues, marked `redelivered: true` because it may
//! have been delivered before the broker stopped.

mod actor;

use crate::codec::{Headers, SubscriptionHeader};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::registry::AckMode;
use crate::store::{Recovered, Store, StoreError};
use actor::QueueActor;
pub(crate) use actor::{QueuedMessage, expiry, now_ms, round_robin, take_covered};
use bytes::Bytes;
use dashmap::DashMap;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The queue stopped (shutdown) before it answered.
    #[error("the queue stopped before answering")]
    Stopped,
    /// A durable message could not be stored, or its deletion could not be.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An `[[app.routes]]` HTTP backend failed (or was busy, or slow) for the
    /// route named: the sender was told on its `/user/queue/errors`, so there is
    /// no RECEIPT and the session stays open.
    #[error("the backend of the route {0} failed; the sender was told on /user/queue/errors")]
    SenderTold(String),
    /// Where the destination lives cannot be reached (a cluster node without
    /// NATS).
    #[error("{destination} is not available: {reason}")]
    Unavailable {
        /// The destination (`/queue/NAME`, or what a subscription waits for).
        destination: String,
        /// Why.
        reason: String,
    },
}

/// The answer to a SEND or a receipted ACK: `Ok` once the queue holds the message
/// (durably, for a durable one) or the ack has taken effect. A cluster node's
/// SUBSCRIBE answers with it too, once its NATS subscription is in place.
pub type Answer = oneshot::Receiver<Result<(), QueueError>>;

/// Where a queue sends an [`Answer`].
pub(crate) type Reply = oneshot::Sender<Result<(), QueueError>>;

/// Waits for an [`Answer`]; a queue that stopped without answering is an error.
pub async fn answered(answer: &mut Answer) -> Result<(), QueueError> {
    answer.await.unwrap_or(Err(QueueError::Stopped))
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
    /// `/queue/...` patterns whose every message is stored.
    pub durable: Vec<String>,
    /// An empty queue with no consumers is removed after this long unused.
    pub idle_reclaim: std::time::Duration,
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

/// What a queue's task is asked to do. The single-node actor and a cluster
/// node's JetStream-backed one both speak it, behind the same [`QueueHandle`].
pub(crate) enum Cmd {
    /// Enqueue a message.
    Send {
        /// The SEND's headers.
        headers: Headers,
        /// The SEND's body.
        body: Bytes,
        /// Answered once the queue holds it.
        reply: Reply,
        /// Takes room reserved beforehand by [`Cmd::Reserve`].
        reserved: bool,
    },
    /// Holds room for `n` messages (a COMMIT checks every queue has room before
    /// it applies anything).
    Reserve {
        /// Messages.
        n: usize,
        /// Answered with the room, or why not.
        reply: Reply,
    },
    /// Gives back room reserved and not used.
    Release {
        /// Messages.
        n: usize,
    },
    /// A message moved here by another queue (dead-lettering), already stored if
    /// it is durable.
    Take(QueuedMessage),
    /// Adds a consumer.
    Subscribe(Consumer),
    /// Removes a consumer; its unacked messages go back.
    Unsubscribe {
        /// Its session.
        session: u64,
        /// Its subscription id.
        id: String,
    },
    /// ACK or NACK of a delivery.
    Ack {
        /// The acking session.
        session: u64,
        /// The delivery number from the ack id.
        delivery: u64,
        /// NACK rather than ACK.
        nack: bool,
        /// Answered once it took effect, for a receipt.
        reply: Option<Reply>,
    },
    /// Reports the queue's counts.
    Stats(oneshot::Sender<QueueStats>),
}

/// One queue's counts, for `GET /api/stats`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// The queue's name (after `/queue/`).
    pub name: String,
    /// Messages waiting for a consumer.
    pub depth: usize,
    /// Subscriptions consuming it.
    pub consumers: usize,
    /// Messages delivered and not yet acknowledged.
    pub unacked: usize,
}

/// Commands that may wait for one queue's task (local or JetStream). Past it a
/// sender waits for room: a session that floods a queue with ACKs stops reading
/// its socket until the queue has caught up, and the queue's other senders take
/// their turn in the channel's fair order meanwhile.
pub const QUEUE_COMMANDS: usize = 1024;

/// A new command channel of a queue task, bounded by [`QUEUE_COMMANDS`].
pub(crate) fn command_channel() -> (mpsc::Sender<Cmd>, mpsc::Receiver<Cmd>) {
    mpsc::channel(QUEUE_COMMANDS)
}

/// A handle to one queue's task.
#[derive(Debug, Clone)]
pub struct QueueHandle {
    name: Arc<str>,
    tx: mpsc::Sender<Cmd>,
}

impl QueueHandle {
    /// A handle speaking to the task that reads `tx` (another engine's queue).
    pub(crate) fn new(name: &str, tx: mpsc::Sender<Cmd>) -> QueueHandle {
        QueueHandle {
            name: name.into(),
            tx,
        }
    }

    /// The queue's name (the part after `/queue/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks for the queue's counts.
    pub(crate) fn stats(&self, reply: oneshot::Sender<QueueStats>) {
        self.command_now(Cmd::Stats(reply));
    }
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("queue command")
    }
}

impl QueueHandle {
    /// Enqueues a message. The answer comes once the queue has taken it (durably,
    /// for a durable message) or refused it; commands from one caller are applied in
    /// order, so a caller may send more before the answer arrives. With a
    /// reservation of this queue that has room left, the message takes that room.
    pub async fn send(
        &self,
        headers: Headers,
        body: Bytes,
        reservation: Option<&mut Reservation>,
    ) -> Answer {
        let reserved = match reservation {
            Some(r) if r.left > 0 => {
                r.left -= 1;
                true
            }
            _ => false,
        };
        let (reply, answer) = oneshot::channel();
        self.command(Cmd::Send {
            headers,
            body,
            reply,
            reserved,
        })
        .await;
        answer
    }

    /// Reserves room for `n` messages, or says the queue is too full for them. The
    /// room is given back when the [`Reservation`] drops with room unused, even if
    /// this future is dropped before the answer.
    pub async fn reserve(&self, n: usize) -> Result<Reservation, QueueError> {
        let (reply, mut answer) = oneshot::channel();
        // The guard exists before the command is sent: if the caller goes away
        // while waiting, its Release follows the Reserve on the same channel.
        let mut reservation = Reservation {
            queue: self.clone(),
            left: n,
        };
        self.command(Cmd::Reserve { n, reply }).await;
        match answered(&mut answer).await {
            Ok(()) => Ok(reservation),
            Err(e) => {
                reservation.left = 0;
                Err(e)
            }
        }
    }

    /// Sends a command, waiting while the queue's channel is full; if the queue
    /// has stopped, answers its reply with `Gone`.
    async fn command(&self, cmd: Cmd) {
        // Room is the common case: taken at once, without a future to wait on.
        let cmd = match self.tx.try_send(cmd) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Closed(cmd)) => return gone(&self.name, cmd),
            Err(mpsc::error::TrySendError::Full(cmd)) => cmd,
        };
        if let Err(mpsc::error::SendError(cmd)) = self.tx.send(cmd).await {
            gone(&self.name, cmd);
        }
    }

    /// Sends a command from where nothing can wait (a drop, a closing session, a
    /// queue task): at once when there is room, else from a task of its own that
    /// waits for room. Those tasks are bounded by what makes them: reservations,
    /// subscriptions and dead letters, each bounded by its own limit.
    fn command_now(&self, cmd: Cmd) {
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(cmd)) => gone(&self.name, cmd),
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                let queue = self.clone();
                tokio::spawn(async move { queue.command(cmd).await });
            }
        }
    }

    /// Hands over a message another queue moved here.
    fn take(&self, message: QueuedMessage) {
        self.command_now(Cmd::Take(message));
    }

    /// Adds a consumer.
    pub async fn subscribe(&self, consumer: Consumer) {
        self.command(Cmd::Subscribe(consumer)).await;
    }

    /// Removes a consumer; its unacked messages are redelivered. Does not wait:
    /// a session that ends removes its consumers on its way out. A command sent
    /// after this one by the same session waits behind it.
    pub fn unsubscribe(&self, session: u64, id: &str) {
        self.command_now(Cmd::Unsubscribe {
            session,
            id: id.to_owned(),
        });
    }

    /// ACK (or NACK) of one delivery by `session`. With `want_answer`, returns an
    /// answer that comes once the ack has taken effect, durably if the message was
    /// stored (for a receipt).
    pub async fn ack(
        &self,
        session: u64,
        delivery: u64,
        nack: bool,
        want_answer: bool,
    ) -> Option<Answer> {
        let (reply, answer) = match want_answer {
            true => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        self.command(Cmd::Ack {
            session,
            delivery,
            nack,
            reply,
        })
        .await;
        answer
    }
}

/// Room held in one queue for messages about to be sent (a COMMIT's). Unused room
/// is given back on drop.
#[derive(Debug)]
pub struct Reservation {
    queue: QueueHandle,
    left: usize,
}

impl Reservation {
    /// The queue the room is in.
    pub fn queue(&self) -> &QueueHandle {
        &self.queue
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.left > 0 {
            self.queue.command_now(Cmd::Release { n: self.left });
        }
    }
}

/// Answers the reply of a command that could not reach its stopped queue.
fn gone(name: &str, cmd: Cmd) {
    let reply = match cmd {
        Cmd::Send { reply, .. } | Cmd::Reserve { reply, .. } => Some(reply),
        Cmd::Ack { reply, .. } => reply,
        _ => None,
    };
    if let Some(reply) = reply {
        let _ = reply.send(Err(QueueError::Gone(name.to_owned())));
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

/// All queues of the broker, created on first use: the directory of their
/// handles. Shared by the engine and by each queue's task, which creates its
/// dead-letter queue here and removes itself when idle. A queue task ends at
/// shutdown or when reclaimed, so this sharing keeps nothing alive after shutdown.
#[derive(Debug)]
pub struct Queues {
    queues: DashMap<String, QueueHandle>,
    limits: QueueLimits,
    metrics: Arc<Metrics>,
    /// Where durable messages are written.
    store: Store,
    tasks: TaskTracker,
    /// Stops every queue task at shutdown.
    shutdown: CancellationToken,
    /// Message ids of queue messages.
    next_id: AtomicU64,
}

impl Queues {
    /// The broker's queues: those holding `recovered` messages (read back from
    /// `store` at start-up) exist at once, others are created on first use. Their
    /// tasks run on `tasks` until `shutdown`.
    pub fn new(
        limits: QueueLimits,
        metrics: Arc<Metrics>,
        store: Store,
        recovered: Vec<Recovered>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Queues> {
        let queues = Arc::new(Queues {
            queues: DashMap::new(),
            limits,
            metrics,
            store,
            tasks,
            shutdown,
            next_id: AtomicU64::new(1),
        });
        let mut by_queue: HashMap<String, VecDeque<QueuedMessage>> = HashMap::new();
        for r in recovered {
            let message = QueuedMessage {
                expires_at: r.record.expires_at,
                id: queues.message_id(),
                headers: r.record.headers,
                body: r.record.body,
                nacks: 0,
                redelivered: true,
                stored: Some(r.key),
            };
            by_queue
                .entry(r.record.queue)
                .or_default()
                .push_back(message);
        }
        for (name, waiting) in by_queue {
            tracing::info!(queue = %name, messages = waiting.len(), "recovered stored messages");
            queues
                .metrics
                .queue_messages
                .increment(waiting.len() as f64);
            queues
                .queues
                .insert(name.clone(), queues.spawn(&name, waiting));
        }
        queues
    }

    /// Writes what the store has pending and closes it; called at shutdown, after
    /// the queue tasks have stopped.
    pub async fn close_store(&self) {
        self.store.close().await;
    }

    /// Why the store stopped writing, if it has (a failed commit).
    pub fn store_failure(&self) -> Option<StoreError> {
        self.store.failure()
    }

    /// Whether every message to queue `name` is stored (`queues.durable`).
    fn is_durable(&self, name: &str) -> bool {
        let destination = format!("/queue/{name}");
        self.limits
            .durable
            .iter()
            .any(|p| crate::destination::pattern::matches_in("/queue/", p, &destination))
    }

    /// Starts the task of queue `name`, holding `waiting`.
    fn spawn(self: &Arc<Self>, name: &str, waiting: VecDeque<QueuedMessage>) -> QueueHandle {
        let (tx, rx) = command_channel();
        let queue = QueueActor {
            reserved: 0,
            name: name.to_owned(),
            idle_reclaim: self.limits.idle_reclaim,
            durable: self.is_durable(name),
            waiting,
            consumers: Vec::new(),
            next_consumer: 0,
            unacked: HashMap::new(),
            next_delivery: 1,
            limits: self.limits.clone(),
            queues: self.clone(),
            metrics: self.metrics.clone(),
            store: self.store.clone(),
        };
        self.metrics.queues.increment(1.0);
        self.tasks.spawn(queue.run(rx, self.shutdown.clone()));
        QueueHandle {
            name: name.into(),
            tx,
        }
    }

    /// The queue named `name` (the part after `/queue/`), created if needed.
    pub fn get(self: &Arc<Self>, name: &str) -> Result<QueueHandle, QueueError> {
        if let Some(q) = self.queues.get(name) {
            return Ok(q.clone());
        }
        if self.queues.len() >= self.limits.max_queues {
            return Err(QueueError::TooManyQueues);
        }
        let handle = self
            .queues
            .entry(name.to_owned())
            .or_insert_with(|| self.spawn(name, VecDeque::new()))
            .clone();
        Ok(handle)
    }

    fn message_id(&self) -> String {
        format!("qm-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Queues that exist right now.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Whether no queue exists.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Every queue's counts, asked of each queue task (at most `queues.max_queues`),
    /// sorted by name; a queue that does not answer within a second is left out.
    pub async fn stats(&self) -> Vec<QueueStats> {
        let asked: Vec<_> = self
            .queues
            .iter()
            .map(|q| {
                let (tx, rx) = oneshot::channel();
                q.value().stats(tx);
                rx
            })
            .collect();
        let mut stats = Vec::with_capacity(asked.len());
        for rx in asked {
            if let Ok(Ok(s)) = tokio::time::timeout(std::time::Duration::from_secs(1), rx).await {
                stats.push(s);
            }
        }
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    /// Removes queue `name` if `unused` says, with the map's entry locked, that
    /// nobody but the map holds its handle and no command is waiting. Returns
    /// whether it was removed: its task may then end, since no one can reach it.
    fn reclaim(&self, name: &str, unused: impl FnOnce() -> bool) -> bool {
        self.queues.remove_if(name, |_, _| unused()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
