//! State shared by every connection of one running broker.

use crate::app::AppSpecs;
use crate::config::Config;
use crate::engine::{Engine, LocalEngine};
use crate::metrics::{Metrics, Transport};
use crate::store::{RedbStorage, Store, StoreError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What sessions and listeners share. Owned by an `Arc`; every field is either
/// immutable after start or internally synchronised.
#[derive(Debug)]
pub struct Broker {
    /// The configuration the broker started with.
    pub config: Config,
    /// Pre-resolved metric handles.
    pub metrics: Arc<Metrics>,
    /// Topics, user destinations and queues.
    pub engine: Arc<dyn Engine>,
    /// `/app/**` handlers.
    pub apps: crate::app::Apps,
    /// `[[app.routes]]`: `/app` destinations served by backends.
    pub app_routes: crate::app::routes::AppRoutes,
    /// Checks CONNECT credentials.
    pub auth: Arc<crate::auth::Authenticator>,
    /// Who may send and subscribe where (`[[auth.acl]]` over the built-in rules);
    /// replaced whole by a reload. Read through [`Broker::access`].
    access: RwLock<Arc<crate::auth::acl::Access>>,
    /// The limits in force; a reload replaces those that can change while
    /// running. Read through [`Broker::limits`], never `config.limits`.
    limits: RwLock<Arc<crate::config::LimitsConfig>>,
    /// Logins removed by the last reload: sessions of theirs end with an ERROR.
    revoked: tokio::sync::watch::Sender<Arc<Vec<String>>>,
    /// Where the configuration came from, and the log filter to change, when the
    /// binary set them: what a reload reads and applies.
    reload_with: OnceLock<ReloadWith>,
    /// Cancelled when the broker shuts down.
    pub shutdown: CancellationToken,
    /// Draining: `/readyz` 503, then the client listeners close, then each
    /// connection at its moment.
    pub drain: crate::drain::Drain,
    /// `server.trusted_proxies`, replaced by a reload. Read through
    /// [`Broker::trusted_proxies`].
    trusted: RwLock<Arc<crate::config::TrustedProxies>>,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Sockets per client address and plain HTTP connections.
    pub admission: Arc<crate::admission::Admission>,
    /// `limits.max_connections`, lowered to fit the open-file limit.
    pub max_connections: usize,
    /// Bytes held in unfinished frames by all connections
    /// (`limits.max_pending_frame_bytes`).
    pub pending_frames: crate::admission::PendingBudget,
    connections: AtomicUsize,
    /// Open connections per transport (WebSocket, TCP), for `GET /api/stats`.
    open: [AtomicUsize; 2],
    /// Subscriptions of all sessions, for `GET /api/stats`.
    subscriptions: AtomicUsize,
    next_session: Arc<AtomicU64>,
}

impl Broker {
    /// Shared state for a broker with `config`, with the application handlers
    /// `apps` makes registered (their background tasks started), and the queue
    /// store opened and read back. Must be called inside a Tokio runtime.
    pub fn start(config: Config, apps: AppSpecs) -> Result<Arc<Broker>, StoreError> {
        Self::start_with(config, |local| local, apps)
    }

    /// [`Broker::start`] for a node of a cluster when `cluster.nats_url` is set
    /// (named `node_name`), otherwise one node on its own.
    pub fn start_node(
        config: Config,
        node_name: String,
        apps: AppSpecs,
    ) -> Result<Arc<Broker>, StoreError> {
        if !config.cluster.enabled() {
            return Self::start(config, apps);
        }
        let options = crate::engine::ClusterOptions {
            nats_url: config.cluster.nats_url.clone(),
            node_name,
            subscription_capacity: config.cluster.subscription_capacity,
            max_pending_publishes: config.cluster.max_pending_publishes,
            queues: crate::engine::cluster::QueueSettings {
                max_depth: config.queues.max_depth,
                max_redeliveries: config.queues.max_redeliveries,
                max_queues: config.queues.max_queues,
                idle_reclaim: std::time::Duration::from_millis(config.queues.idle_reclaim_ms),
                ack_wait: std::time::Duration::from_secs(config.cluster.ack_wait_s),
                max_ack_pending: config.cluster.max_ack_pending,
            },
        };
        Self::start_with(
            config,
            move |local| crate::engine::ClusterEngine::start(options, local),
            apps,
        )
    }

    /// [`Broker::start`], with the engine made by `engine` from the single-node
    /// one: a cluster engine wraps it (and tests put a refusing engine in front).
    pub fn start_with(
        config: Config,
        engine: impl FnOnce(Arc<LocalEngine>) -> Arc<dyn Engine>,
        apps: AppSpecs,
    ) -> Result<Arc<Broker>, StoreError> {
        let metrics = Arc::new(Metrics::new());
        let storage = RedbStorage::open(&config.store.path, config.store.cache_bytes)?;
        let (store, recovered) = Store::start(
            Box::new(storage),
            metrics.clone(),
            config.store.max_pending_bytes,
        )?;
        // Kept topic history goes to the engine, the rest to the queues.
        let (kept, recovered): (Vec<_>, Vec<_>) = recovered
            .into_iter()
            .partition(crate::engine::history::is_history_record);
        let history_store = store.clone();
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let queues = crate::queue::Queues::new(
            crate::queue::QueueLimits {
                max_depth: config.queues.max_depth,
                max_redeliveries: config.queues.max_redeliveries,
                max_queues: config.queues.max_queues,
                durable: config.queues.durable.clone(),
                idle_reclaim: std::time::Duration::from_millis(config.queues.idle_reclaim_ms),
            },
            metrics.clone(),
            store,
            recovered,
            tasks.clone(),
            shutdown.clone(),
        );
        let local = Arc::new(LocalEngine::new(
            metrics.clone(),
            queues,
            config.topics.retain.clone(),
            config.topics.max_retained,
            history_limits(&config.topics),
            (history_store, kept),
        ));
        tasks.spawn(local.clone().sweep_history_until(shutdown.clone()));
        let engine = engine(local);
        let next_session = Arc::new(AtomicU64::new(1));
        let context = crate::app::AppContext::new(
            engine.clone(),
            shutdown.clone(),
            tasks.clone(),
            next_session.clone(),
        );
        let mut handlers = crate::app::Apps::new();
        for make in apps.services {
            make(&context);
        }
        for (destination, make) in apps.handlers {
            // The builder checked the destinations before anything started.
            if let Err(e) = handlers.register(&destination, make(&context)) {
                tracing::error!(error = %e, "application handler not registered");
            }
        }
        // Checked when the configuration loaded, so an error cannot happen here.
        let tokens = crate::auth::token::TokenVerifier::from_config(&config.auth.jwt)
            .ok()
            .flatten();
        let auth = Arc::new(crate::auth::Authenticator::new(
            &config.auth.users,
            config.auth.anonymous,
            config.logins(),
            tokens,
            metrics.clone(),
        ));
        // Checked when the configuration loaded, so an error cannot happen here.
        let rules = crate::config::access_rules(&config.auth.acl, &config.app.routes);
        let access = Arc::new(crate::auth::acl::Access::new(&rules).unwrap_or_default());
        let open_files = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| soft);
        let (max_connections, max_http) = crate::admission::fit_to_descriptors(
            open_files,
            config.limits.max_connections,
            config.limits.max_http_connections,
        );
        if max_connections < config.limits.max_connections
            || max_http < config.limits.max_http_connections
        {
            tracing::warn!(
                max_connections,
                max_http_connections = max_http,
                open_file_limit = open_files.unwrap_or_default(),
                "limits.max_connections and limits.max_http_connections lowered to fit the open-file limit"
            );
        } else {
            tracing::info!(
                max_connections,
                max_http_connections = max_http,
                open_file_limit = open_files.unwrap_or_default(),
                "connection limits fit the open-file limit"
            );
        }
        let admission =
            crate::admission::Admission::new(config.limits.max_connections_per_ip, max_http);
        // Checked when the configuration loaded.
        let trusted = config.server.trusted().unwrap_or_default();
        let app_routes = crate::app::routes::AppRoutes::new(&config.app.routes);
        for route in &config.app.routes {
            metrics.app_route_known(&route.pattern);
        }
        Ok(Arc::new(Broker {
            app_routes,
            drain: crate::drain::Drain::new(shutdown.child_token()),
            trusted: RwLock::new(Arc::new(trusted)),
            access: RwLock::new(access),
            limits: RwLock::new(Arc::new(config.limits.clone())),
            revoked: tokio::sync::watch::Sender::new(Arc::new(Vec::new())),
            reload_with: OnceLock::new(),
            admission,
            max_connections,
            pending_frames: crate::admission::PendingBudget::new(
                config.limits.max_pending_frame_bytes,
                config.limits.max_frame_bytes,
            ),
            config,
            engine,
            apps: handlers,
            auth,
            metrics,
            shutdown,
            tasks,
            connections: AtomicUsize::new(0),
            open: [AtomicUsize::new(0), AtomicUsize::new(0)],
            subscriptions: AtomicUsize::new(0),
            next_session,
        }))
    }

    /// Takes a connection slot, or `None` at `limits.max_connections` (as lowered
    /// to fit the open-file limit). The slot, and the socket's place in its
    /// address's count, are given back when the guard drops.
    pub fn open_connection(
        self: &Arc<Self>,
        transport: Transport,
        address: Arc<crate::admission::AddressSlot>,
    ) -> Option<ConnectionGuard> {
        let max = self.max_connections;
        let taken = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        let m = self.metrics.transport(transport);
        if taken.is_err() {
            m.refused.increment(1);
            return None;
        }
        m.total.increment(1);
        m.open.increment(1.0);
        self.open[transport as usize].fetch_add(1, Ordering::AcqRel);
        Some(ConnectionGuard {
            broker: self.clone(),
            transport,
            _address: address,
        })
    }

    /// Open connections right now.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Open connections by transport: (WebSocket, TCP); TLS ones count with theirs.
    pub fn connections_by_transport(&self) -> (usize, usize) {
        (
            self.open[Transport::Ws as usize].load(Ordering::Acquire),
            self.open[Transport::Tcp as usize].load(Ordering::Acquire),
        )
    }

    /// Counts a subscription made.
    pub(crate) fn subscription_added(&self) {
        self.subscriptions.fetch_add(1, Ordering::AcqRel);
        self.metrics.subscriptions.increment(1.0);
    }

    /// Counts a subscription removed.
    pub(crate) fn subscription_removed(&self) {
        self.subscriptions.fetch_sub(1, Ordering::AcqRel);
        self.metrics.subscriptions.decrement(1.0);
    }

    /// Subscriptions of all sessions right now.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.load(Ordering::Acquire)
    }

    /// A fresh session id.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }
}

