//! Header escaping per STOMP version.
//!
//! 1.0 has no escapes. 1.1 defines `\\`, `\n` and `\c` (colon); 1.2 adds `\r`.
//! An undefined escape is a fatal error in 1.1 and later. CONNECT, STOMP and
//! CONNECTED frames are never escaped.

use super::error::CodecError;
use super::frame::Version;
use bytes::{BufMut, BytesMut};
use std::borrow::Cow;

/// Undoes the escaping of one header name or value.
///
/// `escaped` is false for CONNECT/STOMP/CONNECTED frames and for STOMP 1.0, where a
/// backslash is an ordinary character.
pub(crate) fn unescape(
    raw: &str,
    version: Version,
    escaped: bool,
) -> Result<Cow<'_, str>, CodecError> {
    if !escaped || version == Version::V1_0 || !raw.contains('\\') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('r') if version == Version::V1_2 => out.push('\r'),
            Some(other) => return Err(CodecError::InvalidEscape(format!("\\{other}"))),
            None => return Err(CodecError::InvalidEscape("\\".to_owned())),
        }
    }
    Ok(Cow::Owned(out))
}

/// Whether `s` holds a character that some version must escape (or, for NUL,
/// replace: no version can carry it in a header).
pub(crate) fn needs_escape(s: &str) -> bool {
    s.bytes()
        .any(|b| matches!(b, b'\\' | b'\n' | b'\r' | b':' | b'\0'))
}

/// Appends `s` to `out`, escaped for `version`.
///
/// Where no escaping exists (1.0, CONNECT/CONNECTED) a CR or LF cannot be written at
/// all; it becomes a space so the frame stays well-formed. A NUL would end the
/// frame in any version, so it always becomes a space (the decoder refuses NULs in
/// headers; this keeps headers the broker builds itself safe too). In a header *name* a colon
/// would move the name/value split, so there it becomes `_`.
pub(crate) fn escape_into(
    s: &str,
    version: Version,
    escaped: bool,
    is_name: bool,
    out: &mut BytesMut,
) {
    if !needs_escape(s) {
        out.put_slice(s.as_bytes());
        return;
    }
    let escaping = escaped && version != Version::V1_0;
    for b in s.bytes() {
        match (b, escaping) {
            (b'\\', true) => out.put_slice(b"\\\\"),
            (b'\n', true) => out.put_slice(b"\\n"),
            (b':', true) => out.put_slice(b"\\c"),
            (b'\r', true) if version == Version::V1_2 => out.put_slice(b"\\r"),
            (b'\r' | b'\n' | b'\0', _) => out.put_u8(b' '),
            (b':', false) if is_name => out.put_u8(b'_'),
            (other, _) => out.put_u8(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str, v: Version, escaped: bool) -> String {
        let mut b = BytesMut::new();
        escape_into(s, v, escaped, false, &mut b);
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn every_1_2_escape_decodes() {
        let v = Version::V1_2;
        assert_eq!(unescape(r"a\\b", v, true).unwrap(), "a\\b");
        assert_eq!(unescape(r"a\nb", v, true).unwrap(), "a\nb");
        assert_eq!(unescape(r"a\rb", v, true).unwrap(), "a\rb");
        assert_eq!(unescape(r"a\cb", v, true).unwrap(), "a:b");
        assert_eq!(unescape(r"\c\c\\\n", v, true).unwrap(), "::\\\n");
    }

    #[test]
    fn undefined_escapes_are_errors_in_1_1_and_1_2() {
        for v in [Version::V1_1, Version::V1_2] {
            assert_eq!(
                unescape(r"a\tb", v, true),
                Err(CodecError::InvalidEscape("\\t".into()))
            );
            assert_eq!(
                unescape("trailing\\", v, true),
                Err(CodecError::InvalidEscape("\\".into()))
            );
        }
        // \r is a 1.2 addition: undefined in 1.1.
        assert!(unescape(r"a\rb", Version::V1_1, true).is_err());
    }

    #[test]
    fn no_escaping_in_1_0_or_connect_frames() {
        assert_eq!(unescape(r"a\tb\c", Version::V1_0, true).unwrap(), r"a\tb\c");
        assert_eq!(
            unescape(r"a\tb\c", Version::V1_2, false).unwrap(),
            r"a\tb\c"
        );
    }

    #[test]
    fn escaping_per_version() {
        let s = "a:b\\c\nd\re";
        assert_eq!(esc(s, Version::V1_2, true), r"a\cb\\c\nd\re");
        assert_eq!(esc(s, Version::V1_1, true), "a\\cb\\\\c\\nd e");
        assert_eq!(esc(s, Version::V1_0, true), "a:b\\c d e");
        assert_eq!(esc(s, Version::V1_2, false), "a:b\\c d e");
    }

    #[test]
    fn a_nul_is_never_written_into_a_header() {
        for v in Version::ALL {
            for escaped in [true, false] {
                assert_eq!(esc("a\0b", v, escaped), "a b", "{v} {escaped}");
            }
        }
    }

    #[test]
    fn escape_then_unescape_is_identity_in_1_2() {
        let s = "x:\\y\n\r:z";
        assert_eq!(
            unescape(&esc(s, Version::V1_2, true), Version::V1_2, true).unwrap(),
            s
        );
    }
}
