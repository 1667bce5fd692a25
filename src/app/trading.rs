//! The stock-trading application.
//!
//! A market task owns the simulated prices and the pending limit orders: every
//! `quotes.interval_ms` it moves prices (a random walk with optional drift), publishes
//! `/topic/stock-quotes` (all symbols) and `/topic/stock-quotes.{SYMBOL}`, fills
//! pending limit orders the new prices cross and expires old ones. The `/app/trade`
//! handler validates an order and hands it to the market task over a bounded channel.
//! Everything is published through the [`Engine`], like any backend service would.

use super::{AppHandler, Sender};
use crate::codec::Headers;
use crate::config::{Config, SymbolConfig, TradingConfig};
use crate::engine::Engine;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Orders waiting for the market task; past this the handler answers "busy".
const ORDER_QUEUE: usize = 1024;

/// Rounds to cents, as prices are shown.
fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// BUY or SELL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
}

/// A validated order request.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    /// Ticker.
    pub symbol: String,
    /// Shares, at least 1.
    pub quantity: u64,
    /// Buy or sell.
    pub side: Side,
    /// Limit price; `None` is a market order.
    pub limit: Option<f64>,
}

/// Why a trade request is refused: `(error code, message)` for `/user/queue/errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable code, e.g. `INVALID_QUANTITY`.
    pub error: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

fn refuse(error: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        error,
        message: message.into(),
    }
}

/// Parses and validates a `/app/trade` body. Fields other than the four of the
/// contract are ignored; the user never comes from the body.
pub fn parse_order(
    body: &[u8],
    symbols: &HashSet<String>,
    max_quantity: u64,
) -> Result<OrderRequest, Refusal> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| refuse("INVALID_JSON", format!("body is not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| refuse("INVALID_JSON", "body must be a JSON object"))?;
    let symbol = obj
        .get("symbol")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse("INVALID_SYMBOL", "symbol must be a string"))?;
    if !symbols.contains(symbol) {
        return Err(refuse(
            "UNKNOWN_SYMBOL",
            format!("unknown symbol {symbol:?}"),
        ));
    }
    let quantity = obj
        .get("quantity")
        .and_then(Value::as_u64)
        .filter(|q| *q > 0)
        .ok_or_else(|| refuse("INVALID_QUANTITY", "quantity must be a positive integer"))?;
    if quantity > max_quantity {
        return Err(refuse(
            "INVALID_QUANTITY",
            format!("quantity must be at most {max_quantity}"),
        ));
    }
    let side = match obj.get("orderType").and_then(Value::as_str) {
        Some("BUY") => Side::Buy,
        Some("SELL") => Side::Sell,
        _ => {
            return Err(refuse(
                "INVALID_ORDER_TYPE",
                "orderType must be \"BUY\" or \"SELL\"",
            ));
        }
    };
    let limit = match obj.get("limitPrice") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|p| p.is_finite() && *p > 0.0)
                .ok_or_else(|| {
                    refuse(
                        "INVALID_LIMIT_PRICE",
                        "limitPrice must be a positive number",
                    )
                })?,
        ),
    };
    Ok(OrderRequest {
        symbol: symbol.to_owned(),
        quantity,
        side,
        limit,
    })
}

/// An order on its way to, or waiting in, the market task.
#[derive(Debug)]
struct Order {
    id: String,
    login: String,
    request: OrderRequest,
}

/// A limit order waiting for a tick that crosses its limit, until it expires.
#[derive(Debug)]
struct RestingOrder {
    order: Order,
    expires: Instant,
}

fn json_headers() -> Headers {
    let mut h = Headers::with_capacity(1);
    h.push("content-type", "application/json");
    h
}

fn publish_user(engine: &dyn Engine, login: &str, queue: &str, body: &Value) {
    if let Err(e) =
        engine.publish_user(login, queue, &json_headers(), Bytes::from(body.to_string()))
    {
        tracing::warn!(login, queue, error = %e, "trading could not answer a trader");
    }
}

/// Publishes a market message; a refusal (the engine cannot take messages) is
/// logged: the next tick publishes fresh quotes anyway.
fn publish_topic(engine: &dyn Engine, destination: &str, body: Bytes) {
    if let Err(e) = engine.publish_topic(destination, &json_headers(), body) {
        tracing::warn!(destination, error = %e, "trading could not publish");
    }
}

