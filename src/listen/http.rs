//! The HTTP listener: WebSocket STOMP at `/ws`, `POST /api/publish`,
//! `GET /api/stats`, `/metrics`,
//! `/healthz`, `/readyz` and the page at `/`.

use crate::admission::{AddressSlot, HttpFull, PROBE_WAIT};
use crate::broker::{Broker, ConnectionGuard};
use crate::metrics::Transport;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// STOMP WebSocket subprotocols, best first.
const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

/// Time a client has to send its HTTP request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts HTTP connections until shutdown, over TLS when `tls` is given (HTTPS:
/// the same routes, so `wss://` at `/ws`; the handshake runs in the connection's
/// own task, within `limits.connect_timeout_ms`). Accept errors are logged and
/// retried.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    metrics: PrometheusHandle,
    tls: Option<TlsAcceptor>,
) {
    while let Some((stream, peer)) = super::next_connection(&listener, &broker, "HTTP").await {
        let _ = stream.set_nodelay(true);
        // Over TLS a plain-text 503 could not be read: the socket just closes.
        let refuse = |stream, message| -> Option<_> {
            tls.is_none()
                .then(|| refuse_or_probe(stream, broker.clone(), message))
        };
        let Some(address) = broker.admission.admit(peer.ip()) else {
            broker.metrics.transport(Transport::Ws).refused.increment(1);
            tracing::debug!(%peer, "refused: limits.max_connections_per_ip");
            if let Some(refusal) = refuse(
                stream,
                "too many connections from this address (limits.max_connections_per_ip)\n",
            ) {
                broker.tasks.spawn(refusal);
            }
            continue;
        };
        let http_slot = match broker.admission.open_http(peer.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                tracing::debug!(%peer, ?full, "refused: limits.max_http_connections");
                let message = match full {
                    HttpFull::All => "too many HTTP connections (limits.max_http_connections)\n",
                    HttpFull::Share => {
                        "too many HTTP connections from this address (a quarter of limits.max_http_connections)\n"
                    }
                };
                if let Some(refusal) = refuse(stream, message) {
                    broker.tasks.spawn(refusal);
                }
                continue;
            }
        };
        let conn_broker = broker.clone();
        let metrics = metrics.clone();
        let tls = tls.clone();
        broker.tasks.spawn(async move {
            let _http_slot = http_slot;
            let Some(tls) = tls else {
                connection(stream, conn_broker, metrics, peer, address).await;
                return;
            };
            let limit = conn_broker.limits().connect_timeout();
            match tokio::time::timeout(limit, tls.accept(stream)).await {
                Ok(Ok(stream)) => connection(stream, conn_broker, metrics, peer, address).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Serves one HTTP connection (plain or TLS) until it ends, it upgrades to a
/// WebSocket, or the broker shuts down.
async fn connection<IO>(
    io: IO,
    broker: Arc<Broker>,
    metrics: PrometheusHandle,
    peer: SocketAddr,
    address: Arc<AddressSlot>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = broker.shutdown.clone();
    let service = hyper::service::service_fn(move |req| {
        let broker = broker.clone();
        let metrics = metrics.clone();
        let address = address.clone();
        async move {
            match (req.method(), req.uri().path()) {
                (&Method::POST, "/api/publish") => {
                    return Ok::<_, Infallible>(super::api::publish(req, broker, peer).await);
                }
                (&Method::GET, "/api/stats") => {
                    return Ok(super::api::stats(req, broker, peer).await);
                }
                (&Method::POST, "/api/reload") => {
                    return Ok(super::api::reload(req, broker, peer).await);
                }
                _ => {}
            }
            Ok(route(req, broker, metrics, peer, address))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

type Body = Full<Bytes>;

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// Answers a refused connection with a 503 naming the limit, then closes it. The
/// request is read (briefly, a little) first, so the answer is not lost to a reset.
/// Answers a connection past a limit: a health probe (`GET` or `HEAD` of
/// `/healthz` or `/readyz`) as usual, anything else with a 503 naming the limit.
/// At most [`crate::admission::MAX_PROBES`] such connections at once, each given [`PROBE_WAIT`] to
/// send its request head; past that the socket just closes. So the probes a
/// load balancer or an operator sends always answer, whoever holds the slots.
async fn refuse_or_probe(
    mut stream: tokio::net::TcpStream,
    broker: Arc<Broker>,
    message: &'static str,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(_probe) = broker.admission.open_probe() else {
        return;
    };
    let _ = tokio::time::timeout(PROBE_WAIT, async {
        let mut request = [0u8; 4096];
        let mut len = 0;
        while len < request.len() && !request[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut request[len..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => len += n,
            }
        }
        let line = request[..len].split(|b| *b == b'\n').next().unwrap_or_default();
        let mut words = std::str::from_utf8(line).unwrap_or("").split(' ');
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let (status, body) = match (matches!(method, "GET" | "HEAD"), health(path, &broker)) {
            (true, Some((status, body))) => (status, body),
            _ => (StatusCode::SERVICE_UNAVAILABLE, message.to_owned()),
        };
        let response = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
            status.as_str(),
            status.canonical_reason().unwrap_or(""),
            body.len(),
            if method == "HEAD" { "" } else { body.as_str() }
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        while matches!(stream.read(&mut request).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// The answer to a health probe of `path`, if it is one: `/healthz` is 200
/// while the process serves; `/readyz` is 503 while shutting down or while the
/// engine is not ready (a cluster node without NATS, a failed store).
fn health(path: &str, broker: &Broker) -> Option<(StatusCode, String)> {
    match path {
        "/healthz" => Some((StatusCode::OK, "ok\n".to_owned())),
        "/readyz" if broker.shutdown.is_cancelled() => Some((
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_owned(),
        )),
        "/readyz" => Some(match broker.engine.ready() {
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
            Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        }),
        _ => None,
    }
}

fn route(
    req: Request<Incoming>,
    broker: Arc<Broker>,
    metrics: PrometheusHandle,
    peer: SocketAddr,
    address: Arc<AddressSlot>,
) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        );
    }
    match req.uri().path() {
        "/ws" => upgrade(req, broker, peer, address),
        "/api/publish" => text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use POST\n"),
        "/metrics" => {
            metrics.run_upkeep();
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                metrics.render(),
            )
        }
        "/healthz" | "/readyz" => match health(req.uri().path(), &broker) {
            Some((status, body)) => text(status, "text/plain", body),
            None => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        },
        path => match super::web::asset(path) {
            Some((kind, body)) => text(StatusCode::OK, kind, Bytes::from_static(body)),
            None => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        },
    }
}

/// The highest STOMP subprotocol the client offered, if any.
fn choose_subprotocol(req: &Request<Incoming>) -> Option<&'static str> {
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_ascii_lowercase())
        .collect();
    SUBPROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
}

fn header_has_token(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether `key` is what RFC 6455 requires of `Sec-WebSocket-Key`: the base64 of 16
/// bytes, so exactly 22 base64 characters (the last carrying only 2 bits) and `==`.
fn valid_websocket_key(key: &[u8]) -> bool {
    let b64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24
        && key[..21].iter().all(b64)
        && matches!(key[21], b'A' | b'Q' | b'g' | b'w')
        && &key[22..] == b"=="
}

fn upgrade(
    mut req: Request<Incoming>,
    broker: Arc<Broker>,
    peer: SocketAddr,
    address: Arc<AddressSlot>,
) -> Response<Body> {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let is_upgrade = header_has_token(&req, header::CONNECTION, "upgrade")
        && header_has_token(&req, header::UPGRADE, "websocket")
        && req
            .headers()
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(|v| v.as_bytes())
            == Some(b"13");
    let Some(key) = key.filter(|k| is_upgrade && valid_websocket_key(k.as_bytes())) else {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "expected a WebSocket upgrade (version 13, with a Sec-WebSocket-Key of 16 bytes)\n",
        );
    };
    // Cross-site WebSocket hijacking: a browser always sends Origin; refuse foreign ones.
    let allowed = &broker.config.server.allowed_origins;
    if let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .filter(|_| !allowed.is_empty())
    {
        let ok = origin
            .to_str()
            .map(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)))
            .unwrap_or(false);
        if !ok {
            tracing::info!(%peer, origin = ?origin, "WebSocket handshake from a refused origin");
            return text(StatusCode::FORBIDDEN, "text/plain", "origin not allowed\n");
        }
    }
    let Some(guard) = broker.open_connection(Transport::Ws, address) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "too many connections\n",
        );
    };
    let protocol = choose_subprotocol(&req);
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let tasks = broker.tasks.clone();
    tasks.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run_ws(upgraded, broker, guard, peer).await,
            Err(e) => tracing::debug!(%peer, error = %e, "WebSocket upgrade failed"),
        }
    });
    res
}

async fn run_ws(
    upgraded: hyper::upgrade::Upgraded,
    broker: Arc<Broker>,
    guard: ConnectionGuard,
    peer: SocketAddr,
) {
    let limits = broker.limits();
    // Small read buffers keep idle connections cheap. A WebSocket message may carry
    // several frames, so it may be somewhat larger than one frame; a larger one is
    // refused with an ERROR by the session.
    let config = WebSocketConfig::default()
        .read_buffer_size(2048)
        .max_message_size(Some(
            limits.max_frame_bytes.saturating_mul(2).max(64 * 1024),
        ))
        .max_frame_size(Some(
            limits.max_frame_bytes.saturating_mul(2).max(64 * 1024),
        ));
    let progress = Arc::new(crate::transport::metered::Progress::default());
    let io = crate::transport::metered::Metered::new(TokioIo::new(upgraded), progress.clone());
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (reader, writer) = crate::transport::ws(ws, progress);
    crate::session::run(broker, reader, writer, guard, peer).await;
}
