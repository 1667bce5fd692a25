//! Users, roles and rights.
//!
//! Passwords are argon2id PHC strings (`stompede hash-password`). Verifying one is
//! slow on purpose, so it runs on the blocking thread pool, a few at a time, never on
//! the async runtime. Rights follow the contract's roles:
//!
//! | who | SEND | SUBSCRIBE |
//! |---|---|---|
//! | anonymous (if `auth.anonymous`) | nothing | `/topic/**` |
//! | `trader` | `/app/**` | `/topic/**`, `/queue/**`, own `/user/queue/**` |
//! | `service` | anywhere, including `/user/{login}/...` | as trader |
//! | `admin` | anywhere | anything a session can subscribe to |

use crate::router::Destination;
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::Semaphore;

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

/// Checks that `hash` is an argon2id PHC string; the error says what is wrong.
pub fn check_hash(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC string ({e})"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!("algorithm {} is not argon2id", parsed.algorithm));
    }
    Ok(())
}

/// Concurrent password checks: each takes ~19 MiB and tens of milliseconds.
const CONCURRENT_VERIFIES: usize = 4;

/// Verifies CONNECT credentials against the configured users.
#[derive(Debug)]
pub struct Authenticator {
    users: HashMap<String, User>,
    anonymous: bool,
    permits: Semaphore,
    /// Verified against for unknown logins, so their answer takes as long as a
    /// wrong password and does not reveal which logins exist.
    dummy_hash: Option<String>,
}

impl Authenticator {
    /// Builds the user table. Hashes were checked when the configuration loaded.
    pub fn new(users: &[User], anonymous: bool) -> Self {
        Authenticator {
            dummy_hash: users.first().map(|u| u.password_hash.clone()),
            users: users.iter().map(|u| (u.login.clone(), u.clone())).collect(),
            anonymous,
            permits: Semaphore::new(CONCURRENT_VERIFIES),
        }
    }

    /// Authenticates a CONNECT's `login` and `passcode`.
    pub async fn authenticate(
        self: &Arc<Self>,
        login: Option<&str>,
        passcode: Option<&str>,
    ) -> Result<Identity, AuthError> {
        let Some(login) = login.filter(|l| !l.is_empty()) else {
            return if self.anonymous {
                Ok(Identity::anonymous())
            } else {
                Err(AuthError::Required)
            };
        };
        let user = self.users.get(login);
        let hash = match (user, &self.dummy_hash) {
            (Some(u), _) => u.password_hash.clone(),
            (None, Some(dummy)) => dummy.clone(),
            (None, None) => return Err(AuthError::Failed),
        };
        let passcode = passcode.unwrap_or("").as_bytes().to_vec();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| AuthError::Failed)?;
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(&passcode, &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        match user {
            Some(u) if ok => Ok(Identity {
                login: Some(u.login.clone()),
                roles: u.roles.clone(),
            }),
            _ => Err(AuthError::Failed),
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

    #[tokio::test]
    async fn right_password_wrong_password_unknown_login_and_anonymous() {
        let auth = Arc::new(Authenticator::new(
            &[user("alice", "s3cret", &[Role::Trader])],
            true,
        ));
        let who = auth
            .authenticate(Some("alice"), Some("s3cret"))
            .await
            .unwrap();
        assert_eq!(who.login.as_deref(), Some("alice"));
        assert_eq!(who.roles, [Role::Trader]);
        assert_eq!(
            auth.authenticate(Some("alice"), Some("wrong")).await,
            Err(AuthError::Failed)
        );
        assert_eq!(
            auth.authenticate(Some("alice"), None).await,
            Err(AuthError::Failed)
        );
        assert_eq!(
            auth.authenticate(Some("mallory"), Some("s3cret")).await,
            Err(AuthError::Failed)
        );
        assert_eq!(
            auth.authenticate(None, None).await,
            Ok(Identity::anonymous())
        );
        let closed = Arc::new(Authenticator::new(&[], false));
        assert_eq!(
            closed.authenticate(None, None).await,
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
