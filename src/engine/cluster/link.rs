//! The node's NATS connection, owned by one task.
//!
//! The link task takes publishes (a bounded channel from the engine) and
//! subscription changes (opens and closes of interests), and runs one reader task
//! per interest that hands arrivals to local subscribers. async-nats reconnects by
//! itself and resubscribes; the link watches its events to keep `/readyz`, the
//! metrics and the log honest about the connection.

use super::{ClusterOptions, Interest, LocalEngine, Refused, Unready, history, retained, wire};
use crate::engine::history::HistoryLimits;
use crate::metrics::names;
use async_nats::connection::State;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use metrics::{Counter, Gauge, counter, gauge};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a SUBSCRIBE's receipt waits for NATS to confirm the subscription
/// (while reconnecting it may not); past it, the receipt comes anyway.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One message for NATS.
#[derive(Debug)]
pub(super) struct Publish {
    pub(super) subject: String,
    pub(super) payload: Bytes,
}

/// A change to the node's NATS subscriptions.
#[derive(Debug)]
pub(super) enum Control {
    /// Subscribe for a new interest and feed its local subscribers.
    Open(Arc<Interest>),
    /// Unsubscribe a released interest.
    Close(Arc<Interest>),
}

/// Metric handles of the cluster link (they exist only on a node of a cluster).
#[derive(Debug, Clone)]
pub struct LinkMetrics {
    /// 1 while connected to a NATS server.
    pub connected: Gauge,
    /// Connections made after the first.
    pub reconnects: Counter,
    /// Messages published to NATS.
    pub messages_out: Counter,
    /// Messages received from NATS.
    pub messages_in: Counter,
    /// Messages NATS' client dropped because a subscription's buffer was full.
    pub slow_consumer_drops: Counter,
    /// Arrivals on cluster subjects that no node wrote (dropped).
    pub malformed: Counter,
    /// Publishes NATS' client refused after the engine took them.
    pub publish_failures: Counter,
    /// NATS subscriptions the node holds for its clients' patterns and user
    /// destinations.
    pub subscriptions: Gauge,
    /// Whether the link has been connected before (so the next connect is a
    /// reconnect).
    ever_connected: Arc<AtomicBool>,
}

impl LinkMetrics {
    fn new() -> Self {
        let connected = gauge!(names::CLUSTER_CONNECTED);
        connected.set(0.0);
        let zero = |c: Counter| {
            c.absolute(0);
            c
        };
        LinkMetrics {
            connected,
            reconnects: zero(counter!(names::CLUSTER_RECONNECTS_TOTAL)),
            messages_out: zero(counter!(names::CLUSTER_MESSAGES_OUT_TOTAL)),
            messages_in: zero(counter!(names::CLUSTER_MESSAGES_IN_TOTAL)),
            slow_consumer_drops: zero(counter!(names::CLUSTER_SLOW_CONSUMER_TOTAL)),
            malformed: zero(counter!(names::CLUSTER_MALFORMED_TOTAL)),
            subscriptions: {
                let g = gauge!(names::CLUSTER_SUBSCRIPTIONS);
                g.set(0.0);
                g
            },
            publish_failures: zero(counter!(names::CLUSTER_PUBLISH_FAILURES_TOTAL)),
            ever_connected: Arc::default(),
        }
    }

    /// Marks a connection; says whether there was one before.
    fn connected_once(&self) -> bool {
        self.ever_connected.swap(true, Ordering::Relaxed)
    }
}

/// What the engine reads of the link without waiting on it.
#[derive(Debug)]
pub(super) struct Link {
    client: OnceLock<async_nats::Client>,
    metrics: LinkMetrics,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    stop: CancellationToken,
    /// Whether the cluster's streams exist and this node follows the retained
    /// values.
    retained: Arc<AtomicBool>,
    /// Whether this node has read the cluster's topic history, and whether its
    /// consumer of it is in place now.
    history: Arc<history::Progress>,
    /// Whether the history stream takes atomic batches (NATS 2.12 and later).
    atomic: Arc<AtomicBool>,
}

/// What the link's history tasks take from the engine.
#[derive(Debug)]
pub(super) struct HistoryFeed {
    /// Messages of kept destinations, for the history stream.
    pub(super) taken: mpsc::Receiver<history::ToKeep>,
    /// The history settings in force (changed by a reload).
    pub(super) limits: tokio::sync::watch::Receiver<Arc<HistoryLimits>>,
}

