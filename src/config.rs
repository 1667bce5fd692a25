//! Broker configuration: embedded defaults, then `broker.toml` (or `--config FILE`),
//! then `STOMPEDE__SECTION__KEY` environment variables.
//!
//! Every key has a default, so a file holding only some keys is complete. Unknown
//! keys and bad values stop start-up with one line naming the key.

use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// Why the configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file named with `--config` does not exist.
    #[error("config file {0} not found")]
    Missing(String),
    /// A key is unknown, has the wrong type, or a bad value.
    #[error("config: {0}")]
    Invalid(String),
    /// A value parsed but makes no sense.
    #[error("config key {key}: {reason}")]
    BadValue {
        /// The dotted key, e.g. `server.stomp_addr`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners and origins.
    pub server: ServerConfig,
    /// Limits that protect the broker from clients.
    pub limits: LimitsConfig,
    /// Heart-beat preferences.
    pub heartbeat: HeartbeatConfig,
    /// Logging.
    pub log: LogConfig,
    /// Users and anonymous access.
    pub auth: AuthConfig,
    /// Topic behaviour (retained messages).
    pub topics: TopicsConfig,
    /// The simulated market.
    pub quotes: QuotesConfig,
    /// The trading application.
    pub trading: TradingConfig,
    /// Point-to-point queues.
    pub queues: QueuesConfig,
    /// Where durable queue messages are kept.
    pub store: StoreConfig,
    /// TLS listeners.
    pub tls: TlsConfig,
    /// Joining a cluster of nodes over NATS.
    pub cluster: ClusterConfig,
}

/// `[cluster]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server URLs, comma separated (JetStream enabled); empty: one node on
    /// its own.
    pub nats_url: String,
    /// This node's name; empty: host name and HTTP port.
    pub node_name: String,
    /// Messages one NATS subscription buffers before NATS' client drops them
    /// (counted in `stompede_cluster_slow_consumer_drops_total`).
    pub subscription_capacity: usize,
    /// Publishes waiting for the NATS connection before SENDs get an ERROR.
    pub max_pending_publishes: usize,
    /// Seconds JetStream waits for a queue message's ack before giving it to a
    /// consumer on another node (when the node holding it died).
    pub ack_wait_s: u64,
    /// Unacked messages of one queue across the cluster (JetStream's
    /// max-ack-pending): bounds prefetch windows together.
    pub max_ack_pending: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats_url: String::new(),
            node_name: String::new(),
            subscription_capacity: 65_536,
            max_pending_publishes: 8192,
            ack_wait_s: 30,
            max_ack_pending: 10_000,
        }
    }
}

impl ClusterConfig {
    /// Whether the node joins a cluster.
    pub fn enabled(&self) -> bool {
        !self.nats_url.trim().is_empty()
    }

    /// `node_name`, or the host name and `http_port` when it is empty.
    pub fn node_name(&self, http_port: u16) -> String {
        if !self.node_name.is_empty() {
            return self.node_name.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{host}:{http_port}")
    }
}

/// `[tls]`: the `wss://` and STOMP-over-TLS listeners, on when `cert_file` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; empty means no TLS listeners.
    pub cert_file: String,
    /// PEM private key of the certificate.
    pub key_file: String,
    /// HTTPS listener: the same routes as HTTP, so `wss://host:8443/ws`.
    pub https_addr: SocketAddr,
    /// STOMP over TLS; empty disables it.
    pub stomp_addr: String,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: String::new(),
            key_file: String::new(),
            https_addr: SocketAddr::from(([0, 0, 0, 0], 8443)),
            stomp_addr: "0.0.0.0:61614".to_owned(),
        }
    }
}

impl TlsConfig {
    /// Whether the TLS listeners are on.
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }

    /// The STOMP-over-TLS address, or `None` when disabled.
    pub fn stomp_socket_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let s = self.stomp_addr.trim();
        if s.is_empty() || !self.enabled() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|e| ConfigError::BadValue {
            key: "tls.stomp_addr",
            reason: format!("{s:?} is not a socket address ({e})"),
        })
    }
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The embedded store's directory (created if missing), relative to the working
    /// directory unless absolute.
    pub path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("data"),
        }
    }
}

