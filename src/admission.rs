//! Who may open a connection: at most `limits.max_connections_per_ip` sockets per
//! client address (STOMP over TCP, WebSocket, and plain HTTP alike), at most
//! `limits.max_http_connections` plain HTTP connections, and STOMP connections
//! (`limits.max_connections`, counted by the broker) capped below the process's
//! open-file limit, so that the descriptors left over keep `/healthz`, `/metrics`
//! and the broker's own files working when every connection slot is taken.
//!
//! And what connections may hold together: [`PendingBudget`], the bytes of
//! unfinished frames across all connections (`limits.max_pending_frame_bytes`).

use crate::auth::throttle::address_key;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Descriptors kept for the broker itself: listeners, the store, logs, threads.
pub const OWN_DESCRIPTORS: usize = 64;

/// The STOMP and plain-HTTP connection limits that fit in `open_files`
/// descriptors: plain HTTP gets at most a quarter, the broker keeps
/// [`OWN_DESCRIPTORS`], STOMP connections get the rest (at least one each).
pub fn fit_to_descriptors(
    open_files: Option<u64>,
    max_connections: usize,
    max_http: usize,
) -> (usize, usize) {
    let Some(files) = open_files.and_then(|f| usize::try_from(f).ok()) else {
        return (max_connections, max_http);
    };
    let http = max_http.min(files / 4).max(1);
    let stomp = files.saturating_sub(http + OWN_DESCRIPTORS).max(1);
    (max_connections.min(stomp), http)
}

/// Open sockets per client address, and open plain HTTP connections (of which
/// one address holds at most a quarter, so one client's idle sockets cannot
/// take HTTP from everyone), and the few probe connections that answer
/// `/healthz` and `/readyz` when a client is past those limits.
#[derive(Debug)]
pub struct Admission {
    per_address: DashMap<IpAddr, usize>,
    max_per_address: usize,
    http_open: AtomicUsize,
    max_http: usize,
    /// Plain HTTP connections by address; an entry per address holding one.
    http_per_address: DashMap<IpAddr, usize>,
    probes_open: AtomicUsize,
    /// Places for PROXY headers being read ([`MAX_HEADER_READS`]).
    header_reads: Arc<tokio::sync::Semaphore>,
}

/// Connections served only for `/healthz` and `/readyz` beyond the limits, at
/// once: each reads one request head within [`PROBE_WAIT`] and is closed.
pub const MAX_PROBES: usize = 64;

/// PROXY protocol headers read from trusted proxies at once (each within
/// `limits.connect_timeout_ms`, before the client it names is admitted); past
/// this a new connection is closed. Trusted or not, a proxy cannot hold more.
pub const MAX_HEADER_READS: usize = 1024;

/// How long a probe connection has to send its request.
pub const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A probe connection's place ([`Admission::open_probe`]).
#[derive(Debug)]
pub struct ProbeSlot {
    admission: Arc<Admission>,
}

impl Drop for ProbeSlot {
    fn drop(&mut self) {
        self.admission.probes_open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One socket's place in its address's count; shared by the HTTP connection and
/// the WebSocket session it becomes, and given back when the last holder drops.
#[derive(Debug)]
pub struct AddressSlot {
    admission: Arc<Admission>,
    key: IpAddr,
}

/// One plain HTTP connection's place.
#[derive(Debug)]
pub struct HttpSlot {
    admission: Arc<Admission>,
    /// The address whose share it is in; `None` for a trusted proxy's.
    key: Option<IpAddr>,
}

/// Why [`Admission::open_http`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFull {
    /// Every HTTP slot is taken.
    All,
    /// This address holds its quarter of them.
    Share,
}

impl Admission {
    /// Limits of `max_per_address` sockets per address and `max_http` HTTP connections.
    pub fn new(max_per_address: usize, max_http: usize) -> Arc<Admission> {
        Arc::new(Admission {
            per_address: DashMap::new(),
            max_per_address,
            http_open: AtomicUsize::new(0),
            max_http,
            http_per_address: DashMap::new(),
            probes_open: AtomicUsize::new(0),
            header_reads: Arc::new(tokio::sync::Semaphore::new(MAX_HEADER_READS)),
        })
    }

    /// HTTP connections one address may hold: a quarter, at least one.
    pub fn http_share(&self) -> usize {
        (self.max_http / 4).max(1)
    }

