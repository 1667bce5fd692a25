//! One market for a whole cluster. In a cluster, `/app/trade` is a queue route
//! to [`ORDERS_QUEUE`] on every node, and every node runs this service: it waits
//! for the market's lease ([`crate::engine::Engine::lease`]); the node holding
//! it loads the market the last holder saved (prices, volumes, resting orders),
//! consumes the orders queue in process, ticks, and saves the market after
//! every change, until it loses the lease. So quotes are published once per
//! tick for the whole cluster, an order sent on any node reaches the market, and
//! when the holder dies another node takes over from the last saved prices.

use super::consumer::QueueConsumer;
use super::trading::Market;
use super::{AppContext, ServiceMaker};
use crate::config::{AppRouteConfig, Config};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// The queue orders go through in a cluster.
pub const ORDERS_QUEUE: &str = "stompede.market.orders";
/// The lease's name, and the key the market is saved under.
const MARKET: &str = "market";
/// Orders the market holder takes from the queue at once.
const PREFETCH: usize = 64;

/// `/app/trade` in a cluster: a route to [`ORDERS_QUEUE`].
pub fn orders_route() -> AppRouteConfig {
    AppRouteConfig {
        pattern: "/app/trade".to_owned(),
        queue: Some(ORDERS_QUEUE.to_owned()),
        url: None,
        publish: Vec::new(),
        max_in_flight: 1,
        timeout_ms: 1,
    }
}

/// The market service of a cluster node.
pub fn cluster_market(config: &Config) -> ServiceMaker {
    let config = config.clone();
    Box::new(move |ctx: &AppContext| {
        let run = lead_when_held(config, ctx.clone());
        ctx.spawn(run);
    })
}

/// Waits for the lease, leads the market while holding it, again and again,
/// until shutdown.
async fn lead_when_held(config: Config, ctx: AppContext) {
    let engine = ctx.engine();
    let stop = ctx.shutdown();
    let (held_tx, mut held) = watch::channel(false);
    ctx.spawn(engine.lease(MARKET, held_tx, stop.clone()));
    let symbols: HashSet<String> = config
        .quotes
        .symbols
        .iter()
        .map(|s| s.symbol.clone())
        .collect();
    let every = Duration::from_millis(config.quotes.interval_ms);
    loop {
        let holding = tokio::select! {
            () = stop.cancelled() => return,
            r = held.wait_for(|h| *h) => r.is_ok(),
        };
        if !holding {
            return;
        }
        let mut market = Market::new(&config, engine.clone());
        if let Some(saved) = engine.load_state(MARKET).await {
            market.restore(&saved);
        }
        let mut orders = match ctx.consume(ORDERS_QUEUE, PREFETCH).await {
            Ok(orders) => orders,
            Err(e) => {
                tracing::warn!(error = %e, "the market's orders queue is not available; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!("this node runs the market");
        let ids = Ids::new();
        lead(
            &mut market,
            &mut orders,
            &mut held,
            &stop,
            every,
            &symbols,
            config.trading.max_quantity,
            &ids,
        )
        .await;
        // Dropping the consumer gives its unacked orders back to the queue.
        drop(orders);
        tracing::info!("this node no longer runs the market");
    }
}

/// Trade ids unique across the cluster's market holders: this holder's start
/// time and a counter.
struct Ids {
    since: u64,
    next: std::sync::atomic::AtomicU64,
}

impl Ids {
    fn new() -> Ids {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Ids {
            since,
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("T{:x}-{n}", self.since)
    }
}

/// Runs the market while the lease is held: ticks, orders from the queue,
/// expiries; the market saved after each.
#[allow(clippy::too_many_arguments)]
async fn lead(
    market: &mut Market,
    orders: &mut QueueConsumer,
    held: &mut watch::Receiver<bool>,
    stop: &CancellationToken,
    every: Duration,
    symbols: &HashSet<String>,
    max_quantity: u64,
    ids: &Ids,
) {
    let engine = market.engine();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        let next_expiry = market.next_expiry();
        tokio::select! {
            () = stop.cancelled() => return,
            changed = held.changed() => {
                if changed.is_err() || !*held.borrow_and_update() {
                    return;
                }
                continue;
            }
            _ = ticks.tick() => market.tick(),
            delivery = orders.next() => {
                let Some(d) = delivery else { return };
                let login = d.headers.get("x-app-login").unwrap_or_default().to_owned();
                if !login.is_empty() {
                    market.take(ids.next(), &login, &d.body, symbols, max_quantity);
                }
                // Saved before the ack: a holder that dies between the two has
                // the order taken again by the next (at least once).
                engine.save_state(MARKET, market.snapshot()).await;
                if let Err(e) = orders.ack(&d).await {
                    tracing::warn!(error = %e, "order not acked");
                }
                continue;
            }
            () = async { match next_expiry { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                market.expire(Instant::now());
            }
        }
        engine.save_state(MARKET, market.snapshot()).await;
    }
}
