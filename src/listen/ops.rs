//! The operators' listener (`server.ops_addr`): `/metrics`, `/healthz`,
//! `/readyz` and the admin API, on an address of its own (typically loopback
//! or a management network), outside every client limit and address count.
//! A flood of clients on the public listeners takes nothing from it: it has its
//! own small cap, and serves until the process exits, draining included.

use super::http::{Conn, Surface};
use crate::broker::Broker;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections the operators' listener serves at once; past this a new one is
/// closed at once. Scrapers, probes and an operator's scripts need a few.
pub const OPS_MAX_CONNECTIONS: usize = 32;

/// Accepts operators' connections until shutdown.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, metrics: PrometheusHandle) {
    let slots = Arc::new(Semaphore::new(OPS_MAX_CONNECTIONS));
    let stop = broker.shutdown.clone();
    while let Some((stream, peer)) = super::next_connection(&listener, &stop, "ops").await {
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
            let _slot = slot;
            super::http::connection(stream, conn).await;
        });
    }
}
