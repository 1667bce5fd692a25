//! SUBSCRIBE, UNSUBSCRIBE, ACK and NACK.

use super::{CommandError, Required};
use crate::codec::Version;

/// How a subscription acknowledges messages (the SUBSCRIBE `ack` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// No acks: a message counts as delivered when written.
    Auto,
    /// Cumulative acks (an ACK covers every earlier message of the subscription).
    Client,
    /// Each message is acked on its own.
    ClientIndividual,
}

impl AckMode {
    /// Parses the `ack` header; absent means `auto`.
    pub fn from_header(v: Option<&str>) -> Option<AckMode> {
        match v {
            None | Some("auto") => Some(AckMode::Auto),
            Some("client") => Some(AckMode::Client),
            Some("client-individual") => Some(AckMode::ClientIndividual),
            Some(_) => None,
        }
    }
}

/// Where a topic subscription with history starts (the SUBSCRIBE
/// `x-stream-offset` header, as in RabbitMQ's STOMP stream support).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamOffset {
    /// Only messages published from now on (the default).
    #[default]
    Next,
    /// The last kept message of each destination, then new ones.
    Last,
    /// Every kept message, then new ones.
    First,
    /// From offset N on.
    Offset(u64),
    /// From the first message kept at or after this time (seconds since the
    /// Unix epoch).
    Timestamp(u64),
}

impl StreamOffset {
    /// Parses the header value.
    pub fn parse(v: &str) -> Option<StreamOffset> {
        match v {
            "next" => Some(StreamOffset::Next),
            "last" => Some(StreamOffset::Last),
            "first" => Some(StreamOffset::First),
            _ => {
                let (kind, n) = v.split_once('=')?;
                let n: u64 = n.parse().ok()?;
                match kind {
                    "offset" => Some(StreamOffset::Offset(n)),
                    "timestamp" => Some(StreamOffset::Timestamp(n)),
                    _ => None,
                }
            }
        }
    }
}

/// A SUBSCRIBE frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The subscription id (STOMP 1.0 may leave it out: the destination is used).
    pub id: String,
    /// `destination`.
    pub destination: String,
    /// `ack`.
    pub ack: AckMode,
    /// `prefetch-count`, a positive integer, when given.
    pub prefetch: Option<usize>,
    /// `x-stream-offset`: where a topic subscription with history starts.
    pub offset: StreamOffset,
}

impl Subscribe {
    pub(super) fn parse(h: Required<'_>, version: Version) -> Result<Subscribe, CommandError> {
        let destination = h.get("destination")?;
        // `id` is required from 1.1 on; a 1.0 client may omit it and use the destination.
        let id = match (h.optional("id"), version) {
            (Some(id), _) => id,
            (None, Version::V1_0) => destination,
            (None, _) => h.get("id")?,
        };
        let ack = h.optional("ack");
        let ack = AckMode::from_header(ack)
            .ok_or_else(|| CommandError::BadAckMode(ack.unwrap_or("").to_owned()))?;
        let prefetch = h
            .optional("prefetch-count")
            .map(|v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| CommandError::BadPrefetch(v.to_owned()))
            })
            .transpose()?;
        let offset = match h.optional("x-stream-offset") {
            Some(v) => {
                StreamOffset::parse(v).ok_or_else(|| CommandError::BadStreamOffset(v.to_owned()))?
            }
            None => StreamOffset::Next,
        };
        Ok(Subscribe {
            id: id.to_owned(),
            destination: destination.to_owned(),
            ack,
            prefetch,
            offset,
        })
    }
}

/// An UNSUBSCRIBE frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The subscription id (STOMP 1.0 may name the destination instead).
    pub id: String,
}

impl Unsubscribe {
    pub(super) fn parse(h: Required<'_>, version: Version) -> Result<Unsubscribe, CommandError> {
        let id = match (h.optional("id"), version) {
            (Some(id), _) => id,
            // STOMP 1.0 may unsubscribe by destination.
            (None, Version::V1_0) => h.get("destination")?,
            (None, _) => h.get("id")?,
        };
        Ok(Unsubscribe { id: id.to_owned() })
    }
}

/// An ACK or NACK frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// What is acknowledged: `id` (1.2) or `message-id` (1.0, 1.1).
    pub ack_id: String,
    /// NACK rather than ACK.
    pub nack: bool,
    /// `transaction`, when the ACK joins one.
    pub transaction: Option<String>,
    /// Whether the frame asked for a receipt (it then waits for the ack to take
    /// effect).
    pub receipted: bool,
}

impl Ack {
    pub(super) fn parse(
        h: Required<'_>,
        version: Version,
        nack: bool,
    ) -> Result<Ack, CommandError> {
        // Each version names the acknowledged message its own way.
        match version {
            Version::V1_2 => {
                h.get("id")?;
            }
            Version::V1_1 => {
                h.get("message-id")?;
                h.get("subscription")?;
            }
            Version::V1_0 => {
                h.get("message-id")?;
            }
        }
        let ack_id = h
            .optional("id")
            .or(h.optional("message-id"))
            .unwrap_or_default();
        Ok(Ack {
            ack_id: ack_id.to_owned(),
            nack,
            transaction: h.optional("transaction").map(str::to_owned),
            receipted: h.optional("receipt").is_some(),
        })
    }

    /// What holding this ACK in a transaction costs in memory.
    pub fn held_cost(&self) -> usize {
        std::mem::size_of::<Ack>() + self.ack_id.len()
    }

    /// The ACK as held by a transaction: its receipt was for joining it.
    pub fn held(mut self) -> Ack {
        self.transaction = None;
        self.receipted = false;
        self
    }
}