/// `[queues]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueuesConfig {
    /// Messages one queue holds; a SEND past it gets an ERROR.
    pub max_depth: usize,
    /// A message is delivered at most 1 + N times through NACKs, then moved to
    /// `/queue/NAME.dlq`.
    pub max_redeliveries: u32,
    /// Queues that may exist at once (they are created on first use).
    pub max_queues: usize,
    /// `prefetch-count` when a SUBSCRIBE gives none.
    pub default_prefetch: usize,
    /// `/queue/...` destinations or patterns whose every message is stored, so it
    /// survives a restart. A SEND with `persistent: true` is stored on any queue.
    pub durable: Vec<String>,
    /// An empty queue without consumers is removed after this many ms unused, so
    /// that queues made once do not hold `max_queues` slots for ever.
    pub idle_reclaim_ms: u64,
}

impl Default for QueuesConfig {
    fn default() -> Self {
        QueuesConfig {
            max_depth: 100_000,
            max_redeliveries: 3,
            max_queues: 10_000,
            default_prefetch: 100,
            durable: Vec::new(),
            idle_reclaim_ms: 60_000,
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether a CONNECT without `login` may read `/topic/**`.
    pub anonymous: bool,
    /// `[[auth.users]]`. None are built in: the shipped `broker.toml` has demo accounts.
    pub users: Vec<crate::auth::User>,
    /// Seconds a verified login and password is remembered, so that a reconnecting
    /// client skips the password check.
    pub cache_ttl_s: u64,
    /// Most remembered credentials; 0 turns the cache off.
    pub cache_max_entries: usize,
    /// Token logins.
    pub jwt: crate::auth::token::JwtConfig,
    /// `[[auth.acl]]` access rules; none means the built-in rules of the roles.
    pub acl: Vec<crate::auth::acl::AclRule>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            anonymous: true,
            users: Vec::new(),
            cache_ttl_s: 300,
            cache_max_entries: 100_000,
            jwt: crate::auth::token::JwtConfig::default(),
            acl: Vec::new(),
        }
    }
}

