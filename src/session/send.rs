//! SEND: check the sender's rights and the destination, then route the message.
//!
//! [`route`] does every check a SEND needs without any effect, so a transaction
//! can check a frame when it joins and again at COMMIT before applying anything.
//! [`route`] and [`apply`] take the broker and the sender's identity rather than a
//! session, so `POST /api/publish` applies exactly the same rules.

use super::{Flow, ProtocolError, Session};
use crate::app::http::Call;
use crate::app::routes::{AppRoute, Target, routed_headers, strip_route_headers};
use crate::app::{AppHandler, Sender};
use crate::auth::Identity;
use crate::broker::Broker;
use crate::command;
use crate::destination::pattern::{check_topic, is_pattern};
use crate::destination::{Destination, parse_user_send};
use crate::queue::{Answer, Reservation};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// Where a checked SEND goes.
pub(crate) enum Route<'f> {
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
    /// An `[[app.routes]]` route.
    Routed(Arc<AppRoute>),
    /// A queue, by name.
    Queue(&'f str),
}

impl Route<'_> {
    /// The queue this SEND goes to, if it goes to one (directly or through a
    /// route): a transaction reserves room there before COMMIT applies anything.
    pub(crate) fn queue_name(&self) -> Option<&str> {
        match self {
            Route::Queue(name) => Some(name),
            Route::Routed(route) => match &route.target {
                Target::Queue(name) => Some(name),
                Target::Http(_) => None,
            },
            _ => None,
        }
    }
}

/// What an applied SEND leaves to wait for.
pub(crate) enum Sent {
    /// Nothing: it was handed on.
    Done,
    /// A queue's answer: the message is held (durably, for a durable queue) once
    /// it comes.
    Pending(Answer),
}

/// Checks a SEND by `identity` (destination, rights, limits) and says where it
/// goes; no effect.
pub(crate) fn route<'f>(
    broker: &Broker,
    identity: &Identity,
    send: &'f command::Send,
) -> Result<Route<'f>, ProtocolError> {
    let destination = send.destination.as_str();
    let family = Destination::classify(destination)
        .ok_or_else(|| ProtocolError::UnknownDestination(destination.to_owned()))?;
    let forbidden = || ProtocolError::Forbidden {
        command: "SEND to",
        destination: destination.to_owned(),
    };
    if !broker.access().may_send(identity, &family, destination) {
        return Err(forbidden());
    }
    match family {
        Destination::Topic(name) => {
            check_topic(name, broker.limits().topic())?;
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
            if identity.login.is_none() {
                return Err(forbidden());
            }
            if let Some(handler) = broker.apps.get(destination) {
                return Ok(Route::App(handler.clone()));
            }
            let route = broker
                .app_routes
                .find(destination)
                .ok_or_else(|| ProtocolError::NoHandler(destination.to_owned()))?;
            Ok(Route::Routed(route.clone()))
        }
        Destination::Queue(name) => Ok(Route::Queue(name)),
    }
}

/// Checks and applies a SEND by `identity` (of session `session`, for handlers'
/// logs). A queue SEND takes its room from `reserved` when given (a COMMIT
/// reserved it beforehand) and is pending until the queue answers.
pub(crate) async fn apply(
    broker: &Broker,
    identity: &Identity,
    session: u64,
    mut send: command::Send,
    reserved: Option<&mut Reservation>,
) -> Result<Sent, ProtocolError> {
    // Only a route sets these: nobody's SEND carries its own copies anywhere.
    strip_route_headers(&mut send.headers);
    match route(broker, identity, &send)? {
        Route::Topic(destination) => {
            let n = broker
                .engine
                .publish_topic(destination, &send.headers, send.body.clone())?;
            tracing::trace!(session, destination, subscribers = n, "published");
        }
        Route::User { login, queue } => {
            broker
                .engine
                .publish_user(login, queue, &send.headers, send.body.clone())?;
        }
        Route::App(handler) => run_app(&*handler, identity, session, &send)?,
        Route::Routed(route) => {
            let login = identity.login.as_deref().unwrap_or_default();
            return Ok(Sent::Pending(match &route.target {
                Target::Queue(name) => {
                    let queue = match &reserved {
                        Some(r) => r.queue().clone(),
                        None => broker.engine.queue(name)?,
                    };
                    let headers =
                        routed_headers(&send.headers, &send.destination, login, &identity.roles);
                    broker.metrics.app_route_request(&route.pattern);
                    queue.send(headers, send.body, reserved).await
                }
                Target::Http(backend) => backend.call(
                    Call {
                        route: &route.pattern,
                        destination: &send.destination,
                        login,
                        roles: &identity.roles,
                        headers: &send.headers,
                        body: &send.body,
                    },
                    broker.engine.clone(),
                    broker.metrics.clone(),
                    &broker.tasks,
                ),
            }));
        }
        Route::Queue(name) => {
            let queue = match &reserved {
                Some(r) => r.queue().clone(),
                None => broker.engine.queue(name)?,
            };
            let command::Send { headers, body, .. } = send;
            return Ok(Sent::Pending(queue.send(headers, body, reserved).await));
        }
    }
    Ok(Sent::Done)
}

/// Runs `handler` (found and rights-checked by [`route`]) on `send`.
fn run_app(
    handler: &dyn AppHandler,
    identity: &Identity,
    session: u64,
    send: &command::Send,
) -> Result<(), ProtocolError> {
    let destination = send.destination.as_str();
    let login = identity
        .login
        .as_deref()
        .ok_or_else(|| ProtocolError::Forbidden {
            command: "SEND to",
            destination: destination.to_owned(),
        })?;
    let sender = Sender {
        login,
        roles: &identity.roles,
        session,
    };
    // A bug in one handler ends this session only, with an ERROR.
    catch_unwind(AssertUnwindSafe(|| handler.handle(sender, send)))
        .map_err(|_| ProtocolError::HandlerFailed(destination.to_owned()))
}

impl Session {
    /// [`route`] for this session's identity.
    pub(super) fn route<'f>(&self, send: &'f command::Send) -> Result<Route<'f>, ProtocolError> {
        route(&self.broker, &self.identity, send)
    }

    /// Routes a SEND. A queue SEND is pending until the queue answers, so that its
    /// receipt means the queue holds the message (durably, if it is durable).
    pub(super) async fn send(&mut self, send: command::Send) -> Result<Flow, ProtocolError> {
        self.send_with(send, None).await
    }

    /// [`Session::send`]; a queue SEND takes its room from `reserved` when given
    /// (a COMMIT reserved it beforehand).
    pub(super) async fn send_with(
        &mut self,
        send: command::Send,
        reserved: Option<&mut Reservation>,
    ) -> Result<Flow, ProtocolError> {
        Ok(
            match apply(&self.broker, &self.identity, self.id, send, reserved).await? {
                Sent::Done => Flow::Continue,
                Sent::Pending(answer) => Flow::Pending(answer),
            },
        )
    }
}
