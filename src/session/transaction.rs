//! BEGIN, COMMIT, ABORT: SEND, ACK and NACK frames that name a transaction are
//! held until COMMIT applies them in order; ABORT or a disconnect drops them, so
//! nothing of such a transaction takes effect.
//!
//! Bounded: at most [`MAX_OPEN`] open transactions per session and
//! [`MAX_BYTES`] of held frames per transaction; past either, ERROR and close.

use super::{Flow, ProtocolError, Session};
use crate::codec::{Command, Frame};

/// Open transactions one session may have.
pub const MAX_OPEN: usize = 16;
/// Bytes of bodies one transaction may hold before COMMIT.
pub const MAX_BYTES: usize = 8 * 1024 * 1024;

/// Frames held by one open transaction.
#[derive(Debug, Default)]
pub(super) struct Held {
    frames: Vec<Frame>,
    bytes: usize,
}

impl Session {
    pub(super) fn begin(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let id = self.required(frame, "transaction")?;
        if self.transactions.contains_key(id) {
            return Err(ProtocolError::Transaction(format!(
                "transaction {id:?} is already open"
            )));
        }
        if self.transactions.len() >= MAX_OPEN {
            return Err(ProtocolError::Transaction(format!(
                "at most {MAX_OPEN} open transactions per connection"
            )));
        }
        self.transactions.insert(id.to_owned(), Held::default());
        Ok(())
    }

    /// Holds a SEND/ACK/NACK that names a transaction.
    pub(super) fn enlist(&mut self, mut frame: Frame, id: &str) -> Result<(), ProtocolError> {
        let held = self
            .transactions
            .get_mut(id)
            .ok_or_else(|| ProtocolError::Transaction(format!("unknown transaction {id:?}")))?;
        held.bytes += frame.body.len();
        if held.bytes > MAX_BYTES {
            return Err(ProtocolError::Transaction(format!(
                "transaction {id:?} holds more than {MAX_BYTES} bytes"
            )));
        }
        frame.headers.remove("transaction");
        // The receipt, if any, was for enlisting; COMMIT does not answer it again.
        frame.headers.remove("receipt");
        held.frames.push(frame);
        Ok(())
    }

    pub(super) async fn commit(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let id = self.required(frame, "transaction")?;
        let held = self
            .transactions
            .remove(id)
            .ok_or_else(|| ProtocolError::Transaction(format!("unknown transaction {id:?}")))?;
        // Everything is handed over in order first, then the answers are awaited, so
        // durable SENDs of one transaction share group commits.
        let mut answers = Vec::new();
        for f in held.frames {
            let flow = match f.command {
                Command::Send => self.send(f)?,
                _ => self.ack(&f)?,
            };
            if let Flow::Pending(answer) = flow {
                answers.push(answer);
            }
        }
        for mut answer in answers {
            crate::queue::answered(&mut answer).await?;
        }
        Ok(())
    }

    pub(super) fn abort(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let id = self.required(frame, "transaction")?;
        self.transactions
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| ProtocolError::Transaction(format!("unknown transaction {id:?}")))
    }
}
