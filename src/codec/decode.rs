//! Streaming STOMP frame decoder built on `nom`.
//!
//! Bytes arrive in arbitrary pieces. [`Decoder::decode`] takes whatever is buffered
//! and returns one frame, one heart-beat, or `None` ("need more"). A frame head that
//! is complete is kept in the decoder while its body is still arriving, so a large
//! body costs one length check (or one resumed NUL scan) per read, not a re-parse.

use super::error::CodecError;
use super::escape::unescape;
use super::frame::{Command, Frame, Headers, Version};
use super::limits::{Limit, Limits};
use bytes::{Buf, Bytes, BytesMut};
use nom::bytes::{complete, streaming};
use nom::{IResult, Parser};

/// What one call to [`Decoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete frame.
    Frame(Frame),
    /// A heart-beat: an EOL (`\n` or `\r\n`) between frames.
    HeartBeat,
}

/// Bodies smaller than this are copied out of the read buffer, so that the buffer's
/// allocation can be reused at once instead of being pinned by a long-lived message.
/// Larger bodies are split off without copying.
const COPY_BODY_BELOW: usize = 4096;

/// A head that has been parsed while its body is still arriving.
#[derive(Debug)]
struct ParsedHead {
    command: Command,
    headers: Headers,
    /// Offset of the first body byte in the buffer.
    body_start: usize,
    body: BodyRule,
}

#[derive(Debug, Clone, Copy)]
enum BodyRule {
    /// `content-length` given: exactly this many bytes, then NUL.
    Length(usize),
    /// No `content-length`: up to the first NUL. `scanned` bytes are known NUL-free.
    UntilNul { scanned: usize },
}

/// A streaming frame decoder for one connection.
///
/// Holds the negotiated version (which decides header escaping) and the limits.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Version,
    pending: Option<ParsedHead>,
}

impl Decoder {
    /// A decoder for a new connection. Until CONNECT is negotiated the version is
    /// 1.2; it only matters for escaped frames, and CONNECT frames are never escaped.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            version: Version::V1_2,
            pending: None,
        }
    }

    /// Sets the negotiated version for the frames that follow.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// The version frames are decoded with.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decodes the next item from the front of `buf`, removing its bytes.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a frame (which stays in `buf`).
    /// An error is final for the connection: the stream cannot be resynchronised.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, CodecError> {
        if self.pending.is_none() {
            match buf.first() {
                None => return Ok(None),
                Some(b'\n') => {
                    buf.advance(1);
                    return Ok(Some(Decoded::HeartBeat));
                }
                Some(b'\r') => {
                    return match buf.get(1) {
                        None => Ok(None),
                        Some(b'\n') => {
                            buf.advance(2);
                            Ok(Some(Decoded::HeartBeat))
                        }
                        Some(_) => Err(CodecError::BareCarriageReturn),
                    };
                }
                Some(_) => {}
            }
            match parse_head(buf, &self.limits, self.version)? {
                None => return Ok(None),
                Some(pending) => self.pending = Some(pending),
            }
        }
        self.decode_body(buf)
    }

    fn decode_body(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, CodecError> {
        let Some(pending) = self.pending.as_mut() else {
            return Ok(None);
        };
        let start = pending.body_start;
        let end = match &mut pending.body {
            BodyRule::Length(n) => {
                let end = start + *n;
                if buf.len() <= end {
                    return Ok(None);
                }
                if buf[end] != 0 {
                    return Err(CodecError::MissingNul);
                }
                end
            }
            BodyRule::UntilNul { scanned } => match memchr::memchr(0, &buf[start + *scanned..]) {
                Some(i) => start + *scanned + i,
                None => {
                    *scanned = buf.len() - start;
                    check(Limit::FrameBytes, self.limits.max_frame_bytes, buf.len())?;
                    check(Limit::BodyBytes, self.limits.max_body_bytes, *scanned)?;
                    return Ok(None);
                }
            },
        };
        check(Limit::FrameBytes, self.limits.max_frame_bytes, end + 1)?;
        check(Limit::BodyBytes, self.limits.max_body_bytes, end - start)?;
        if end > start && !pending.command.allows_body() {
            return Err(CodecError::UnexpectedBody(pending.command.as_str()));
        }
        let body = if end - start < COPY_BODY_BELOW {
            let body = Bytes::copy_from_slice(&buf[start..end]);
            buf.advance(end + 1);
            body
        } else {
            buf.split_to(end + 1).freeze().slice(start..end)
        };
        let ParsedHead {
            command, headers, ..
        } = self.pending.take().expect("checked above");
        Ok(Some(Decoded::Frame(Frame {
            command,
            headers,
            body,
        })))
    }
}

fn check(limit: Limit, max: usize, actual: usize) -> Result<(), CodecError> {
    if actual > max {
        Err(CodecError::LimitExceeded { limit, max, actual })
    } else {
        Ok(())
    }
}

type Res<'a, T> = IResult<&'a [u8], T>;

/// One line up to LF (streaming: incomplete without the LF), without its EOL.
fn line(input: &[u8]) -> Res<'_, &[u8]> {
    // memchr finds the LF several times faster than a byte-by-byte take_till.
    let Some(end) = memchr::memchr(b'\n', input) else {
        return Err(nom::Err::Incomplete(nom::Needed::Unknown));
    };
    let (rest, text) = streaming::take(end).parse(input)?;
    let (rest, _) = streaming::tag(&b"\n"[..]).parse(rest)?;
    Ok((rest, text.strip_suffix(b"\r").unwrap_or(text)))
}

