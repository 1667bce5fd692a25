//! `[auth]`: users, anonymous access, access rules and token logins.

use serde::Deserialize;

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether a CONNECT without `login` may read `/topic/**`.
    pub anonymous: bool,
    /// `[[auth.users]]`. None are built in: the shipped `broker.toml` has demo accounts.
    pub users: Vec<crate::auth::User>,
    /// Seconds a verified login and password is remembered, so that a reconnecting
    /// client skips the password check.
    pub cache_ttl_s: u64,
    /// Most remembered credentials; 0 turns the cache off.
    pub cache_max_entries: usize,
    /// Token logins.
    pub jwt: crate::auth::token::JwtConfig,
    /// `[[auth.acl]]` access rules; none means the built-in rules of the roles.
    pub acl: Vec<crate::auth::acl::AclRule>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            anonymous: true,
            users: Vec::new(),
            cache_ttl_s: 300,
            cache_max_entries: 100_000,
            jwt: crate::auth::token::JwtConfig::default(),
            acl: Vec::new(),
        }
    }
}
