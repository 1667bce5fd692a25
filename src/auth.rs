//! Users, roles and rights.
//!
//! Passwords are argon2id PHC strings (`stompede hash-password`). Verifying one is
//! slow on purpose, so it runs on a few dedicated threads behind a bounded queue
//! ([`verifier`]), never on the async runtime, and failed logins are throttled per
//! client address ([`throttle`]). Rights follow the contract's roles:
//!
//! | who | SEND | SUBSCRIBE |
//! |---|---|---|
//! | anonymous (if `auth.anonymous`) | nothing | `/topic/**` |
//! | `trader` | `/app/**` | `/topic/**`, `/queue/**`, own `/user/queue/**` |
//! | `service` | anywhere, including `/user/{login}/...` | as trader |
//! | `admin` | anywhere | anything a session can subscribe to |

pub mod acl;
pub mod cache;
pub mod throttle;
pub mod token;
pub mod verifier;

use crate::destination::Destination;
use crate::metrics::Metrics;
use argon2::Argon2;
use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::PasswordHash;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// A role from `[[auth.users]] roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Trades through `/app/**`, reads topics, queues and its own user queues.
    Trader,
    /// A backend service: may also SEND anywhere, including other users' destinations.
    Service,
    /// Everything.
    Admin,
}

/// One configured user.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The STOMP `login`.
    pub login: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Roles granted.
    pub roles: Vec<Role>,
}

/// Who a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `None` for an anonymous session.
    pub login: Option<String>,
    /// Granted roles (empty when anonymous).
    pub roles: Vec<Role>,
}

impl Identity {
    /// An anonymous session.
    pub fn anonymous() -> Self {
        Identity {
            login: None,
            roles: Vec::new(),
        }
    }

    fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether this identity may SEND to `destination`.
    pub fn may_send(&self, destination: &Destination<'_>) -> bool {
        if self.has(Role::Admin) || self.has(Role::Service) {
            return true;
        }
        self.has(Role::Trader) && matches!(destination, Destination::App(_))
    }

    /// Whether this identity may SUBSCRIBE to `destination`. User destinations are
    /// checked further by their own rules (only `/user/queue/...`, bound to the login).
    pub fn may_subscribe(&self, destination: &Destination<'_>) -> bool {
        match destination {
            Destination::Topic(_) => true,
            Destination::Queue(_) | Destination::User(_) => {
                self.login.is_some() && !self.roles.is_empty()
            }
            Destination::App(_) => false,
        }
    }
}

/// Why a CONNECT was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    /// Wrong login or passcode (deliberately not saying which).
    #[error("authentication failed")]
    Failed,
    /// No credentials, and anonymous access is off.
    #[error("authentication required")]
    Required,
    /// Too many failed logins from this address lately.
    #[error(
        "too many failed logins from this address; retry later (limits.max_failed_logins_per_ip)"
    )]
    Throttled,
    /// This address has as many logins waiting for a check as it may.
    #[error(
        "too many logins in progress from this address; retry (limits.max_queued_logins_per_ip)"
    )]
    AddressBusy,
    /// The queue of password checks is full.
    #[error("too many logins waiting for a password check; retry (limits.max_queued_logins)")]
    Busy,
}

impl AuthError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Failed | AuthError::Required => "authentication_failed",
            AuthError::Throttled => "login_throttled",
            AuthError::AddressBusy | AuthError::Busy => "login_busy",
        }
    }
}

/// Bounds on password logins (from `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Threads running password checks.
    pub checks: usize,
    /// Logins that may wait for a check, broker-wide.
    pub queued: usize,
    /// Logins that may wait for a check, per client address.
    pub queued_per_address: usize,
    /// Failed logins per address per window before its logins are refused.
    pub failures_per_address: u32,
    /// The failure window.
    pub failure_window: Duration,
    /// How long a verified login and password is remembered (`auth.cache_ttl_s`).
    pub cache_ttl: Duration,
    /// Most remembered credentials (`auth.cache_max_entries`; 0 turns the cache off).
    pub cache_max: usize,
}

/// Why a password could not be hashed.
#[derive(Debug, Error)]
#[error("cannot hash password: {0}")]
pub struct HashError(String);

