//! The listeners: accept loops for HTTP (WebSocket STOMP at `/ws`, metrics,
//! health, the page) and for STOMP over TCP, plain or TLS.
//!
//! An accepted socket is admitted (per-address and global connection limits),
//! wrapped by [`crate::transport`] into a reader and a writer, and handed to a new
//! [`crate::session`] task. The loops never die: accept errors are logged and
//! retried after a pause.

pub mod api;
pub mod http;
pub mod tcp;
pub mod web;

use crate::broker::Broker;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The next connection `listener` accepts, or `None` once the broker shuts down.
/// Accept errors (running out of file descriptors, say) are logged and retried
/// after a pause, so an accept loop never dies of them.
async fn next_connection(
    listener: &TcpListener,
    broker: &Broker,
    what: &'static str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = broker.shutdown.cancelled() => return None,
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
