//! The listeners: accept loops for HTTP (WebSocket STOMP at `/ws`, health, the
//! page, and unless `server.ops_addr` is set `/metrics` and the admin API), for
//! STOMP over TCP, plain or TLS, and the operators' listener.
//!
//! An accepted socket gets its client's address (from a trusted proxy's PROXY
//! header when `server.proxy_protocol` is on; [`proxy_header`]), is admitted
//! (per-address and global connection limits), wrapped by [`crate::transport`]
//! into a reader and a writer, and handed to a new [`crate::session`] task. The
//! loops never die: accept errors are logged and retried after a pause.

pub mod api;
pub mod forwarded;
pub mod http;
pub mod ops;
pub mod proxy_header;
pub mod tcp;
pub mod web;

use crate::admission::AddressSlot;
use crate::broker::Broker;
use proxy_header::ProxyHeaderError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The next connection `listener` accepts, or `None` once `stop` is cancelled.
/// Accept errors (running out of file descriptors, say) are logged and retried
/// after a pause, so an accept loop never dies of them.
async fn next_connection(
    listener: &TcpListener,
    stop: &CancellationToken,
    what: &'static str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(connection) => return Some(connection),
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Why a new connection was not admitted.
#[derive(Debug)]
enum Refusal {
    /// Its address holds `limits.max_connections_per_ip` sockets.
    PerAddress,
    /// Its PROXY header was refused.
    ProxyHeader(ProxyHeaderError),
}

/// A connection admitted: the client it carries and its place in that
/// client's address count (`None` for a trusted proxy's HTTP connection,
/// whose requests each name their own client).
struct Admitted {
    client: SocketAddr,
    address: Option<Arc<AddressSlot>>,
}

/// Finds who a new connection from `peer` is for, and admits it. A trusted
/// proxy's PROXY header is read first (within `limits.connect_timeout_ms`) and
/// the client it names is admitted; anyone else is admitted by its own address
/// before any byte is looked at, then refused if it sends a PROXY header.
/// With `forwards` (HTTP), a connection whose client is a trusted proxy is not
/// counted against one address: its requests say whom they are for.
async fn admit(
    stream: &mut TcpStream,
    peer: SocketAddr,
    broker: &Arc<Broker>,
    forwards: bool,
) -> Result<Admitted, Refusal> {
    let trusted = broker.trusted_proxies();
    let within = broker.limits().connect_timeout();
    let proxy_protocol = broker.config.server.proxy_protocol;
    let from_proxy = trusted.contains(peer.ip());
    let mut client = peer;
    if proxy_protocol && from_proxy {
        let _reading = broker
            .admission
            .open_header_read()
            .ok_or(Refusal::ProxyHeader(ProxyHeaderError::Busy))?;
        let named = proxy_header::read_from_trusted(stream, within)
            .await
            .map_err(Refusal::ProxyHeader)?;
        client = named.unwrap_or(peer);
    }
    if forwards && trusted.contains(client.ip()) {
        return Ok(Admitted {
            client,
            address: None,
        });
    }
    let address = broker
        .admission
        .admit(client.ip())
        .ok_or(Refusal::PerAddress)?;
    // Only now, with its place taken, is an untrusted peer's first byte awaited.
    if proxy_protocol && !from_proxy {
        proxy_header::refuse_from_untrusted(stream, within)
            .await
            .map_err(Refusal::ProxyHeader)?;
    }
    Ok(Admitted {
        client,
        address: Some(address),
    })
}
