//! SUBSCRIBE, UNSUBSCRIBE, ACK and NACK.

use super::{Flow, ProtocolError, Session};
use crate::auth::acl::ReadFilter;
use crate::codec::{SubscriptionHeader, Version};
use crate::command::{self, Subscribe, Unsubscribe};
use crate::destination::pattern::{check_topic, is_pattern};
use crate::destination::{Destination, valid_user_queue};
use crate::registry::{AckMode, Filter, Subscriber};
use std::sync::Arc;

/// Where a subscription is registered: each family has its own registry.
#[derive(Debug)]
pub(super) enum Target {
    /// A `/topic/` destination or pattern in the topic registry.
    Topic(String),
    /// The session's own `/user/queue/NAME`: its login and NAME.
    User {
        /// The session's login.
        login: String,
        /// The user queue name.
        queue: String,
    },
    /// A queue, which keeps its consumers itself.
    Queue(crate::queue::QueueHandle),
}

/// A subscription owned by a session.
#[derive(Debug)]
pub(super) struct Owned {
    pub target: Target,
    pub subscriber: Arc<Subscriber>,
    /// What it counts against `limits.max_subscription_bytes`.
    pub bytes: usize,
}

impl Session {
    /// SUBSCRIBE; pending while the engine puts the subscription in place (a
    /// cluster node), so its receipt says that it is.
    pub(super) async fn subscribe(&mut self, subscribe: Subscribe) -> Result<Flow, ProtocolError> {
        let Subscribe {
            id,
            destination,
            ack,
            prefetch,
            offset,
        } = &subscribe;
        let (id, destination, ack) = (id.as_str(), destination.as_str(), *ack);
        if self.subscriptions.contains_key(id) {
            return Err(ProtocolError::DuplicateSubscription(id.to_owned()));
        }
        let max = self.broker.limits().max_subscriptions;
        if self.subscriptions.len() >= max {
            return Err(ProtocolError::TooManySubscriptions(max));
        }
        // The id and destination are kept several times over (registry, encoded
        // header line, this session's map): bound what one connection may hold.
        // A replay holds, for each destination it has not finished, its name and
        // place: counted too, and bounded per SUBSCRIBE.
        let replay = self.replay_cost(destination, *offset)?;
        let bytes = id.len() + destination.len() + replay;
        let max_bytes = self.broker.limits().max_subscription_bytes;
        if self.subscription_bytes + bytes > max_bytes {
            return Err(ProtocolError::SubscriptionBytes(max_bytes));
        }
        let family = Destination::classify(destination)
            .ok_or_else(|| ProtocolError::UnknownDestination(destination.to_owned()))?;
        let forbidden = || ProtocolError::Forbidden {
            command: "SUBSCRIBE to",
            destination: destination.to_owned(),
        };
        // A session's own user queues are checked below, bound to its login.
        let own_user_queue = matches!(family, Destination::User(_));
        if !own_user_queue
            && !self
                .broker
                .access()
                .may_subscribe(&self.identity, &family, destination)
        {
            return Err(forbidden());
        }
        // The registry and key: the topic itself, or the user destination bound to
        // this session's login (`/user/queue/NAME` only; never another user's).
        let target = match family {
            Destination::Topic(name) => {
                check_topic(name, self.broker.limits().topic())?;
                Target::Topic(destination.to_owned())
            }
            Destination::User(rest) => {
                match (rest.strip_prefix("queue/"), self.identity.login.as_deref()) {
                    (Some(name), Some(login)) if valid_user_queue(name) => Target::User {
                        login: login.to_owned(),
                        queue: name.to_owned(),
                    },
                    _ => return Err(forbidden()),
                }
            }
            Destination::Queue(name) => {
                return self
                    .subscribe_queue(id, name, ack, *prefetch, bytes)
                    .await
                    .map(|()| Flow::Continue);
            }
            Destination::App(_) => return Err(forbidden()),
        };
        // A wildcard may match topics the rules close to this session: each message
        // it would receive is checked too.
        let filter = Filter::new(self.read_filter(&target));
        let subscriber = Arc::new(Subscriber {
            session: self.id,
            id: id.to_owned(),
            header: SubscriptionHeader::new(id, self.version.unwrap_or(Version::V1_2)),
            ack,
            outbox: self.outbox.clone(),
            filter,
            replay: Default::default(),
        });
        let subscribed = match &target {
            Target::Topic(t) => {
                self.broker
                    .engine
                    .subscribe_topic(t, subscriber.clone(), *offset)?
            }
            Target::User { login, queue } => {
                self.broker
                    .engine
                    .subscribe_user(login, queue, subscriber.clone())?
            }
            Target::Queue(_) => None,
        };
        self.broker.subscription_added();
        tracing::debug!(session = self.id, destination, id, "subscribed");
        self.subscription_bytes += bytes;
        self.subscriptions.insert(
            id.to_owned(),
            Owned {
                target,
                subscriber,
                bytes,
            },
        );
        Ok(subscribed.map_or(Flow::Continue, Flow::Pending))
    }

