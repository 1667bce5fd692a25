//! Limits the decoder enforces while parsing, before it allocates.

use std::fmt;

/// Upper bounds on what one incoming frame may hold.
///
/// Every check happens as bytes arrive, so a client cannot make the broker buffer
/// more than these limits allow by sending a frame that never ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole frame: command line, headers, body and terminating NUL.
    pub max_frame_bytes: usize,
    /// Number of header lines (repeats included).
    pub max_header_count: usize,
    /// One header line, or the command line, excluding its EOL.
    pub max_header_line: usize,
    /// The body alone.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    /// 1 MiB frames and bodies (the `limits.max_frame_bytes` default), 64 headers of at
    /// most 8 KiB each: generous for stompjs and backend clients, small enough that a
    /// hostile header block costs little.
    fn default() -> Self {
        Limits {
            max_frame_bytes: 1024 * 1024,
            max_header_count: 64,
            max_header_line: 8 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Which limit a frame broke, for errors and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// [`Limits::max_frame_bytes`]
    FrameBytes,
    /// [`Limits::max_header_count`]
    HeaderCount,
    /// [`Limits::max_header_line`]
    HeaderLine,
    /// [`Limits::max_body_bytes`]
    BodyBytes,
}

impl Limit {
    /// The limit's configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::FrameBytes => "max_frame_bytes",
            Limit::HeaderCount => "max_header_count",
            Limit::HeaderLine => "max_header_line",
            Limit::BodyBytes => "max_body_bytes",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