/// `[topics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Topic destinations or patterns whose last message is kept and given to new
    /// subscribers at once, marked `retained: true`.
    pub retain: Vec<String>,
    /// Most destinations with a retained message; past it, new ones are not retained.
    pub max_retained: usize,
    /// Topic destinations or patterns that keep their recent messages, numbered by
    /// `x-stream-offset`, for a SUBSCRIBE to replay.
    pub history: Vec<String>,
    /// Messages kept per history destination.
    pub history_max_messages: usize,
    /// Seconds a history message is kept.
    pub history_max_age_s: u64,
    /// Destinations with a history; past it, new destinations keep none.
    pub history_max_destinations: usize,
    /// Bytes all histories together may hold; past it, the destination being
    /// published to drops its oldest messages.
    pub history_max_bytes: u64,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            retain: vec![
                "/topic/stock-quotes".to_owned(),
                "/topic/stock-quotes.*".to_owned(),
            ],
            max_retained: 10_000,
            history: Vec::new(),
            history_max_messages: 1000,
            history_max_age_s: 3600,
            history_max_destinations: 10_000,
            history_max_bytes: 256 * 1024 * 1024,
        }
    }
}

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

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// HTTP listener: `/ws`, `/metrics`, `/healthz`, `/readyz`, `/`.
    pub http_addr: SocketAddr,
    /// Plain TCP STOMP listener; empty disables it.
    pub stomp_addr: String,
    /// Exact origins allowed to open `/ws`; empty allows any.
    pub allowed_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            stomp_addr: "0.0.0.0:61613".to_owned(),
            allowed_origins: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// The TCP STOMP address, or `None` when disabled.
    pub fn stomp_socket_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let s = self.stomp_addr.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some).map_err(|e| ConfigError::BadValue {
            key: "server.stomp_addr",
            reason: format!("{s:?} is not a socket address ({e})"),
        })
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest frame a client may send.
    pub max_frame_bytes: usize,
    /// Most header lines in one frame.
    pub max_header_count: usize,
    /// Longest header line.
    pub max_header_line: usize,
    /// Open connections, both listeners together; more are refused.
    pub max_connections: usize,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout_ms: u64,
    /// Bytes waiting to be written to one client before it counts as slow.
    pub max_outbox_bytes: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Bytes of subscription ids and destinations one connection may hold.
    pub max_subscription_bytes: usize,
    /// Time one batch write may take before the client counts as gone.
    pub write_timeout_ms: u64,
    /// Dot-separated words in one topic destination or pattern (SEND and SUBSCRIBE).
    pub max_topic_words: usize,
    /// `*` and `#` words in one topic pattern.
    pub max_topic_wildcards: usize,
    /// Bytes of frames (headers and bodies) all open transactions of one
    /// connection may hold before COMMIT.
    pub max_transaction_bytes: usize,
    /// Open transactions one connection may have.
    pub max_open_transactions: usize,
    /// Time a frame may take from its first byte to its last.
    pub frame_timeout_ms: u64,
    /// Bytes all connections together may hold in frames that have started and
    /// not finished.
    pub max_pending_frame_bytes: usize,
    /// Open sockets (STOMP over TCP, WebSocket, plain HTTP) per client address
    /// (IPv4 address or IPv6 /64).
    pub max_connections_per_ip: usize,
    /// Open plain HTTP connections (page, metrics, health; WebSocket handshakes
    /// until they upgrade).
    pub max_http_connections: usize,
    /// Threads that run password checks (each check takes ~19 MiB while it runs).
    pub max_concurrent_password_checks: usize,
    /// Logins that may wait for a password check, broker-wide.
    pub max_queued_logins: usize,
    /// Logins that may wait for a password check from one client address.
    pub max_queued_logins_per_ip: usize,
    /// Failed logins from one address within `failed_login_window_ms` after which
    /// its logins are refused without a check until the window ends.
    pub max_failed_logins_per_ip: u32,
    /// The window of `max_failed_logins_per_ip`.
    pub failed_login_window_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_frame_bytes: 1024 * 1024,
            max_header_count: 64,
            max_header_line: 8 * 1024,
            max_connections: 100_000,
            connect_timeout_ms: 10_000,
            max_outbox_bytes: 8 * 1024 * 1024,
            max_subscriptions: 1024,
            max_subscription_bytes: 128 * 1024,
            write_timeout_ms: 10_000,
            max_topic_words: 64,
            max_topic_wildcards: 16,
            max_transaction_bytes: 8 * 1024 * 1024,
            max_open_transactions: 16,
            frame_timeout_ms: 30_000,
            max_pending_frame_bytes: 256 * 1024 * 1024,
            max_connections_per_ip: 1000,
            max_http_connections: 1024,
            max_concurrent_password_checks: 2,
            max_queued_logins: 256,
            max_queued_logins_per_ip: 32,
            max_failed_logins_per_ip: 10,
            failed_login_window_ms: 60_000,
        }
    }
}

impl LimitsConfig {
    /// The codec limits derived from these settings (a body may fill a whole frame).
    pub fn codec(&self) -> crate::codec::Limits {
        crate::codec::Limits {
            max_frame_bytes: self.max_frame_bytes,
            max_header_count: self.max_header_count,
            max_header_line: self.max_header_line,
            max_body_bytes: self.max_frame_bytes,
        }
    }

    /// The bounds on topic destinations and patterns.
    pub fn topic(&self) -> crate::destination::pattern::TopicLimits {
        crate::destination::pattern::TopicLimits {
            max_words: self.max_topic_words,
            max_wildcards: self.max_topic_wildcards,
        }
    }

    /// `connect_timeout_ms` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// `frame_timeout_ms` as a duration.
    pub fn frame_timeout(&self) -> Duration {
        Duration::from_millis(self.frame_timeout_ms)
    }

