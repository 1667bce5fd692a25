//! SEND: route a published message.

use super::{ProtocolError, Session};
use crate::codec::Frame;
use crate::registry::topic::is_pattern;
use crate::router::{Bus, Destination};

impl Session {
    pub(super) fn send(&mut self, frame: Frame) -> Result<(), ProtocolError> {
        let destination = self.required(&frame, "destination")?;
        if frame.headers.get("transaction").is_some() {
            return Err(ProtocolError::Unsupported("transactional SEND"));
        }
        match Destination::classify(destination) {
            Some(Destination::Topic(_)) if is_pattern(destination) => {
                Err(ProtocolError::WildcardSend(destination.to_owned()))
            }
            Some(Destination::Topic(_)) => {
                let n =
                    self.broker
                        .bus
                        .publish_topic(destination, &frame.headers, frame.body.clone());
                tracing::trace!(session = self.id, destination, subscribers = n, "published");
                Ok(())
            }
            _ => Err(ProtocolError::UnknownDestination(destination.to_owned())),
        }
    }
}