    pub(super) fn unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), ProtocolError> {
        // Unsubscribing twice is harmless, as with RabbitMQ: nothing to undo.
        if let Some(owned) = self.subscriptions.remove(&unsubscribe.id) {
            self.drop_subscription(owned);
        }
        Ok(())
    }

    async fn subscribe_queue(
        &mut self,
        id: &str,
        name: &str,
        ack: AckMode,
        prefetch: Option<usize>,
        bytes: usize,
    ) -> Result<(), ProtocolError> {
        let prefetch = prefetch.unwrap_or(self.broker.config.queues.default_prefetch);
        let queue = self.broker.engine.queue(name)?;
        let header = SubscriptionHeader::new(id, self.version.unwrap_or(Version::V1_2));
        queue
            .subscribe(crate::queue::Consumer {
                session: self.id,
                id: id.to_owned(),
                header: header.clone(),
                ack,
                prefetch,
                outbox: self.outbox.clone(),
            })
            .await;
        self.broker.subscription_added();
        let subscriber = Arc::new(Subscriber {
            session: self.id,
            id: id.to_owned(),
            header,
            ack,
            outbox: self.outbox.clone(),
            filter: Filter::default(),
            replay: Default::default(),
        });
        self.subscription_bytes += bytes;
        self.subscriptions.insert(
            id.to_owned(),
            Owned {
                target: Target::Queue(queue),
                subscriber,
                bytes,
            },
        );
        Ok(())
    }

    pub(super) fn drop_subscription(&mut self, owned: Owned) {
        self.subscription_bytes -= owned.bytes;
        let id = &owned.subscriber.id;
        let engine = &self.broker.engine;
        let found = match &owned.target {
            Target::Queue(queue) => {
                queue.unsubscribe(self.id, id);
                true
            }
            Target::Topic(t) => {
                owned.subscriber.replay.cancel();
                engine.unsubscribe_topic(t, self.id, id)
            }
            Target::User { login, queue } => engine.unsubscribe_user(login, queue, self.id, id),
        };
        if found {
            self.broker.subscription_removed();
        }
    }

    /// What a replay from `offset` of topic `destination` is counted at, or the
    /// error when it covers more than `topics.max_replay_destinations`.
    fn replay_cost(
        &self,
        destination: &str,
        offset: crate::command::StreamOffset,
    ) -> Result<usize, ProtocolError> {
        if offset == crate::command::StreamOffset::Next
            || !destination.starts_with(crate::destination::pattern::TOPIC)
        {
            return Ok(0);
        }
        let span = self.broker.engine.kept_matching(destination);
        let max = self.broker.config.topics.max_replay_destinations;
        if span.destinations > max {
            return Err(ProtocolError::ReplayTooWide {
                destination: destination.to_owned(),
                destinations: span.destinations,
                max,
            });
        }
        Ok(span.cost())
    }

    /// The check each message of a wildcard topic subscription must pass under
    /// the access rules in force, for this session's identity.
    fn read_filter(&self, target: &Target) -> Option<ReadFilter> {
        match target {
            Target::Topic(t) if is_pattern(t) => {
                ReadFilter::for_subscription(&self.broker.access(), &self.identity)
            }
            _ => None,
        }
    }

    /// After a reload: takes the session's login, roles and anonymous access
    /// from the new users, and checks every subscription against the new rules.
    /// An error ends the session: its login or anonymous access is gone, or a
    /// subscription reads what the rules now close (the ERROR names it). Wildcard
    /// subscriptions get their new read check.
    pub(super) fn recheck_access(&mut self) -> Result<(), ProtocolError> {
        match self.identity.login.clone() {
            // A token login carries its own roles until its token ends.
            Some(_) if self.token_deadline.is_some() => {}
            Some(login) => match self.broker.auth.identity_of(&login) {
                Some(identity) => self.identity = identity,
                None => return Err(ProtocolError::LoginRemoved(login)),
            },
            None if self.version.is_some() && !self.broker.auth.anonymous_allowed() => {
                return Err(ProtocolError::AnonymousRemoved);
            }
            None => {}
        }
        let access = self.broker.access();
        for owned in self.subscriptions.values() {
            let destination = match &owned.target {
                Target::Topic(t) => t.clone(),
                Target::Queue(q) => format!("/queue/{}", q.name()),
                // The session's own user queue, bound to its login.
                Target::User { .. } => continue,
            };
            let allowed = Destination::classify(&destination)
                .is_some_and(|family| access.may_subscribe(&self.identity, &family, &destination));
            if !allowed {
                return Err(ProtocolError::Forbidden {
                    command: "SUBSCRIBE to",
                    destination,
                });
            }
            owned.subscriber.filter.set(self.read_filter(&owned.target));
        }
        Ok(())
    }

    /// The handle of queue `name` if this session has a subscription on it.
    pub(super) fn subscribed_queue(&self, name: &str) -> Option<&crate::queue::QueueHandle> {
        self.subscriptions.values().find_map(|o| match &o.target {
            Target::Queue(q) if q.name() == name => Some(q),
            _ => None,
        })
    }

    /// Checks an ACK/NACK without effect: for a queue delivery, that this session
    /// consumes that queue (the headers each version requires were checked when
    /// the frame became a command). Returns the queue and delivery to ack, if it
    /// is a queue delivery.
    pub(super) fn check_ack(
        &self,
        ack: &command::Ack,
    ) -> Result<Option<(crate::queue::QueueHandle, u64)>, ProtocolError> {
        // Queue deliveries carry an ack id naming their queue; topic acks need nothing.
        let Some((name, delivery)) = crate::queue::parse_ack_id(&ack.ack_id) else {
            return Ok(None);
        };
        // Only a queue this session consumes can have given it that id; an ACK
        // never creates or even looks up another queue.
        let queue = self
            .subscribed_queue(name)
            .ok_or_else(|| ProtocolError::UnknownAck(ack.ack_id.clone()))?;
        Ok(Some((queue.clone(), delivery)))
    }

    /// ACK/NACK. Topic messages are not kept for redelivery, so there is nothing
    /// more to do for them. A receipted ACK/NACK of a queue delivery is pending
    /// until it has taken effect (durably, for a stored message).
    pub(super) async fn ack(&mut self, ack: &command::Ack) -> Result<Flow, ProtocolError> {
        if let Some((queue, delivery)) = self.check_ack(ack)?
            && let Some(answer) = queue.ack(self.id, delivery, ack.nack, ack.receipted).await
        {
            return Ok(Flow::Pending(answer));
        }
        Ok(Flow::Continue)
    }
}
