//! One published message as it travels between nodes in a NATS payload.
//!
//! Layout: a version byte, then `u16` header count, then each header as `u32`
//! length + bytes for its name and its value, then the body (the rest). The
//! headers carry `destination` and `message-id` as set by the publishing node.
//! Anything on a cluster subject may have been put there by another NATS client,
//! so decoding checks every length and refuses what does not fit.

use crate::codec::Headers;
use bytes::{Buf, BufMut, Bytes, BytesMut};

const VERSION: u8 = 1;

/// A message decoded from a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    /// The concrete destination it was published to.
    pub destination: String,
    /// The id the publishing node gave it.
    pub message_id: String,
    /// The sender's other headers (reserved ones removed by the publisher).
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// Why a payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not a payload this version writes.
    #[error("unknown cluster payload version {0}")]
    Version(u8),
    /// Cut short, a bad length, or text that is not UTF-8.
    #[error("malformed cluster payload")]
    Malformed,
}

/// Encodes a message for the cluster.
pub fn encode(
    destination: &str,
    message_id: &str,
    headers: impl Iterator<Item = (impl AsRef<str>, impl AsRef<str>)> + Clone,
    body: &[u8],
) -> Bytes {
    let fixed = [("destination", destination), ("message-id", message_id)];
    let size: usize = headers
        .clone()
        .map(|(k, v)| 8 + k.as_ref().len() + v.as_ref().len())
        .sum::<usize>()
        + fixed
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>();
    let mut out = BytesMut::with_capacity(3 + size + body.len());
    out.put_u8(VERSION);
    let count = 2 + headers.clone().count();
    out.put_u16(u16::try_from(count).unwrap_or(u16::MAX));
    let mut put = |k: &str, v: &str| {
        out.put_u32(k.len() as u32);
        out.put_slice(k.as_bytes());
        out.put_u32(v.len() as u32);
        out.put_slice(v.as_bytes());
    };
    for (k, v) in fixed {
        put(k, v);
    }
    // Header counts are bounded by `limits.max_header_count`, far below u16::MAX.
    for (k, v) in headers.take(usize::from(u16::MAX) - 2) {
        put(k.as_ref(), v.as_ref());
    }
    out.put_slice(body);
    out.freeze()
}

fn take_str(buf: &mut Bytes) -> Result<String, WireError> {
    if buf.remaining() < 4 {
        return Err(WireError::Malformed);
    }
    let len = buf.get_u32() as usize;
    if buf.remaining() < len {
        return Err(WireError::Malformed);
    }
    String::from_utf8(buf.split_to(len).to_vec()).map_err(|_| WireError::Malformed)
}

/// Decodes a payload written by [`encode`].
pub fn decode(mut buf: Bytes) -> Result<Wire, WireError> {
    if buf.remaining() < 3 {
        return Err(WireError::Malformed);
    }
    let version = buf.get_u8();
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let count = buf.get_u16();
    let (mut destination, mut message_id) = (None, None);
    let mut headers = Headers::with_capacity(usize::from(count).min(64));
    for _ in 0..count {
        let k = take_str(&mut buf)?;
        let v = take_str(&mut buf)?;
        match k.as_str() {
            "destination" if destination.is_none() => destination = Some(v),
            "message-id" if message_id.is_none() => message_id = Some(v),
            _ => headers.push(k, v),
        }
    }
    Ok(Wire {
        destination: destination.ok_or(WireError::Malformed)?,
        message_id: message_id.ok_or(WireError::Malformed)?,
        headers,
        body: buf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_trip() {
        let headers = [("content-type", "text/plain"), ("x:y", "a\nb\0")];
        let payload = encode(
            "/topic/a.b",
            "n1-7",
            headers.iter().copied(),
            b"body\0bytes",
        );
        let wire = decode(payload).unwrap();
        assert_eq!(wire.destination, "/topic/a.b");
        assert_eq!(wire.message_id, "n1-7");
        assert_eq!(
            wire.headers.iter().collect::<Vec<_>>(),
            [("content-type", "text/plain"), ("x:y", "a\nb\0")]
        );
        assert_eq!(&wire.body[..], b"body\0bytes");
    }

    #[test]
    fn hostile_payloads_are_refused_without_panicking() {
        let good = encode("/topic/a", "1", std::iter::empty::<(&str, &str)>(), b"x");
        for cut in 0..good.len() - 1 {
            let r = decode(good.slice(..cut));
            assert!(r.is_err(), "cut at {cut}");
        }
        assert_eq!(
            decode(Bytes::from_static(b"\x02\0\0")),
            Err(WireError::Version(2))
        );
        // A length far past the payload.
        assert_eq!(
            decode(Bytes::from_static(b"\x01\0\x01\xff\xff\xff\xffab")),
            Err(WireError::Malformed)
        );
        // No destination.
        assert_eq!(
            decode(Bytes::from_static(b"\x01\0\0")),
            Err(WireError::Malformed)
        );
        // Not UTF-8.
        assert_eq!(
            decode(Bytes::from_static(b"\x01\0\x01\0\0\0\x01\xff\0\0\0\0")),
            Err(WireError::Malformed)
        );
    }
}
