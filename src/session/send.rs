//! SEND: check the sender's rights and the destination, then route the message.
//!
//! [`Session::route`] does every check a SEND needs without any effect, so a
//! transaction can check a frame when it joins and again at COMMIT before applying
//! anything.

use super::{Flow, ProtocolError, Session};
use crate::app::AppHandler;
use crate::command;
use crate::destination::pattern::{check_topic, is_pattern};
use crate::destination::{Destination, parse_user_send};
use crate::queue::Reservation;
use std::sync::Arc;

/// Where a checked SEND goes.
pub(super) enum Route<'f> {
    /// A concrete topic.
    Topic(&'f str),
    /// `/user/{login}/queue/{queue}`.
    User {
        /// The receiving login.
        login: &'f str,
        /// The user queue name.
        queue: &'f str,
    },
    /// An application handler.
    App(Arc<dyn AppHandler>),
    /// A queue, by name.
    Queue(&'f str),
}

impl Session {
    /// Checks a SEND (destination, rights, limits) and says where it goes; no effect.
    pub(super) fn route<'f>(&self, send: &'f command::Send) -> Result<Route<'f>, ProtocolError> {
        let destination = send.destination.as_str();
        let family = Destination::classify(destination)
            .ok_or_else(|| ProtocolError::UnknownDestination(destination.to_owned()))?;
        let forbidden = || ProtocolError::Forbidden {
            command: "SEND to",
            destination: destination.to_owned(),
        };
        if !self
            .broker
            .access
            .may_send(&self.identity, &family, destination)
        {
            return Err(forbidden());
        }
        match family {
            Destination::Topic(name) => {
                check_topic(name, self.broker.config.limits.topic())?;
                if is_pattern(destination) {
                    return Err(ProtocolError::WildcardSend(destination.to_owned()));
                }
                Ok(Route::Topic(destination))
            }
            Destination::User(rest) => {
                let (login, queue) = parse_user_send(rest)
                    .ok_or_else(|| ProtocolError::UnknownDestination(destination.to_owned()))?;
                Ok(Route::User { login, queue })
            }
            Destination::App(_) => {
                let handler = self
                    .broker
                    .apps
                    .get(destination)
                    .ok_or_else(|| ProtocolError::NoHandler(destination.to_owned()))?;
                if self.identity.login.is_none() {
                    return Err(forbidden());
                }
                Ok(Route::App(handler.clone()))
            }
            Destination::Queue(name) => Ok(Route::Queue(name)),
        }
    }

    /// Routes a SEND. A queue SEND is pending until the queue answers, so that its
    /// receipt means the queue holds the message (durably, if it is durable).
    pub(super) fn send(&mut self, send: command::Send) -> Result<Flow, ProtocolError> {
        self.send_with(send, None)
    }

    /// [`Session::send`]; a queue SEND takes its room from `reserved` when given
    /// (a COMMIT reserved it beforehand).
    pub(super) fn send_with(
        &mut self,
        send: command::Send,
        reserved: Option<&mut Reservation>,
    ) -> Result<Flow, ProtocolError> {
        match self.route(&send)? {
            Route::Topic(destination) => {
                let n = self.broker.engine.publish_topic(
                    destination,
                    &send.headers,
                    send.body.clone(),
                )?;
                tracing::trace!(session = self.id, destination, subscribers = n, "published");
                Ok(Flow::Continue)
            }
            Route::User { login, queue } => {
                self.broker
                    .engine
                    .publish_user(login, queue, &send.headers, send.body.clone())?;
                Ok(Flow::Continue)
            }
            Route::App(handler) => self.app(handler, &send).map(|_| Flow::Continue),
            Route::Queue(name) => {
                let queue = match &reserved {
                    Some(r) => r.queue().clone(),
                    None => self.broker.engine.queue(name)?,
                };
                let command::Send { headers, body, .. } = send;
                Ok(Flow::Pending(queue.send(headers, body, reserved)))
            }
        }
    }
}
