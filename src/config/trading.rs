//! `[quotes]` and `[trading]`: the built-in trading demo.

use serde::Deserialize;

/// One simulated stock.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SymbolConfig {
    /// Ticker, e.g. `AAPL`.
    pub symbol: String,
    /// Opening price.
    pub price: f64,
    /// Largest random move per tick, as a fraction of the price (0.01 = 1%).
    #[serde(default = "default_volatility")]
    pub volatility: f64,
    /// Steady move per tick, as a fraction of the price (negative falls).
    #[serde(default)]
    pub drift: f64,
}

fn default_volatility() -> f64 {
    0.01
}

/// `[quotes]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotesConfig {
    /// Time between ticks.
    pub interval_ms: u64,
    /// Fixed random seed for reproducible prices; absent means random.
    pub seed: Option<u64>,
    /// The symbols traded.
    pub symbols: Vec<SymbolConfig>,
}

impl Default for QuotesConfig {
    fn default() -> Self {
        let s = |symbol: &str, price: f64| SymbolConfig {
            symbol: symbol.to_owned(),
            price,
            volatility: default_volatility(),
            drift: 0.0,
        };
        QuotesConfig {
            interval_ms: 2000,
            seed: None,
            symbols: vec![
                s("AAPL", 189.50),
                s("MSFT", 415.20),
                s("GOOGL", 165.80),
                s("AMZN", 185.10),
                s("TSLA", 245.60),
                s("NVDA", 120.40),
            ],
        }
    }
}

/// `[trading]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TradingConfig {
    /// Whether the trading application runs: the quote scheduler and the
    /// `/app/trade` handler. Off, nothing publishes quotes and `/app/trade` has no
    /// handler.
    pub enabled: bool,
    /// A limit order that has not filled by then is EXPIRED.
    pub limit_order_ttl_ms: u64,
    /// Pending limit orders one user may have.
    pub max_pending_per_user: usize,
    /// Largest quantity of one order.
    pub max_quantity: u64,
}

impl Default for TradingConfig {
    fn default() -> Self {
        TradingConfig {
            enabled: true,
            limit_order_ttl_ms: 60_000,
            max_pending_per_user: 100,
            max_quantity: 1_000_000,
        }
    }
}
