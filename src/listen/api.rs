//! `POST /api/publish`: one message from a backend, over HTTP, with the rights
//! and checks of a STOMP SEND.
//!
//! The request carries `Authorization: Bearer <JWT>` or `Basic` (a configured
//! user's login and password) and either a JSON body `{"destination", "body",
//! "headers"?}` or a raw body with `?destination=` in the query (its
//! `Content-Type` kept as the message's `content-type`). The answer is 202 `{}`
//! once the message is routed (for a queue, once the queue holds it, durably for a
//! durable one), or an error status with `{"error", "message"}`: 401 bad or
//! missing credentials, 403 no right to the destination, 400 a bad destination or
//! request, 408 a body slower than `limits.frame_timeout_ms`, 413 a body over
//! `limits.max_frame_bytes`, 429 an address over its failed-login limit, 503 when
//! the broker cannot take the message (or already holds
//! `limits.max_pending_frame_bytes` in unfinished frames and bodies).

use crate::admission::{Exhausted, Holder};
use crate::auth::{AuthError, Credentials, Role};
use crate::broker::Broker;
use crate::codec::Headers;
use crate::command;
use crate::session::ProtocolError;
use crate::session::send::{Sent, apply};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// The JSON form of a publish request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    destination: String,
    body: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A refused request: its status, a stable code and a message naming the problem.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            error,
            message: message.into(),
        }
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// Serves `GET /api/stats` to an admin or a service: what the broker holds, as
/// JSON (documented in docs/monitoring.md).
pub async fn stats(
    req: Request<Incoming>,
    broker: Arc<Broker>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    if let Err(r) = authorized(&req, &broker, peer, &[Role::Admin, Role::Service]).await {
        return refused(r);
    }
    let engine = broker.engine.stats().await;
    let (ws, tcp) = broker.connections_by_transport();
    let store_bytes = std::fs::metadata(broker.config.store.path.join("queues.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    json(
        StatusCode::OK,
        &serde_json::json!({
            "connections": {"ws": ws, "tcp": tcp},
            "subscriptions": broker.subscription_count(),
            "queues": engine.queues,
            "retained_topics": engine.retained_topics,
            "history": engine.history,
            "store": {"bytes": store_bytes, "failed": engine.store_failed},
            "cluster": engine.cluster,
            "draining": broker.drain.is_draining(),
        }),
    )
}

/// Serves `POST /api/drain` to an admin: begins draining, as SIGTERM does
/// (`/readyz` 503 at once, connections closed over `server.drain_spread_s`
/// after `server.drain_grace_s`; the binary exits when they are gone). 202
/// with the plan; a second request changes nothing and answers the same.
pub async fn drain(
    req: Request<Incoming>,
    broker: Arc<Broker>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let identity = match authorized(&req, &broker, peer, &[Role::Admin]).await {
        Ok(identity) => identity,
        Err(r) => return refused(r),
    };
    let plan = broker.begin_drain();
    let login = identity.login.as_deref().unwrap_or("");
    tracing::warn!(login, %peer, "POST /api/drain: draining");
    let seconds = |d: std::time::Duration| d.as_secs_f64();
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({
            "draining": true,
            "grace_s": seconds(plan.close_from.duration_since(plan.began)),
            "spread_s": seconds(plan.spread),
        }),
    )
}

/// Serves `POST /api/reload` to an admin: reads the configuration file again and
/// applies what can change while running (as SIGHUP does). 200 with what was
/// applied and what needs a restart; 400 when the file is invalid (nothing
/// changed); 409 when the broker was not started from a file.
pub async fn reload(
    req: Request<Incoming>,
    broker: Arc<Broker>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    if let Err(r) = authorized(&req, &broker, peer, &[Role::Admin]).await {
        return refused(r);
    }
    // Reading and checking the file (password hashes, key files) is blocking work.
    let b = broker.clone();
    let done = tokio::task::spawn_blocking(move || b.reload()).await;
    match done {
        Ok(Ok(reloaded)) => json(
            StatusCode::OK,
            &serde_json::to_value(&reloaded).unwrap_or_default(),
        ),
        Ok(Err(e @ crate::broker::ReloadError::NoFile)) => {
            refused(Refusal::new(StatusCode::CONFLICT, "no_file", e.to_string()))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "POST /api/reload: nothing changed");
            refused(Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_config",
                e.to_string(),
            ))
        }
        Err(_) => refused(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed",
            "the reload failed",
        )),
    }
}

/// A refusal as a response: its status and `{"error", "message"}`.
fn refused(r: Refusal) -> Response<Full<Bytes>> {
    let mut res = json(
        r.status,
        &serde_json::json!({"error": r.error, "message": r.message}),
    );
    if r.status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"stompede\", Bearer"),
        );
    }
    res
}

