//! The HTTP listener: WebSocket STOMP at `/ws`, `/healthz`, `/readyz`, the page
//! at `/`, and `/metrics` and the admin API (`POST /api/publish`, `GET
//! /api/stats`, `POST /api/reload`, `POST /api/drain`) unless the operators'
//! listener serves them.

use super::{Admitted, Refusal};
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
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// STOMP WebSocket subprotocols, best first.
const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

/// Time a client has to send its HTTP request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Which listener a request came through, and so which routes it may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// A client listener: `/ws`, health, the page, and `/metrics` and the admin
    /// API when no operators' listener is set (`admin`).
    Public {
        /// Whether `/metrics` and the admin API are served here.
        admin: bool,
    },
    /// The operators' listener (`server.ops_addr`): `/metrics`, health and the
    /// admin API, outside the client limits.
    Ops,
}

impl Surface {
    /// Whether `/metrics` and the admin API are served here.
    fn admin(self) -> bool {
        matches!(self, Surface::Ops | Surface::Public { admin: true })
    }
}

/// Accepts HTTP connections until the node stops taking clients (a drain, or
/// shutdown), over TLS when `tls` is given (HTTPS: the same routes, so `wss://`
/// at `/ws`; the PROXY header and the handshake are read in the connection's
/// own task, within `limits.connect_timeout_ms`). Accept errors are logged and
/// retried.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    metrics: PrometheusHandle,
    tls: Option<TlsAcceptor>,
) {
    let stop = broker.drain.stop_accepting().clone();
    let surface = Surface::Public {
        admin: broker.config.server.ops_addr.trim().is_empty(),
    };
    while let Some((stream, peer)) = super::next_connection(&listener, &stop, "HTTP").await {
        let _ = stream.set_nodelay(true);
        let tasks = broker.tasks.clone();
        tasks.spawn(accept(
            stream,
            peer,
            broker.clone(),
            metrics.clone(),
            tls.clone(),
            surface,
        ));
    }
}

