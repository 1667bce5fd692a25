//! SEND to `/app/**`: hand the frame to its application handler.

use super::{ProtocolError, Session};
use crate::app::Sender;
use crate::codec::Frame;
use std::panic::{AssertUnwindSafe, catch_unwind};

impl Session {
    pub(super) fn app(&mut self, frame: Frame) -> Result<(), ProtocolError> {
        let destination = self.required(&frame, "destination")?;
        let handler = self
            .broker
            .apps
            .get(destination)
            .ok_or_else(|| ProtocolError::UnknownDestination(destination.to_owned()))?;
        let login = self
            .identity
            .login
            .as_deref()
            .ok_or_else(|| ProtocolError::Forbidden {
                command: "SEND to",
                destination: destination.to_owned(),
            })?;
        let sender = Sender {
            login,
            roles: &self.identity.roles,
            session: self.id,
        };
        // A bug in one handler ends this session only, with an ERROR.
        catch_unwind(AssertUnwindSafe(|| handler.handle(sender, &frame)))
            .map_err(|_| ProtocolError::HandlerFailed(destination.to_owned()))
    }
}
