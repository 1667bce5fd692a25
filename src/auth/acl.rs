//! Access rules: who may SEND to and SUBSCRIBE to which destinations.
//!
//! `[[auth.acl]]` entries `{ match, send, subscribe }`, in file order: the first
//! entry whose `match` pattern (topic wildcards after the family prefix) matches a
//! destination decides for it; where no entry matches, the built-in rules of the
//! roles apply unchanged ([`Identity::may_send`], [`Identity::may_subscribe`]).
//! Principals are the roles plus `anonymous` (no login) and `authenticated` (any
//! login). A session's own `/user/queue/**` is always readable by its login, and is
//! not subject to rules.
//!
//! Wildcards never read past a rule: a wildcard SUBSCRIBE is itself checked as a
//! destination (its `*` and `#` as literal words), and, when any rule exists, every
//! message a wildcard subscription would receive is checked against the rules for
//! its concrete destination ([`ReadFilter`]).

use super::{Identity, Role};
use crate::destination::Destination;
use crate::destination::pattern::matches_in;
use serde::Deserialize;
use std::sync::Arc;

/// One `[[auth.acl]]` entry as written in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// A destination or pattern, e.g. `/queue/orders.#`, `/topic/#`, `/app/trade`.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Who may SEND to matching destinations.
    #[serde(default)]
    pub send: Vec<String>,
    /// Who may SUBSCRIBE to matching destinations.
    #[serde(default)]
    pub subscribe: Vec<String>,
}

/// Who a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Principal {
    Anonymous,
    Authenticated,
    Role(Role),
}

impl Principal {
    fn parse(name: &str) -> Result<Principal, String> {
        match name {
            "anonymous" => Ok(Principal::Anonymous),
            "authenticated" => Ok(Principal::Authenticated),
            other => serde_json::from_value::<Role>(serde_json::Value::String(other.to_owned()))
                .map(Principal::Role)
                .map_err(|_| {
                    format!(
                        "{other:?} is not a role (trader, service, admin) or a pseudo-role (anonymous, authenticated)"
                    )
                }),
        }
    }

    fn covers(self, who: &Identity) -> bool {
        match self {
            Principal::Anonymous => who.login.is_none(),
            Principal::Authenticated => who.login.is_some(),
            Principal::Role(r) => who.login.is_some() && who.roles.contains(&r),
        }
    }
}

#[derive(Debug)]
struct Rule {
    /// `/topic/`, `/queue/`, `/user/` or `/app/`.
    family: &'static str,
    pattern: String,
    send: Vec<Principal>,
    subscribe: Vec<Principal>,
}

/// The access rules of the broker.
#[derive(Debug, Default)]
pub struct Access {
    rules: Vec<Rule>,
}

