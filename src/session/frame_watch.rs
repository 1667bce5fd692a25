//! Frames that have started and not finished.
//!
//! A frame must finish within `limits.frame_timeout_ms` of its first byte, and the
//! bytes of unfinished frames across all connections share one budget,
//! `limits.max_pending_frame_bytes`. Without these, a connection could hold a
//! half-sent 1 MiB frame for ever, and a few hundred of them hundreds of MiB.
//!
//! The watch is polled by the session's `select!` on every wake-up of the task,
//! right after the read, so it also sees bytes the WebSocket layer holds in a
//! message it has not finished, which never wake the read branch.

use super::ProtocolError;
use crate::admission::{Exhausted, Holder};
use crate::broker::Broker;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// One connection's unfinished frame: since when, and what it holds of the budget.
#[derive(Debug)]
pub(super) struct FrameWatch {
    broker: Arc<Broker>,
    /// Whose share of the budget the bytes are: the client's address.
    holder: [Holder; 1],
    timeout: Duration,
    /// When the unfinished frame was first seen.
    started: Option<Instant>,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Bytes taken from the budget.
    accounted: usize,
}

impl FrameWatch {
    pub(super) fn new(broker: Arc<Broker>, peer: IpAddr) -> Self {
        let timeout = broker.limits().frame_timeout();
        FrameWatch {
            broker,
            holder: [Holder::address(peer)],
            timeout,
            started: None,
            deadline: None,
            accounted: 0,
        }
    }

    /// A frame finished: the next one gets its own time.
    pub(super) fn frame_done(&mut self) {
        self.started = None;
        self.deadline = None;
    }

    /// Brings the budget to `pending` bytes and watches the clock; ready with the
    /// error that ends the connection, pending otherwise.
    pub(super) fn poll_check(
        &mut self,
        cx: &mut Context<'_>,
        pending: usize,
    ) -> Poll<ProtocolError> {
        let budget = &self.broker.pending_frames;
        if pending > self.accounted {
            match budget.take_for(&self.holder, pending - self.accounted) {
                Ok(()) => {}
                Err(Exhausted::All) => {
                    return Poll::Ready(ProtocolError::PendingFramesFull(budget.max()));
                }
                Err(Exhausted::Share) => {
                    return Poll::Ready(ProtocolError::PendingFramesShare(budget.share()));
                }
            }
        } else {
            budget.give_for(&self.holder, self.accounted - pending);
        }
        self.accounted = pending;
        if pending == 0 {
            self.frame_done();
            return Poll::Pending;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let timeout = self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(started + timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(ProtocolError::FrameTimeout(
                u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for FrameWatch {
    fn drop(&mut self) {
        self.broker
            .pending_frames
            .give_for(&self.holder, self.accounted);
    }
}
