//! `[server]`: the client listeners and who may open them.

use super::ConfigError;
use serde::Deserialize;
use std::net::SocketAddr;

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