/// Admits one HTTP connection and serves it, or refuses it with a 503 (or a
/// 400 for a refused PROXY header) naming the limit; over TLS a plain-text
/// refusal could not be read, so the socket just closes.
async fn accept(
    mut stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    metrics: PrometheusHandle,
    tls: Option<TlsAcceptor>,
    surface: Surface,
) {
    let plain = tls.is_none();
    let Admitted { client, address } = match super::admit(&mut stream, peer, &broker, true).await {
        Ok(admitted) => admitted,
        Err(Refusal::PerAddress) => {
            broker.metrics.transport(Transport::Ws).refused.increment(1);
            tracing::debug!(%peer, "refused: limits.max_connections_per_ip");
            if plain {
                let message =
                    "too many connections from this address (limits.max_connections_per_ip)\n";
                refuse_or_probe(stream, broker, StatusCode::SERVICE_UNAVAILABLE, message).await;
            }
            return;
        }
        Err(Refusal::ProxyHeader(e)) => {
            tracing::info!(%peer, error = %e, "refused a PROXY protocol header");
            broker.metrics.error_sent("proxy_header");
            if plain {
                let message = format!("{e}\n");
                refuse_or_probe(stream, broker, StatusCode::BAD_REQUEST, &message).await;
            }
            return;
        }
    };
    // A trusted proxy's connection counts only against the total.
    let slot_ip = address.as_ref().map(|_| client.ip());
    let http_slot = match broker.admission.open_http(slot_ip) {
        Ok(slot) => slot,
        Err(full) => {
            tracing::debug!(%client, ?full, "refused: limits.max_http_connections");
            let message = match full {
                HttpFull::All => "too many HTTP connections (limits.max_http_connections)\n",
                HttpFull::Share => {
                    "too many HTTP connections from this address (a quarter of limits.max_http_connections)\n"
                }
            };
            if plain {
                refuse_or_probe(stream, broker, StatusCode::SERVICE_UNAVAILABLE, message).await;
            }
            return;
        }
    };
    let _http_slot = http_slot;
    let conn = Conn {
        broker: broker.clone(),
        metrics,
        client,
        address,
        surface,
    };
    let Some(tls) = tls else {
        connection(stream, conn).await;
        return;
    };
    let limit = broker.limits().connect_timeout();
    match tokio::time::timeout(limit, tls.accept(stream)).await {
        Ok(Ok(stream)) => connection(stream, conn).await,
        Ok(Err(e)) => tracing::debug!(%client, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
    }
}

/// One HTTP connection's context.
#[derive(Clone)]
pub(super) struct Conn {
    pub(super) broker: Arc<Broker>,
    pub(super) metrics: PrometheusHandle,
    /// The client, or the trusted proxy whose requests each name their client.
    pub(super) client: SocketAddr,
    /// The connection's place in its client's address count; `None` for a
    /// trusted proxy's connection (each WebSocket takes its client's place).
    pub(super) address: Option<Arc<AddressSlot>>,
    pub(super) surface: Surface,
}

impl Conn {
    /// The client a request is for: the connection's, or when it comes from a
    /// trusted proxy, the one its `Forwarded` / `X-Forwarded-For` names.
    fn client_of(&self, req: &Request<Incoming>) -> SocketAddr {
        match self.address {
            Some(_) => self.client,
            None => {
                super::forwarded::client(req.headers(), self.client, &self.broker.trusted_proxies())
            }
        }
    }
}

/// Serves one HTTP connection (plain or TLS) until it ends, it upgrades to a
/// WebSocket, or the broker shuts down.
pub(super) async fn connection<IO>(io: IO, conn: Conn)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = conn.broker.shutdown.clone();
    let service = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        async move {
            let peer = conn.client_of(&req);
            let broker = conn.broker.clone();
            if conn.surface.admin() {
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
                    (&Method::POST, "/api/drain") => {
                        return Ok(super::api::drain(req, broker, peer).await);
                    }
                    _ => {}
                }
            }
            Ok(route(req, conn, peer))
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

/// Answers a connection past a limit: a health probe (`GET` or `HEAD` of
/// `/healthz` or `/readyz`) as usual, anything else with `status` (a 503) and
/// `message` naming the limit. The request is read (briefly, a little) first, so
/// the answer is not lost to a reset.
/// At most [`crate::admission::MAX_PROBES`] such connections at once, each given [`PROBE_WAIT`] to
/// send its request head; past that the socket just closes. So the probes a
/// load balancer or an operator sends always answer, whoever holds the slots.
async fn refuse_or_probe(
    mut stream: TcpStream,
    broker: Arc<Broker>,
    status: StatusCode,
    message: &str,
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
            _ => (status, message.to_owned()),
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
        "/readyz" if broker.drain.is_draining() => {
            Some((StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned()))
        }
        "/readyz" => Some(match broker.engine.ready() {
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
            Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        }),
        _ => None,
    }
}

fn route(req: Request<Incoming>, conn: Conn, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    if !conn.surface.admin() && (path == "/metrics" || path.starts_with("/api/")) {
        return text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: served on the operators' listener (server.ops_addr)\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        );
    }
    let public = matches!(conn.surface, Surface::Public { .. });
    let admin = conn.surface.admin();
    match req.uri().path() {
        path if public && conn.broker.config.server.ws_paths.iter().any(|p| p == path) => {
            upgrade(req, conn, peer)
        }
        "/api/publish" if admin => text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use POST\n"),
        "/metrics" if admin => {
            conn.metrics.run_upkeep();
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                conn.metrics.render(),
            )
        }
        "/healthz" | "/readyz" => match health(req.uri().path(), &conn.broker) {
            Some((status, body)) => text(status, "text/plain", body),
            None => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        },
        path if public => match super::web::asset(path) {
            Some((kind, body)) => text(StatusCode::OK, kind, Bytes::from_static(body)),
            None => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
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

fn upgrade(mut req: Request<Incoming>, conn: Conn, peer: SocketAddr) -> Response<Body> {
    let broker = conn.broker;
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
    // Through a trusted proxy the client is known only now: it takes its place.
    let address = match conn.address {
        Some(address) => address,
        None => match broker.admission.admit(peer.ip()) {
            Some(address) => address,
            None => {
                broker.metrics.transport(Transport::Ws).refused.increment(1);
                tracing::debug!(%peer, "refused: limits.max_connections_per_ip");
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "too many connections from this address (limits.max_connections_per_ip)\n",
                );
            }
        },
    };
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
