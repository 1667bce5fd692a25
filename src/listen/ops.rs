//! The operators' listener (`server.ops_addr`): `/metrics`, `/healthz`,
//! `/readyz` and the admin API, on an address of its own (typically loopback
//! or a management network), outside every client limit and address count.
//! A flood of clients on the public listeners takes nothing from it: it has its
//! own small cap (a quarter of it per address), and serves until the process
//! exits, draining included.

use super::http::{Conn, Surface};
use crate::broker::Broker;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections the operators' listener serves at once; past this a new one is
/// closed at once. Scrapers, probes and an operator's scripts need a few.
pub const OPS_MAX_CONNECTIONS: usize = 32;

/// What one address may hold of them: a quarter, so one misbehaving script
/// cannot take the listener from the scraper and the probes.
pub const OPS_SHARE: usize = OPS_MAX_CONNECTIONS / 4;

/// Open operators' connections per address; an entry per address holding one
/// (so at most [`OPS_MAX_CONNECTIONS`] entries).
#[derive(Debug, Default)]
struct PerAddress(dashmap::DashMap<std::net::IpAddr, usize>);

/// One connection's place in its address's share.
struct Share {
    map: Arc<PerAddress>,
    key: std::net::IpAddr,
}

impl PerAddress {
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Share> {
        let key = crate::auth::throttle::address_key(ip);
        let mut n = self.0.entry(key).or_insert(0);
        if *n >= OPS_SHARE {
            return None;
        }
        *n += 1;
        Some(Share {
            map: self.clone(),
            key,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Some(mut n) = self.map.0.get_mut(&self.key) {
            *n -= 1;
        }
        self.map.0.remove_if(&self.key, |_, n| *n == 0);
    }
}

/// Accepts operators' connections until shutdown.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, metrics: PrometheusHandle) {
    let slots = Arc::new(Semaphore::new(OPS_MAX_CONNECTIONS));
    let shares = Arc::new(PerAddress::default());
    let stop = broker.shutdown.clone();
    while let Some((stream, peer)) = super::next_connection(&listener, &stop, "ops").await {
        let Some(share) = shares.take(peer.ip()) else {
            tracing::warn!(%peer, "operators' listener: this address holds {OPS_SHARE} connections");
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "operators' listener full ({OPS_MAX_CONNECTIONS} connections)");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            broker: broker.clone(),
            metrics: metrics.clone(),
            client: peer,
            address: None,
            surface: Surface::Ops,
        };
        broker.tasks.spawn(async move {
            let _places = (slot, share);
            super::http::connection(stream, conn).await;
        });
    }
}