    /// `write_timeout_ms` as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

/// `[heartbeat]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// The broker's preferred interval both ways, in ms; 0 disables heart-beats.
    pub server_ms: u64,
    /// Extra silence tolerated past the negotiated client interval before closing.
    pub grace_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            server_ms: 10_000,
            grace_ms: 5_000,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `RUST_LOG`-style filter; the `RUST_LOG` variable wins when set.
    pub filter: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Keys whose environment values are comma-separated lists.
const LIST_KEYS: &[&str] = &[
    "server.allowed_origins",
    "queues.durable",
    "topics.retain",
    "topics.history",
];

impl Config {
    /// The bounds on password logins (`[limits]`) and the credential cache (`[auth]`).
    pub fn logins(&self) -> crate::auth::LoginLimits {
        let l = &self.limits;
        crate::auth::LoginLimits {
            checks: l.max_concurrent_password_checks,
            queued: l.max_queued_logins,
            queued_per_address: l.max_queued_logins_per_ip,
            failures_per_address: l.max_failed_logins_per_ip,
            failure_window: Duration::from_millis(l.failed_login_window_ms),
            cache_ttl: Duration::from_secs(self.auth.cache_ttl_s),
            cache_max: self.auth.cache_max_entries,
        }
    }

    /// Loads `path` (which must exist when `required`), then the process environment.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        Self::load_with_env(path, required, None)
    }