fn send_refusal(engine: &dyn Engine, login: &str, r: &Refusal) {
    publish_user(
        engine,
        login,
        "errors",
        &json!({"error": r.error, "message": r.message}),
    );
}

/// The `/app/trade` handler.
#[derive(Debug)]
pub struct TradingApp {
    orders: mpsc::Sender<Order>,
    engine: Arc<dyn Engine>,
    symbols: HashSet<String>,
    max_quantity: u64,
    boot: u64,
    next_id: AtomicU64,
}

impl AppHandler for TradingApp {
    fn handle(&self, sender: Sender<'_>, send: &crate::command::Send) {
        let request = match parse_order(&send.body, &self.symbols, self.max_quantity) {
            Ok(r) => r,
            Err(r) => {
                tracing::debug!(
                    session = sender.session,
                    login = sender.login,
                    error = r.error,
                    "trade refused"
                );
                return send_refusal(&*self.engine, sender.login, &r);
            }
        };
        let order = Order {
            id: format!(
                "T{:x}-{}",
                self.boot,
                self.next_id.fetch_add(1, Ordering::Relaxed)
            ),
            login: sender.login.to_owned(),
            request,
        };
        if self.orders.try_send(order).is_err() {
            send_refusal(
                &*self.engine,
                sender.login,
                &refuse("BUSY", "the market is busy; try again"),
            );
        }
    }
}

#[derive(Debug)]
struct Stock {
    config: SymbolConfig,
    price: f64,
    volume: u64,
}

/// The market task: owns the prices, its random source and the pending orders.
pub(super) struct Market {
    stocks: Vec<Stock>,
    rng: StdRng,
    pending: Vec<RestingOrder>,
    engine: Arc<dyn Engine>,
    trading: TradingConfig,
}

/// The trading app as any embedder registers a handler
/// ([`crate::server::Builder::app`] at `/app/trade`): the handler, and the
/// market task run by the broker until shutdown.
pub fn app(config: &Config) -> super::AppMaker {
    let config = config.clone();
    Box::new(move |ctx: &super::AppContext| {
        let (app, market) = start(&config, ctx.engine(), ctx.shutdown());
        ctx.spawn(market);
        let app: Arc<dyn AppHandler> = app;
        app
    })
}

/// Creates the `/app/trade` handler and the market task (to be spawned; it stops
/// when `shutdown` is cancelled).
pub fn start(
    config: &Config,
    engine: Arc<dyn Engine>,
    shutdown: CancellationToken,
) -> (Arc<TradingApp>, impl Future<Output = ()> + Send + 'static) {
    let (tx, rx) = mpsc::channel(ORDER_QUEUE);
    let boot = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let app = Arc::new(TradingApp {
        orders: tx,
        engine: engine.clone(),
        symbols: config
            .quotes
            .symbols
            .iter()
            .map(|s| s.symbol.clone())
            .collect(),
        max_quantity: config.trading.max_quantity,
        boot,
        next_id: AtomicU64::new(1),
    });
    let market = Market::new(config, engine);
    let interval = Duration::from_millis(config.quotes.interval_ms);
    (app, market.run(rx, interval, shutdown))
}

