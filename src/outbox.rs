//! A connection's outbox: what waits to be written to one client, bounded in bytes.
//!
//! Publishers and the session push; the connection's writer task drains. The channel
//! itself is unbounded, but every push is counted in bytes against
//! `limits.max_outbox_bytes`: the first push past the limit marks the client as a
//! slow consumer, refuses further pushes, and wakes the writer to cut it off. So a
//! client that stops reading costs at most its limit and never blocks a publisher.

use crate::codec::{Command, EncodedMessage};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};

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
}

impl Outgoing {
    /// Bytes this item adds to the outbox.
    pub fn cost(&self) -> usize {
        match self {
            Outgoing::Frame { bytes, .. } => bytes.len(),
            Outgoing::Message { message, .. } => message.len(),
            Outgoing::HeartBeatEvery(_) | Outgoing::Close => 0,
        }
    }
}

/// The outbox was over its limit: the client is a slow consumer and is being cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("outbox full: slow consumer")]
pub struct Overflow;

#[derive(Debug)]
struct Shared {
    queued: AtomicUsize,
    limit: usize,
    overflowed: AtomicBool,
    wake: Notify,
}

/// The sending side, cloned into every subscription of the connection.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
}

/// The writer's side.
#[derive(Debug)]
pub struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
}

/// A new outbox holding at most `limit` bytes (one item larger than the limit is
/// still accepted into an empty outbox, so large messages can be delivered).
pub fn outbox(limit: usize) -> (Outbox, OutboxReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        limit,
        overflowed: AtomicBool::new(false),
        wake: Notify::new(),
    });
    (
        Outbox {
            tx,
            shared: shared.clone(),
        },
        OutboxReceiver { rx, shared },
    )
}

impl Outbox {
    /// Queues `item`. Fails when the outbox is over its limit (the client is then
    /// marked as a slow consumer, and every later push fails too) or the connection
    /// is closing.
    pub fn push(&self, item: Outgoing) -> Result<(), Overflow> {
        if self.shared.overflowed.load(Ordering::Relaxed) {
            return Err(Overflow);
        }
        let cost = item.cost();
        let before = self.shared.queued.fetch_add(cost, Ordering::AcqRel);
        if before > 0 && before + cost > self.shared.limit {
            self.shared.queued.fetch_sub(cost, Ordering::AcqRel);
            self.shared.overflowed.store(true, Ordering::Release);
            self.shared.wake.notify_one();
            return Err(Overflow);
        }
        self.tx.send(item).map_err(|_| Overflow)
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
        self.tx.is_closed()
    }
}

impl OutboxReceiver {
    /// Waits for items and moves up to `max` of them into `items`; 0 means every
    /// sender is gone.
    pub async fn recv_many(&mut self, items: &mut Vec<Outgoing>, max: usize) -> usize {
        self.rx.recv_many(items, max).await
    }

    /// Gives back the bytes of items that have been written.
    pub fn written(&self, bytes: usize) {
        self.shared.queued.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// A handle that waits for overflow while the receiver is busy receiving.
    pub fn overflow_watch(&self) -> OverflowWatch {
        OverflowWatch {
            shared: self.shared.clone(),
        }
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
            let notified = self.shared.wake.notified();
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
        let mut items = Vec::new();
        assert_eq!(rx.recv_many(&mut items, 10).await, 2);
        rx.written(100);
        assert_eq!(tx.push(frame(1)), Err(Overflow));
    }

    #[tokio::test]
    async fn one_large_item_fits_an_empty_outbox() {
        let (tx, _rx) = outbox(10);
        tx.push(frame(50)).unwrap();
        assert_eq!(tx.push(frame(1)), Err(Overflow));
    }

    #[test]
    fn pushing_after_the_writer_is_gone_fails() {
        let (tx, rx) = outbox(10);
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.push(frame(1)), Err(Overflow));
    }
}
