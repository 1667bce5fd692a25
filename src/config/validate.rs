//! Checks a whole configuration before start-up: every value that would fail
//! later fails here, with one line naming the key.

use super::{Config, ConfigError};

impl Config {
    /// Refuses any value that would fail later, naming its key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.server.stomp_socket_addr()?;
        self.server.trusted()?;
        self.server.check_ws_paths()?;
        // Port 0 (an ephemeral port, as tests use) cannot clash.
        if let Some(ops) = self.server.ops_socket_addr()?.filter(|a| a.port() != 0) {
            let public = [
                Some(self.server.http_addr),
                self.server.stomp_socket_addr()?,
            ];
            if public.contains(&Some(ops)) {
                return Err(ConfigError::BadValue {
                    key: "server.ops_addr",
                    reason: format!("{ops} is also a client listener's address"),
                });
            }
        }
        for (key, value) in [
            ("server.drain_grace_s", self.server.drain_grace_s),
            ("server.drain_spread_s", self.server.drain_spread_s),
        ] {
            if value > super::server::MAX_DRAIN_S {
                return Err(ConfigError::BadValue {
                    key,
                    reason: format!("{value} is more than {} s", super::server::MAX_DRAIN_S),
                });
            }
        }
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
        let rules = super::access_rules(&self.auth.acl, &self.app.routes);
        crate::auth::acl::Access::new(&rules).map_err(|reason| ConfigError::BadValue {
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
        self.app.validate()?;
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
