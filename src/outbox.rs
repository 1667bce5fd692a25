//! A connection's outbox: what waits to be written to one client, bounded in bytes.
//!
//! Publishers and the session push; the connection's writer task takes everything
//! queued at once. The queue has no item limit, but every push is counted in bytes against
//! `limits.max_outbox_bytes`: the first push past the limit marks the client as a
//! slow consumer, refuses further pushes, and wakes the writer to cut it off. So a
//! client that stops reading costs at most its limit and never blocks a publisher.

use crate::codec::{Command, EncodedMessage};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// One item for the writer.
#[derive(Debug)]
pub enum Outgoing {
    /// A frame the session encoded (CONNECTED, RECEIPT, ERROR).
    Frame {
        /// The encoded frame.
        bytes: Bytes,
        /// Its command, for metrics.
        command: Command,
    },
    /// A MESSAGE for one of the connection's subscriptions.
    Message {
        /// The encoded frame, sharing body and headers with the other deliveries.
        message: EncodedMessage,
        /// When the message was published, for the latency histogram.
        published: Instant,
    },
    /// From now on send a heart-beat when nothing was written for this long.
    HeartBeatEvery(Duration),
    /// Write everything before this, then close the connection cleanly.
    Close,
    /// Write everything before this, then close the connection saying the node
    /// restarts (WebSocket close code 1012), so the client reconnects elsewhere.
    Restart,
}

impl Outgoing {
    /// Bytes this item adds to the outbox.
    pub fn cost(&self) -> usize {
        match self {
            Outgoing::Frame { bytes, .. } => bytes.len(),
            Outgoing::Message { message, .. } => message.len(),
            Outgoing::HeartBeatEvery(_) | Outgoing::Close | Outgoing::Restart => 0,
        }
    }
}

/// The outbox was over its limit: the client is a slow consumer and is being cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbox full: slow consumer")]
pub struct Overflow;

/// What [`Outbox::push_if_room`] did with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// It is queued.
    Queued,
    /// It did not fit; it needs this many bytes. Nothing changed.
    Full(usize),
    /// The client is being cut off or has gone.
    Gone,
}

#[derive(Debug, Default)]
struct Items {
    items: VecDeque<Outgoing>,
    /// False once the writer is gone: pushes fail.
    receiver_alive: bool,
}

#[derive(Debug)]
struct Shared {
    /// Held only to push one item or to swap the whole queue out; never across `.await`.
    queue: Mutex<Items>,
    queued: AtomicUsize,
    limit: usize,
    senders: AtomicUsize,
    overflowed: AtomicBool,
    /// Wakes the writer when the queue becomes non-empty or the last sender goes.
    items_ready: Notify,
    /// Wakes the writer when the outbox overflows.
    overflow: Notify,
    /// Wakes tasks waiting for room ([`Outbox::room_for`]) when bytes were
    /// written or the connection closed; `room_waiters` counts them, so the
    /// writer notifies only when someone waits.
    drained: Notify,
    room_waiters: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Items> {
        // A panic while holding this lock cannot leave the queue half-updated.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side, cloned into every subscription of the connection.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The writer's side.
#[derive(Debug)]
pub struct OutboxReceiver {
    shared: Arc<Shared>,
}

/// A new outbox holding at most `limit` bytes (one item larger than the limit is
/// still accepted into an empty outbox, so large messages can be delivered).
///
/// An idle outbox holds no allocation: the writer takes the whole queue at once.
pub fn outbox(limit: usize) -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Items {
            items: VecDeque::new(),
            receiver_alive: true,
        }),
        queued: AtomicUsize::new(0),
        limit,
        senders: AtomicUsize::new(1),
        overflowed: AtomicBool::new(false),
        items_ready: Notify::new(),
        overflow: Notify::new(),
        drained: Notify::new(),
        room_waiters: AtomicUsize::new(0),
    });
    (
        Outbox {
            shared: shared.clone(),
        },
        OutboxReceiver { shared },
    )
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Outbox {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.items_ready.notify_one();
        }
    }
}

