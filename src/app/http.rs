//! `[[app.routes]]` with a `url`: each SEND is POSTed as JSON to a backend in
//! any language (Centrifugo's proxy, Spring's `@MessageMapping` as a web
//! service); a 2xx answer may carry messages to publish.
//!
//! Bounded: at most `max_in_flight` requests per route at once, of which one
//! login holds at most a quarter (past either the sender is told
//! `BACKEND_BUSY`, so one client sending to a slow backend cannot take the
//! route from everyone), each within `timeout_ms` (connecting, the answer and
//! its body), an answer of at most [`MAX_ANSWER_BYTES`]. hyper's
//! pooled client keeps connections alive and never follows a redirect (a 3xx
//! is a failure). Never a silent loss: a failure is published to the sender's
//! own `/user/queue/errors` with the SEND's `receipt` as `receipt-id`, and the
//! session stays open.

use crate::auth::Role;
use crate::codec::Headers;
use crate::destination::pattern::matches;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::queue::{Answer, QueueError};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The largest answer a backend may give.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Messages one answer may publish.
pub const MAX_ANSWER_MESSAGES: usize = 100;

/// A route's HTTP backend.
#[derive(Debug)]
pub struct HttpTarget {
    url: Uri,
    publish: Vec<String>,
    timeout: Duration,
    slots: Arc<Semaphore>,
    /// Requests in flight per login; an entry per login with one.
    per_login: Arc<dashmap::DashMap<String, usize>>,
    /// What one login may have in flight: a quarter of the places, at least one.
    login_share: usize,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// One login's place among a route's requests; given back when dropped.
struct LoginSlot {
    per_login: Arc<dashmap::DashMap<String, usize>>,
    login: String,
}

impl Drop for LoginSlot {
    fn drop(&mut self) {
        if let Some(mut n) = self.per_login.get_mut(&self.login) {
            *n -= 1;
        }
        self.per_login.remove_if(&self.login, |_, n| *n == 0);
    }
}

impl PartialEq for HttpTarget {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url && self.publish == other.publish && self.timeout == other.timeout
    }
}

impl Eq for HttpTarget {}

/// What one SEND gives the backend.
pub struct Call<'a> {
    /// The route's `match`, for metrics and logs.
    pub route: &'a str,
    /// The `/app/...` destination.
    pub destination: &'a str,
    /// The sender.
    pub login: &'a str,
    /// Its roles.
    pub roles: &'a [Role],
    /// The SEND's headers.
    pub headers: &'a Headers,
    /// The SEND's body.
    pub body: &'a Bytes,
}

/// An answer's body: `{"messages": [{"destination", "headers", "body"}]}`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Answered {
    messages: Vec<Answering>,
}

#[derive(Debug, Deserialize)]
struct Answering {
    destination: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: String,
}

/// Why a call failed, as the sender is told.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    Busy,
    Timeout,
    Failed(String),
}

impl Failure {
    fn code(&self) -> &'static str {
        match self {
            Failure::Busy => "BACKEND_BUSY",
            Failure::Timeout => "BACKEND_TIMEOUT",
            Failure::Failed(_) => "BACKEND_FAILED",
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Busy => "the backend has as many requests as it may; try again".to_owned(),
            Failure::Timeout => "the backend did not answer in time".to_owned(),
            Failure::Failed(why) => why.clone(),
        }
    }
}

impl HttpTarget {
    /// A backend at `url` (checked when the configuration loaded).
    pub fn new(
        url: &str,
        publish: Vec<String>,
        max_in_flight: usize,
        timeout: Duration,
    ) -> Option<HttpTarget> {
        let url = url.parse().ok()?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(max_in_flight)
            .build(connector);
        Some(HttpTarget {
            url,
            publish,
            timeout,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            per_login: Arc::new(dashmap::DashMap::new()),
            login_share: (max_in_flight / 4).max(1),
            client,
        })
    }

    /// A place for a request by `login`, within its share, or `None`.
    fn login_slot(&self, login: &str) -> Option<LoginSlot> {
        let mut n = self.per_login.entry(login.to_owned()).or_insert(0);
        if *n >= self.login_share {
            return None;
        }
        *n += 1;
        Some(LoginSlot {
            per_login: self.per_login.clone(),
            login: login.to_owned(),
        })
    }