/// Hashes a password into an argon2id PHC string with a random salt and the
/// library's default (OWASP-recommended) cost.
pub fn hash_password(password: &[u8]) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `login` may be a login, from the users file or a token alike:
/// non-empty, at most [`MAX_LOGIN_BYTES`], no `/` (so the user destination key
/// `/user/{login}/queue/{name}` of one login can never be another's), no `:`
/// (Basic authentication), no whitespace or control character.
pub fn well_formed_login(login: &str) -> bool {
    !login.is_empty()
        && login.len() <= MAX_LOGIN_BYTES
        && !login.contains(['/', ':'])
        && !login.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The longest login, file or token, in bytes.
pub const MAX_LOGIN_BYTES: usize = 256;

/// Checks that `hash` is an argon2id PHC string; the error says what is wrong.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC string ({e})"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!("algorithm {} is not argon2id", parsed.algorithm));
    }
    Ok(())
}

/// What a CONNECT offers to prove who it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The `login` header.
    pub login: Option<&'a str>,
    /// The `passcode` header: a password, or a JWT.
    pub passcode: Option<&'a str>,
    /// The token of an `Authorization: Bearer` header.
    pub bearer: Option<&'a str>,
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// Who the session is.
    pub identity: Identity,
    /// For a token login, when the token (with its leeway) runs out.
    pub valid_until: Option<SystemTime>,
}

/// Verifies CONNECT credentials against the configured users and token key.
#[derive(Debug)]
pub struct Authenticator {
    /// Token logins, when `[auth.jwt]` is set.
    tokens: Option<token::TokenVerifier>,
    /// The configured users; replaced whole by a reload.
    users: std::sync::RwLock<Arc<Users>>,
    /// Bumped by every reload: a check that began before one does not fill the
    /// cache after it (its user may have a new password or roles since).
    generation: std::sync::atomic::AtomicU64,
    verifier: verifier::Verifier,
    throttle: throttle::Throttle,
    in_progress: Arc<throttle::InProgress>,
    /// Verified credentials, so reconnecting clients skip argon2.
    cache: cache::CredentialCache,
    metrics: Arc<Metrics>,
}

/// The user table of one configuration.
#[derive(Debug)]
struct Users {
    by_login: HashMap<String, User>,
    anonymous: bool,
    /// Verified against for unknown logins, so their answer takes as long as a
    /// wrong password and does not reveal which logins exist.
    dummy_hash: Option<String>,
}

impl Users {
    fn new(users: &[User], anonymous: bool) -> Users {
        Users {
            dummy_hash: users.first().map(|u| u.password_hash.clone()),
            by_login: users.iter().map(|u| (u.login.clone(), u.clone())).collect(),
            anonymous,
        }
    }
}

impl Authenticator {
    /// Builds the user table and starts the password-check threads. Hashes were
    /// checked when the configuration loaded.
    pub fn new(
        users: &[User],
        anonymous: bool,
        limits: LoginLimits,
        tokens: Option<token::TokenVerifier>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Authenticator {
            tokens,
            users: std::sync::RwLock::new(Arc::new(Users::new(users, anonymous))),
            generation: std::sync::atomic::AtomicU64::new(0),
            verifier: verifier::Verifier::new(limits.checks, limits.queued),
            throttle: throttle::Throttle::new(limits.failures_per_address, limits.failure_window),
            in_progress: throttle::InProgress::new(limits.queued_per_address),
            cache: cache::CredentialCache::new(limits.cache_ttl, limits.cache_max),
            metrics,
        }
    }

    /// Replaces the users (a configuration reload) and forgets every remembered
    /// credential; returns the logins that are gone. Sessions already open keep
    /// their login; the broker disconnects those of removed users.
    pub fn set_users(&self, users: &[User], anonymous: bool) -> Vec<String> {
        let new = Arc::new(Users::new(users, anonymous));
        let old = std::mem::replace(
            &mut *self.users.write().unwrap_or_else(|p| p.into_inner()),
            new.clone(),
        );
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.cache.clear();
        let mut removed: Vec<String> = old
            .by_login
            .keys()
            .filter(|l| !new.by_login.contains_key(*l))
            .cloned()
            .collect();
        removed.sort();
        removed
    }