/// Serves `POST /api/publish` from `peer`.
pub async fn publish(
    req: Request<Incoming>,
    broker: Arc<Broker>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    match accept(req, &broker, peer).await {
        Ok(()) => json(StatusCode::ACCEPTED, &serde_json::json!({})),
        Err(r) => refused(r),
    }
}

async fn accept(
    req: Request<Incoming>,
    broker: &Arc<Broker>,
    peer: SocketAddr,
) -> Result<(), Refusal> {
    let identity = authenticate(&req, broker, peer).await?;
    let query_destination = query_destination(req.uri().query())?;
    let content_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let max = broker.limits().max_frame_bytes;
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body exceeds {max} bytes (limits.max_frame_bytes)"),
        )
    };
    if content_length.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    // Rights first, from the head alone, when it names the destination: a
    // request that may not publish there holds nothing.
    if let Some(destination) = &query_destination {
        let probe = message(destination.clone(), Headers::new(), Bytes::new());
        crate::session::send::route(broker, &identity, &probe).map_err(refusal)?;
    }
    // The body is held in memory until routed: each chunk, as it arrives, takes
    // its bytes from the budget unfinished STOMP frames share (within this
    // address's and this login's share of it), and all of it must arrive within
    // the frame timeout, as a frame must.
    let mut holders = vec![Holder::address(peer.ip())];
    holders.extend(identity.login.clone().map(Holder::Login));
    let mut held = Held {
        broker,
        holders,
        bytes: 0,
    };
    let limits = broker.limits();
    let body = tokio::time::timeout(
        limits.frame_timeout(),
        read_body(req.into_body(), &mut held, max),
    )
    .await
    .map_err(|_| {
        Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the body did not arrive within {} ms (limits.frame_timeout_ms)",
                limits.frame_timeout_ms
            ),
        )
    })??;
    let send = match query_destination {
        Some(destination) => {
            let mut headers = Headers::new();
            headers.push("destination", destination.as_str());
            if let Some(kind) = content_type {
                headers.push("content-type", kind);
            }
            message(destination, headers, body)
        }
        None => {
            let p: Publish = serde_json::from_slice(&body).map_err(|e| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("expected JSON {{\"destination\", \"body\", \"headers\"?}} or ?destination=: {e}"),
                )
            })?;
            if p.headers.len() > limits.max_header_count {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!(
                        "more than {} headers (limits.max_header_count)",
                        limits.max_header_count
                    ),
                ));
            }
            if let Some(k) = p
                .headers
                .keys()
                .find(|k| !crate::codec::valid_header_name(k))
            {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "bad_header",
                    format!("header name {k:?} has whitespace at an end or a control character"),
                ));
            }
            if let Some((k, _)) = p
                .headers
                .iter()
                .find(|(k, v)| k.len() + v.len() + 1 > limits.max_header_line)
            {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!(
                        "header {k:?} is longer than {} bytes (limits.max_header_line)",
                        limits.max_header_line
                    ),
                ));
            }
            let mut headers = Headers::with_capacity(p.headers.len() + 1);
            headers.push("destination", p.destination.as_str());
            for (k, v) in p.headers {
                headers.push(k, v);
            }
            if p.body.len() > max {
                return Err(too_large());
            }
            message(p.destination, headers, Bytes::from(p.body))
        }
    };
    let session = broker.next_session_id();
    match apply(broker, &identity, session, send, None).await {
        Ok(Sent::Done) => Ok(()),
        Ok(Sent::Pending(mut answer)) => crate::queue::answered(&mut answer)
            .await
            .map_err(|e| refusal(ProtocolError::Queue(e))),
        Err(e) => Err(refusal(e)),
    }
}

/// Reads a request body of at most `max` bytes, each chunk held in `held`
/// before it is kept. Once the budget refuses a chunk, the rest of the body is
/// read and dropped, holding nothing, so the client reads its 503 instead of a
/// connection reset (the frame timeout still bounds how long that takes).
async fn read_body(mut body: Incoming, held: &mut Held<'_>, max: usize) -> Result<Bytes, Refusal> {
    let mut out = bytes::BytesMut::new();
    let mut refused = None;
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body could not be read",
            )
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        seen += chunk.len();
        if seen > max {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body exceeds {max} bytes (limits.max_frame_bytes)"),
            ));
        }
        if refused.is_some() {
            continue;
        }
        match held.take(chunk.len()) {
            Ok(()) => out.extend_from_slice(&chunk),
            Err(r) => {
                refused = Some(r);
                out = bytes::BytesMut::new();
                held.give_back();
            }
        }
    }
    match refused {
        Some(r) => Err(r),
        None => Ok(out.freeze()),
    }
}

/// Bytes of a request body held against `limits.max_pending_frame_bytes` (and
/// its holders' shares), as they arrive; given back on drop.
struct Held<'b> {
    broker: &'b Broker,
    holders: Vec<Holder>,
    bytes: usize,
}

