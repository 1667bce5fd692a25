//! CONNECT and STOMP.

use super::CommandError;
use crate::codec::{Headers, Version};

/// Longest heart-beat interval the broker agrees to, either way: one day. A client
/// value above it counts as this much, so no arithmetic on it can overflow (a value
/// near `u64::MAX` once wrapped around and dropped the client at once).
pub const MAX_HEARTBEAT_MS: u64 = 24 * 60 * 60 * 1000;

/// A CONNECT (or STOMP) frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The highest version both sides speak.
    pub version: Version,
    /// The client's `heart-beat: cx,cy` (0,0 when absent), each capped at
    /// [`MAX_HEARTBEAT_MS`].
    pub heart_beat: (u64, u64),
    /// `login`.
    pub login: Option<String>,
    /// `passcode`.
    pub passcode: Option<String>,
    /// The token of `Authorization: Bearer <token>`.
    pub bearer: Option<String>,
}

impl Connect {
    pub(super) fn parse(headers: &Headers) -> Result<Connect, CommandError> {
        let version = Version::negotiate(headers.get("accept-version"))
            .ok_or(CommandError::UnsupportedVersion)?;
        let heart_beat = parse_heart_beat(headers.get("heart-beat"))?;
        Ok(Connect {
            version,
            heart_beat,
            login: headers.get("login").map(str::to_owned),
            passcode: headers.get("passcode").map(str::to_owned),
            // STOMP headers are case-sensitive; HTTP's spelling and lower case both work.
            bearer: headers
                .get("Authorization")
                .or(headers.get("authorization"))
                .and_then(bearer_token)
                .map(str::to_owned),
        })
    }
}

/// Parses `cx,cy`, capping each at [`MAX_HEARTBEAT_MS`]; absent is `(0, 0)`.
pub fn parse_heart_beat(header: Option<&str>) -> Result<(u64, u64), CommandError> {
    let Some(v) = header else {
        return Ok((0, 0));
    };
    let bad = || CommandError::BadHeartBeat(v.to_owned());
    let (a, b) = v.split_once(',').ok_or_else(bad)?;
    let ms = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map(|n| n.min(MAX_HEARTBEAT_MS))
            .map_err(|_| bad())
    };
    Ok((ms(a)?, ms(b)?))
}

/// The token of an `Authorization` header value `Bearer <token>` (the scheme is
/// not case-sensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_found_in_the_authorization_header() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer  x "), Some("x"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn huge_heartbeats_are_capped_not_wrapped() {
        assert_eq!(
            parse_heart_beat(Some("18446744073709546616,18446744073709551615")),
            Ok((MAX_HEARTBEAT_MS, MAX_HEARTBEAT_MS))
        );
    }

    #[test]
    fn bad_heartbeat_headers_are_refused() {
        for v in ["", "1", "a,b", "1,-1", "1,2,3"] {
            assert_eq!(
                parse_heart_beat(Some(v)),
                Err(CommandError::BadHeartBeat(v.to_owned())),
                "{v}"
            );
        }
    }
}
