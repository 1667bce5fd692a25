//! CONNECT / STOMP: version and heart-beat negotiation, CONNECTED.

use super::{ProtocolError, Session};
use crate::codec::{Command, Frame};
use crate::command::Connect;
pub use crate::command::connect::MAX_HEARTBEAT_MS;
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

/// Negotiates the client's `heart-beat: cx,cy` with the broker's preference, as the
/// spec says: each direction runs at the larger of the two values, or not at all if
/// either is 0. The broker offers heart-beats only in the directions the client
/// asked for. Values are capped at [`MAX_HEARTBEAT_MS`].
pub fn negotiate_heartbeats((cx, cy): (u64, u64), server_ms: u64) -> HeartBeats {
    let (cx, cy) = (cx.min(MAX_HEARTBEAT_MS), cy.min(MAX_HEARTBEAT_MS));
    let server_ms = server_ms.min(MAX_HEARTBEAT_MS);
    let sx = if cy > 0 { server_ms } else { 0 };
    let sy = if cx > 0 { server_ms } else { 0 };
    let both = |a: u64, b: u64| if a > 0 && b > 0 { a.max(b) } else { 0 };
    HeartBeats {
        announced: (sx, sy),
        send_every: both(sx, cy),
        expect_every: both(cx, sy),
    }
}

impl Session {
    /// Handles CONNECT/STOMP and answers CONNECTED.
    pub(super) async fn connect(&mut self, connect: Connect) -> Result<(), ProtocolError> {
        let version = connect.version;
        let beats =
            negotiate_heartbeats(connect.heart_beat, self.broker.config.heartbeat.server_ms);
        // Off the runtime: argon2 takes tens of milliseconds by design. The connect
        // timeout covers the wait for a check and the check itself.
        let credentials = crate::auth::Credentials {
            login: connect.login.as_deref(),
            passcode: connect.passcode.as_deref(),
            bearer: connect.bearer.as_deref(),
        };
        let login = self.broker.auth.connect(credentials, self.peer.ip());
        let login = tokio::time::timeout_at(self.connect_deadline, login)
            .await
            .map_err(|_| {
                ProtocolError::ConnectTimeout(self.broker.limits().connect_timeout_ms)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_negotiate_to_the_larger_value_per_direction() {
        let b = negotiate_heartbeats((4000, 6000), 5000);
        assert_eq!(b.announced, (5000, 5000));
        assert_eq!((b.send_every, b.expect_every), (6000, 5000));
        let b = negotiate_heartbeats((0, 1000), 5000);
        assert_eq!(b.announced, (5000, 0));
        assert_eq!((b.send_every, b.expect_every), (5000, 0));
        let b = negotiate_heartbeats((0, 0), 5000);
        assert_eq!((b.send_every, b.expect_every, b.announced), (0, 0, (0, 0)));
        let b = negotiate_heartbeats((100, 100), 0);
        assert_eq!((b.send_every, b.expect_every), (0, 0));
    }

    #[test]
    fn huge_heartbeats_are_capped_not_wrapped() {
        let b = negotiate_heartbeats((u64::MAX - 4999, u64::MAX), 10_000);
        assert_eq!(b.announced, (10_000, 10_000));
        assert_eq!(
            (b.send_every, b.expect_every),
            (MAX_HEARTBEAT_MS, MAX_HEARTBEAT_MS)
        );
        let b = negotiate_heartbeats((1, 1), u64::MAX);
        assert_eq!(b.announced, (MAX_HEARTBEAT_MS, MAX_HEARTBEAT_MS));
    }
}