    /// A place for a probe connection, or `None` when [`MAX_PROBES`] are open.
    pub fn open_probe(self: &Arc<Self>) -> Option<ProbeSlot> {
        self.probes_open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_PROBES).then_some(n + 1)
            })
            .ok()
            .map(|_| ProbeSlot {
                admission: self.clone(),
            })
    }

    /// A place for reading one PROXY header, or `None` when
    /// [`MAX_HEADER_READS`] are being read.
    pub fn open_header_read(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.header_reads.clone().try_acquire_owned().ok()
    }

    /// A place for a new socket from `ip`, or `None` at the per-address limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Arc<AddressSlot>> {
        let key = address_key(ip);
        let mut count = self.per_address.entry(key).or_insert(0);
        if *count >= self.max_per_address {
            return None;
        }
        *count += 1;
        Some(Arc::new(AddressSlot {
            admission: self.clone(),
            key,
        }))
    }

    /// A place for a plain HTTP connection from `ip`, or why not. `None`: a
    /// trusted proxy's connection, carrying many clients, counted only in the
    /// total.
    pub fn open_http(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<HttpSlot, HttpFull> {
        let Some(ip) = ip else {
            self.http_open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.max_http).then_some(n + 1)
                })
                .map_err(|_| HttpFull::All)?;
            return Ok(HttpSlot {
                admission: self.clone(),
                key: None,
            });
        };
        let key = address_key(ip);
        let mut mine = self.http_per_address.entry(key).or_insert(0);
        if *mine >= self.http_share() {
            return Err(HttpFull::Share);
        }
        let taken = self
            .http_open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_http).then_some(n + 1)
            });
        if taken.is_err() {
            drop(mine);
            self.http_per_address.remove_if(&key, |_, c| *c == 0);
            return Err(HttpFull::All);
        }
        *mine += 1;
        Ok(HttpSlot {
            admission: self.clone(),
            key: Some(key),
        })
    }

    /// Sockets open from `ip`'s address.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.per_address.get(&address_key(ip)).map_or(0, |c| *c)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some(mut c) = self.admission.per_address.get_mut(&self.key) {
            *c -= 1;
        }
        self.admission
            .per_address
            .remove_if(&self.key, |_, c| *c == 0);
    }
}

impl Drop for HttpSlot {
    fn drop(&mut self) {
        self.admission.http_open.fetch_sub(1, Ordering::AcqRel);
        let Some(key) = self.key else {
            return;
        };
        if let Some(mut c) = self.admission.http_per_address.get_mut(&key) {
            *c -= 1;
        }
        self.admission
            .http_per_address
            .remove_if(&key, |_, c| *c == 0);
    }
}

/// The broker-wide budget of bytes held in unfinished frames (STOMP frames and
/// `POST /api/publish` bodies), of which one client address, and one login,
/// holds at most a share: an eighth, and at least one whole frame. So one client
/// cannot take the budget from everyone else. The map of holders has an entry
/// per address or login holding bytes now, at most one per connection.
#[derive(Debug)]
pub struct PendingBudget {
    used: AtomicUsize,
    max: usize,
    share: usize,
    held: DashMap<Holder, usize>,
}

/// Who holds part of a [`PendingBudget`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A client address (an IPv4 address or an IPv6 /64).
    Address(IpAddr),
    /// A login (over HTTP, known before the body arrives).
    Login(String),
}

impl Holder {
    /// The holder for client address `ip`.
    pub fn address(ip: IpAddr) -> Holder {
        Holder::Address(address_key(ip))
    }
}

/// Why a [`PendingBudget`] refused bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// Every client together holds the budget.
    All,
    /// This holder has its share.
    Share,
}

impl PendingBudget {
    /// A budget of `max` bytes, of which one holder may have an eighth, and at
    /// least `frame` bytes.
    pub fn new(max: usize, frame: usize) -> Self {
        PendingBudget {
            used: AtomicUsize::new(0),
            max,
            share: (max / 8).max(frame).min(max),
            held: DashMap::new(),
        }
    }

    /// Takes `n` bytes, or returns false (taking nothing) if that would pass the max.
    pub(crate) fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    pub(crate) fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Takes `n` bytes for `holders` (each within its share), or takes nothing.
    pub(crate) fn take_for(&self, holders: &[Holder], n: usize) -> Result<(), Exhausted> {
        if n == 0 {
            return Ok(());
        }
        for (i, h) in holders.iter().enumerate() {
            let mut held = self.held.entry(h.clone()).or_insert(0);
            if *held + n > self.share {
                drop(held);
                self.give_holders(&holders[..i], n);
                self.held.remove_if(h, |_, v| *v == 0);
                return Err(Exhausted::Share);
            }
            *held += n;
        }
        if !self.take(n) {
            self.give_holders(holders, n);
            return Err(Exhausted::All);
        }
        Ok(())
    }

    /// Gives back `n` bytes taken for `holders`.
    pub(crate) fn give_for(&self, holders: &[Holder], n: usize) {
        if n == 0 {
            return;
        }
        self.give_holders(holders, n);
        self.give(n);
    }

    fn give_holders(&self, holders: &[Holder], n: usize) {
        for h in holders {
            if let Some(mut held) = self.held.get_mut(h) {
                *held = held.saturating_sub(n);
            }
            self.held.remove_if(h, |_, v| *v == 0);
        }
    }