impl Outbox {
    /// Queues `item`. Fails when the outbox is over its limit (the client is then
    /// marked as a slow consumer, and every later push fails too) or the connection
    /// is closing.
    pub fn push(&self, item: Outgoing) -> Result<(), Overflow> {
        match self.offer(item, true) {
            Offered::Queued => Ok(()),
            Offered::Full(_) | Offered::Gone => Err(Overflow),
        }
    }

    /// Queues `item` only if it fits under the limit now (or the outbox is
    /// empty), without marking the client as a slow consumer when it does not:
    /// for messages that can wait elsewhere (a kept destination's log).
    pub fn push_if_room(&self, item: Outgoing) -> Offered {
        self.offer(item, false)
    }

    /// Queues `item` if it fits; past the limit, marks the client as a slow
    /// consumer when `cut_off`.
    fn offer(&self, item: Outgoing, cut_off: bool) -> Offered {
        let shared = &*self.shared;
        if shared.overflowed.load(Ordering::Relaxed) {
            return Offered::Gone;
        }
        let cost = item.cost();
        let before = shared.queued.fetch_add(cost, Ordering::AcqRel);
        if before > 0 && before + cost > shared.limit {
            shared.queued.fetch_sub(cost, Ordering::AcqRel);
            if !cut_off {
                return Offered::Full(cost);
            }
            shared.overflowed.store(true, Ordering::Release);
            shared.overflow.notify_one();
            return Offered::Gone;
        }
        let was_empty = {
            let mut q = shared.lock();
            if !q.receiver_alive {
                drop(q);
                shared.queued.fetch_sub(cost, Ordering::AcqRel);
                return Offered::Gone;
            }
            let was_empty = q.items.is_empty();
            q.items.push_back(item);
            was_empty
        };
        if was_empty {
            // notify_one keeps a permit if the writer is not waiting yet, so no wake-up is lost.
            shared.items_ready.notify_one();
        }
        Offered::Queued
    }

    /// Whether the client has been marked as a slow consumer.
    pub fn is_overflowed(&self) -> bool {
        self.shared.overflowed.load(Ordering::Acquire)
    }

    /// Bytes currently queued.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Whether the writer has gone (the connection is closed).
    pub fn is_closed(&self) -> bool {
        !self.shared.lock().receiver_alive
    }

    /// The outbox's limit in bytes (`limits.max_outbox_bytes`).
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// Waits until `need` more bytes fit under `budget` (or the outbox is empty:
    /// one item of any size fits an empty outbox). False when the client is cut
    /// off or gone, so nothing more should be queued.
    pub async fn room_for(&self, need: usize, budget: usize) -> bool {
        let shared = &*self.shared;
        shared.room_waiters.fetch_add(1, Ordering::AcqRel);
        let has_room = async {
            loop {
                let drained = shared.drained.notified();
                tokio::pin!(drained);
                // Registered before the checks, so a write in between still wakes it.
                drained.as_mut().enable();
                if self.is_overflowed() || self.is_closed() {
                    return false;
                }
                let queued = self.queued_bytes();
                if queued == 0 || queued + need <= budget {
                    return true;
                }
                drained.await;
            }
        }
        .await;
        shared.room_waiters.fetch_sub(1, Ordering::AcqRel);
        has_room
    }

    fn wake_room_waiters(shared: &Shared) {
        if shared.room_waiters.load(Ordering::Acquire) > 0 {
            shared.drained.notify_waiters();
        }
    }
}

impl OutboxReceiver {
    /// Waits until something is queued and takes all of it. An empty queue means
    /// every sender is gone.
    pub async fn recv_all(&mut self) -> VecDeque<Outgoing> {
        loop {
            let items = std::mem::take(&mut self.shared.lock().items);
            if !items.is_empty() || self.shared.senders.load(Ordering::Acquire) == 0 {
                return items;
            }
            self.shared.items_ready.notified().await;
        }
    }

    /// Gives back the bytes of items that have been written.
    pub fn written(&self, bytes: usize) {
        self.shared.queued.fetch_sub(bytes, Ordering::AcqRel);
        Outbox::wake_room_waiters(&self.shared);
    }