fn family_prefix(d: &Destination<'_>) -> &'static str {
    match d {
        Destination::Topic(_) => "/topic/",
        Destination::Queue(_) => "/queue/",
        Destination::User(_) => "/user/",
        Destination::App(_) => "/app/",
    }
}

impl Access {
    /// Checks and compiles the configured rules; the error names what is wrong.
    pub fn new(rules: &[AclRule]) -> Result<Access, String> {
        let rules = rules
            .iter()
            .map(|r| {
                let family = Destination::classify(&r.pattern)
                    .map(|d| family_prefix(&d))
                    .ok_or_else(|| {
                        format!(
                            "match {:?} is not a /topic/, /queue/, /user/ or /app/ destination",
                            r.pattern
                        )
                    })?;
                let parse = |names: &[String]| {
                    names
                        .iter()
                        .map(|n| Principal::parse(n))
                        .collect::<Result<Vec<_>, _>>()
                };
                Ok(Rule {
                    family,
                    pattern: r.pattern.clone(),
                    send: parse(&r.send)?,
                    subscribe: parse(&r.subscribe)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Access { rules })
    }

    /// Whether any rule is configured.
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The first rule matching `destination`, if any.
    fn rule_for(&self, destination: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            destination.starts_with(r.family) && matches_in(r.family, &r.pattern, destination)
        })
    }

    /// Whether `who` may SEND to `destination` (of family `family`).
    pub fn may_send(&self, who: &Identity, family: &Destination<'_>, destination: &str) -> bool {
        match self.rule_for(destination) {
            Some(rule) => rule.send.iter().any(|p| p.covers(who)),
            None => who.may_send(family),
        }
    }

    /// Whether `who` may SUBSCRIBE to `destination` (a pattern is checked as a
    /// destination whose `*` and `#` are words). A session's own user queues are
    /// checked by the session itself and are not subject to rules.
    pub fn may_subscribe(
        &self,
        who: &Identity,
        family: &Destination<'_>,
        destination: &str,
    ) -> bool {
        match self.rule_for(destination) {
            Some(rule) => rule.subscribe.iter().any(|p| p.covers(who)),
            None => who.may_subscribe(family),
        }
    }

    /// Whether `who` may receive a message published to the concrete topic
    /// `destination` through a wildcard subscription.
    pub fn may_read(&self, who: &Identity, destination: &str) -> bool {
        match self.rule_for(destination) {
            Some(rule) => rule.subscribe.iter().any(|p| p.covers(who)),
            None => true,
        }
    }
}

/// The check a wildcard topic subscription applies to every message it would
/// receive, when access rules exist.
#[derive(Debug, Clone)]
pub struct ReadFilter {
    access: Arc<Access>,
    identity: Identity,
}

impl ReadFilter {
    /// A filter for `identity` under `access`, or `None` when no rule could ever
    /// refuse a message (no rules at all).
    pub fn for_subscription(access: &Arc<Access>, identity: &Identity) -> Option<ReadFilter> {
        access.has_rules().then(|| ReadFilter {
            access: access.clone(),
            identity: identity.clone(),
        })
    }

    /// Whether the subscriber may read a message of `destination`.
    pub fn allows(&self, destination: &str) -> bool {
        self.access.may_read(&self.identity, destination)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, send: &[&str], subscribe: &[&str]) -> AclRule {
        AclRule {
            pattern: pattern.into(),
            send: send.iter().map(|s| s.to_string()).collect(),
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn who(login: Option<&str>, roles: &[Role]) -> Identity {
        Identity {
            login: login.map(str::to_owned),
            roles: roles.to_vec(),
        }
    }

    #[test]
    fn the_first_matching_rule_decides_and_built_ins_apply_elsewhere() {
        let a = Access::new(&[
            rule(
                "/queue/test",
                &["anonymous", "authenticated"],
                &["anonymous"],
            ),
            rule("/topic/private.#", &["service"], &["admin"]),
            rule("/topic/#", &["trader"], &["authenticated"]),
        ])
        .unwrap();
        let anon = who(None, &[]);
        let trader = who(Some("t"), &[Role::Trader]);
        let admin = who(Some("a"), &[Role::Admin]);
        let q = Destination::Queue("test");
        assert!(a.may_send(&anon, &q, "/queue/test") && a.may_subscribe(&anon, &q, "/queue/test"));
        assert!(!a.may_subscribe(&trader, &q, "/queue/test"));
        let p = Destination::Topic("private.x");
        assert!(a.may_subscribe(&admin, &p, "/topic/private.x"));
        assert!(!a.may_subscribe(&trader, &p, "/topic/private.x"));
        let t = Destination::Topic("news");
        assert!(
            a.may_send(&trader, &t, "/topic/news"),
            "the rule grants what built-ins do not"
        );
        assert!(!a.may_subscribe(&anon, &t, "/topic/news"));
        // No rule for other queues: built in.
        let o = Destination::Queue("orders");
        assert!(
            a.may_subscribe(&trader, &o, "/queue/orders")
                && !a.may_subscribe(&anon, &o, "/queue/orders")
        );
        assert!(!a.may_read(&trader, "/topic/private.x") && a.may_read(&admin, "/topic/private.x"));
    }

    #[test]
    fn patterns_are_checked_as_destinations() {
        let a = Access::new(&[rule("/topic/private.#", &[], &["admin"])]).unwrap();
        let anon = who(None, &[]);
        let t = Destination::Topic("private.*");
        assert!(!a.may_subscribe(&anon, &t, "/topic/private.*"));
        assert!(a.may_subscribe(&anon, &Destination::Topic("#"), "/topic/#"));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let e = Access::new(&[rule("/topic/x", &["pilot"], &[])]).unwrap_err();
        assert!(e.contains("pilot"), "{e}");
        let e = Access::new(&[rule("/nowhere/x", &[], &[])]).unwrap_err();
        assert!(e.contains("/nowhere/x"), "{e}");
        assert!(!Access::new(&[]).unwrap().has_rules());
    }
}
