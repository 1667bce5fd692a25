//! Frame encoding, and MESSAGE fan-out without re-encoding.
//!
//! Every frame that may carry a body (SEND, MESSAGE, ERROR) is written with a
//! `content-length`, so bodies may contain NULs and receivers never scan for the end.

use super::escape::{escape_into, needs_escape};
use super::frame::{Frame, Version};
use bytes::{BufMut, Bytes, BytesMut};

/// Appends `frame`, encoded for a peer speaking `version`, to `out`.
///
/// `out` is meant to be reused across frames (a writer's batch buffer). A
/// `content-length` header in `frame.headers` is ignored; the real one is written.
pub fn encode(frame: &Frame, version: Version, out: &mut BytesMut) {
    let escaped = frame.command.escapes_headers();
    out.reserve(frame.command.as_str().len() + 2 + frame.body.len() + 24);
    out.put_slice(frame.command.as_str().as_bytes());
    out.put_u8(b'\n');
    for (name, value) in frame.headers.iter() {
        if name == "content-length" {
            continue;
        }
        put_header(name, value, version, escaped, out);
    }
    if frame.command.allows_body() || !frame.body.is_empty() {
        put_content_length(frame.body.len(), out);
    }
    out.put_u8(b'\n');
    out.put_slice(&frame.body);
    out.put_u8(0);
}

/// Appends one heart-beat (a single LF) to `out`.
pub fn encode_heartbeat(out: &mut BytesMut) {
    out.put_u8(b'\n');
}

fn put_header(name: &str, value: &str, version: Version, escaped: bool, out: &mut BytesMut) {
    escape_into(name, version, escaped, true, out);
    out.put_u8(b':');
    escape_into(value, version, escaped, false, out);
    out.put_u8(b'\n');
}

fn put_content_length(len: usize, out: &mut BytesMut) {
    out.put_slice(b"content-length:");
    out.put_slice(itoa::Buffer::new().format(len).as_bytes());
    out.put_u8(b'\n');
}

/// The `subscription` header line of one subscription, encoded once when the
/// subscription is made and reused for every MESSAGE it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionHeader {
    line: Bytes,
    version: Version,
}

impl SubscriptionHeader {
    /// Encodes `subscription:{id}` for a session speaking `version`.
    pub fn new(id: &str, version: Version) -> Self {
        let mut out = BytesMut::with_capacity(id.len() + 14);
        put_header("subscription", id, version, true, &mut out);
        SubscriptionHeader {
            line: out.freeze(),
            version,
        }
    }

    /// The version of the session that owns the subscription.
    pub fn version(&self) -> Version {
        self.version
    }
}

/// A published message, encoded once for all its subscribers.
///
/// Holds the shared headers already escaped for each STOMP version (one buffer when
/// no header needs escaping) and the body by reference. [`MessageTemplate::deliver`]
/// then only adds the per-subscription lines.
#[derive(Debug, Clone)]
pub struct MessageTemplate {
    /// Shared headers plus `content-length` and the blank line, per version.
    heads: [Bytes; 3],
    body: Bytes,
    body_is_utf8: bool,
}

impl MessageTemplate {
    /// Builds the template from the shared MESSAGE headers (`destination`,
    /// `message-id`, `content-type`, the sender's custom headers, ...) and the body.
    /// Any `content-length` among `headers` is replaced by the real one.
    pub fn new<'a, I>(headers: I, body: Bytes) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
    {
        let build = |version: Version| {
            let mut out = BytesMut::with_capacity(128);
            for (name, value) in headers.clone() {
                if name != "content-length" {
                    put_header(name, value, version, true, &mut out);
                }
            }
            put_content_length(body.len(), &mut out);
            out.put_u8(b'\n');
            out.freeze()
        };
        let any_escapes = headers
            .clone()
            .into_iter()
            .any(|(n, v)| needs_escape(n) || needs_escape(v));
        let heads = if any_escapes {
            Version::ALL.map(build)
        } else {
            let head = build(Version::V1_2);
            [head.clone(), head.clone(), head]
        };
        MessageTemplate {
            heads,
            body_is_utf8: std::str::from_utf8(&body).is_ok(),
            body,
        }
    }

    /// The body, shared by reference.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The MESSAGE for one subscription. `extra` holds per-delivery headers such as
    /// `ack` or `redelivered`; only they are encoded here. Per-delivery headers come
    /// first, so a sender's header of the same name can never override them.
    pub fn deliver(
        &self,
        subscription: &SubscriptionHeader,
        extra: &[(&str, &str)],
    ) -> EncodedMessage {
        let extra = if extra.is_empty() {
            Bytes::new()
        } else {
            let mut out = BytesMut::with_capacity(64);
            for (name, value) in extra {
                put_header(name, value, subscription.version, true, &mut out);
            }
            out.freeze()
        };
        EncodedMessage {
            subscription: subscription.line.clone(),
            extra,
            head: self.heads[subscription.version.index()].clone(),
            body: self.body.clone(),
            is_utf8: self.body_is_utf8,
        }
    }
}

/// One encoded MESSAGE frame as a few shared chunks: the body and shared headers are
/// references into the [`MessageTemplate`], not copies.
#[derive(Debug, Clone)]
pub struct EncodedMessage {
    subscription: Bytes,
    extra: Bytes,
    head: Bytes,
    body: Bytes,
    is_utf8: bool,
}

impl EncodedMessage {
    const COMMAND: &'static [u8] = b"MESSAGE\n";

    /// The chunks in wire order, for vectored writes.
    pub fn chunks(&self) -> [&[u8]; 6] {
        [
            Self::COMMAND,
            &self.subscription,
            &self.extra,
            &self.head,
            &self.body,
            b"\0",
        ]
    }

    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.chunks().iter().map(|c| c.len()).sum()
    }

    /// Always false: a frame has at least its command line.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the whole frame is valid UTF-8 (it then goes out as a WebSocket text
    /// message, otherwise as binary).
    pub fn is_utf8(&self) -> bool {
        self.is_utf8
    }

    /// Appends the frame to a writer's batch buffer.
    pub fn write_to(&self, out: &mut BytesMut) {
        out.reserve(self.len());
        for chunk in self.chunks() {
            out.put_slice(chunk);
        }
    }
}