impl Link {
    /// Starts the link task; it connects in the background.
    pub(super) fn start(
        options: &ClusterOptions,
        publishes: mpsc::Receiver<Publish>,
        control: mpsc::UnboundedReceiver<Control>,
        kept: HistoryFeed,
        local: Arc<LocalEngine>,
    ) -> Arc<Link> {
        let link = Arc::new(Link {
            client: OnceLock::new(),
            metrics: LinkMetrics::new(),
            task: std::sync::Mutex::new(None),
            stop: CancellationToken::new(),
            retained: Arc::default(),
            history: Arc::default(),
            atomic: Arc::default(),
        });
        let task = tokio::spawn(run(
            link.clone(),
            options.clone(),
            publishes,
            control,
            kept,
            local,
        ));
        *link.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        link
    }

    fn connected(&self) -> bool {
        self.client
            .get()
            .is_some_and(|c| c.connection_state() == State::Connected)
    }

    /// `Ok` while connected to a NATS server and following the retained values.
    pub(super) fn ready(&self) -> Result<(), Unready> {
        if !self.connected() {
            Err(Unready::Cluster(self.state()))
        } else if !self.retained.load(Ordering::Relaxed) {
            Err(Unready::Cluster(format!(
                "JetStream streams {} and {} not ready",
                retained::STREAM,
                super::queue::STREAM
            )))
        } else if !self.history.following.load(Ordering::Relaxed) {
            Err(Unready::Cluster(format!(
                "reading the topic history (JetStream stream {})",
                history::STREAM
            )))
        } else if !self.history.feeding.load(Ordering::Relaxed) {
            // Ready again only once kept destinations are delivered again.
            Err(Unready::Cluster(format!(
                "following the topic history again (JetStream stream {})",
                history::STREAM
            )))
        } else {
            Ok(())
        }
    }

    /// Refuses work that needs the cluster's streams (retained values, queues)
    /// until the node has found or made them and follows the retained values.
    pub(super) fn check_streams(&self) -> Result<(), Refused> {
        if self.retained.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(Refused::Unavailable(format!(
                "the cluster's JetStream streams ({} and {}) are not ready",
                retained::STREAM,
                super::queue::STREAM
            )))
        }
    }

    /// Refuses a message for the topic history until the node has read it (its
    /// offsets continue from there).
    pub(super) fn check_history(&self) -> Result<(), Refused> {
        if self.history.following.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err(Refused::Unavailable(format!(
                "the cluster's topic history (JetStream stream {}) is not read yet",
                history::STREAM
            )))
        }
    }

    fn state(&self) -> String {
        match self.client.get().map(|c| c.connection_state()) {
            None | Some(State::Pending) => "connecting".into(),
            Some(State::Disconnected) => "disconnected, reconnecting".into(),
            Some(State::Connected) => "connected".into(),
        }
    }

    /// The node's NATS connection, once there is one.
    pub(super) fn client(&self) -> Option<async_nats::Client> {
        self.client.get().cloned()
    }

    /// A JetStream context over the node's connection, once there is one.
    pub(super) fn jetstream(&self) -> Option<async_nats::jetstream::Context> {
        self.client
            .get()
            .map(|c| async_nats::jetstream::new(c.clone()))
    }

    /// Refuses a publish while not connected.
    pub(super) fn check_connected(&self) -> Result<(), Refused> {
        if self.connected() {
            Ok(())
        } else {
            Err(Refused::Unavailable(format!(
                "the cluster link is down ({})",
                self.state()
            )))
        }
    }

    /// Refuses a message larger than the NATS server takes.
    pub(super) fn check_payload(&self, bytes: usize) -> Result<(), Refused> {
        let max = self.client.get().map_or(0, |c| c.max_payload());
        if max > 0 && bytes > max {
            return Err(Refused::Unavailable(format!(
                "message of {bytes} bytes is larger than the NATS server's max_payload ({max})"
            )));
        }
        Ok(())
    }

    /// Sends what was taken, then ends the link (at shutdown).
    pub(super) async fn close(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Connects, then serves publishes and subscription changes until shutdown.
async fn run(
    link: Arc<Link>,
    options: ClusterOptions,
    mut publishes: mpsc::Receiver<Publish>,
    mut control: mpsc::UnboundedReceiver<Control>,
    kept: HistoryFeed,
    local: Arc<LocalEngine>,
) {
    let metrics = link.metrics.clone();
    let node = options.node_name.clone();
    let events = metrics.clone();
    let connect = async_nats::ConnectOptions::new()
        .name(&options.node_name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .subscription_capacity(options.subscription_capacity.max(1))
        .event_callback(move |event| {
            let (metrics, node) = (events.clone(), node.clone());
            async move { on_event(&metrics, &node, event) }
        })
        .connect(super::server_addrs(&options.nats_url).unwrap_or_default())
        .await;
    let client = match connect {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, nats_url = %options.nats_url, "cannot use cluster.nats_url");
            return;
        }
    };
    let _ = link.client.set(client.clone());
    let mirror = tokio::spawn(retained::mirror(
        client.clone(),
        local.clone(),
        options.queues.clone(),
        link.retained.clone(),
        link.stop.clone(),
    ));
    let history_mirror = tokio::spawn(history::mirror(
        client.clone(),
        local.clone(),
        kept.limits,
        link.history.clone(),
        link.atomic.clone(),
        metrics.clone(),
        link.stop.clone(),
    ));
    let historian = tokio::spawn(history::historian(
        client.clone(),
        local,
        kept.taken,
        options.max_pending_publishes.max(1),
        link.atomic.clone(),
        metrics.clone(),
        link.stop.clone(),
    ));
    let mut readers: HashMap<usize, (JoinHandle<()>, usize)> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            Some(change) = control.recv() => match change {
                Control::Open(interest) => {
                    let key = Arc::as_ptr(&interest) as usize;
                    match subscribe(&client, &interest).await {
                        Ok(subscription) => {
                            // In place once the server has it: NATS answers a PING
                            // after the SUB before it. Awaited aside, bounded.
                            let (flushing, settled) = (client.clone(), interest.clone());
                            tokio::spawn(async move {
                                let flushed = tokio::time::timeout(FLUSH_WAIT, flushing.flush()).await;
                                if !matches!(flushed, Ok(Ok(()))) {
                                    tracing::warn!(subjects = ?settled.subjects, "NATS did not confirm a subscription in time");
                                }
                                settled.settle(Ok(()));
                            });
                            metrics.subscriptions.increment(interest.subjects.len() as f64);
                            let subjects = interest.subjects.len();
                            let reader = tokio::spawn(read(interest, subscription, metrics.clone()));
                            readers.insert(key, (reader, subjects));
                        }
                        Err(e) => {
                            tracing::error!(error = %e, subjects = ?interest.subjects, "cannot subscribe in NATS");
                            interest.settle(Err(format!("NATS refused the subscription: {e}")));
                        }
                    }
                }
                Control::Close(interest) => {
                    // Dropping the subscription unsubscribes it.
                    if let Some((reader, subjects)) = readers.remove(&(Arc::as_ptr(&interest) as usize)) {
                        reader.abort();
                        metrics.subscriptions.decrement(subjects as f64);
                    }
                }
            },
            Some(message) = publishes.recv() => send(&client, &metrics, message).await,
            () = link.stop.cancelled() => break,
        }
    }
    // What the engine took before shutdown still goes out.
    publishes.close();
    while let Some(message) = publishes.recv().await {
        send(&client, &metrics, message).await;
    }
    let _ = tokio::time::timeout(retained::ATTEMPT, historian).await;
    let _ = client.flush().await;
    for (_, (reader, _)) in readers {
        reader.abort();
    }
    let _ = mirror.await;
    let _ = history_mirror.await;
}

