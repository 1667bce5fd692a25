//! SEND: check the sender's rights, then route the message.

use super::{ProtocolError, Session};
use crate::codec::Frame;
use crate::registry::topic::is_pattern;
use crate::router::{Bus, Destination, parse_user_send};

impl Session {
    pub(super) async fn send(&mut self, frame: Frame) -> Result<(), ProtocolError> {
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
            Destination::Topic(_) => {
                let n =
                    self.broker
                        .bus
                        .publish_topic(destination, &frame.headers, frame.body.clone());
                tracing::trace!(session = self.id, destination, subscribers = n, "published");
                Ok(())
            }
            Destination::User(rest) => {
                let (login, queue) = parse_user_send(rest)
                    .ok_or_else(|| ProtocolError::UnknownDestination(destination.to_owned()))?;
                self.broker
                    .bus
                    .publish_user(login, queue, &frame.headers, frame.body.clone());
                Ok(())
            }
            Destination::App(_) => self.app(frame),
            Destination::Queue(name) => {
                // Awaited: a receipt follows only once the queue holds the message.
                let queue = self.broker.queues.get(name)?;
                queue
                    .send(frame.headers.clone(), frame.body.clone())
                    .await?;
                Ok(())
            }
        }
    }
}