impl Market {
    /// The market at its seed prices.
    pub(super) fn new(config: &Config, engine: Arc<dyn Engine>) -> Market {
        let rng = match config.quotes.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::seed_from_u64(rand::rng().random()),
        };
        Market {
            stocks: config
                .quotes
                .symbols
                .iter()
                .map(|s| Stock {
                    config: s.clone(),
                    price: s.price,
                    volume: 0,
                })
                .collect(),
            rng,
            pending: Vec::new(),
            engine,
            trading: config.trading.clone(),
        }
    }

    /// The engine it publishes through.
    pub(super) fn engine(&self) -> Arc<dyn Engine> {
        self.engine.clone()
    }

    /// When the next resting order expires, if any.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.expires).min()
    }

    /// Places the order `login` sent (`body`, checked against `symbols` and
    /// `max_quantity`), or tells `login` why not.
    pub(super) fn take(
        &mut self,
        id: String,
        login: &str,
        body: &[u8],
        symbols: &HashSet<String>,
        max_quantity: u64,
    ) {
        match parse_order(body, symbols, max_quantity) {
            Ok(request) => self.place(Order {
                id,
                login: login.to_owned(),
                request,
            }),
            Err(r) => send_refusal(&*self.engine, login, &r),
        }
    }

    /// What the next holder of the market needs: prices, volumes, resting
    /// orders (with their expiry as wall-clock time).
    pub(super) fn snapshot(&self) -> Bytes {
        let now = Instant::now();
        let wall = unix_ms();
        let pending: Vec<Value> = self
            .pending
            .iter()
            .map(|p| {
                let r = &p.order.request;
                let left = p.expires.saturating_duration_since(now).as_millis() as u64;
                json!({
                    "id": p.order.id,
                    "login": p.order.login,
                    "symbol": r.symbol,
                    "quantity": r.quantity,
                    "side": r.side.as_str(),
                    "limit": r.limit,
                    "expiresAt": wall + left,
                })
            })
            .collect();
        let stocks: Vec<Value> = self
            .stocks
            .iter()
            .map(|s| json!({"symbol": s.config.symbol, "price": s.price, "volume": s.volume}))
            .collect();
        Bytes::from(json!({"stocks": stocks, "pending": pending}).to_string())
    }

    /// Takes up where a [`Market::snapshot`] left off: its prices and volumes
    /// for the symbols still configured, and its resting orders.
    pub(super) fn restore(&mut self, saved: &[u8]) {
        let Ok(saved) = serde_json::from_slice::<Value>(saved) else {
            tracing::warn!("the saved market is not JSON: starting from the seed prices");
            return;
        };
        for s in saved["stocks"].as_array().into_iter().flatten() {
            let (Some(symbol), Some(price)) = (s["symbol"].as_str(), s["price"].as_f64()) else {
                continue;
            };
            if let Some(stock) = self.stocks.iter_mut().find(|x| x.config.symbol == symbol) {
                stock.price = price;
                stock.volume = s["volume"].as_u64().unwrap_or(stock.volume);
            }
        }
        let now = Instant::now();
        let wall = unix_ms();
        for p in saved["pending"].as_array().into_iter().flatten() {
            let side = match p["side"].as_str() {
                Some("BUY") => Side::Buy,
                Some("SELL") => Side::Sell,
                _ => continue,
            };
            let (Some(id), Some(login), Some(symbol), Some(quantity)) = (
                p["id"].as_str(),
                p["login"].as_str(),
                p["symbol"].as_str(),
                p["quantity"].as_u64(),
            ) else {
                continue;
            };
            let left = p["expiresAt"].as_u64().unwrap_or(0).saturating_sub(wall);
            self.pending.push(RestingOrder {
                order: Order {
                    id: id.to_owned(),
                    login: login.to_owned(),
                    request: OrderRequest {
                        symbol: symbol.to_owned(),
                        quantity,
                        side,
                        limit: p["limit"].as_f64(),
                    },
                },
                expires: now + Duration::from_millis(left),
            });
        }
    }
}

