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

use super::{Flow, ProtocolError, Session};
use crate::command::{self, Transaction};
use std::collections::HashMap;

/// A frame held by a transaction until COMMIT.
#[derive(Debug)]
pub(super) enum Enlisted {
    /// A SEND.
    Send(command::Send),
    /// An ACK or NACK.
    Ack(command::Ack),
}

impl Enlisted {
    /// What holding it costs in memory.
    fn cost(&self) -> usize {
        match self {
            Enlisted::Send(s) => s.held_cost(),
            Enlisted::Ack(a) => a.held_cost(),
        }
    }
}

/// Frames held by one open transaction.
#[derive(Debug, Default)]
pub(super) struct Held {
    frames: Vec<Enlisted>,
    /// What the frames cost, by [`Enlisted::cost`].
    bytes: usize,
}

impl Session {
    pub(super) fn begin(&mut self, begin: Transaction) -> Result<(), ProtocolError> {
        let id = begin.id;
        if self.transactions.contains_key(&id) {
            return Err(ProtocolError::Transaction(format!(
                "transaction {id:?} is already open"
            )));
        }
        let max = self.broker.limits().max_open_transactions;
        if self.transactions.len() >= max {
            return Err(ProtocolError::Transaction(format!(
                "at most {max} open transactions per connection (limits.max_open_transactions)"
            )));
        }
        self.transactions.insert(id, Held::default());
        Ok(())
    }

    /// Checks a SEND/ACK/NACK without any effect, as if it were applied now.
    fn check_held(&self, frame: &Enlisted) -> Result<(), ProtocolError> {
        match frame {
            Enlisted::Send(s) => self.route(s).map(|_| ()),
            Enlisted::Ack(a) => self.check_ack(a).map(|_| ()),
        }
    }

    /// Holds a SEND/ACK/NACK that names transaction `id`, once it is checked.
    pub(super) fn enlist(&mut self, frame: Enlisted, id: &str) -> Result<(), ProtocolError> {
        if !self.transactions.contains_key(id) {
            return Err(ProtocolError::Transaction(format!(
                "unknown transaction {id:?}"
            )));
        }
        self.check_held(&frame)?;
        // The receipt, if any, was for enlisting; COMMIT does not answer it again.
        let frame = match frame {
            Enlisted::Send(s) => Enlisted::Send(s.held()),
            Enlisted::Ack(a) => Enlisted::Ack(a.held()),
        };
        let cost = frame.cost();
        let max = self.broker.limits().max_transaction_bytes;
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

    pub(super) async fn commit(&mut self, commit: Transaction) -> Result<(), ProtocolError> {
        let held = self.take_transaction(&commit.id)?;
        // 1. Everything still allowed, and how many messages each queue must take.
        let mut per_queue: HashMap<String, usize> = HashMap::new();
        for f in &held.frames {
            self.check_held(f)?;
            if let Enlisted::Send(s) = f
                && let Ok(route) = self.route(s)
                && let Some(name) = route.queue_name()
            {
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
        // A cluster node that cannot reach NATS would refuse some frames midway:
        // refuse the whole COMMIT before anything takes effect. (The link may still
        // drop during the few microseconds below; then the ERROR names the frame.)
        if let Err(crate::engine::Unready::Cluster(why)) = self.broker.engine.ready() {
            return Err(crate::engine::Refused::Unavailable(why).into());
        }
        // 3. Apply in order. Everything is handed over first, then the answers are
        // awaited, so durable SENDs of one transaction share group commits.
        let mut answers = Vec::new();
        for f in held.frames {
            let flow = match f {
                Enlisted::Send(s) => {
                    let queue = self.route(&s)?.queue_name().map(str::to_owned);
                    let reserved = queue.and_then(|name| reservations.get_mut(&name));
                    self.send_with(s, reserved).await?
                }
                Enlisted::Ack(a) => self.ack(&a).await?,
            };
            if let Flow::Pending(answer) = flow {
                answers.push(answer);
            }
        }
        drop(reservations);
        // 4. The answers: for durable messages, once they are on disk. An HTTP
        // route's failure has been told on the sender's error queue already:
        // it ends neither the COMMIT nor the session.
        for mut answer in answers {
            match crate::queue::answered(&mut answer).await {
                Ok(()) | Err(crate::queue::QueueError::SenderTold(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub(super) fn abort(&mut self, abort: Transaction) -> Result<(), ProtocolError> {
        self.take_transaction(&abort.id).map(|_| ())
    }
}
