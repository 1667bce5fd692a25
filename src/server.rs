//! Starting and stopping a broker: binds the listeners, runs the accept loops, and
//! shuts down cleanly.

use crate::broker::Broker;
use crate::config::{Config, ConfigError};
use crate::listen;
use crate::transport;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket};

/// Why the broker could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A TLS certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] crate::transport::tls::TlsError),
    /// The queue store could not be opened or read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An application handler's destination is not an `/app/` one, or taken.
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The config key it came from.
        key: &'static str,
        /// Why.
        source: io::Error,
    },
}

/// A broker that is running.
#[derive(Debug)]
pub struct RunningBroker {
    /// Where the HTTP listener is bound (the real port when configured with port 0).
    pub http_addr: SocketAddr,
    /// Where the TCP STOMP listener is bound, if enabled.
    pub stomp_addr: Option<SocketAddr>,
    /// Where the HTTPS (`wss://`) listener is bound, if TLS is on.
    pub https_addr: Option<SocketAddr>,
    /// Where the STOMP-over-TLS listener is bound, if TLS is on.
    pub stomps_addr: Option<SocketAddr>,
    /// Where the operators' listener is bound, if `server.ops_addr` is set.
    pub ops_addr: Option<SocketAddr>,
    /// Shared state, for tests that look inside.
    pub broker: Arc<Broker>,
}

/// Binds `addr` (config key `key`, named in the error) and says where it is bound
/// (the real port when configured with port 0).
fn listen(addr: SocketAddr, key: &'static str) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind = || -> io::Result<(TcpListener, SocketAddr)> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        // A deep backlog: thousands of clients reconnect at once after a restart.
        let listener = socket.listen(4096)?;
        let bound = listener.local_addr()?;
        Ok((listener, bound))
    };
    bind().map_err(|source| StartError::Bind { addr, key, source })
}

/// Binds the listeners and starts serving, with the built-in trading app when
/// `trading.enabled`. Must be called inside a Tokio runtime.
pub fn start(config: Config) -> Result<RunningBroker, StartError> {
    Builder::new(config).start()
}

/// [`start`], reloadable from `reload` (the binary's file) from the first
/// request on: it is in place before the listeners take anyone, so a
/// `POST /api/reload` that comes at once does not find the broker without one.
pub fn start_reloadable(
    config: Config,
    reload: Option<crate::broker::ReloadWith>,
) -> Result<RunningBroker, StartError> {
    let builder = Builder::new(config);
    match reload {
        Some(reload) => builder.reload_from(reload).start(),
        None => builder.start(),
    }
}

/// Starts a broker with application handlers of the embedding program's own.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use stompede::app::{AppHandler, Sender};
/// # #[derive(Debug)] struct Echo;
/// # impl AppHandler for Echo { fn handle(&self, _: Sender<'_>, _: &stompede::command::Send) {} }
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = stompede::config::Config::from_toml("")?;
/// let running = stompede::server::Builder::new(config)
///     .app("/app/echo.*", |_ctx| Arc::new(Echo))
///     .start()?;
/// # Ok(()) }
/// ```
pub struct Builder {
    config: Config,
    apps: crate::app::AppSpecs,
    reload: Option<crate::broker::ReloadWith>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("apps", &self.apps)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A broker with `config`, and the built-in trading app at `/app/trade`
    /// when `trading.enabled` (registered through [`Builder::app`] like any
    /// other).
    pub fn new(config: Config) -> Builder {
        let mut builder = Builder {
            apps: crate::app::AppSpecs::default(),
            reload: None,
            config,
        };
        if builder.config.trading.enabled && builder.config.cluster.enabled() {
            // One market for the cluster: orders go through a queue route to
            // whichever node holds the market's lease.
            let c = &mut builder.config;
            c.app.routes.insert(0, crate::app::market::orders_route());
            let market = crate::app::market::cluster_market(c);
            builder = builder.service(market);
        } else if builder.config.trading.enabled {
            let trading = crate::app::trading::app(&builder.config);
            builder
                .apps
                .handlers
                .push(("/app/trade".to_owned(), trading));
        }
        builder
    }