    /// Calls the backend for one SEND on a task of its own: the answer is `Ok`
    /// once the backend answered 2xx and its messages were published, and
    /// `Err(SenderTold)` after a failure was published to the sender.
    pub fn call(
        self: &Arc<Self>,
        call: Call<'_>,
        engine: Arc<dyn Engine>,
        metrics: Arc<Metrics>,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Answer {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let receipt = call.headers.get("receipt").map(str::to_owned);
        let login = call.login.to_owned();
        let route = call.route.to_owned();
        let destination = call.destination.to_owned();
        metrics.app_route_request(&route);
        // The login's place first: dropped again if the route has none.
        let places = self
            .login_slot(&login)
            .and_then(|mine| Some((mine, self.slots.clone().try_acquire_owned().ok()?)));
        let Some(slot) = places else {
            tell(
                &*engine,
                &metrics,
                &route,
                &login,
                &destination,
                receipt.as_deref(),
                &Failure::Busy,
            );
            let _ = reply.send(Err(QueueError::SenderTold(route)));
            return answer;
        };
        let body = request_body(&call);
        let target = self.clone();
        tasks.spawn(async move {
            let _slot = slot;
            let began = Instant::now();
            let outcome = match tokio::time::timeout(target.timeout, target.post(body)).await {
                Ok(Ok(answered)) => Ok(answered),
                Ok(Err(failure)) => Err(failure),
                Err(_) => Err(Failure::Timeout),
            };
            metrics.app_route_latency(&route, began.elapsed());
            let result = match outcome {
                Ok(answered) => {
                    target.publish_answer(&*engine, &login, answered);
                    Ok(())
                }
                Err(failure) => {
                    tracing::info!(route, login, destination, error = %failure.message(), "backend failed");
                    tell(&*engine, &metrics, &route, &login, &destination, receipt.as_deref(), &failure);
                    Err(QueueError::SenderTold(route))
                }
            };
            let _ = reply.send(result);
        });
        answer
    }

    /// POSTs `body`; the parsed 2xx answer, or why not.
    async fn post(&self, body: Vec<u8>) -> Result<Answered, Failure> {
        let request = Request::post(self.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failure::Failed(format!("bad request: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| Failure::Failed(format!("the backend could not be reached: {e}")))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|_| {
                Failure::Failed(format!(
                    "the backend's answer was cut off or larger than {MAX_ANSWER_BYTES} bytes"
                ))
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(Failure::Failed(format!("the backend answered {status}")));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) || status == StatusCode::NO_CONTENT {
            return Ok(Answered::default());
        }
        let answered: Answered = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Failed(format!(
                "the backend's answer is not the expected JSON: {e}"
            ))
        })?;
        if answered.messages.len() > MAX_ANSWER_MESSAGES {
            return Err(Failure::Failed(format!(
                "the backend's answer carries more than {MAX_ANSWER_MESSAGES} messages"
            )));
        }
        Ok(answered)
    }

    /// Publishes an answer's messages in order: to the sender's own
    /// `/user/queue/NAME`, and to topics the route's `publish` patterns allow.
    /// Anything else is dropped and logged.
    fn publish_answer(&self, engine: &dyn Engine, login: &str, answered: Answered) {
        for m in answered.messages {
            let headers: Headers = m.headers.into_iter().collect();
            let body = Bytes::from(m.body);
            let published = if let Some(queue) = m.destination.strip_prefix("/user/queue/") {
                crate::destination::valid_user_queue(queue).then(|| {
                    engine
                        .publish_user(login, queue, &headers, body)
                        .map(|_| ())
                })
            } else {
                let allowed = !crate::destination::pattern::is_pattern(&m.destination)
                    && self.publish.iter().any(|p| matches(p, &m.destination));
                allowed.then(|| {
                    engine
                        .publish_topic(&m.destination, &headers, body)
                        .map(|_| ())
                })
            };
            match published {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    tracing::warn!(login, destination = m.destination, error = %e, "backend's message not published")
                }
                None => tracing::warn!(
                    login,
                    destination = m.destination,
                    "backend's message to a destination its route may not publish to: dropped"
                ),
            }
        }
    }
}

/// The JSON POSTed for one SEND: `destination`, `login`, `roles`, `headers`
/// (the SEND's, first value of each name), and `body` as text, or
/// `body_base64` when it is not UTF-8.
fn request_body(call: &Call<'_>) -> Vec<u8> {
    let mut headers = serde_json::Map::new();
    for (k, v) in call.headers.iter() {
        if !matches!(
            k,
            "destination" | "receipt" | "content-length" | "transaction"
        ) {
            headers.entry(k.to_owned()).or_insert_with(|| v.into());
        }
    }
    let roles: Vec<String> = call
        .roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect();
    let mut json = serde_json::json!({
        "destination": call.destination,
        "login": call.login,
        "roles": roles,
        "headers": headers,
    });
    match std::str::from_utf8(call.body) {
        Ok(text) => json["body"] = text.into(),
        Err(_) => {
            json["body_base64"] = base64::engine::general_purpose::STANDARD
                .encode(call.body)
                .into()
        }
    }
    json.to_string().into_bytes()
}

/// Tells `login` on its `/user/queue/errors` that its SEND failed.
fn tell(
    engine: &dyn Engine,
    metrics: &Metrics,
    route: &str,
    login: &str,
    destination: &str,
    receipt: Option<&str>,
    failure: &Failure,
) {
    metrics.app_route_failure(route);
    let mut headers = Headers::new();
    headers.push("content-type", "application/json");
    let mut body = serde_json::json!({
        "error": failure.code(),
        "message": failure.message(),
        "destination": destination,
    });
    if let Some(r) = receipt {
        headers.push("receipt-id", r);
        body["receipt-id"] = r.into();
    }
    if let Err(e) = engine.publish_user(login, "errors", &headers, body.to_string().into()) {
        tracing::warn!(login, error = %e, "the backend's failure could not be told");
    }
}
