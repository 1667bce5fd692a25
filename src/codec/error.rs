//! Typed decoding errors; each says precisely what was wrong so the session can
//! send an ERROR frame that tells the client.

use super::limits::Limit;
use thiserror::Error;

/// Why a byte stream is not a valid STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// A limit was exceeded. `actual` is what was seen so far, so for a frame still
    /// arriving it is a lower bound.
    #[error("{limit} exceeded: {actual} > {max}")]
    LimitExceeded {
        /// Which limit.
        limit: Limit,
        /// The configured maximum.
        max: usize,
        /// The size seen (at least).
        actual: usize,
    },
    /// The command line is not a STOMP command.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A header line has no colon, or an empty name.
    #[error("malformed header line {0:?}")]
    MalformedHeader(String),
    /// A backslash escape that the negotiated version does not define.
    #[error("invalid escape sequence {0:?} in header")]
    InvalidEscape(String),
    /// A header is not valid UTF-8.
    #[error("header is not valid UTF-8")]
    InvalidUtf8,
    /// `content-length` is not a non-negative decimal integer.
    #[error("invalid content-length {0:?}")]
    InvalidContentLength(String),
    /// The byte after a `content-length` body is not the NUL terminator.
    #[error("frame body not terminated by NUL after content-length bytes")]
    MissingNul,
    /// A carriage return not followed by a line feed.
    #[error("bare carriage return in frame head")]
    BareCarriageReturn,
    /// A NUL byte in a header name or value: it ends a frame on the wire, so a
    /// receiver would read what follows it as a new frame (header injection).
    #[error("NUL byte in a header line is not allowed")]
    NulInHeader,
    /// A header name with whitespace at either end or a control character: a
    /// client that trims names (stompjs does) would read it as another header,
    /// such as one only the broker may set.
    #[error("header name {0:?} has whitespace at an end or a control character")]
    BadHeaderName(String),
    /// A body on a frame other than SEND, MESSAGE or ERROR.
    #[error("{0} frames must not have a body")]
    UnexpectedBody(&'static str),
}

impl CodecError {
    /// A short, bounded label for metrics (`stompede_errors_sent_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            CodecError::LimitExceeded { limit, .. } => match limit {
                Limit::FrameBytes => "frame_too_large",
                Limit::HeaderCount => "too_many_headers",
                Limit::HeaderLine => "header_too_long",
                Limit::BodyBytes => "body_too_large",
            },
            CodecError::BadHeaderName(_) => "bad_header",
            _ => "malformed_frame",
        }
    }
}
