//! Typed client commands: a decoded [`Frame`] is turned once into one of these,
//! with every header the command needs checked here, in one place per command.
//! Session handlers take the typed value and never read a header string.
//!
//! One file per command family, as the session's handlers are split:
//! [`connect`], [`send`], [`subscribe`] (SUBSCRIBE, UNSUBSCRIBE, ACK, NACK) and
//! [`transaction`] (BEGIN, COMMIT, ABORT).

pub mod connect;
pub mod send;
pub mod subscribe;
pub mod transaction;

pub use connect::Connect;
pub use send::Send;
pub use subscribe::{Ack, AckMode, StreamOffset, Subscribe, Unsubscribe};
pub use transaction::Transaction;

use crate::codec::{Command, Frame, Headers, Version};
use thiserror::Error;

/// Why a frame is not a valid command; each becomes an ERROR naming the problem.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CommandError {
    /// A required header is absent.
    #[error("missing required header '{header}' in {command}")]
    MissingHeader {
        /// The frame's command.
        command: Command,
        /// The header.
        header: &'static str,
    },
    /// No common protocol version.
    #[error("supported protocol versions are 1.0,1.1,1.2")]
    UnsupportedVersion,
    /// The heart-beat header is not two comma-separated integers.
    #[error("invalid heart-beat header {0:?}")]
    BadHeartBeat(String),
    /// An `ack` header value that is not a STOMP ack mode.
    #[error("invalid ack mode {0:?}: use auto, client or client-individual")]
    BadAckMode(String),
    /// `prefetch-count` is not a positive integer.
    #[error("invalid prefetch-count {0:?}")]
    BadPrefetch(String),
    /// `x-stream-offset` is none of the values RabbitMQ's stream support uses.
    #[error("invalid x-stream-offset {0:?}: use next, last, first, offset=N or timestamp=SECONDS")]
    BadStreamOffset(String),
    /// A server frame sent by a client.
    #[error("{0} frames are sent by servers, not clients")]
    ServerFrame(Command),
}

impl CommandError {
    /// A short, bounded label for `stompede_errors_sent_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            CommandError::MissingHeader { .. } => "missing_header",
            CommandError::UnsupportedVersion => "unsupported_version",
            CommandError::BadHeartBeat(_)
            | CommandError::BadAckMode(_)
            | CommandError::BadPrefetch(_)
            | CommandError::BadStreamOffset(_) => "bad_header",
            CommandError::ServerFrame(_) => "unexpected_frame",
        }
    }
}

/// A frame from a client, checked.
#[derive(Debug)]
pub enum ClientCommand {
    /// CONNECT or STOMP.
    Connect(Connect),
    /// SEND.
    Send(Send),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// ACK or NACK.
    Ack(Ack),
    /// BEGIN.
    Begin(Transaction),
    /// COMMIT.
    Commit(Transaction),
    /// ABORT.
    Abort(Transaction),
    /// DISCONNECT.
    Disconnect,
}

impl ClientCommand {
    /// Checks `frame` as a command of a session speaking `version` (the header
    /// rules of ACK, SUBSCRIBE and UNSUBSCRIBE differ per version; before CONNECT
    /// any version will do).
    pub fn from_frame(frame: Frame, version: Version) -> Result<ClientCommand, CommandError> {
        let Frame {
            command,
            headers,
            body,
        } = frame;
        let h = Required {
            command,
            headers: &headers,
        };
        Ok(match command {
            Command::Connect | Command::Stomp => ClientCommand::Connect(Connect::parse(&headers)?),
            Command::Send => {
                let destination = h.get("destination")?.to_owned();
                ClientCommand::Send(Send::parse(destination, headers, body))
            }
            Command::Subscribe => ClientCommand::Subscribe(Subscribe::parse(h, version)?),
            Command::Unsubscribe => ClientCommand::Unsubscribe(Unsubscribe::parse(h, version)?),
            Command::Ack | Command::Nack => {
                ClientCommand::Ack(Ack::parse(h, version, command == Command::Nack)?)
            }
            Command::Begin => ClientCommand::Begin(Transaction::parse(h)?),
            Command::Commit => ClientCommand::Commit(Transaction::parse(h)?),
            Command::Abort => ClientCommand::Abort(Transaction::parse(h)?),
            Command::Disconnect => ClientCommand::Disconnect,
            c @ (Command::Connected | Command::Message | Command::Receipt | Command::Error) => {
                return Err(CommandError::ServerFrame(c));
            }
        })
    }
}

/// A frame's headers, read for one command: a missing header names both.
#[derive(Clone, Copy)]
struct Required<'f> {
    command: Command,
    headers: &'f Headers,
}

impl<'f> Required<'f> {
    /// The header's value, or the error naming it.
    fn get(self, header: &'static str) -> Result<&'f str, CommandError> {
        self.headers.get(header).ok_or(CommandError::MissingHeader {
            command: self.command,
            header,
        })
    }

    /// The header's value if present.
    fn optional(self, header: &str) -> Option<&'f str> {
        self.headers.get(header)
    }
}

#[cfg(test)]
mod tests;
