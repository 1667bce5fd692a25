//! The stored form of one durable queue message: which queue, its headers, its body.
//!
//! Layout (integers little-endian): format byte `1`; queue name as `u16` length +
//! UTF-8; expiry as `u64` ms since the epoch (0: none); header count `u32`, then each name and value as `u32` length + UTF-8;
//! the rest is the body. Length-prefixed, so bodies and headers may hold any byte.

use crate::codec::Headers;
use bytes::Bytes;
use thiserror::Error;

const FORMAT: u8 = 1;

/// Why a stored record could not be read back.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// The first byte names a format this build does not know.
    #[error("unknown record format {0}")]
    Format(u8),
    /// The record ends before a length says it should.
    #[error("record is truncated")]
    Truncated,
    /// A queue name, header name or value is not UTF-8.
    #[error("record holds text that is not UTF-8")]
    NotUtf8,
}

/// One durable message as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The queue's name (after `/queue/`).
    pub queue: String,
    /// When it expires (ms since the Unix epoch), fixed when it was sent, so that a
    /// `ttl` counts from then, not from a restart.
    pub expires_at: Option<u64>,
    /// The headers as sent.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

impl Record {
    /// Encodes a message for the store.
    pub fn encode(queue: &str, expires_at: Option<u64>, headers: &Headers, body: &[u8]) -> Vec<u8> {
        let header_bytes: usize = headers.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
        let mut out = Vec::with_capacity(1 + 2 + queue.len() + 8 + 4 + header_bytes + body.len());
        out.push(FORMAT);
        // Queue names come from a destination header, far below 64 KiB (header limits).
        let name = &queue.as_bytes()[..queue.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&expires_at.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
        for (k, v) in headers.iter() {
            for s in [k, v] {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        out.extend_from_slice(body);
        out
    }

    /// Reads back what [`Record::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        let mut r = Reader(bytes);
        let format = r.take(1)?[0];
        if format != FORMAT {
            return Err(RecordError::Format(format));
        }
        let n = u16::from_le_bytes(r.array()?) as usize;
        let queue = r.text(n)?;
        let expires_at = Some(u64::from_le_bytes(r.array()?)).filter(|&t| t > 0);
        let count = u32::from_le_bytes(r.array()?) as usize;
        // Each header takes at least 8 bytes: a corrupt count cannot make us allocate much.
        let mut headers = Headers::with_capacity(count.min(r.0.len() / 8));
        for _ in 0..count {
            let k = u32::from_le_bytes(r.array()?) as usize;
            let k = r.text(k)?;
            let v = u32::from_le_bytes(r.array()?) as usize;
            let v = r.text(v)?;
            headers.push(k, v);
        }
        Ok(Record {
            queue,
            expires_at,
            headers,
            body: Bytes::copy_from_slice(r.0),
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn text(&mut self, n: usize) -> Result<String, RecordError> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RecordError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_a_message() {
        let headers: Headers = [("persistent", "true"), ("x", "a:b\nc")]
            .into_iter()
            .collect();
        let bytes = Record::encode("jobs.eu", Some(1_700_000_000_000), &headers, b"\0body\r\n");
        let r = Record::decode(&bytes).expect("decodes");
        assert_eq!(r.queue, "jobs.eu");
        assert_eq!(r.expires_at, Some(1_700_000_000_000));
        assert_eq!(r.headers, headers);
        assert_eq!(&r.body[..], b"\0body\r\n");
    }

    #[test]
    fn rejects_damage() {
        let bytes = Record::encode("q", None, &[("k", "v")].into_iter().collect(), b"b");
        assert_eq!(Record::decode(&[]), Err(RecordError::Truncated));
        assert_eq!(Record::decode(&[9]), Err(RecordError::Format(9)));
        // Cut inside the header section: every prefix up to the body fails cleanly.
        for cut in 1..bytes.len() - 1 {
            assert_eq!(
                Record::decode(&bytes[..cut]),
                Err(RecordError::Truncated),
                "{cut}"
            );
        }
        let mut bad = bytes.clone();
        bad[3] = 0xff;
        assert_eq!(Record::decode(&bad), Err(RecordError::NotUtf8));
    }

    proptest! {
        #[test]
        fn any_message_round_trips(
            queue in "[a-z.]{1,20}",
            expires_at in proptest::option::of(1..u64::MAX),
            headers in proptest::collection::vec(("[a-z-]{1,8}", "\\PC{0,12}"), 0..6),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let headers: Headers = headers.into_iter().collect();
            let r = Record::decode(&Record::encode(&queue, expires_at, &headers, &body))
                .expect("decodes");
            prop_assert_eq!(r.queue, queue);
            prop_assert_eq!(r.expires_at, expires_at);
            prop_assert_eq!(r.headers, headers);
            prop_assert_eq!(&r.body[..], &body[..]);
        }

        #[test]
        fn any_bytes_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Record::decode(&bytes);
        }
    }
}
