//! Replaying kept history to one subscriber at the pace it reads.
//!
//! A SUBSCRIBE with `x-stream-offset` gets, at once and under the lock that orders
//! replays against live delivery, as much of its replay as fits in half its outbox
//! (`limits.max_outbox_bytes`). If more is left, each destination not finished is
//! held for the subscriber ([`Subscriber::replay`]): live messages of it
//! skip this subscriber and wait in the history, where the replay will find them.
//! A task then sends the rest as the client's outbox drains, reading each
//! destination's log under the lock its publishers deliver under, and releases the
//! destination under that same lock once it has sent the newest message: the next
//! live message goes to the subscriber directly. So a client can ask for more than
//! its outbox holds without being cut off, with no gap and no duplicate at the
//! seam, and a client that does not read holds only its own outbox.

use super::history::Log;
use super::local::delivery;
use crate::codec::MessageTemplate;
use crate::destination::RESERVED;
use crate::outbox::Outgoing;
use crate::registry::Subscriber;
use dashmap::DashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// Where a replay goes on in one destination's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cursor {
    /// The next offset to send.
    pub(super) offset: u64,
    /// The next message sent says something before it is gone.
    pub(super) gap: bool,
}

/// What one turn of a replay came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Everything kept has been sent.
    Done,
    /// The outbox is full for now: go on from the cursor once this many more
    /// bytes fit.
    More(Cursor, usize),
    /// The client is being cut off or has gone.
    Gone,
}

/// Bytes of replay one subscriber may have waiting in its outbox: half of it,
/// so live messages of its other subscriptions still fit beside.
pub(super) fn budget(sub: &Subscriber) -> usize {
    (sub.outbox.limit() / 2).max(1)
}

/// Sends `destination`'s kept messages from `cursor` on while they fit under
/// `budget`. The caller holds the log (publishers to it wait).
pub(super) fn send_some(
    destination: &str,
    log: &Log,
    sub: &Subscriber,
    cursor: Cursor,
    budget: usize,
) -> Step {
    let (index, hole) = log.position(cursor.offset);
    let mut gap = cursor.gap || hole;
    for kept in log.from(index) {
        let offset = kept.offset.to_string();
        let shared = [
            ("destination", destination),
            ("message-id", kept.message_id.as_str()),
            ("x-stream-offset", offset.as_str()),
        ]
        .into_iter()
        .chain(gap.then_some(("x-stream-gap", "true")))
        .chain(kept.headers.iter().filter(|(k, _)| !RESERVED.contains(k)));
        let template = MessageTemplate::new(shared, kept.body.clone());
        let message = delivery(sub, &template, &kept.message_id);
        let queued = sub.outbox.queued_bytes();
        if queued > 0 && queued + message.len() > budget {
            let next = Cursor {
                offset: kept.offset,
                gap,
            };
            return Step::More(next, message.len());
        }
        let pushed = sub.outbox.push(Outgoing::Message {
            message,
            published: Instant::now(),
        });
        if pushed.is_err() {
            return Step::Gone;
        }
        gap = false;
    }
    Step::Done
}

/// Sends the rest of a replay as `sub`'s outbox drains: `pending` holds each
/// destination not finished (held for `sub`), its cursor and the bytes its next
/// message needs. Ends when done, or when the subscription or client is gone.
pub(super) async fn pace(
    history: Arc<DashMap<String, Log>>,
    sub: Arc<Subscriber>,
    mut pending: VecDeque<(String, Cursor, usize)>,
) {
    let budget = budget(&sub);
    while let Some((destination, mut cursor, mut need)) = pending.pop_front() {
        loop {
            if sub.replay.is_cancelled() || !sub.outbox.room_for(need, budget).await {
                return;
            }
            // Read under the log's lock: no publisher of the destination is
            // between keeping a message and delivering it.
            // Excluding an UNSUBSCRIBE: nothing is queued after its RECEIPT.
            let step = match history.get(&destination) {
                Some(log) => sub.replay.release_after(&destination, || {
                    let step = send_some(&destination, &log, &sub, cursor, budget);
                    let done = step == Step::Done;
                    (step, done)
                }),
                None => sub
                    .replay
                    .release_after(&destination, || (Step::Done, true)),
            }
            .unwrap_or(Step::Gone);
            match step {
                Step::Done => break,
                Step::More(next, bytes) => (cursor, need) = (next, bytes),
                Step::Gone => return,
            }
        }
    }
}
