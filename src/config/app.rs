//! `[[app.routes]]`: `/app` destinations served by backends of any language,
//! through a queue or over HTTP.

use super::ConfigError;
use serde::Deserialize;

/// `[app]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// Routes, tried in order after the broker's own handlers.
    pub routes: Vec<AppRouteConfig>,
}

/// One `[[app.routes]]` entry: a pattern under `/app` and one target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppRouteConfig {
    /// The destinations served: `/app/...`, words `*` (one) and `#` (any).
    #[serde(rename = "match")]
    pub pattern: String,
    /// Target: each SEND becomes a message on `/queue/{queue}`.
    #[serde(default)]
    pub queue: Option<String>,
    /// Target: each SEND is POSTed as JSON to this `http://` URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Destinations (topic patterns) an HTTP backend's answer may publish to,
    /// besides the sender's own user destinations.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Requests to an HTTP backend in flight at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Milliseconds an HTTP backend has to answer.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_max_in_flight() -> usize {
    64
}

fn default_timeout_ms() -> u64 {
    5000
}

/// The access rules in force: `acl` (the file's `[[auth.acl]]`, first), then
/// for each queue route, its queue readable and writable by services and
/// admins only: what senders give a route is for its backends, not for
/// another trader subscribing to the queue.
pub fn access_rules(
    acl: &[crate::auth::acl::AclRule],
    routes: &[AppRouteConfig],
) -> Vec<crate::auth::acl::AclRule> {
    let backends = vec!["service".to_owned(), "admin".to_owned()];
    let routed = routes.iter().filter_map(|r| {
        Some(crate::auth::acl::AclRule {
            pattern: format!("/queue/{}", r.queue.as_ref()?),
            send: backends.clone(),
            subscribe: backends.clone(),
        })
    });
    acl.iter().cloned().chain(routed).collect()
}

/// The most routes a configuration may have (each is tried in order).
pub const MAX_ROUTES: usize = 256;

impl AppConfig {
    /// Refuses a route that could not work, naming it.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::BadValue {
            key: "app.routes",
            reason,
        };
        if self.routes.len() > MAX_ROUTES {
            return Err(bad(format!("more than {MAX_ROUTES} routes")));
        }
        for r in &self.routes {
            let name = &r.pattern;
            let under_app = name
                .strip_prefix("/app/")
                .is_some_and(|rest| !rest.is_empty() && rest.split('.').all(|w| !w.is_empty()));
            if !under_app {
                return Err(bad(format!(
                    "match {name:?} is not an /app/ destination or pattern"
                )));
            }
            match (&r.queue, &r.url) {
                (Some(q), None) => {
                    let valid = !q.is_empty()
                        && q.len() <= 256
                        && !q.contains(['*', '#', '/'])
                        && !q.chars().any(|c| c.is_whitespace() || c.is_control());
                    if !valid {
                        return Err(bad(format!(
                            "{name}: queue {q:?} is not a queue name (no /, *, #, whitespace)"
                        )));
                    }
                }
                (None, Some(url)) => {
                    let parsed = url
                        .parse::<hyper::Uri>()
                        .ok()
                        .filter(|u| u.scheme_str() == Some("http") && u.authority().is_some());
                    if parsed.is_none() {
                        return Err(bad(format!(
                            "{name}: url {url:?} is not an http:// URL (https backends: put a proxy on loopback)"
                        )));
                    }
                }
                _ => {
                    return Err(bad(format!("{name}: give exactly one of queue or url")));
                }
            }
            if let Some(p) = r.publish.iter().find(|p| !p.starts_with("/topic/")) {
                return Err(bad(format!(
                    "{name}: publish {p:?} is not a /topic/ pattern"
                )));
            }
            if r.max_in_flight == 0 || r.timeout_ms == 0 {
                return Err(bad(format!(
                    "{name}: max_in_flight and timeout_ms must be greater than 0"
                )));
            }
        }
        Ok(())
    }
}
