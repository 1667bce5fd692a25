//! `[[app.routes]]`: `/app` destinations served by backends in any language.
//!
//! A route to a queue turns each SEND into a message on `/queue/NAME`, which
//! backend services consume as competing consumers, with headers only the
//! broker sets: who sent it and where, and where to answer.

use crate::auth::Role;
use crate::codec::Headers;
use crate::config::AppRouteConfig;
use crate::destination::pattern::matches_in;

/// Headers only a route sets: a sender's own copies are removed from every
/// SEND, so a backend can trust them.
pub const ROUTE_HEADERS: &[&str] = &["x-app-destination", "x-app-login", "x-app-roles"];

/// The user queue a backend answers on when the sender named none
/// (`reply-to: /user/queue/NAME`).
pub const DEFAULT_REPLY_QUEUE: &str = "replies";

/// Where a route sends what it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/queue/{0}`.
    Queue(String),
    /// An HTTP backend.
    Http(std::sync::Arc<super::http::HttpTarget>),
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRoute {
    /// Its `match` pattern (also its `route` metric label).
    pub pattern: String,
    /// Where it sends.
    pub target: Target,
}

/// The configured routes, in order.
#[derive(Debug, Clone, Default)]
pub struct AppRoutes {
    routes: Vec<std::sync::Arc<AppRoute>>,
}

impl AppRoutes {
    /// The routes of `[[app.routes]]` (checked when the configuration loaded).
    pub fn new(config: &[AppRouteConfig]) -> AppRoutes {
        let routes = config
            .iter()
            .filter_map(|r| {
                let target = match (&r.queue, &r.url) {
                    (Some(queue), _) => Target::Queue(queue.clone()),
                    (None, Some(url)) => {
                        Target::Http(std::sync::Arc::new(super::http::HttpTarget::new(
                            url,
                            r.publish.clone(),
                            r.max_in_flight,
                            std::time::Duration::from_millis(r.timeout_ms),
                        )?))
                    }
                    (None, None) => return None,
                };
                Some(std::sync::Arc::new(AppRoute {
                    pattern: r.pattern.clone(),
                    target,
                }))
            })
            .collect();
        AppRoutes { routes }
    }

    /// The first route whose pattern matches `destination`.
    pub fn find(&self, destination: &str) -> Option<&std::sync::Arc<AppRoute>> {
        self.routes
            .iter()
            .find(|r| matches_in("/app/", &r.pattern, destination))
    }
}

/// Removes the headers only routes set from a SEND's headers.
pub fn strip_route_headers(headers: &mut Headers) {
    for name in ROUTE_HEADERS {
        headers.remove(name);
    }
}

/// The headers of the message a queue route makes of a SEND to `destination`
/// by `login` with `roles`: the sender's own (without [`ROUTE_HEADERS`]), then
/// the route's, and `reply-to` naming the sender's own user queue: the one the
/// sender named as `reply-to: /user/queue/NAME`, else [`DEFAULT_REPLY_QUEUE`].
pub fn routed_headers(sent: &Headers, destination: &str, login: &str, roles: &[Role]) -> Headers {
    let reply_queue = sent
        .get("reply-to")
        .and_then(|r| r.strip_prefix("/user/queue/"))
        .filter(|q| crate::destination::valid_user_queue(q))
        .unwrap_or(DEFAULT_REPLY_QUEUE);
    let mut headers: Headers = sent
        .iter()
        .filter(|(k, _)| !ROUTE_HEADERS.contains(k) && *k != "reply-to")
        .collect();
    let roles: Vec<String> = roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect();
    headers.push("x-app-destination", destination);
    headers.push("x-app-login", login);
    headers.push("x-app-roles", roles.join(","));
    headers.push("reply-to", crate::destination::user_key(login, reply_queue));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routed_message_carries_who_sent_it_and_nothing_the_sender_forged() {
        let sent: Headers = [
            ("destination", "/app/chat.room1"),
            ("content-type", "text/plain"),
            ("x-app-login", "root"),
            ("x-app-roles", "admin"),
            ("reply-to", "/user/root/queue/steal"),
        ]
        .into_iter()
        .collect();
        let h = routed_headers(&sent, "/app/chat.room1", "alice", &[Role::Trader]);
        assert_eq!(h.get("x-app-login"), Some("alice"));
        assert_eq!(h.get("x-app-roles"), Some("trader"));
        assert_eq!(h.get("x-app-destination"), Some("/app/chat.room1"));
        assert_eq!(h.get_all("x-app-login").count(), 1);
        // Someone else's user queue is not a reply-to: the default is.
        assert_eq!(h.get("reply-to"), Some("/user/alice/queue/replies"));
        assert_eq!(h.get("content-type"), Some("text/plain"));
        let sent: Headers = [("reply-to", "/user/queue/chat-answers")]
            .into_iter()
            .collect();
        let h = routed_headers(&sent, "/app/x", "bob", &[]);
        assert_eq!(h.get("reply-to"), Some("/user/bob/queue/chat-answers"));
        assert_eq!(h.get("x-app-roles"), Some(""));
    }

    #[test]
    fn routes_match_in_order() {
        let config = |pattern: &str, queue: &str| AppRouteConfig {
            pattern: pattern.into(),
            queue: Some(queue.into()),
            url: None,
            publish: Vec::new(),
            max_in_flight: 1,
            timeout_ms: 1,
        };
        let routes = AppRoutes::new(&[
            config("/app/chat.lobby", "lobby"),
            config("/app/chat.#", "chat"),
        ]);
        let target = |d: &str| routes.find(d).map(|r| r.target.clone());
        assert_eq!(
            target("/app/chat.lobby"),
            Some(Target::Queue("lobby".into()))
        );
        assert_eq!(
            target("/app/chat.room1.x"),
            Some(Target::Queue("chat".into()))
        );
        assert_eq!(target("/app/trade"), None);
        assert_eq!(target("/topic/chat.lobby"), None);
    }
}