    /// Registers the handler `make` returns (given the broker's
    /// [`AppContext`](crate::app::AppContext) once it runs) for `destination`:
    /// an `/app/...` destination, or a pattern with `*` and `#` words
    /// (`/app/chat.*`). Exact destinations win over patterns; patterns are
    /// tried in the order registered. Senders need the right to SEND there
    /// (`[[auth.acl]]`; by default traders, services and admins have it).
    pub fn app<F>(mut self, destination: impl Into<String>, make: F) -> Builder
    where
        F: FnOnce(&crate::app::AppContext) -> Arc<dyn crate::app::AppHandler> + Send + 'static,
    {
        self.apps
            .handlers
            .push((destination.into(), Box::new(make)));
        self
    }

    /// Runs `make` (given the broker's [`AppContext`](crate::app::AppContext)
    /// once it runs) to start a service of the embedder's own that has no
    /// `/app` destination: a worker taking its work from a queue route
    /// ([`AppContext::consume`](crate::app::AppContext::consume)), a
    /// publisher on a timer. The cluster's trading market is one.
    pub fn service<F>(mut self, make: F) -> Builder
    where
        F: FnOnce(&crate::app::AppContext) + Send + 'static,
    {
        self.apps.services.push(Box::new(make));
        self
    }

    /// Reloads from `with` (the binary's configuration file) on SIGHUP and
    /// `POST /api/reload`.
    pub fn reload_from(mut self, with: crate::broker::ReloadWith) -> Builder {
        self.reload = Some(with);
        self
    }

    /// Binds the listeners and starts serving. Must be called inside a Tokio
    /// runtime.
    pub fn start(self) -> Result<RunningBroker, StartError> {
        crate::app::check_destinations(self.apps.handlers.iter().map(|(d, _)| d.as_str()))?;
        serve(self.config, self.apps, self.reload)
    }
}

/// Binds the listeners, starts the broker with `apps`, and serves.
fn serve(
    config: Config,
    apps: crate::app::AppSpecs,
    reload: Option<crate::broker::ReloadWith>,
) -> Result<RunningBroker, StartError> {
    let prometheus = crate::metrics::install();
    // Before the connection limits are fitted to it.
    if let Some(limit) = raise_fd_limit() {
        tracing::debug!(limit, "open-file limit");
    }
    let stomp_addr = config.server.stomp_socket_addr()?;
    let http = listen(config.server.http_addr, "server.http_addr")?;
    let ops = config
        .server
        .ops_socket_addr()?
        .map(|a| listen(a, "server.ops_addr"))
        .transpose()?;
    let tcp = stomp_addr
        .map(|a| listen(a, "server.stomp_addr"))
        .transpose()?;
    // TLS: the files were checked when the configuration loaded.
    let tls = match config.tls.enabled() {
        false => None,
        true => {
            let t = &config.tls;
            let https = transport::tls::acceptor(&t.cert_file, &t.key_file, &[b"http/1.1"])?;
            let stomps = transport::tls::acceptor(&t.cert_file, &t.key_file, &[])?;
            let https_listener = listen(t.https_addr, "tls.https_addr")?;
            let stomps_listener = t
                .stomp_socket_addr()?
                .map(|a| listen(a, "tls.stomp_addr"))
                .transpose()?;
            Some((https, https_listener, stomps, stomps_listener))
        }
    };
    let (http, http_addr) = http;
    let node_name = config.cluster.node_name(http_addr.port());
    let broker = Broker::start_node(config, node_name, apps)?;
    if let Some(reload) = reload {
        broker.reload_from(reload);
    }
    let stomp_addr = tcp.as_ref().map(|(_, a)| *a);
    let ops_addr = ops.as_ref().map(|(_, a)| *a);
    if let Some((ops, _)) = ops {
        broker
            .tasks
            .spawn(listen::ops::serve(ops, broker.clone(), prometheus.clone()));
    }
    broker.tasks.spawn(listen::http::serve(
        http,
        broker.clone(),
        prometheus.clone(),
        None,
    ));
    if let Some((tcp, _)) = tcp {
        broker
            .tasks
            .spawn(listen::tcp::serve(tcp, broker.clone(), None));
    }
    let (mut https_addr, mut stomps_addr) = (None, None);
    if let Some((https, https_listener, stomps, stomps_listener)) = tls {
        let (https_listener, bound) = https_listener;
        https_addr = Some(bound);
        broker.tasks.spawn(listen::http::serve(
            https_listener,
            broker.clone(),
            prometheus,
            Some(https),
        ));
        if let Some((l, bound)) = stomps_listener {
            stomps_addr = Some(bound);
            broker
                .tasks
                .spawn(listen::tcp::serve(l, broker.clone(), Some(stomps)));
        }
    }
    let shown = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(
        %http_addr,
        stomp_addr = %shown(stomp_addr),
        https_addr = %shown(https_addr),
        stomps_addr = %shown(stomps_addr),
        ops_addr = %shown(ops_addr),
        "stompede listening"
    );
    Ok(RunningBroker {
        http_addr,
        stomp_addr,
        https_addr,
        stomps_addr,
        ops_addr,
        broker,
    })
}

