//! Failed logins counted per client address: past `limits.max_failed_logins_per_ip`
//! within `limits.failed_login_window_ms`, an address's logins are refused without
//! a password check until the window ends. Also the count of logins from one
//! address waiting for a check (`limits.max_queued_logins_per_ip`), so one address
//! cannot fill the whole queue.
//!
//! An address is an IPv4 address or an IPv6 /64 (what one host usually holds).
//! The failure table holds at most [`MAX_TRACKED`] addresses; when full of recent
//! failures, new addresses are not tracked (fail open: the global queue bound
//! still holds) and a warning is logged.

use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::time::{Duration, Instant};

/// Most addresses whose failures are remembered at once.
pub const MAX_TRACKED: usize = 100_000;

/// The key an address is counted under.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut bytes = v6.octets();
                bytes[8..].fill(0);
                IpAddr::from(bytes)
            }
        },
    }
}

/// Failed logins per address.
#[derive(Debug)]
pub struct Throttle {
    max_failures: u32,
    window: Duration,
    failures: DashMap<IpAddr, (u32, Instant)>,
}

impl Throttle {
    /// Allows `max_failures` failures per address per `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Throttle {
            max_failures,
            window,
            failures: DashMap::new(),
        }
    }

    /// Whether logins from `ip` are refused now.
    pub fn blocked(&self, ip: IpAddr) -> bool {
        self.failures
            .get(&address_key(ip))
            .is_some_and(|f| f.0 >= self.max_failures && f.1.elapsed() < self.window)
    }

    /// Counts a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let key = address_key(ip);
        if !self.failures.contains_key(&key) && self.failures.len() >= MAX_TRACKED {
            self.failures.retain(|_, f| f.1.elapsed() < self.window);
            if self.failures.len() >= MAX_TRACKED {
                tracing::warn!("failed-login table full; not tracking a new address");
                return;
            }
        }
        let mut entry = self.failures.entry(key).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

/// Logins waiting for a password check, per address.
#[derive(Debug, Default)]
pub struct InProgress {
    max: usize,
    counts: DashMap<IpAddr, usize>,
}

/// One login's place; dropping it gives the place back.
#[derive(Debug)]
pub struct Place {
    owner: Arc<InProgress>,
    key: IpAddr,
}

impl InProgress {
    /// At most `max` logins per address at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(InProgress {
            max,
            counts: DashMap::new(),
        })
    }

    /// Takes a place for a login from `ip`, or `None` when the address has `max`.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<Place> {
        let key = address_key(ip);
        let mut count = self.counts.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Place {
            owner: self.clone(),
            key,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(mut c) = self.owner.counts.get_mut(&self.key) {
            *c -= 1;
        }
        self.owner.counts.remove_if(&self.key, |_, c| *c == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_block_until_the_window_ends() {
        let t = Throttle::new(2, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        t.failed(ip);
        assert!(!t.blocked(ip));
        t.failed(ip);
        assert!(t.blocked(ip));
        assert!(!t.blocked("192.0.2.2".parse().unwrap()));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!t.blocked(ip));
        t.failed(ip);
        assert!(!t.blocked(ip), "a new window starts from one failure");
    }

    #[test]
    fn places_are_limited_per_address_and_given_back() {
        let p = InProgress::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = p.enter(ip).unwrap();
        let _b = p.enter(ip).unwrap();
        assert!(p.enter(ip).is_none());
        assert!(p.enter("192.0.2.9".parse().unwrap()).is_some());
        drop(a);
        assert!(p.enter(ip).is_some());
    }
}