    /// Whether `login` is a configured user now.
    pub fn has_user(&self, login: &str) -> bool {
        self.users().by_login.contains_key(login)
    }

    /// Who `login` is now (its roles in the users in force), if it is a user.
    pub fn identity_of(&self, login: &str) -> Option<Identity> {
        self.users().by_login.get(login).map(|u| Identity {
            login: Some(u.login.clone()),
            roles: u.roles.clone(),
        })
    }

    /// Whether clients may connect without a login now (`auth.anonymous`).
    pub fn anonymous_allowed(&self) -> bool {
        self.users().anonymous
    }

    fn users(&self) -> Arc<Users> {
        self.users.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Authenticates a CONNECT from client address `peer`: a token when token
    /// logins are on and the CONNECT carries one (as `Authorization: Bearer` or as
    /// a passcode shaped like a JWT), otherwise login and password (or anonymous).
    pub async fn connect(
        self: &Arc<Self>,
        credentials: Credentials<'_>,
        peer: IpAddr,
    ) -> Result<Login, AuthError> {
        let token = credentials
            .bearer
            .or(credentials.passcode.filter(|p| token::looks_like_jwt(p)));
        match (&self.tokens, token) {
            (Some(verifier), Some(token)) => {
                self.token_login(verifier, token, credentials.login, peer)
            }
            _ => {
                let identity = self
                    .authenticate(credentials.login, credentials.passcode, peer)
                    .await?;
                let method = if identity.login.is_some() {
                    "password"
                } else {
                    "anonymous"
                };
                self.metrics.login(method);
                Ok(Login {
                    identity,
                    valid_until: None,
                })
            }
        }
    }

    fn token_login(
        &self,
        verifier: &token::TokenVerifier,
        token: &str,
        login: Option<&str>,
        peer: IpAddr,
    ) -> Result<Login, AuthError> {
        if self.throttle.blocked(peer) {
            self.metrics.auth_failure("throttled");
            return Err(AuthError::Throttled);
        }
        let refused = |why: &dyn std::fmt::Display| {
            tracing::info!(%peer, reason = %why, "token login refused");
            self.throttle.failed(peer);
            self.metrics.auth_failure("bad_token");
            AuthError::Failed
        };
        let verified = verifier.verify(token).map_err(|e| refused(&e))?;
        // A login header, if any, must name the token's own login.
        if login.is_some_and(|l| !l.is_empty() && Some(l) != verified.identity.login.as_deref()) {
            return Err(refused(&"login header differs from the token's login"));
        }
        self.metrics.login("token");
        Ok(Login {
            identity: verified.identity,
            valid_until: Some(verified.valid_until),
        })
    }

    /// Authenticates a CONNECT's `login` and `passcode` from client address `peer`.
    pub async fn authenticate(
        self: &Arc<Self>,
        login: Option<&str>,
        passcode: Option<&str>,
        peer: IpAddr,
    ) -> Result<Identity, AuthError> {
        let users = self.users();
        let Some(login) = login.filter(|l| !l.is_empty()) else {
            return if users.anonymous {
                Ok(Identity::anonymous())
            } else {
                Err(AuthError::Required)
            };
        };
        let refused = |e: AuthError, label: &'static str| {
            self.metrics.auth_failure(label);
            tracing::info!(login, %peer, reason = e.reason(), "login refused");
            e
        };
        if self.throttle.blocked(peer) {
            return Err(refused(AuthError::Throttled, "throttled"));
        }
        let passcode = passcode.unwrap_or("");
        let user = users.by_login.get(login);
        if user.is_some()
            && let Some(identity) = self.cache.get(login, passcode)
        {
            self.metrics.auth_cache_hit();
            return Ok(identity);
        }
        let hash = match (user, &users.dummy_hash) {
            (Some(u), _) => u.password_hash.clone(),
            (None, Some(dummy)) => dummy.clone(),
            (None, None) => {
                self.throttle.failed(peer);
                return Err(refused(AuthError::Failed, "bad_credentials"));
            }
        };
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let Some(_place) = self.in_progress.enter(peer) else {
            return Err(refused(AuthError::AddressBusy, "busy"));
        };
        let ok = match self
            .verifier
            .verify(hash, passcode.as_bytes().to_vec())
            .await
        {
            Ok(ok) => ok,
            Err(verifier::Busy) => return Err(refused(AuthError::Busy, "busy")),
        };
        match user {
            Some(u) if ok => {
                let identity = Identity {
                    login: Some(u.login.clone()),
                    roles: u.roles.clone(),
                };
                if self.generation.load(std::sync::atomic::Ordering::Acquire) == generation {
                    self.cache.insert(login, passcode, &identity);
                }
                Ok(identity)
            }
            _ => {
                self.throttle.failed(peer);
                Err(refused(AuthError::Failed, "bad_credentials"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(login: &str, password: &str, roles: &[Role]) -> User {
        User {
            login: login.into(),
            password_hash: hash_password(password.as_bytes()).unwrap(),
            roles: roles.to_vec(),
        }
    }

    fn limits() -> LoginLimits {
        LoginLimits {
            checks: 1,
            queued: 16,
            queued_per_address: 4,
            failures_per_address: 100,
            failure_window: Duration::from_secs(60),
            cache_ttl: Duration::from_secs(60),
            cache_max: 100,
        }
    }

    fn authenticator(users: &[User], anonymous: bool) -> Arc<Authenticator> {
        Arc::new(Authenticator::new(
            users,
            anonymous,
            limits(),
            None,
            Arc::new(Metrics::new()),
        ))
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn right_password_wrong_password_unknown_login_and_anonymous() {
        let auth = authenticator(&[user("alice", "s3cret", &[Role::Trader])], true);
        let who = auth
            .authenticate(Some("alice"), Some("s3cret"), PEER)
            .await
            .unwrap();
        assert_eq!(who.login.as_deref(), Some("alice"));
        assert_eq!(who.roles, [Role::Trader]);
        assert_eq!(
            auth.authenticate(Some("alice"), Some("wrong"), PEER).await,
            Err(AuthError::Failed)
        );
        assert_eq!(
            auth.authenticate(Some("alice"), None, PEER).await,
            Err(AuthError::Failed)
        );
        assert_eq!(
            auth.authenticate(Some("mallory"), Some("s3cret"), PEER)
                .await,
            Err(AuthError::Failed)
        );
        assert_eq!(
            auth.authenticate(None, None, PEER).await,
            Ok(Identity::anonymous())
        );
        // The second right login is answered from the cache; a wrong one never is.
        assert!(auth.cache.get("alice", "s3cret").is_some());
        assert!(auth.cache.get("alice", "wrong").is_none());
        assert_eq!(
            auth.authenticate(Some("alice"), Some("s3cret"), PEER)
                .await
                .map(|i| i.login),
            Ok(Some("alice".to_owned()))
        );
        let closed = authenticator(&[], false);
        assert_eq!(
            closed.authenticate(None, None, PEER).await,
            Err(AuthError::Required)
        );
    }

    #[test]
    fn hashes_are_argon2id_phc_strings() {
        let h = hash_password(b"pw").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(check_hash(&h).is_ok());
        assert!(check_hash("plain").is_err());
        assert!(check_hash("$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$aGFzaA").is_err());
        assert_ne!(hash_password(b"pw").unwrap(), h, "salted");
    }

    #[test]
    fn rights_follow_the_roles() {
        let anon = Identity::anonymous();
        let trader = Identity {
            login: Some("t".into()),
            roles: vec![Role::Trader],
        };
        let service = Identity {
            login: Some("s".into()),
            roles: vec![Role::Service],
        };
        let topic = Destination::Topic("x");
        let app = Destination::App("trade");
        let user = Destination::User("queue/x");
        let queue = Destination::Queue("q");
        assert!(
            anon.may_subscribe(&topic) && !anon.may_subscribe(&user) && !anon.may_subscribe(&queue)
        );
        assert!(!anon.may_send(&topic) && !anon.may_send(&app));
        assert!(trader.may_send(&app) && !trader.may_send(&topic) && !trader.may_send(&user));
        assert!(
            trader.may_subscribe(&user)
                && trader.may_subscribe(&queue)
                && !trader.may_subscribe(&app)
        );
        assert!(service.may_send(&topic) && service.may_send(&user) && service.may_send(&app));
    }
}