    /// What one holder may have.
    pub fn share(&self) -> usize {
        self.share
    }

    /// The budget's size.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes in use now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_fit_in_the_descriptors() {
        assert_eq!(fit_to_descriptors(Some(256), 100_000, 1024), (128, 64));
        assert_eq!(
            fit_to_descriptors(Some(20_000), 100_000, 1024),
            (18_912, 1024)
        );
        assert_eq!(
            fit_to_descriptors(Some(1_000_000), 100_000, 1024),
            (100_000, 1024)
        );
        assert_eq!(fit_to_descriptors(Some(10), 100, 100), (1, 2));
        assert_eq!(fit_to_descriptors(None, 7, 9), (7, 9));
    }

    #[test]
    fn addresses_and_http_are_counted_and_given_back() {
        let a = Admission::new(2, 1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let one = a.admit(ip).unwrap();
        let two = a.admit(ip).unwrap();
        assert!(a.admit(ip).is_none());
        assert!(a.admit("192.0.2.2".parse().unwrap()).is_some());
        let shared = one.clone();
        drop(one);
        assert!(a.admit(ip).is_none(), "still held by the clone");
        drop((shared, two));
        assert_eq!(a.open_from(ip), 0);
        let h = a.open_http(Some(ip)).unwrap();
        assert_eq!(a.open_http(Some(ip)).err(), Some(HttpFull::Share));
        drop(h);
        assert!(a.open_http(Some(ip)).is_ok());
        // One address holds at most a quarter of the HTTP slots.
        let a = Admission::new(100, 8);
        let one: Vec<_> = (0..2).map(|_| a.open_http(Some(ip)).unwrap()).collect();
        assert_eq!(a.open_http(Some(ip)).err(), Some(HttpFull::Share));
        let others: Vec<_> = (2..8)
            .map(|i| {
                a.open_http(Some(format!("192.0.2.{i}").parse().unwrap()))
                    .unwrap()
            })
            .collect();
        assert_eq!(
            a.open_http(Some("192.0.2.99".parse().unwrap())).err(),
            Some(HttpFull::All)
        );
        // A trusted proxy's connection: only the total counts.
        assert_eq!(a.open_http(None).err(), Some(HttpFull::All));
        drop((one, others));
        let proxied: Vec<_> = (0..8).map(|_| a.open_http(None).unwrap()).collect();
        assert_eq!(a.open_http(None).err(), Some(HttpFull::All));
        drop(proxied);
        assert!(a.http_per_address.is_empty());
        let probes: Vec<_> = (0..MAX_PROBES).map(|_| a.open_probe().unwrap()).collect();
        assert!(a.open_probe().is_none());
        drop(probes);
        assert!(a.open_probe().is_some());
        // PROXY headers being read at once.
        let reads: Vec<_> = (0..MAX_HEADER_READS)
            .map(|_| a.open_header_read().unwrap())
            .collect();
        assert!(a.open_header_read().is_none());
        drop(reads);
        assert!(a.open_header_read().is_some());
    }

    #[test]
    fn one_holder_takes_at_most_its_share_and_everything_comes_back() {
        let b = PendingBudget::new(800, 10);
        assert_eq!(b.share(), 100);
        let a = [
            Holder::address("192.0.2.1".parse().unwrap()),
            Holder::Login("t".into()),
        ];
        assert_eq!(b.take_for(&a, 60), Ok(()));
        assert_eq!(b.take_for(&a, 60), Err(Exhausted::Share));
        assert_eq!(b.used(), 60, "a refusal takes nothing");
        // The same login from another address shares the login's share.
        let other = [
            Holder::address("192.0.2.2".parse().unwrap()),
            Holder::Login("t".into()),
        ];
        assert_eq!(b.take_for(&other, 50), Err(Exhausted::Share));
        let someone = [Holder::address("192.0.2.2".parse().unwrap())];
        assert_eq!(b.take_for(&someone, 100), Ok(()));
        b.give_for(&a, 60);
        b.give_for(&someone, 100);
        assert_eq!(b.used(), 0);
        assert!(b.held.is_empty(), "no entry stays behind");
        // A share is at least one frame, and never more than the budget.
        assert_eq!(PendingBudget::new(800, 300).share(), 300);
        assert_eq!(PendingBudget::new(800, 3000).share(), 800);
    }

    #[test]
    fn the_budget_never_passes_its_max() {
        let b = PendingBudget::new(100, 1);
        assert!(b.take(60));
        assert!(!b.take(41));
        assert!(b.take(40));
        assert!(!b.take(1));
        b.give(100);
        assert_eq!(b.used(), 0);
        assert!(!b.take(usize::MAX));
    }
}
