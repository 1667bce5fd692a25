//! What a destination is: the families (`/topic`, `/queue`, `/user`, `/app`), the
//! names and keys the broker builds from them, and topic patterns
//! ([`pattern`]). Pure functions with no state: every layer above may use them.

pub mod pattern;

/// The destination families of the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// `/topic/...`: broadcast.
    Topic(&'a str),
    /// `/queue/...`: point-to-point.
    Queue(&'a str),
    /// `/user/...`: one user's sessions.
    User(&'a str),
    /// `/app/...`: the broker's own application handlers.
    App(&'a str),
}

impl<'a> Destination<'a> {
    /// Classifies a destination by prefix; `None` for an unknown prefix or an empty name.
    pub fn classify(destination: &'a str) -> Option<Destination<'a>> {
        let (family, name) = destination.strip_prefix('/')?.split_once('/')?;
        if name.is_empty() {
            return None;
        }
        match family {
            "topic" => Some(Destination::Topic(name)),
            "queue" => Some(Destination::Queue(name)),
            "user" => Some(Destination::User(name)),
            "app" => Some(Destination::App(name)),
            _ => None,
        }
    }
}

/// Headers a sender may not pass through to receivers: the broker sets them.
pub const RESERVED: &[&str] = &[
    "destination",
    "message-id",
    "subscription",
    "ack",
    "receipt",
    "transaction",
    "content-length",
    "x-stream-offset",
    "x-stream-gap",
    "retained",
];

/// The registry key of a user destination. Only the broker builds these: clients
/// subscribe to `/user/queue/NAME` and are bound to their own login. The key lives
/// in the user registry only, never among topics.
pub fn user_key(login: &str, queue: &str) -> String {
    format!("/user/{login}/queue/{queue}")
}

/// Whether `name` may be a user queue name: non-empty, no wildcard characters.
pub fn valid_user_queue(name: &str) -> bool {
    !name.is_empty() && !name.contains(['*', '#'])
}

/// Splits a SEND destination `/user/{login}/queue/{name}` (the part after `/user/`).
pub fn parse_user_send(rest: &str) -> Option<(&str, &str)> {
    let (login, tail) = rest.split_once('/')?;
    let name = tail.strip_prefix("queue/")?;
    (!login.is_empty() && valid_user_queue(name)).then_some((login, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_prefix() {
        assert_eq!(
            Destination::classify("/topic/a.b"),
            Some(Destination::Topic("a.b"))
        );
        assert_eq!(
            Destination::classify("/queue/jobs"),
            Some(Destination::Queue("jobs"))
        );
        assert_eq!(
            Destination::classify("/user/queue/x"),
            Some(Destination::User("queue/x"))
        );
        assert_eq!(
            Destination::classify("/app/trade"),
            Some(Destination::App("trade"))
        );
        assert_eq!(Destination::classify("/topic/"), None);
        assert_eq!(Destination::classify("/exchange/x"), None);
        assert_eq!(Destination::classify("topic/x"), None);
        assert_eq!(Destination::classify(""), None);
    }

    #[test]
    fn user_send_destinations() {
        assert_eq!(
            parse_user_send("alice/queue/trade-confirmation"),
            Some(("alice", "trade-confirmation"))
        );
        assert_eq!(parse_user_send("alice/queue/"), None);
        assert_eq!(parse_user_send("alice/topic/x"), None);
        assert_eq!(parse_user_send("queue/x"), None);
        assert_eq!(parse_user_send("alice/queue/a.*"), None);
    }
}