    /// As [`Config::load`], with the environment given as a map (for tests).
    pub fn load_with_env(
        path: &Path,
        required: bool,
        env: Option<HashMap<String, String>>,
    ) -> Result<Config, ConfigError> {
        if required && !path.exists() {
            return Err(ConfigError::Missing(path.display().to_string()));
        }
        let mut environment = config::Environment::with_prefix("STOMPEDE")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .source(env);
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let built = config::Config::builder()
            .add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(false),
            )
            .add_source(environment)
            .build()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let cfg: Config = built
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML document over the defaults (no environment), for tests.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let built = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let cfg: Config = built
            .try_deserialize()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.stomp_socket_addr()?;
        self.tls.stomp_socket_addr()?;
        if self.tls.enabled() {
            crate::transport::tls::acceptor(&self.tls.cert_file, &self.tls.key_file, &[]).map_err(
                |e| ConfigError::BadValue {
                    key: "tls",
                    reason: e.to_string(),
                },
            )?;
        }
        let positive: [(&'static str, u64); 24] = [
            ("limits.max_topic_words", self.limits.max_topic_words as u64),
            ("limits.max_frame_bytes", self.limits.max_frame_bytes as u64),
            (
                "limits.max_header_count",
                self.limits.max_header_count as u64,
            ),
            ("limits.max_header_line", self.limits.max_header_line as u64),
            ("limits.max_connections", self.limits.max_connections as u64),
            (
                "limits.max_outbox_bytes",
                self.limits.max_outbox_bytes as u64,
            ),
            ("limits.connect_timeout_ms", self.limits.connect_timeout_ms),
            ("queues.idle_reclaim_ms", self.queues.idle_reclaim_ms),
            // A consumer with a window of 0 would never be given a message.
            (
                "queues.default_prefetch",
                self.queues.default_prefetch as u64,
            ),
            ("limits.frame_timeout_ms", self.limits.frame_timeout_ms),
            (
                "limits.max_pending_frame_bytes",
                self.limits.max_pending_frame_bytes as u64,
            ),
            (
                "limits.max_connections_per_ip",
                self.limits.max_connections_per_ip as u64,
            ),
            (
                "limits.max_http_connections",
                self.limits.max_http_connections as u64,
            ),
            (
                "limits.max_concurrent_password_checks",
                self.limits.max_concurrent_password_checks as u64,
            ),
            (
                "limits.max_queued_logins_per_ip",
                self.limits.max_queued_logins_per_ip as u64,
            ),
            (
                "limits.max_failed_logins_per_ip",
                u64::from(self.limits.max_failed_logins_per_ip),
            ),
            (
                "limits.failed_login_window_ms",
                self.limits.failed_login_window_ms,
            ),
            (
                "cluster.subscription_capacity",
                self.cluster.subscription_capacity as u64,
            ),
            (
                "cluster.max_pending_publishes",
                self.cluster.max_pending_publishes as u64,
            ),
            ("cluster.ack_wait_s", self.cluster.ack_wait_s),
            (
                "topics.history_max_messages",
                self.topics.history_max_messages as u64,
            ),
            (
                "topics.history_max_destinations",
                self.topics.history_max_destinations as u64,
            ),
            ("topics.history_max_bytes", self.topics.history_max_bytes),
            (
                "cluster.max_ack_pending",
                self.cluster.max_ack_pending as u64,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::BadValue {
                    key,
                    reason: "must be greater than 0".to_owned(),
                });
            }
        }
        if self.cluster.enabled() {
            crate::engine::cluster::server_addrs(&self.cluster.nats_url).map_err(|reason| {
                ConfigError::BadValue {
                    key: "cluster.nats_url",
                    reason,
                }
            })?;
        }
        let mut logins = std::collections::HashSet::new();
        for user in &self.auth.users {
            let well_formed = crate::auth::well_formed_login(&user.login);
            if !well_formed || !logins.insert(user.login.as_str()) {
                return Err(ConfigError::BadValue {
                    key: "auth.users.login",
                    reason: format!(
                        "{:?} is empty, longer than 256 bytes, holds '/', ':', whitespace or a control character, or appears twice",
                        user.login
                    ),
                });
            }
            crate::auth::check_hash(&user.password_hash).map_err(|reason| {
                ConfigError::BadValue {
                    key: "auth.users.password_hash",
                    reason: format!("for login {:?}: {reason}", user.login),
                }
            })?;
        }
        crate::auth::token::TokenVerifier::from_config(&self.auth.jwt).map_err(|e| {
            ConfigError::BadValue {
                key: "auth.jwt",
                reason: e.to_string(),
            }
        })?;
        crate::auth::acl::Access::new(&self.auth.acl).map_err(|reason| ConfigError::BadValue {
            key: "auth.acl",
            reason,
        })?;
        for pattern in &self.queues.durable {
            if !pattern.starts_with("/queue/") || pattern.len() == "/queue/".len() {
                return Err(ConfigError::BadValue {
                    key: "queues.durable",
                    reason: format!("{pattern:?} is not a /queue/ destination"),
                });
            }
        }
        if self.store.path.as_os_str().is_empty() {
            return Err(ConfigError::BadValue {
                key: "store.path",
                reason: "must name a directory".to_owned(),
            });
        }
        for pattern in &self.topics.retain {
            if !pattern.starts_with("/topic/") {
                return Err(ConfigError::BadValue {
                    key: "topics.retain",
                    reason: format!("{pattern:?} is not a /topic/ destination"),
                });
            }
        }
        if self.quotes.interval_ms == 0 {
            return Err(ConfigError::BadValue {
                key: "quotes.interval_ms",
                reason: "must be greater than 0".to_owned(),
            });
        }
        let mut symbols = std::collections::HashSet::new();
        for s in &self.quotes.symbols {
            let valid_name =
                !s.symbol.is_empty() && s.symbol.bytes().all(|b| b.is_ascii_alphanumeric());
            if !valid_name || !symbols.insert(s.symbol.as_str()) {
                return Err(ConfigError::BadValue {
                    key: "quotes.symbols.symbol",
                    reason: format!("{:?} is not a unique alphanumeric ticker", s.symbol),
                });
            }
            if !(s.price >= 0.01
                && s.volatility >= 0.0
                && s.volatility < 1.0
                && s.drift.abs() < 1.0)
            {
                return Err(ConfigError::BadValue {
                    key: "quotes.symbols",
                    reason: format!(
                        "{}: price must be at least 0.01, volatility and drift below 1",
                        s.symbol
                    ),
                });
            }
        }
        for origin in &self.server.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError::BadValue {
                    key: "server.allowed_origins",
                    reason: format!("{origin:?} is not an origin like https://example.com"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error text for a configuration that must be refused.
    fn refused(toml: &str) -> String {
        Config::from_toml(toml).unwrap_err().to_string()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn partial_file_gets_defaults_for_the_rest() {
        let c = Config::from_toml("[limits]\nmax_frame_bytes = 100\n").unwrap();
        assert_eq!(c.limits.max_frame_bytes, 100);
        assert_eq!(c.limits.max_subscriptions, 1024);
        assert_eq!(c.server.http_addr, "0.0.0.0:8080".parse().unwrap());
    }

    #[test]
    fn unknown_keys_are_refused_naming_the_key() {
        let e = refused("[limits]\nmax_frame_byte = 100\n");
        assert!(e.contains("max_frame_byte"), "{e}");
        let e = refused("[nosuch]\nx = 1\n");
        assert!(e.contains("nosuch"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let e = refused("[server]\nstomp_addr = \"nowhere\"\n");
        assert!(e.contains("server.stomp_addr"), "{e}");
        let e = refused("[server]\nhttp_addr = \"bad\"\n");
        assert!(e.contains("http_addr"), "{e}");
        let e = refused("[limits]\nmax_frame_bytes = \"big\"\n");
        assert!(e.contains("max_frame_bytes"), "{e}");
        let e = refused("[limits]\nmax_connections = 0\n");
        assert!(e.contains("limits.max_connections"), "{e}");
        let e = refused("[queues]\ndefault_prefetch = 0\n");
        assert!(e.contains("queues.default_prefetch"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let path = Path::new("broker.toml");
        let c = Config::load_with_env(
            path,
            false,
            Some(env(&[
                ("STOMPEDE__SERVER__HTTP_ADDR", "127.0.0.1:18080"),
                ("STOMPEDE__SERVER__STOMP_ADDR", ""),
                ("STOMPEDE__LIMITS__MAX_OUTBOX_BYTES", "4096"),
                (
                    "STOMPEDE__SERVER__ALLOWED_ORIGINS",
                    "http://a.example,https://b.example",
                ),
            ])),
        )
        .unwrap();
        assert_eq!(c.server.http_addr, "127.0.0.1:18080".parse().unwrap());
        assert_eq!(c.server.stomp_socket_addr().unwrap(), None);
        assert_eq!(c.limits.max_outbox_bytes, 4096);
        assert_eq!(
            c.server.allowed_origins,
            ["http://a.example", "https://b.example"]
        );
    }

    #[test]
    fn unknown_environment_keys_are_refused() {
        let e = Config::load_with_env(
            Path::new("broker.toml"),
            false,
            Some(env(&[("STOMPEDE__LIMITS__NOPE", "1")])),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn the_shipped_broker_toml_is_the_defaults_plus_demo_users_and_history() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/broker.toml")).unwrap();
        let mut c = Config::from_toml(&text).unwrap();
        // The demo accounts are in the file only, never built into the binary.
        let logins: Vec<&str> = c.auth.users.iter().map(|u| u.login.as_str()).collect();
        assert_eq!(logins, ["alice", "bob", "market-feed"]);
        c.auth.users.clear();
        // So is the history of the demo's topics, which its page resumes.
        assert_eq!(
            c.topics.history,
            ["/topic/stock-quotes", "/topic/market-activity"]
        );
        c.topics.history.clear();
        let d = Config::default();
        assert_eq!(format!("{c:?}"), format!("{d:?}"));
    }

    #[test]
    fn bad_users_and_hashes_are_refused_naming_the_key() {
        let user = |hash: &str, role: &str| {
            format!(
                "[[auth.users]]\nlogin = \"a\"\npassword_hash = \"{hash}\"\nroles = [\"{role}\"]\n"
            )
        };
        let e = refused(&user("nope", "trader"));
        assert!(
            e.contains("auth.users.password_hash") && e.contains("\"a\""),
            "{e}"
        );
        let e = refused(&user("x", "pilot"));
        assert!(e.contains("pilot"), "{e}");
        let e = refused("[topics]\nretain = [\"/queue/x\"]\n");
        assert!(e.contains("topics.retain"), "{e}");
        let e = refused("[queues]\ndurable = [\"/topic/x\"]\n");
        assert!(e.contains("queues.durable"), "{e}");
        let e = refused("[store]\npath = \"\"\n");
        assert!(e.contains("store.path"), "{e}");
        let e = refused("[[quotes.symbols]]\nsymbol = \"A B\"\nprice = 1.0\n");
        assert!(e.contains("quotes.symbols.symbol"), "{e}");
    }

    #[test]
    fn missing_required_file_is_an_error() {
        let e = Config::load(Path::new("/nonexistent/broker.toml"), true).unwrap_err();
        assert!(matches!(e, ConfigError::Missing(_)));
    }
}
