//! SEND to `/app/**`: hand the frame to its application handler.

use super::{ProtocolError, Session};
use crate::app::{AppHandler, Sender};
use crate::command;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

impl Session {
    /// Runs `handler` (found and rights-checked by [`Session::route`]) on `frame`.
    pub(super) fn app(
        &mut self,
        handler: Arc<dyn AppHandler>,
        send: &command::Send,
    ) -> Result<(), ProtocolError> {
        let destination = send.destination.as_str();
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
        catch_unwind(AssertUnwindSafe(|| handler.handle(sender, send)))
            .map_err(|_| ProtocolError::HandlerFailed(destination.to_owned()))
    }
}
