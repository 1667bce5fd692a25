//! BEGIN, COMMIT, ABORT: SEND, ACK and NACK frames that name a transaction are
//! held until COMMIT applies them in order; ABORT or a disconnect drops them, so
//! nothing of such a transaction takes effect.
//!
//! Every frame is checked when it joins (rights, destination, limits, ack id), so a
//! frame that would be refused is refused then, with an ERROR. COMMIT is all or
//! nothing: it checks every held frame again (a subscription may have gone since),
//! reserves room in every queue the transaction sends to, and only when all of that
//! succeeded applies the frames.
//!
//! Bounded per connection: `limits.max_open_transactions` open transactions, and
//! `limits.max_transaction_bytes` of held frames across them, counting whole frames
//! (headers too, not only bodies). Past either, ERROR and close.

use super::send::Route;
use super::{Flow, ProtocolError, Session};
use crate::codec::{Command, Frame};
use std::collections::HashMap;

/// Frames held by one open transaction.
#[derive(Debug, Default)]
pub(super) struct Held {
    frames: Vec<Frame>,
    /// What the frames cost, by [`held_cost`].
    bytes: usize,
}

/// What holding `frame` costs in memory: its body, every header name and value with
/// the bookkeeping of their two `String`s, and the frame itself.
pub(super) fn held_cost(frame: &Frame) -> usize {
    const PER_HEADER: usize = 2 * std::mem::size_of::<String>();
    std::mem::size_of::<Frame>()
        + frame.body.len()
        + frame
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + PER_HEADER)
            .sum::<usize>()
}

impl Session {
    pub(super) fn begin(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let id = self.required(frame, "transaction")?;
        if self.transactions.contains_key(id) {
            return Err(ProtocolError::Transaction(format!(
                "transaction {id:?} is already open"
            )));
        }
        let max = self.broker.config.limits.max_open_transactions;
        if self.transactions.len() >= max {
            return Err(ProtocolError::Transaction(format!(
                "at most {max} open transactions per connection (limits.max_open_transactions)"
            )));
        }
        self.transactions.insert(id.to_owned(), Held::default());
        Ok(())
    }

    /// Checks a SEND/ACK/NACK without any effect, as if it were applied now.
    fn check_held(&self, frame: &Frame) -> Result<(), ProtocolError> {
        match frame.command {
            Command::Send => self.route(frame).map(|_| ()),
            _ => self.check_ack(frame).map(|_| ()),
        }
    }

    /// Holds a SEND/ACK/NACK that names a transaction, once it is checked.
    pub(super) fn enlist(&mut self, mut frame: Frame, id: &str) -> Result<(), ProtocolError> {
        if !self.transactions.contains_key(id) {
            return Err(ProtocolError::Transaction(format!(
                "unknown transaction {id:?}"
            )));
        }
        self.check_held(&frame)?;
        frame.headers.remove("transaction");
        // The receipt, if any, was for enlisting; COMMIT does not answer it again.
        frame.headers.remove("receipt");
        let cost = held_cost(&frame);
        let max = self.broker.config.limits.max_transaction_bytes;
        if self.transaction_bytes + cost > max {
            return Err(ProtocolError::TransactionTooLarge(max));
        }
        self.transaction_bytes += cost;
        if let Some(held) = self.transactions.get_mut(id) {
            held.bytes += cost;
            held.frames.push(frame);
        }
        Ok(())
    }

    /// Removes an open transaction, giving back what it held.
    fn take_transaction(&mut self, id: &str) -> Result<Held, ProtocolError> {
        let held = self
            .transactions
            .remove(id)
            .ok_or_else(|| ProtocolError::Transaction(format!("unknown transaction {id:?}")))?;
        self.transaction_bytes -= held.bytes;
        Ok(held)
    }

    pub(super) async fn commit(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let id = self.required(frame, "transaction")?.to_owned();
        let held = self.take_transaction(&id)?;
        // 1. Everything still allowed, and how many messages each queue must take.
        let mut per_queue: HashMap<String, usize> = HashMap::new();
        for f in &held.frames {
            self.check_held(f)?;
            if let (Command::Send, Ok(Route::Queue(name))) = (f.command, self.route(f)) {
                *per_queue.entry(name.to_owned()).or_default() += 1;
            }
        }
        // 2. Room in every queue, before anything takes effect. Unused room is given
        // back when the reservations drop, whatever happens below.
        let mut reservations = HashMap::new();
        for (name, n) in per_queue {
            let queue = self.broker.engine.queue(&name)?;
            reservations.insert(name, queue.reserve(n).await?);
        }
        // 3. Apply in order. Everything is handed over first, then the answers are
        // awaited, so durable SENDs of one transaction share group commits.
        let mut answers = Vec::new();
        for f in held.frames {
            let flow = match f.command {
                Command::Send => {
                    let queue = match self.route(&f)? {
                        Route::Queue(name) => Some(name.to_owned()),
                        _ => None,
                    };
                    let reserved = queue.and_then(|name| reservations.get_mut(&name));
                    self.send_with(f, reserved)?
                }
                _ => self.ack(&f)?,
            };
            if let Flow::Pending(answer) = flow {
                answers.push(answer);
            }
        }
        drop(reservations);
        // 4. The answers: for durable messages, once they are on disk.
        for mut answer in answers {
            crate::queue::answered(&mut answer).await?;
        }
        Ok(())
    }

    pub(super) fn abort(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let id = self.required(frame, "transaction")?.to_owned();
        self.take_transaction(&id).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_count_in_the_held_cost() {
        let bare = held_cost(&Frame::new(Command::Send));
        let body = held_cost(&Frame::new(Command::Send).body(vec![0u8; 1000]));
        assert_eq!(body - bare, 1000);
        let mut f = Frame::new(Command::Send);
        for h in 0..61 {
            f = f.header(format!("x-{h}"), "v".repeat(8000));
        }
        assert!(held_cost(&f) > 61 * 8000);
    }
}
