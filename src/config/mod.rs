//! Broker configuration: embedded defaults, then `broker.toml` (or `--config FILE`),
//! then `STOMPEDE__SECTION__KEY` environment variables.
//!
//! Every key has a default, so a file holding only some keys is complete. Unknown
//! keys and bad values stop start-up with one line naming the key.

use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
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
    /// `/app` routes to backends (`[[app.routes]]`).
    pub app: AppConfig,
}

mod app;
mod auth;
mod cluster;
mod limits;
mod log;
mod server;
mod store;
mod tls;
mod topics;
mod trading;
mod validate;

pub use app::{AppConfig, AppRouteConfig, access_rules};
pub use auth::AuthConfig;
pub use cluster::ClusterConfig;
pub use limits::{HeartbeatConfig, LimitsConfig};
pub use log::{LogConfig, LogFormat};
pub use server::{ServerConfig, TrustedProxies};
pub use store::{QueuesConfig, StoreConfig};
pub use tls::TlsConfig;
pub use topics::TopicsConfig;
pub use trading::{QuotesConfig, SymbolConfig, TradingConfig};

/// Keys whose environment values are comma-separated lists.
const LIST_KEYS: &[&str] = &[
    "server.allowed_origins",
    "server.trusted_proxies",
    "server.ws_paths",
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
