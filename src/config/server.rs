//! `[server]`: the client listeners, who may open them, the operators' listener,
//! the proxies whose word on a client's address is taken, and draining.

use super::ConfigError;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

/// `[server]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// HTTP listener: `/ws`, `/healthz`, `/readyz`, `/`; and `/metrics` and the
    /// admin API unless `ops_addr` is set.
    pub http_addr: SocketAddr,
    /// Plain TCP STOMP listener; empty disables it.
    pub stomp_addr: String,
    /// Exact origins allowed to open `/ws`; empty allows any.
    pub allowed_origins: Vec<String>,
    /// The paths that serve STOMP over WebSocket (`/ws`, or Spring's
    /// `/stock-trading`, `/gs-guide-websocket`).
    pub ws_paths: Vec<String>,
    /// Addresses or CIDRs of proxies whose word on the client's address is taken
    /// (PROXY protocol header, `Forwarded`, `X-Forwarded-For`). Empty: none.
    pub trusted_proxies: Vec<String>,
    /// Whether the STOMP/TCP and HTTP listeners (plain and TLS) read a PROXY
    /// protocol header (v1 or v2) from trusted proxies.
    pub proxy_protocol: bool,
    /// The operators' listener (`/metrics`, health, the admin API); empty: off.
    pub ops_addr: String,
    /// Seconds a draining node still takes new connections (while `/readyz`
    /// answers 503), so load balancers see it go before it stops listening.
    pub drain_grace_s: u64,
    /// Seconds over which a draining node then closes its client connections.
    pub drain_spread_s: u64,
}

/// The longest `server.drain_grace_s` or `server.drain_spread_s`: an hour.
pub const MAX_DRAIN_S: u64 = 3600;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            stomp_addr: "0.0.0.0:61613".to_owned(),
            allowed_origins: Vec::new(),
            ws_paths: vec!["/ws".to_owned()],
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            ops_addr: String::new(),
            drain_grace_s: 5,
            drain_spread_s: 10,
        }
    }
}

impl ServerConfig {
    /// The TCP STOMP address, or `None` when disabled.
    pub fn stomp_socket_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        optional_addr(&self.stomp_addr, "server.stomp_addr")
    }

    /// The operators' listener address, or `None` when off.
    pub fn ops_socket_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        optional_addr(&self.ops_addr, "server.ops_addr")
    }

    /// Refuses a `ws_paths` entry that is not a plain path of its own, or that
    /// another route of the HTTP listener takes.
    pub fn check_ws_paths(&self) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::BadValue {
            key: "server.ws_paths",
            reason,
        };
        if self.ws_paths.is_empty() {
            return Err(bad("must name at least one path".to_owned()));
        }
        let taken = [
            "/",
            "/index.html",
            "/metrics",
            "/healthz",
            "/readyz",
            "/app.js",
            "/style.css",
        ];
        let mut seen = std::collections::HashSet::new();
        for p in &self.ws_paths {
            let plain = p.starts_with('/')
                && p.len() > 1
                && p.len() <= 256
                && !p.ends_with('/')
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
                && !p.split('/').any(|seg| seg == "." || seg == "..");
            if !plain {
                return Err(bad(format!(
                    "{p:?} is not a path like /ws or /stock-trading"
                )));
            }
            if taken.contains(&p.as_str()) || p.starts_with("/api/") || p.starts_with("/vendor/") {
                return Err(bad(format!("{p:?} is another route of the HTTP listener")));
            }
            if !seen.insert(p.as_str()) {
                return Err(bad(format!("{p:?} appears twice")));
            }
        }
        Ok(())
    }

    /// The trusted proxies, parsed.
    pub fn trusted(&self) -> Result<TrustedProxies, ConfigError> {
        TrustedProxies::parse(&self.trusted_proxies).map_err(|reason| ConfigError::BadValue {
            key: "server.trusted_proxies",
            reason,
        })
    }

    /// Whether `other` differs only in what a reload may change
    /// (`trusted_proxies`).
    pub fn same_but_reloadable(&self, other: &ServerConfig) -> bool {
        let mut other = other.clone();
        other.trusted_proxies = self.trusted_proxies.clone();
        *self == other
    }
}

/// `s` as a socket address, or `None` when empty.
fn optional_addr(s: &str, key: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| ConfigError::BadValue {
        key,
        reason: format!("{s:?} is not a socket address ({e})"),
    })
}

/// The proxies of `server.trusted_proxies`: networks whose connections may say
/// which client they carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<ipnet::IpNet>,
}

impl TrustedProxies {
    /// Parses addresses (`10.0.0.7`, `::1`) and CIDRs (`10.0.0.0/8`).
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        let nets = entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<ipnet::IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{e:?} is not an address or a CIDR like 10.0.0.0/8"))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// Whether `ip` is a trusted proxy (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_are_addresses_and_networks() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), " 127.0.0.2 ".into(), "::1".into()])
            .unwrap();
        for yes in ["10.1.2.3", "127.0.0.2", "::1", "::ffff:10.0.0.1"] {
            assert!(t.contains(yes.parse().unwrap()), "{yes}");
        }
        for no in ["11.0.0.1", "127.0.0.3", "::2"] {
            assert!(!t.contains(no.parse().unwrap()), "{no}");
        }
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.example".into()]).is_err());
        assert!(TrustedProxies::default().is_empty());
    }
}