/// `name:value` within one complete line; the first colon separates them, so a
/// value may hold raw colons (1.0 clients and CONNECT frames do not escape them).
fn header_line(input: &[u8]) -> Res<'_, (&[u8], &[u8])> {
    let (value, name) = complete::take_till1(|b| b == b':').parse(input)?;
    let (value, _) = complete::tag(&b":"[..]).parse(value)?;
    Ok((&[][..], (name, value)))
}

/// Parses the command line and headers, checking limits line by line.
/// `Ok(None)` means the head is not complete yet.
fn parse_head(
    buf: &[u8],
    limits: &Limits,
    version: Version,
) -> Result<Option<ParsedHead>, CodecError> {
    // Returns the error for an unterminated line, if it is already too long.
    let partial = |rest: &[u8]| -> Result<Option<ParsedHead>, CodecError> {
        check(Limit::HeaderLine, limits.max_header_line, rest.len())?;
        check(Limit::FrameBytes, limits.max_frame_bytes, buf.len())?;
        Ok(None)
    };
    let (mut rest, command_line) = match line(buf) {
        Ok(ok) => ok,
        Err(nom::Err::Incomplete(_)) => return partial(buf),
        Err(_) => return Err(CodecError::BareCarriageReturn),
    };
    check(
        Limit::HeaderLine,
        limits.max_header_line,
        command_line.len(),
    )?;
    let command = Command::from_bytes(command_line).ok_or_else(|| {
        let shown = &command_line[..command_line.len().min(32)];
        CodecError::UnknownCommand(String::from_utf8_lossy(shown).into_owned())
    })?;
    let escaped = command.escapes_headers();
    let mut headers = Headers::new();
    loop {
        let (after, text) = match line(rest) {
            Ok(ok) => ok,
            Err(nom::Err::Incomplete(_)) => return partial(rest),
            Err(_) => return Err(CodecError::BareCarriageReturn),
        };
        rest = after;
        let head_len = buf.len() - rest.len();
        check(Limit::FrameBytes, limits.max_frame_bytes, head_len)?;
        if text.is_empty() {
            let body = match headers.get("content-length") {
                None => BodyRule::UntilNul { scanned: 0 },
                Some(v) => {
                    let n = parse_content_length(v)?;
                    // The frame limit first: it is the one operators configure.
                    check(
                        Limit::FrameBytes,
                        limits.max_frame_bytes,
                        head_len.saturating_add(n).saturating_add(1),
                    )?;
                    check(Limit::BodyBytes, limits.max_body_bytes, n)?;
                    if n > 0 && !command.allows_body() {
                        return Err(CodecError::UnexpectedBody(command.as_str()));
                    }
                    BodyRule::Length(n)
                }
            };
            return Ok(Some(ParsedHead {
                command,
                headers,
                body_start: head_len,
                body,
            }));
        }
        check(Limit::HeaderLine, limits.max_header_line, text.len())?;
        if memchr::memchr(0, text).is_some() {
            return Err(CodecError::NulInHeader);
        }
        check(
            Limit::HeaderCount,
            limits.max_header_count,
            headers.len() + 1,
        )?;
        let (_, (name, value)) =
            header_line(text).map_err(|_: nom::Err<nom::error::Error<&[u8]>>| {
                CodecError::MalformedHeader(
                    String::from_utf8_lossy(&text[..text.len().min(64)]).into_owned(),
                )
            })?;
        let name = std::str::from_utf8(name).map_err(|_| CodecError::InvalidUtf8)?;
        let value = std::str::from_utf8(value).map_err(|_| CodecError::InvalidUtf8)?;
        let name = unescape(name, version, escaped)?;
        if !valid_header_name(&name) {
            return Err(CodecError::BadHeaderName(name.chars().take(64).collect()));
        }
        headers.push(
            name.into_owned(),
            unescape(value, version, escaped)?.into_owned(),
        );
    }
}

/// Whether `name` may name a header a client sends: no whitespace at either end
/// (as JavaScript's `trim` sees it, byte order mark included) and no control
/// character anywhere. Names are compared exactly by the broker and trimmed by
/// stompjs, so a padded name would pass the broker's reserved-header check and
/// reach a page as the reserved header itself.
pub fn valid_header_name(name: &str) -> bool {
    // The common case, printable ASCII with no space at either end, byte by byte.
    let printable = |b: &u8| (0x21..0x7f).contains(b);
    let bytes = name.as_bytes();
    if bytes.first().is_none_or(printable)
        && bytes.last().is_none_or(printable)
        && bytes.iter().all(|b| (0x20..0x7f).contains(b))
    {
        return true;
    }
    let trimmed = |c: char| c.is_whitespace() || c == '\u{feff}';
    !name.starts_with(trimmed) && !name.ends_with(trimmed) && !name.chars().any(char::is_control)
}

/// Strict `content-length`: ASCII digits only, no sign, no spaces, no overflow.
fn parse_content_length(v: &str) -> Result<usize, CodecError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CodecError::InvalidContentLength(v.to_owned()));
    }
    v.parse()
        .map_err(|_| CodecError::InvalidContentLength(v.to_owned()))
}
