//! The STOMP listeners over TCP: plain, and over TLS.

use super::{Admitted, Refusal};
use crate::broker::Broker;
use crate::codec::{Command, Frame, Version, encode};
use crate::metrics::Transport;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Accepts connections until the node stops taking clients (a drain, or
/// shutdown), over TLS when `tls` is given (the PROXY header and the handshake
/// are read in the connection's own task, within `limits.connect_timeout_ms`).
/// The loop never dies: accept errors (such as running out of file
/// descriptors) are logged and retried after a pause.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, tls: Option<TlsAcceptor>) {
    let stop = broker.drain.stop_accepting().clone();
    while let Some((stream, peer)) = super::next_connection(&listener, &stop, "TCP").await {
        let tasks = broker.tasks.clone();
        tasks.spawn(accept(stream, peer, broker.clone(), tls.clone()));
    }
}

/// Admits one connection and runs its session, or refuses it with an ERROR
/// naming the limit (over TLS a plain-text refusal could not be read: the
/// socket just closes).
async fn accept(
    mut stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    tls: Option<TlsAcceptor>,
) {
    let Admitted { client, address } = match super::admit(&mut stream, peer, &broker, false).await {
        Ok(admitted) => admitted,
        Err(Refusal::PerAddress) => {
            broker
                .metrics
                .transport(Transport::Tcp)
                .refused
                .increment(1);
            tracing::debug!(%peer, "refused: limits.max_connections_per_ip");
            broker.metrics.error_sent("too_many_connections_per_ip");
            let message = "too many connections from this address (limits.max_connections_per_ip)";
            return refuse(stream, tls.is_none(), message).await;
        }
        Err(Refusal::ProxyHeader(e)) => {
            tracing::info!(%peer, error = %e, "refused a PROXY protocol header");
            broker.metrics.error_sent("proxy_header");
            return refuse(stream, tls.is_none(), &e.to_string()).await;
        }
    };
    // Only HTTP leaves a trusted proxy's connection uncounted.
    let Some(address) = address else {
        return;
    };
    let Some(guard) = broker.open_connection(Transport::Tcp, address) else {
        broker.metrics.error_sent("too_many_connections");
        let message = "too many connections (limits.max_connections)";
        return refuse(stream, tls.is_none(), message).await;
    };
    let Some(tls) = tls else {
        let (reader, writer) = crate::transport::tcp(stream);
        crate::session::run(broker, reader, writer, guard, client).await;
        return;
    };
    let _ = stream.set_nodelay(true);
    let limit = broker.limits().connect_timeout();
    match tokio::time::timeout(limit, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            let (reader, writer) = crate::transport::tls(stream);
            crate::session::run(broker, reader, writer, guard, client).await;
        }
        Ok(Err(e)) => tracing::debug!(%client, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
    }
}

/// Answers a refused connection with an ERROR naming the limit, then closes it
/// (bounded in time: a client that does not read cannot hold the task). Not
/// `plain`: over TLS a refusal could not be read, so the socket just closes.
async fn refuse(mut stream: TcpStream, plain: bool, message: &str) {
    if !plain {
        return;
    }
    let mut out = BytesMut::new();
    let refusal = Frame::new(Command::Error)
        .header("message", message)
        .header("content-type", "text/plain");
    encode(&refusal, Version::V1_2, &mut out);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&out).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