impl Held<'_> {
    fn take(&mut self, n: usize) -> Result<(), Refusal> {
        let budget = &self.broker.pending_frames;
        let refused = match budget.take_for(&self.holders, n) {
            Ok(()) => {
                self.bytes += n;
                return Ok(());
            }
            Err(Exhausted::All) => ProtocolError::PendingFramesFull(budget.max()),
            Err(Exhausted::Share) => ProtocolError::PendingFramesShare(budget.share()),
        };
        self.broker.metrics.error_sent(refused.reason());
        Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            refused.to_string(),
        ))
    }
}

impl Held<'_> {
    /// Gives back everything held.
    fn give_back(&mut self) {
        self.broker
            .pending_frames
            .give_for(&self.holders, self.bytes);
        self.bytes = 0;
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// A SEND command for `destination`.
fn message(destination: String, headers: Headers, body: Bytes) -> command::Send {
    command::Send {
        destination,
        transaction: None,
        headers,
        body,
    }
}

/// Authenticates the request and checks that its login has one of `roles`
/// (403 naming the request and the roles otherwise).
async fn authorized(
    req: &Request<Incoming>,
    broker: &Arc<Broker>,
    peer: SocketAddr,
    roles: &[Role],
) -> Result<crate::auth::Identity, Refusal> {
    let identity = authenticate(req, broker, peer).await?;
    if !identity.roles.iter().any(|r| roles.contains(r)) {
        let names: Vec<String> = roles
            .iter()
            .map(|r| format!("{r:?}").to_lowercase())
            .collect();
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} {} is for the roles {}",
                req.method(),
                req.uri().path(),
                names.join(", ")
            ),
        ));
    }
    Ok(identity)
}

/// The request's login: a Bearer token or Basic credentials; nothing is a 401.
async fn authenticate(
    req: &Request<Incoming>,
    broker: &Arc<Broker>,
    peer: SocketAddr,
) -> Result<crate::auth::Identity, Refusal> {
    let unauthorized = |m: &str| Refusal::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("credentials required: Authorization: Bearer or Basic"))?;
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    let basic;
    let credentials = if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Credentials {
            login: None,
            passcode: None,
            bearer: Some(rest),
        }
    } else if scheme.eq_ignore_ascii_case("basic") {
        basic = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| unauthorized("malformed Basic credentials"))?;
        let (login, password) = basic
            .split_once(':')
            .ok_or_else(|| unauthorized("malformed Basic credentials"))?;
        Credentials {
            login: Some(login),
            passcode: Some(password),
            bearer: None,
        }
    } else {
        return Err(unauthorized(
            "credentials required: Authorization: Bearer or Basic",
        ));
    };
    let login = tokio::time::timeout(
        broker.limits().connect_timeout(),
        broker.auth.connect(credentials, peer.ip()),
    )
    .await
    .map_err(|_| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the password check did not finish in time (limits.connect_timeout_ms)",
        )
    })?;
    match login {
        Ok(login) if login.identity.login.is_some() => Ok(login.identity),
        Ok(_) => Err(unauthorized(
            "credentials required: Authorization: Bearer or Basic",
        )),
        Err(e @ (AuthError::Throttled | AuthError::AddressBusy)) => Err(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            e.to_string(),
        )),
        Err(e @ AuthError::Busy) => Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            e.to_string(),
        )),
        Err(e) => Err(unauthorized(&e.to_string())),
    }
}

/// `destination` from the query string, percent-decoded.
fn query_destination(query: Option<&str>) -> Result<Option<String>, Refusal> {
    let Some(query) = query else {
        return Ok(None);
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "destination" {
            let plus_as_space = value.replace('+', " ");
            return percent_encoding::percent_decode_str(&plus_as_space)
                .decode_utf8()
                .map(|d| Some(d.into_owned()))
                .map_err(|_| {
                    Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "bad_destination",
                        "the destination is not UTF-8",
                    )
                });
        }
    }
    Ok(None)
}

/// The status a SEND's refusal gets over HTTP.
fn refusal(e: ProtocolError) -> Refusal {
    let (status, error) = match &e {
        ProtocolError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
        ProtocolError::Engine(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        ProtocolError::Queue(crate::queue::QueueError::Full(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "queue_full")
        }
        ProtocolError::Queue(crate::queue::QueueError::SenderTold(_)) => {
            (StatusCode::BAD_GATEWAY, "backend_failed")
        }
        ProtocolError::Queue(_) | ProtocolError::HandlerFailed(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
        _ => (StatusCode::BAD_REQUEST, "bad_destination"),
    };
    Refusal::new(status, error, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_destination_is_percent_decoded() {
        assert_eq!(
            query_destination(Some("a=1&destination=%2Ftopic%2Fx+y")).ok(),
            Some(Some("/topic/x y".to_owned()))
        );
        assert_eq!(query_destination(Some("a=1")).ok(), Some(None));
        assert_eq!(query_destination(None).ok(), Some(None));
        assert!(query_destination(Some("destination=%ff")).is_err());
    }
}
