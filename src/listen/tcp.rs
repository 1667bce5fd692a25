//! The STOMP listeners over TCP: plain, and over TLS.

use crate::broker::Broker;
use crate::codec::{Command, Frame, Version, encode};
use crate::metrics::Transport;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Accepts connections until shutdown, over TLS when `tls` is given (the handshake
/// runs in the connection's own task, within `limits.connect_timeout_ms`). The
/// loop never dies: accept errors (such as running out of file descriptors) are
/// logged and retried after a pause.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, tls: Option<TlsAcceptor>) {
    while let Some((stream, peer)) = super::next_connection(&listener, &broker, "TCP").await {
        // Over TLS a plain-text refusal could not be read: the socket just closes.
        let refuse =
            |stream, message| -> Option<_> { tls.is_none().then(|| refuse(stream, message)) };
        let Some(address) = broker.admission.admit(peer.ip()) else {
            broker
                .metrics
                .transport(Transport::Tcp)
                .refused
                .increment(1);
            tracing::debug!(%peer, "refused: limits.max_connections_per_ip");
            broker.metrics.error_sent("too_many_connections_per_ip");
            if let Some(refusal) = refuse(
                stream,
                "too many connections from this address (limits.max_connections_per_ip)",
            ) {
                broker.tasks.spawn(refusal);
            }
            continue;
        };
        let Some(guard) = broker.open_connection(Transport::Tcp, address) else {
            broker.metrics.error_sent("too_many_connections");
            if let Some(refusal) = refuse(stream, "too many connections (limits.max_connections)") {
                broker.tasks.spawn(refusal);
            }
            continue;
        };
        let Some(tls) = tls.clone() else {
            let (reader, writer) = crate::transport::tcp(stream);
            broker.tasks.spawn(crate::session::run(
                broker.clone(),
                reader,
                writer,
                guard,
                peer,
            ));
            continue;
        };
        let broker = broker.clone();
        let tasks = broker.tasks.clone();
        tasks.spawn(async move {
            let _ = stream.set_nodelay(true);
            let limit = broker.limits().connect_timeout();
            match tokio::time::timeout(limit, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let (reader, writer) = crate::transport::tls(stream);
                    crate::session::run(broker, reader, writer, guard, peer).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Answers a refused connection with an ERROR naming the limit, then closes it
/// (bounded in time: a client that does not read cannot hold the task).
async fn refuse(mut stream: tokio::net::TcpStream, message: &'static str) {
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
