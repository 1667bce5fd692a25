//! The plain TCP STOMP listener.

use crate::broker::Broker;
use crate::codec::{Command, Frame, Version, encode};
use crate::metrics::Transport;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Accepts connections until shutdown. The loop never dies: accept errors (such as
/// running out of file descriptors) are logged and retried after a pause.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>) {
    loop {
        let accepted = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(guard) = broker.open_connection(Transport::Tcp) else {
            broker.tasks.spawn(async move {
                let mut out = BytesMut::new();
                let refusal = Frame::new(Command::Error)
                    .header("message", "too many connections (limits.max_connections)")
                    .header("content-type", "text/plain");
                encode(&refusal, Version::V1_2, &mut out);
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let _ = stream.write_all(&out).await;
                    let _ = stream.shutdown().await;
                })
                .await;
            });
            continue;
        };
        let (reader, writer) = super::tcp(stream);
        broker.tasks.spawn(crate::session::run(
            broker.clone(),
            reader,
            writer,
            guard,
            peer,
        ));
    }
}