/// Now as milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Market {
    async fn run(
        mut self,
        mut orders: mpsc::Receiver<Order>,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(every);
        // Under load a late tick is skipped, never bunched: quotes stay on schedule.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            let next_expiry = self.pending.iter().map(|p| p.expires).min();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => self.tick(),
                Some(order) = orders.recv() => self.place(order),
                _ = async { match next_expiry { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                    self.expire(Instant::now());
                }
            }
        }
    }

    /// Moves every price, publishes the quotes, then fills what the prices cross.
    pub(super) fn tick(&mut self) {
        let now = timestamp();
        let mut all = Vec::with_capacity(self.stocks.len());
        for stock in &mut self.stocks {
            let c = &stock.config;
            let step = c.drift + c.volatility * self.rng.random_range(-1.0..=1.0);
            stock.price = cents((stock.price * (1.0 + step)).max(0.01));
            stock.volume += self.rng.random_range(100..10_000u64);
            let change = cents(stock.price - c.price);
            let quote = json!({
                "symbol": c.symbol,
                "price": stock.price,
                "change": change,
                "changePercent": cents(change / c.price * 100.0),
                "volume": stock.volume,
                "timestamp": now,
            });
            let one = Bytes::from(quote.to_string());
            publish_topic(
                &*self.engine,
                &format!("/topic/stock-quotes.{}", c.symbol),
                one,
            );
            all.push(quote);
        }
        publish_topic(
            &*self.engine,
            "/topic/stock-quotes",
            Bytes::from(Value::Array(all).to_string()),
        );
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            let price = self.price(&p.order.request.symbol);
            match (price, p.order.request.limit) {
                (Some(price), Some(limit)) if marketable(p.order.request.side, price, limit) => {
                    self.execute(p.order, price)
                }
                _ => self.pending.push(p),
            }
        }
        self.expire(Instant::now());
    }

    fn price(&self, symbol: &str) -> Option<f64> {
        self.stocks
            .iter()
            .find(|s| s.config.symbol == symbol)
            .map(|s| s.price)
    }

    fn place(&mut self, order: Order) {
        let Some(price) = self.price(&order.request.symbol) else {
            let r = refuse(
                "UNKNOWN_SYMBOL",
                format!("unknown symbol {:?}", order.request.symbol),
            );
            return send_refusal(&*self.engine, &order.login, &r);
        };
        match order.request.limit {
            None => self.execute(order, price),
            Some(limit) if marketable(order.request.side, price, limit) => {
                self.execute(order, price)
            }
            Some(limit) => {
                let mine = self
                    .pending
                    .iter()
                    .filter(|p| p.order.login == order.login)
                    .count();
                if mine >= self.trading.max_pending_per_user {
                    let r = refuse(
                        "TOO_MANY_PENDING",
                        format!(
                            "at most {} pending limit orders",
                            self.trading.max_pending_per_user
                        ),
                    );
                    return send_refusal(&*self.engine, &order.login, &r);
                }
                let message = format!(
                    "limit {} at {limit:.2} waits; the market is at {price:.2}",
                    order.request.side.as_str()
                );
                self.confirm(&order, "PENDING", None, &message);
                self.pending.push(RestingOrder {
                    order,
                    expires: Instant::now()
                        + Duration::from_millis(self.trading.limit_order_ttl_ms),
                });
            }
        }
    }

    fn execute(&mut self, order: Order, price: f64) {
        let r = &order.request;
        if let Some(stock) = self.stocks.iter_mut().find(|s| s.config.symbol == r.symbol) {
            stock.volume += r.quantity;
        }
        let message = format!(
            "{} {} {} at {price:.2}",
            r.side.as_str(),
            r.quantity,
            r.symbol
        );
        self.confirm(&order, "EXECUTED", Some(price), &message);
        let tape = json!({
            "symbol": r.symbol,
            "price": price,
            "quantity": r.quantity,
            "side": r.side.as_str(),
            "timestamp": timestamp(),
        });
        publish_topic(
            &*self.engine,
            "/topic/market-activity",
            Bytes::from(tape.to_string()),
        );
    }

    pub(super) fn expire(&mut self, now: Instant) {
        let (expired, live): (Vec<RestingOrder>, Vec<RestingOrder>) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|p| p.expires <= now);
        self.pending = live;
        for p in expired {
            self.confirm(&p.order, "EXPIRED", None, "limit order expired unfilled");
        }
    }

    fn confirm(&self, order: &Order, status: &str, price: Option<f64>, message: &str) {
        let r = &order.request;
        let body = json!({
            "tradeId": order.id,
            "status": status,
            "symbol": r.symbol,
            "quantity": r.quantity,
            "orderType": r.side.as_str(),
            "executedPrice": price,
            "executionTime": price.map(|_| timestamp()),
            "message": message,
        });
        publish_user(&*self.engine, &order.login, "trade-confirmation", &body);
    }
}

