//! A short-lived cache of verified credentials, so a client that reconnects (every
//! client, after a restart or a network blip) does not pay for argon2 again.
//!
//! Entries are keyed by a keyed hash of login and password (SipHash with a random
//! key made when the process starts): the password itself is never kept, and the
//! key never leaves the process, so the table is useless to anyone who reads it.
//! An entry holds the login it was made for (checked on every hit) and the
//! identity the check granted. Entries live `auth.cache_ttl_s`; the table holds at
//! most `auth.cache_max_entries` and, when full, drops the expired ones first and
//! then the oldest. A wrong password is never cached.

use super::Identity;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use tokio::time::{Duration, Instant};

#[derive(Debug)]
struct Entry {
    login: String,
    identity: Identity,
    expires: Instant,
}

/// Verified credentials, for `ttl` each.
#[derive(Debug)]
pub struct CredentialCache {
    /// Random per process: the keyed hash of login and password.
    key: std::hash::RandomState,
    ttl: Duration,
    max: usize,
    /// Held only for a lookup or an insert; never across `.await`.
    entries: Mutex<HashMap<u64, Entry>>,
}

impl CredentialCache {
    /// A cache keeping each entry for `ttl`, at most `max` of them (0 turns it off).
    pub fn new(ttl: Duration, max: usize) -> Self {
        CredentialCache {
            key: std::hash::RandomState::new(),
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn tag(&self, login: &str, password: &str) -> u64 {
        self.key.hash_one((login, password))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The identity verified earlier for exactly this login and password, if that
    /// was less than the TTL ago.
    pub fn get(&self, login: &str, password: &str) -> Option<Identity> {
        if self.max == 0 {
            return None;
        }
        let tag = self.tag(login, password);
        let entries = self.lock();
        let e = entries.get(&tag)?;
        (e.login == login && e.expires > Instant::now()).then(|| e.identity.clone())
    }

    /// Remembers that `password` verified for `login` as `identity`.
    pub fn insert(&self, login: &str, password: &str, identity: &Identity) {
        if self.max == 0 {
            return;
        }
        let tag = self.tag(login, password);
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= self.max && !entries.contains_key(&tag) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.max {
                // Still full of live entries: the oldest goes.
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| *k)
                {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            tag,
            Entry {
                login: login.to_owned(),
                identity: identity.clone(),
                expires: now + self.ttl,
            },
        );
    }

    /// Forgets everything (the users changed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn alice() -> Identity {
        Identity {
            login: Some("alice".into()),
            roles: vec![Role::Trader],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hits_only_the_same_login_and_password_until_the_ttl() {
        let c = CredentialCache::new(Duration::from_secs(60), 10);
        assert_eq!(c.get("alice", "pw"), None);
        c.insert("alice", "pw", &alice());
        assert_eq!(c.get("alice", "pw"), Some(alice()));
        assert_eq!(c.get("alice", "pw2"), None);
        assert_eq!(c.get("bob", "pw"), None);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(c.get("alice", "pw"), None);
    }

    #[test]
    fn the_password_is_not_kept() {
        let c = CredentialCache::new(Duration::from_secs(60), 10);
        c.insert("alice", "correct horse battery staple", &alice());
        let dump = format!("{:?}", c.lock());
        assert!(!dump.contains("correct horse"), "{dump}");
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_dropping_expired_then_oldest() {
        let c = CredentialCache::new(Duration::from_secs(60), 2);
        c.insert("a", "1", &alice());
        tokio::time::advance(Duration::from_secs(1)).await;
        c.insert("b", "2", &alice());
        c.insert("c", "3", &alice());
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a", "1"), None, "the oldest went");
        assert!(c.get("c", "3").is_some());
        c.clear();
        assert!(c.is_empty());
        let off = CredentialCache::new(Duration::from_secs(60), 0);
        off.insert("a", "1", &alice());
        assert_eq!(off.get("a", "1"), None);
    }
}