/// Applies a new `log.filter`, or says why it cannot.
pub type LogFilterSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a reload needs that only the binary knows: the configuration file (and
/// whether it must exist) and a way to change the log filter.
pub struct ReloadWith {
    /// The file to read (with the `STOMPEDE__` environment on top).
    pub path: PathBuf,
    /// Whether a missing file is an error.
    pub required: bool,
    /// Applies a new `log.filter`.
    pub log_filter: LogFilterSetter,
}

impl std::fmt::Debug for ReloadWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadWith")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a reload changed and what it could not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    /// Sections applied: users, access rules, retain patterns, log filter.
    pub applied: Vec<&'static str>,
    /// Sections that differ from the running ones and need a restart.
    pub need_restart: Vec<&'static str>,
    /// Logins removed (their sessions were ended).
    pub removed_logins: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The binary did not say where its configuration is (an embedded broker).
    #[error("this broker was not started from a configuration file")]
    NoFile,
    /// The new configuration is invalid: nothing was changed.
    #[error("the configuration was not reloaded: {0}")]
    Invalid(#[from] crate::config::ConfigError),
}

impl Broker {
    /// The access rules in force.
    pub fn access(&self) -> Arc<crate::auth::acl::Access> {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The proxies trusted to name their clients (`server.trusted_proxies`, as
    /// last reloaded).
    pub fn trusted_proxies(&self) -> Arc<crate::config::TrustedProxies> {
        self.trusted
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Begins draining with the configured grace and spread (or returns the
    /// drain under way); `/readyz` answers 503 from now on.
    pub fn begin_drain(&self) -> crate::drain::DrainPlan {
        let s = &self.config.server;
        let plan = self.drain.begin(
            std::time::Duration::from_secs(s.drain_grace_s),
            std::time::Duration::from_secs(s.drain_spread_s),
        );
        self.metrics.draining.set(1.0);
        plan
    }

    /// The limits in force (`[limits]`, as last reloaded).
    pub fn limits(&self) -> Arc<crate::config::LimitsConfig> {
        self.limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Logins removed by reloads, to watch for.
    pub(crate) fn revoked(&self) -> tokio::sync::watch::Receiver<Arc<Vec<String>>> {
        self.revoked.subscribe()
    }

    /// Says where the configuration comes from, so reloads can read it; set once,
    /// by the binary, after start.
    pub fn reload_from(&self, with: ReloadWith) {
        let _ = self.reload_with.set(with);
    }

    /// Reads the configuration file again (SIGHUP, `POST /api/reload`) and applies
    /// it: see [`Broker::apply`]. An invalid file changes nothing.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let with = self.reload_with.get().ok_or(ReloadError::NoFile)?;
        let new = Config::load(&with.path, with.required)?;
        let mut done = self.apply(&new);
        match (with.log_filter)(&new.log.filter) {
            Ok(()) => done.applied.push("log.filter"),
            Err(e) => tracing::warn!(error = %e, "log.filter not changed"),
        }
        tracing::info!(
            applied = ?done.applied,
            need_restart = ?done.need_restart,
            removed_logins = ?done.removed_logins,
            "configuration reloaded"
        );
        for section in &done.need_restart {
            tracing::warn!(
                section,
                "changed in the file, but takes effect only after a restart"
            );
        }
        Ok(done)
    }

    /// Applies what can change while running: the users (a removed user's
    /// sessions end with an ERROR; others keep their login), the access rules,
    /// the retain and history patterns and bounds. Every other section that differs from the running one
    /// is named in `need_restart` and left as it was.
    pub fn apply(&self, new: &Config) -> Reloaded {
        let removed = self.auth.set_users(&new.auth.users, new.auth.anonymous);
        // Checked when the configuration loaded.
        // The routes in force are the running ones (they change on restart).
        let rules = crate::config::access_rules(&new.auth.acl, &self.config.app.routes);
        let access = crate::auth::acl::Access::new(&rules).unwrap_or_default();
        *self.access.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(access);
        // Every session checks itself against the new users and rules.
        self.revoked.send_replace(Arc::new(removed.clone()));
        // Checked when the configuration loaded.
        let trusted = new.server.trusted().unwrap_or_default();
        *self.trusted.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(trusted);
        self.engine.set_retain(new.topics.retain.clone());
        self.engine.set_history(history_limits(&new.topics));
        let mut need_restart = Vec::new();
        // Limits read once at start-up into the admission, login and budget
        // machinery keep their running values; the rest apply to every later check
        // (and the per-connection ones to every later connection).
        let mut limits = new.limits.clone();
        let running = self.limits();
        macro_rules! kept {
            ($($field:ident),*) => {$(
                if limits.$field != running.$field {
                    limits.$field = running.$field;
                    need_restart.push(concat!("limits.", stringify!($field)));
                }
            )*};
        }
        kept!(
            max_connections,
            max_http_connections,
            max_connections_per_ip,
            max_pending_frame_bytes,
            max_concurrent_password_checks,
            max_queued_logins,
            max_queued_logins_per_ip,
            max_failed_logins_per_ip,
            failed_login_window_ms
        );
        *self.limits.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(limits);
        let old = &self.config;
        let differs =
            |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
        for (section, changed) in [
            ("server", !old.server.same_but_reloadable(&new.server)),
            ("heartbeat", differs(&old.heartbeat, &new.heartbeat)),
            ("log.format", differs(&old.log.format, &new.log.format)),
            ("auth.jwt", differs(&old.auth.jwt, &new.auth.jwt)),
            (
                "auth.cache",
                differs(
                    &(old.auth.cache_ttl_s, old.auth.cache_max_entries),
                    &(new.auth.cache_ttl_s, new.auth.cache_max_entries),
                ),
            ),
            (
                "topics.max_retained",
                old.topics.max_retained != new.topics.max_retained,
            ),
            (
                "topics.max_replay_destinations",
                old.topics.max_replay_destinations != new.topics.max_replay_destinations,
            ),
            ("quotes", differs(&old.quotes, &new.quotes)),
            ("trading", differs(&old.trading, &new.trading)),
            ("queues", differs(&old.queues, &new.queues)),
            ("store", differs(&old.store, &new.store)),
            ("tls", differs(&old.tls, &new.tls)),
            ("cluster", differs(&old.cluster, &new.cluster)),
            ("app", old.app != new.app),
        ] {
            if changed {
                need_restart.push(section);
            }
        }
        Reloaded {
            applied: vec![
                "server.trusted_proxies",
                "auth.users",
                "auth.anonymous",
                "auth.acl",
                "topics.retain",
                "topics.history",
                "limits",
            ],
            need_restart,
            removed_logins: removed,
        }
    }
}

/// One open connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionGuard {
    broker: Arc<Broker>,
    transport: Transport,
    /// The socket's place in its client address's count.
    _address: Arc<crate::admission::AddressSlot>,
}

impl ConnectionGuard {
    /// The transport the connection uses.
    pub fn transport(&self) -> Transport {
        self.transport
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.broker.connections.fetch_sub(1, Ordering::AcqRel);
        self.broker.open[self.transport as usize].fetch_sub(1, Ordering::AcqRel);
        self.broker
            .metrics
            .transport(self.transport)
            .open
            .decrement(1.0);
    }
}

/// The history bounds of `[topics]`.
fn history_limits(topics: &crate::config::TopicsConfig) -> crate::engine::history::HistoryLimits {
    crate::engine::history::HistoryLimits {
        patterns: topics.history.clone(),
        max_messages: topics.history_max_messages,
        max_age: std::time::Duration::from_secs(topics.history_max_age_s),
        max_destinations: topics.history_max_destinations,
        max_bytes: usize::try_from(topics.history_max_bytes).unwrap_or(usize::MAX),
        max_held: topics.max_replay_destinations,
    }
}
