//! A queue consumed in the broker's own process, the way a backend consumes a
//! queue route over STOMP: competing with every other consumer of the queue
//! (on any node of a cluster), each message acked or nacked. For handlers whose
//! work comes through a queue (the trading market of a cluster, an embedder's
//! worker); `AppContext::consume` makes one.

use crate::codec::{Decoded, Decoder, Frame, Headers, Limits, SubscriptionHeader, Version};
use crate::command::AckMode;
use crate::outbox::{OutboxReceiver, Outgoing, outbox};
use crate::queue::{Consumer, QueueError, QueueHandle, parse_ack_id};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// Bytes of deliveries waiting for the consumer to read them.
const OUTBOX_BYTES: usize = 8 * 1024 * 1024;

/// One message given to an in-process consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message's headers (`destination`, `message-id`, and the sender's).
    pub headers: Headers,
    /// Its body.
    pub body: Bytes,
    delivery: u64,
}

/// A consumer of one queue, in this process.
#[derive(Debug)]
pub struct QueueConsumer {
    queue: QueueHandle,
    session: u64,
    id: String,
    rx: OutboxReceiver,
    decoder: Decoder,
    buf: BytesMut,
    ready: VecDeque<Delivery>,
}

impl QueueConsumer {
    /// Subscribes consumer `session` (a session id of its own) to `queue`, with
    /// at most `prefetch` unacked deliveries.
    pub(crate) async fn start(queue: QueueHandle, session: u64, prefetch: usize) -> QueueConsumer {
        let (outbox, rx) = outbox(OUTBOX_BYTES);
        let id = "in-process".to_owned();
        queue
            .subscribe(Consumer {
                session,
                id: id.clone(),
                header: SubscriptionHeader::new(&id, Version::V1_2),
                ack: AckMode::ClientIndividual,
                prefetch: prefetch.max(1),
                outbox,
            })
            .await;
        QueueConsumer {
            queue,
            session,
            id,
            rx,
            // What the queue hands over was checked on the way in.
            decoder: Decoder::new(Limits {
                max_frame_bytes: usize::MAX / 2,
                max_header_count: usize::MAX / 2,
                max_header_line: usize::MAX / 2,
                max_body_bytes: usize::MAX / 2,
            }),
            buf: BytesMut::new(),
            ready: VecDeque::new(),
        }
    }

    /// The next delivery; `None` once the queue is gone (shutdown).
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(d) = self.ready.pop_front() {
                return Some(d);
            }
            let items = self.rx.recv_all().await;
            if items.is_empty() {
                return None;
            }
            let mut cost = 0;
            for item in items {
                cost += item.cost();
                if let Outgoing::Message { message, .. } = item {
                    for chunk in message.chunks() {
                        self.buf.extend_from_slice(chunk);
                    }
                }
            }
            self.rx.written(cost);
            while let Ok(Some(decoded)) = self.decoder.decode(&mut self.buf) {
                if let Decoded::Frame(frame) = decoded
                    && let Some(d) = delivery(frame)
                {
                    self.ready.push_back(d);
                }
            }
        }
    }

    /// Acknowledges `d`: the queue forgets it.
    pub async fn ack(&self, d: &Delivery) -> Result<(), QueueError> {
        self.settle(d, false).await
    }

    /// Gives `d` back: it is delivered again (to this or another consumer),
    /// or dead-lettered past `queues.max_redeliveries`.
    pub async fn nack(&self, d: &Delivery) -> Result<(), QueueError> {
        self.settle(d, true).await
    }

    async fn settle(&self, d: &Delivery, nack: bool) -> Result<(), QueueError> {
        match self.queue.ack(self.session, d.delivery, nack, true).await {
            Some(mut answer) => crate::queue::answered(&mut answer).await,
            None => Ok(()),
        }
    }
}

impl Drop for QueueConsumer {
    /// Unacked deliveries go back to the queue.
    fn drop(&mut self) {
        self.queue.unsubscribe(self.session, &self.id);
    }
}

/// The delivery a MESSAGE frame is, if it carries a queue's ack id.
fn delivery(frame: Frame) -> Option<Delivery> {
    let (_, delivery) = parse_ack_id(frame.headers.get("ack")?)?;
    Some(Delivery {
        delivery,
        body: frame.body,
        headers: frame.headers,
    })
}
