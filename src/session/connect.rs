//! CONNECT / STOMP: version and heart-beat negotiation, CONNECTED.

use super::{ProtocolError, Session};
use crate::codec::{Command, Frame, Version};
use crate::outbox::Outgoing;
use std::time::Duration;

/// The negotiated heart-beat intervals of a session, in ms (0 = none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartBeats {
    /// What the broker announces in CONNECTED: `(sx, sy)`.
    pub announced: (u64, u64),
    /// How often the broker sends when idle.
    pub send_every: u64,
    /// How often the client promised to send.
    pub expect_every: u64,
}

/// Longest heart-beat interval the broker agrees to, either way: one day. A client
/// value above it counts as this much, so no arithmetic on it can overflow (a value
/// near `u64::MAX` once wrapped around and dropped the client at once).
pub const MAX_HEARTBEAT_MS: u64 = 24 * 60 * 60 * 1000;

/// Parses `cx,cy` and negotiates with the broker's preference, as the spec says:
/// each direction runs at the larger of the two values, or not at all if either is 0.
/// The broker offers heart-beats only in the directions the client asked for.
/// Values are capped at [`MAX_HEARTBEAT_MS`].
pub fn negotiate_heartbeats(
    header: Option<&str>,
    server_ms: u64,
) -> Result<HeartBeats, ProtocolError> {
    let (cx, cy) = match header {
        None => (0, 0),
        Some(v) => {
            let bad = || ProtocolError::BadHeartBeat(v.to_owned());
            let (a, b) = v.split_once(',').ok_or_else(bad)?;
            (
                a.trim()
                    .parse::<u64>()
                    .map_err(|_| bad())?
                    .min(MAX_HEARTBEAT_MS),
                b.trim()
                    .parse::<u64>()
                    .map_err(|_| bad())?
                    .min(MAX_HEARTBEAT_MS),
            )
        }
    };
    let server_ms = server_ms.min(MAX_HEARTBEAT_MS);
    let sx = if cy > 0 { server_ms } else { 0 };
    let sy = if cx > 0 { server_ms } else { 0 };
    let both = |a: u64, b: u64| if a > 0 && b > 0 { a.max(b) } else { 0 };
    Ok(HeartBeats {
        announced: (sx, sy),
        send_every: both(sx, cy),
        expect_every: both(cx, sy),
    })
}

impl Session {
    /// Handles CONNECT/STOMP and answers CONNECTED.
    pub(super) async fn connect(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let version = Version::negotiate(frame.headers.get("accept-version"))
            .ok_or(ProtocolError::UnsupportedVersion)?;
        let beats = negotiate_heartbeats(
            frame.headers.get("heart-beat"),
            self.broker.config.heartbeat.server_ms,
        )?;
        // Off the runtime: argon2 takes tens of milliseconds by design. The connect
        // timeout covers the wait for a check and the check itself.
        let credentials = crate::auth::Credentials {
            login: frame.headers.get("login"),
            passcode: frame.headers.get("passcode"),
            // STOMP headers are case-sensitive; HTTP's spelling and lower case both work.
            bearer: frame
                .headers
                .get("Authorization")
                .or(frame.headers.get("authorization"))
                .and_then(bearer_token),
        };
        let login = self.broker.auth.connect(credentials, self.peer.ip());
        let login = tokio::time::timeout_at(self.connect_deadline, login)
            .await
            .map_err(|_| {
                ProtocolError::ConnectTimeout(self.broker.config.limits.connect_timeout_ms)
            })??;
        self.identity = login.identity;
        // A token login ends when its token does.
        self.token_deadline = login.valid_until.map(|until| {
            let left = until
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            super::far_future(left)
        });
        self.version = Some(version);
        self.decoder.set_version(version);
        if beats.expect_every > 0 {
            let grace = self.broker.config.heartbeat.grace_ms;
            self.read_timeout = Some(Duration::from_millis(
                beats
                    .expect_every
                    .saturating_add(grace.min(MAX_HEARTBEAT_MS)),
            ));
        }
        let connected = Frame::new(Command::Connected)
            .header("version", version.as_str())
            .header("server", concat!("stompede/", env!("CARGO_PKG_VERSION")))
            .header("session", self.name.as_str())
            .header(
                "heart-beat",
                format!("{},{}", beats.announced.0, beats.announced.1),
            );
        self.send_frame(&connected);
        if beats.send_every > 0 {
            let _ = self
                .outbox
                .push(Outgoing::HeartBeatEvery(Duration::from_millis(
                    beats.send_every,
                )));
        }
        tracing::debug!(session = self.id, login = self.login(), %version, "connected");
        Ok(())
    }
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
    fn heartbeats_negotiate_to_the_larger_value_per_direction() {
        let b = negotiate_heartbeats(Some("4000,6000"), 5000).unwrap();
        assert_eq!(b.announced, (5000, 5000));
        assert_eq!((b.send_every, b.expect_every), (6000, 5000));
        let b = negotiate_heartbeats(Some("0,1000"), 5000).unwrap();
        assert_eq!(b.announced, (5000, 0));
        assert_eq!((b.send_every, b.expect_every), (5000, 0));
        let b = negotiate_heartbeats(None, 5000).unwrap();
        assert_eq!((b.send_every, b.expect_every, b.announced), (0, 0, (0, 0)));
        let b = negotiate_heartbeats(Some("100,100"), 0).unwrap();
        assert_eq!((b.send_every, b.expect_every), (0, 0));
    }

    #[test]
    fn huge_heartbeats_are_capped_not_wrapped() {
        let b = negotiate_heartbeats(Some("18446744073709546616,18446744073709551615"), 10_000)
            .unwrap();
        assert_eq!(b.announced, (10_000, 10_000));
        assert_eq!(
            (b.send_every, b.expect_every),
            (MAX_HEARTBEAT_MS, MAX_HEARTBEAT_MS)
        );
        let b = negotiate_heartbeats(Some("1,1"), u64::MAX).unwrap();
        assert_eq!(b.announced, (MAX_HEARTBEAT_MS, MAX_HEARTBEAT_MS));
    }

    #[test]
    fn bad_heartbeat_headers_are_refused() {
        for v in ["", "1", "a,b", "1,-1", "1,2,3"] {
            assert!(negotiate_heartbeats(Some(v), 1000).is_err(), "{v}");
        }
    }
}
