//! State shared by every connection of one running broker.

use crate::config::Config;
use crate::engine::{Engine, LocalEngine};
use crate::metrics::{Metrics, Transport};
use crate::store::{RedbStorage, Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Checks CONNECT credentials.
    pub auth: Arc<crate::auth::Authenticator>,
    /// Who may send and subscribe where (`[[auth.acl]]` over the built-in rules).
    pub access: Arc<crate::auth::acl::Access>,
    /// Cancelled when the broker shuts down.
    pub shutdown: CancellationToken,
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
    next_session: AtomicU64,
}

impl Broker {
    /// Shared state for a broker with `config`, with its application handlers
    /// registered and their background tasks started (the trading market, when
    /// `trading.enabled`), and the queue store opened and read back. Must be
    /// called inside a Tokio runtime.
    pub fn start(config: Config) -> Result<Arc<Broker>, StoreError> {
        Self::start_with(config, |local| local)
    }

    /// [`Broker::start`], with the engine made by `engine` from the single-node
    /// one: a cluster engine wraps it (and tests put a refusing engine in front).
    pub fn start_with(
        config: Config,
        engine: impl FnOnce(Arc<LocalEngine>) -> Arc<dyn Engine>,
    ) -> Result<Arc<Broker>, StoreError> {
        let metrics = Arc::new(Metrics::new());
        let storage = RedbStorage::open(&config.store.path)?;
        let (store, recovered) = Store::start(Box::new(storage), metrics.clone())?;
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
        let engine = engine(Arc::new(LocalEngine::new(
            metrics.clone(),
            queues,
            config.topics.retain.clone(),
            config.topics.max_retained,
        )));
        let mut apps = crate::app::Apps::new();
        if config.trading.enabled {
            let (trading, market) =
                crate::app::trading::start(&config, engine.clone(), shutdown.clone());
            apps.register("/app/trade", trading);
            tasks.spawn(market);
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
        let access = Arc::new(crate::auth::acl::Access::new(&config.auth.acl).unwrap_or_default());
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
        Ok(Arc::new(Broker {
            access,
            admission,
            max_connections,
            pending_frames: crate::admission::PendingBudget::new(
                config.limits.max_pending_frame_bytes,
            ),
            config,
            engine,
            apps,
            auth,
            metrics,
            shutdown,
            tasks,
            connections: AtomicUsize::new(0),
            open: [AtomicUsize::new(0), AtomicUsize::new(0)],
            subscriptions: AtomicUsize::new(0),
            next_session: AtomicU64::new(1),
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