/// Longest wait for the engine to write out what it holds at shutdown (the
/// queue store, publishes on their way to NATS): a node whose NATS servers are
/// gone must still exit.
pub const ENGINE_CLOSE_WAIT: Duration = Duration::from_secs(5);

impl RunningBroker {
    /// Stops accepting, tells every session, lets writers flush and close, and waits
    /// up to `grace` for all connection and queue tasks; then closes the queue store
    /// (waiting at most [`ENGINE_CLOSE_WAIT`]). Returns whether all finished in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.broker.shutdown.cancel();
        self.broker.tasks.close();
        let finished = tokio::time::timeout(grace, self.broker.tasks.wait())
            .await
            .is_ok();
        let closed = tokio::time::timeout(ENGINE_CLOSE_WAIT, self.broker.engine.close())
            .await
            .is_ok();
        if !closed {
            tracing::warn!("the engine did not close in time (is NATS reachable?)");
        }
        finished && closed
    }

    /// Drains, then shuts down: `/readyz` answers 503 at once; new connections
    /// are taken for `server.drain_grace_s`; then the client listeners close and
    /// each connection is closed at its moment within `server.drain_spread_s`
    /// (an ERROR saying the node restarts, WebSocket close 1012), its unacked
    /// queue deliveries going back to their queues; once the last is gone, or
    /// `last_words` after the spread ends, [`RunningBroker::shutdown`] with
    /// `last_words`. A drain begun earlier (`POST /api/drain`) goes on as
    /// planned. Returns whether everything finished in time.
    pub async fn drain(&self, last_words: Duration) -> bool {
        let broker = &self.broker;
        let plan = broker.begin_drain();
        tracing::info!(
            grace_s = plan
                .close_from
                .saturating_duration_since(plan.began)
                .as_secs_f64(),
            spread_s = plan.spread.as_secs_f64(),
            connections = broker.connection_count(),
            "draining: /readyz answers 503"
        );
        tokio::time::sleep_until(plan.close_from).await;
        broker.drain.stop_accepting().cancel();
        tracing::info!(
            connections = broker.connection_count(),
            "draining: listeners closed; closing connections"
        );
        let deadline = plan.last_close() + last_words;
        let all_gone = async {
            while broker.connection_count() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let gone = tokio::time::timeout_at(deadline, all_gone).await.is_ok();
        if !gone {
            tracing::warn!(
                connections = broker.connection_count(),
                "draining: connections still open at the deadline"
            );
        }
        self.shutdown(last_words).await && gone
    }
}

/// Raises the open-file limit to the hard limit, as servers do, so that many
/// connections can be open at once. Returns the new soft limit.
pub fn raise_fd_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}