    /// A handle that waits for overflow while the receiver is busy receiving.
    pub fn overflow_watch(&self) -> OverflowWatch {
        OverflowWatch {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        {
            let mut q = self.shared.lock();
            q.receiver_alive = false;
            q.items = VecDeque::new();
        }
        Outbox::wake_room_waiters(&self.shared);
    }
}

/// Waits for an outbox to overflow.
#[derive(Debug, Clone)]
pub struct OverflowWatch {
    shared: Arc<Shared>,
}

impl OverflowWatch {
    /// Resolves when the outbox overflows (at once if it already has).
    pub async fn overflowed(&self) {
        loop {
            let notified = self.shared.overflow.notified();
            if self.shared.overflowed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Outgoing {
        Outgoing::Frame {
            bytes: Bytes::from(vec![b'x'; n]),
            command: Command::Receipt,
        }
    }

    #[tokio::test]
    async fn refuses_past_the_limit_and_stays_refusing() {
        let (tx, mut rx) = outbox(100);
        tx.push(frame(60)).unwrap();
        tx.push(frame(40)).unwrap();
        assert_eq!(tx.queued_bytes(), 100);
        assert_eq!(tx.push(frame(1)), Err(Overflow));
        assert!(tx.is_overflowed());
        rx.overflow_watch().overflowed().await;
        // Even after draining, a slow consumer stays cut off.
        assert_eq!(rx.recv_all().await.len(), 2);
        rx.written(100);
        assert_eq!(tx.push(frame(1)), Err(Overflow));
    }

    #[test]
    fn an_offer_that_does_not_fit_leaves_the_client_connected() {
        let (tx, _rx) = outbox(100);
        assert_eq!(tx.push_if_room(frame(60)), Offered::Queued);
        assert_eq!(tx.push_if_room(frame(50)), Offered::Full(50));
        assert!(!tx.is_overflowed());
        assert_eq!(tx.queued_bytes(), 60);
        assert_eq!(tx.push_if_room(frame(40)), Offered::Queued);
        // A push past the limit still cuts it off, and an offer then finds it gone.
        assert_eq!(tx.push(frame(1)), Err(Overflow));
        assert_eq!(tx.push_if_room(frame(1)), Offered::Gone);
    }

    #[tokio::test]
    async fn one_large_item_fits_an_empty_outbox() {
        let (tx, _rx) = outbox(10);
        tx.push(frame(50)).unwrap();
        assert_eq!(tx.push(frame(1)), Err(Overflow));
    }

    // Paused time: the sleeps only let the waiting task run, in a fixed order.
    #[tokio::test(start_paused = true)]
    async fn the_writer_wakes_for_pushes_and_ends_when_every_sender_is_gone() {
        let (tx, mut rx) = outbox(1000);
        let tx2 = tx.clone();
        let waiter = tokio::spawn(async move {
            let first = rx.recv_all().await.len();
            let second = rx.recv_all().await.len();
            let last = rx.recv_all().await.len();
            (first, second, last)
        });
        tx.push(frame(1)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx2.push(frame(1)).unwrap();
        tx2.push(frame(1)).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tx);
        drop(tx2);
        assert_eq!(waiter.await.unwrap(), (1, 2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_room_waiter_wakes_when_bytes_are_written_or_the_writer_goes() {
        let (tx, mut rx) = outbox(100);
        tx.push(frame(80)).unwrap();
        // 30 more do not fit under a budget of 100 until the 80 are written.
        let waiting = tx.clone();
        let room = tokio::spawn(async move { waiting.room_for(30, 100).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!room.is_finished());
        assert_eq!(rx.recv_all().await.len(), 1);
        rx.written(80);
        assert!(room.await.unwrap());
        // An empty outbox has room for anything.
        assert!(tx.room_for(500, 100).await);
        tx.push(frame(90)).unwrap();
        let waiting = tx.clone();
        let room = tokio::spawn(async move { waiting.room_for(30, 100).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert!(!room.await.unwrap(), "the connection went");
    }

    #[test]
    fn pushing_after_the_writer_is_gone_fails() {
        let (tx, rx) = outbox(10);
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.push(frame(1)), Err(Overflow));
    }
}
