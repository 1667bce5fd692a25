//! SEND.

use crate::codec::Headers;
use bytes::Bytes;

/// A SEND frame. The headers are kept whole: the engine passes the sender's own
/// headers on to receivers, minus those the broker sets itself.
#[derive(Debug, Clone)]
pub struct Send {
    /// `destination`.
    pub destination: String,
    /// `transaction`, when the SEND joins one.
    pub transaction: Option<String>,
    /// Every header of the frame.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

impl Send {
    pub(super) fn parse(destination: String, headers: Headers, body: Bytes) -> Send {
        Send {
            destination,
            transaction: headers.get("transaction").map(str::to_owned),
            headers,
            body,
        }
    }

    /// What holding this SEND in a transaction costs in memory: its body, every
    /// header name and value with the bookkeeping of their two `String`s, and the
    /// value itself.
    pub fn held_cost(&self) -> usize {
        const PER_HEADER: usize = 2 * std::mem::size_of::<String>();
        std::mem::size_of::<Send>()
            + self.destination.len()
            + self.body.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + PER_HEADER)
                .sum::<usize>()
    }

    /// The SEND as held by a transaction: the transaction and any receipt were for
    /// joining it, so they are not answered again at COMMIT.
    pub fn held(mut self) -> Send {
        self.headers.remove("transaction");
        self.headers.remove("receipt");
        self.transaction = None;
        self
    }
}
