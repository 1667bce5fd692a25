//! `[tls]`: the encrypted listeners.

use super::ConfigError;
use serde::Deserialize;
use std::net::SocketAddr;

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