async fn send(client: &async_nats::Client, metrics: &LinkMetrics, message: Publish) {
    match client.publish(message.subject, message.payload).await {
        Ok(()) => metrics.messages_out.increment(1),
        Err(e) => {
            metrics.publish_failures.increment(1);
            tracing::error!(error = %e, "NATS refused a publish the node had taken");
        }
    }
}

async fn subscribe(
    client: &async_nats::Client,
    interest: &Interest,
) -> Result<SelectAll<async_nats::Subscriber>, async_nats::SubscribeError> {
    let mut all = SelectAll::new();
    for subject in &interest.subjects {
        all.push(client.subscribe(subject.clone()).await?);
    }
    Ok(all)
}

/// Hands every arrival of one interest to its local subscribers.
async fn read(
    interest: Arc<Interest>,
    mut subscription: SelectAll<async_nats::Subscriber>,
    metrics: LinkMetrics,
) {
    while let Some(message) = subscription.next().await {
        metrics.messages_in.increment(1);
        let delivered = wire::decode(message.payload)
            .and_then(|m| interest.deliver(message.subject.as_str(), m));
        if let Err(e) = delivered {
            metrics.malformed.increment(1);
            tracing::warn!(error = %e, subject = %message.subject, "dropped a message no node wrote");
        }
    }
}

fn on_event(metrics: &LinkMetrics, node: &str, event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => {
            if metrics.connected_once() {
                metrics.reconnects.increment(1);
            }
            metrics.connected.set(1.0);
            tracing::info!(node, "connected to NATS");
        }
        async_nats::Event::Disconnected => {
            metrics.connected.set(0.0);
            tracing::warn!(node, "disconnected from NATS; reconnecting");
        }
        async_nats::Event::SlowConsumer(sid) => {
            metrics.slow_consumer_drops.increment(1);
            tracing::warn!(
                node,
                sid,
                "NATS dropped a message for a full subscription buffer (cluster.subscription_capacity)"
            );
        }
        other => tracing::warn!(node, event = %other, "NATS"),
    }
}