/// A limit BUY fills at or below its limit; a limit SELL at or above.
fn marketable(side: Side, price: f64, limit: f64) -> bool {
    match side {
        Side::Buy => price <= limit,
        Side::Sell => price >= limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols() -> HashSet<String> {
        ["AAPL".to_owned()].into_iter().collect()
    }

    #[test]
    fn valid_orders_parse_and_extra_fields_are_ignored() {
        let o = parse_order(
            br#"{"symbol":"AAPL","quantity":10,"orderType":"BUY","user":"mallory"}"#,
            &symbols(),
            100,
        )
        .unwrap();
        assert_eq!(
            o,
            OrderRequest {
                symbol: "AAPL".into(),
                quantity: 10,
                side: Side::Buy,
                limit: None
            }
        );
        let o = parse_order(
            br#"{"symbol":"AAPL","quantity":1,"orderType":"SELL","limitPrice":12.5}"#,
            &symbols(),
            100,
        )
        .unwrap();
        assert_eq!((o.side, o.limit), (Side::Sell, Some(12.5)));
    }

    #[test]
    fn every_refusal_has_its_code() {
        let code = |body: &str| {
            parse_order(body.as_bytes(), &symbols(), 100)
                .unwrap_err()
                .error
        };
        assert_eq!(code("not json"), "INVALID_JSON");
        assert_eq!(code("[1]"), "INVALID_JSON");
        assert_eq!(
            code(r#"{"symbol":"XYZ","quantity":1,"orderType":"BUY"}"#),
            "UNKNOWN_SYMBOL"
        );
        for q in ["0", "-5", "1.5", "\"10\"", "null"] {
            let body = format!(r#"{{"symbol":"AAPL","quantity":{q},"orderType":"BUY"}}"#);
            assert_eq!(code(&body), "INVALID_QUANTITY", "{q}");
        }
        assert_eq!(
            code(r#"{"symbol":"AAPL","quantity":101,"orderType":"BUY"}"#),
            "INVALID_QUANTITY"
        );
        assert_eq!(
            code(r#"{"symbol":"AAPL","quantity":1,"orderType":"HOLD"}"#),
            "INVALID_ORDER_TYPE"
        );
        assert_eq!(
            code(r#"{"symbol":"AAPL","quantity":1,"orderType":"BUY","limitPrice":-1}"#),
            "INVALID_LIMIT_PRICE"
        );
    }

    #[test]
    fn limits_are_marketable_on_the_right_side() {
        assert!(
            marketable(Side::Buy, 10.0, 10.0)
                && marketable(Side::Buy, 9.0, 10.0)
                && !marketable(Side::Buy, 11.0, 10.0)
        );
        assert!(marketable(Side::Sell, 11.0, 10.0) && !marketable(Side::Sell, 9.0, 10.0));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = timestamp();
        assert!(t.ends_with('Z') && t.contains('T'), "{t}");
        assert!(
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).is_ok()
        );
    }

    /// An engine that records what the market publishes, and when (paused time).
    #[derive(Debug, Default)]
    struct Recorder {
        published: std::sync::Mutex<Vec<(String, Value, Instant)>>,
    }

    impl Recorder {
        fn take(&self) -> Vec<(String, Value, Instant)> {
            std::mem::take(&mut *self.published.lock().unwrap_or_else(|p| p.into_inner()))
        }

        fn record(&self, to: String, body: &Bytes) {
            let body = serde_json::from_slice(body).unwrap_or(Value::Null);
            self.published
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((to, body, Instant::now()));
        }
    }

    impl Engine for Recorder {
        fn kept_matching(&self, _: &str) -> crate::engine::KeptSpan {
            crate::engine::KeptSpan::default()
        }
        fn publish_topic(
            &self,
            destination: &str,
            _: &Headers,
            body: Bytes,
        ) -> Result<usize, crate::engine::Refused> {
            self.record(destination.to_owned(), &body);
            Ok(0)
        }
        fn publish_user(
            &self,
            login: &str,
            queue: &str,
            _: &Headers,
            body: Bytes,
        ) -> Result<usize, crate::engine::Refused> {
            self.record(format!("/user/{login}/queue/{queue}"), &body);
            Ok(0)
        }
        fn subscribe_topic(
            &self,
            _: &str,
            _: Arc<crate::registry::Subscriber>,
            _: crate::command::StreamOffset,
        ) -> Result<crate::engine::Subscribed, crate::engine::Refused> {
            Ok(None)
        }
        fn unsubscribe_topic(&self, _: &str, _: u64, _: &str) -> bool {
            false
        }
        fn subscribe_user(
            &self,
            _: &str,
            _: &str,
            _: Arc<crate::registry::Subscriber>,
        ) -> Result<crate::engine::Subscribed, crate::engine::Refused> {
            Ok(None)
        }
        fn unsubscribe_user(&self, _: &str, _: &str, _: u64, _: &str) -> bool {
            false
        }
        fn queue(&self, _: &str) -> Result<crate::queue::QueueHandle, crate::queue::QueueError> {
            Err(crate::queue::QueueError::TooManyQueues)
        }
        fn ready(&self) -> Result<(), crate::engine::Unready> {
            Ok(())
        }
        fn topic_subscribers(&self, _: &str) -> usize {
            0
        }
        fn queue_count(&self) -> usize {
            0
        }
        fn set_retain(&self, _: Vec<String>) {}
        fn set_history(&self, _: crate::engine::history::HistoryLimits) {}
        fn stats(
            &self,
        ) -> std::pin::Pin<Box<dyn Future<Output = crate::engine::EngineStats> + Send + '_>>
        {
            Box::pin(async {
                crate::engine::EngineStats {
                    queues: Vec::new(),
                    retained_topics: 0,
                    cluster: Default::default(),
                    store_failed: false,
                    history: Default::default(),
                }
            })
        }
        fn close(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(async {})
        }
    }

    fn market(toml: &str) -> (Arc<TradingApp>, Arc<Recorder>, CancellationToken) {
        let config = Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}"));
        let recorder = Arc::new(Recorder::default());
        let shutdown = CancellationToken::new();
        let (app, task) = start(&config, recorder.clone(), shutdown.clone());
        tokio::spawn(task);
        (app, recorder, shutdown)
    }

    fn order(app: &TradingApp, login: &str, body: &str) {
        let frame = crate::codec::Frame::new(crate::codec::Command::Send)
            .header("destination", "/app/trade")
            .body(body.to_owned());
        let Ok(crate::command::ClientCommand::Send(send)) =
            crate::command::ClientCommand::from_frame(frame, crate::codec::Version::V1_2)
        else {
            panic!("not a SEND");
        };
        let sender = Sender {
            login,
            roles: &[],
            session: 1,
        };
        app.handle(sender, &send);
    }

    #[tokio::test(start_paused = true)]
    async fn quotes_tick_exactly_on_schedule_and_are_published_only_through_the_engine() {
        let (_app, recorder, shutdown) = market("[quotes]\ninterval_ms = 2000\nseed = 7");
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(6500)).await;
        shutdown.cancel();
        let all: Vec<Duration> = recorder
            .take()
            .into_iter()
            .filter(|(to, _, _)| to == "/topic/stock-quotes")
            .map(|(_, body, at)| {
                assert_eq!(body.as_array().map(Vec::len), Some(6));
                at - start
            })
            .collect();
        // The first tick at once, then every 2 s to the millisecond.
        let ms = |n| Duration::from_millis(n);
        assert_eq!(all, [ms(0), ms(2000), ms(4000), ms(6000)]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unfillable_limit_order_expires_exactly_after_its_ttl() {
        let (app, recorder, _shutdown) =
            market("[quotes]\ninterval_ms = 600000\n[trading]\nlimit_order_ttl_ms = 1500");
        tokio::time::sleep(Duration::from_millis(10)).await;
        let placed = Instant::now();
        order(
            &app,
            "alice",
            r#"{"symbol":"AAPL","quantity":1,"orderType":"BUY","limitPrice":0.01}"#,
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        let confirmations: Vec<(String, Duration)> = recorder
            .take()
            .into_iter()
            .filter(|(to, _, _)| to == "/user/alice/queue/trade-confirmation")
            .map(|(_, body, at)| {
                (
                    body["status"].as_str().unwrap_or("").to_owned(),
                    at - placed,
                )
            })
            .collect();
        assert_eq!(
            confirmations,
            [
                ("PENDING".to_owned(), Duration::ZERO),
                ("EXPIRED".to_owned(), Duration::from_millis(1500)),
            ]
        );
    }
}
