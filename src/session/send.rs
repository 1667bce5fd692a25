//! SEND: check the sender's rights, then route the message.

use super::{Flow, ProtocolError, Session};
use crate::codec::Frame;
use crate::registry::pattern::{check_topic, is_pattern};
use crate::router::{Bus, Destination, parse_user_send};

impl Session {
    /// Routes a SEND. A queue SEND is pending until the queue answers, so that its
    /// receipt means the queue holds the message (durably, if it is durable).
    pub(super) fn send(&mut self, frame: Frame) -> Result<Flow, ProtocolError> {
        let destination = self.required(&frame, "destination")?;
        let family = Destination::classify(destination)
            .ok_or_else(|| ProtocolError::UnknownDestination(destination.to_owned()))?;
        if !self.identity.may_send(&family) {
            return Err(ProtocolError::Forbidden {
                command: "SEND to",
                destination: destination.to_owned(),
            });
        }
        match family {
            Destination::Topic(_) if is_pattern(destination) => {
                Err(ProtocolError::WildcardSend(destination.to_owned()))
            }
            Destination::Topic(name) => {
                check_topic(name, self.broker.config.limits.topic())?;
                let n =
                    self.broker
                        .bus
                        .publish_topic(destination, &frame.headers, frame.body.clone());
                tracing::trace!(session = self.id, destination, subscribers = n, "published");
                Ok(Flow::Continue)
            }
            Destination::User(rest) => {
                let (login, queue) = parse_user_send(rest)
                    .ok_or_else(|| ProtocolError::UnknownDestination(destination.to_owned()))?;
                self.broker
                    .bus
                    .publish_user(login, queue, &frame.headers, frame.body.clone());
                Ok(Flow::Continue)
            }
            Destination::App(_) => self.app(frame).map(|_| Flow::Continue),
            Destination::Queue(name) => {
                let queue = self.broker.queues.get(name)?;
                let Frame { headers, body, .. } = frame;
                Ok(Flow::Pending(queue.send(headers, body)))
            }
        }
    }
}
