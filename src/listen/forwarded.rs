//! The client a request from a trusted proxy speaks for: `Forwarded` (RFC 7239)
//! or, without it, `X-Forwarded-For`, read from the right: the right-most hop
//! that is not itself a trusted proxy. Hops further left were written by whoever
//! that client is, so they are never believed: a client cannot pick its address
//! by sending the header itself.

use crate::config::TrustedProxies;
use hyper::HeaderMap;
use std::net::{IpAddr, SocketAddr};

/// The client address of a request that came from `peer`. Only when `peer` is a
/// trusted proxy are the headers read; a hop that names no address (`unknown`,
/// an obfuscated name) ends the walk at the proxy that wrote it.
pub fn client(headers: &HeaderMap, peer: SocketAddr, trusted: &TrustedProxies) -> SocketAddr {
    if !trusted.contains(peer.ip()) {
        return peer;
    }
    let forwarded = headers.contains_key(hyper::header::FORWARDED);
    let (name, parse): (_, fn(&str) -> Option<SocketAddr>) = if forwarded {
        (hyper::header::FORWARDED, forwarded_for)
    } else {
        (
            hyper::header::HeaderName::from_static("x-forwarded-for"),
            x_forwarded_for,
        )
    };
    let mut client = peer;
    // Header lines in order, each a comma-separated list: walk both backwards.
    // As many lines as hyper takes in one request head (100 headers at most).
    let values: Vec<_> = headers.get_all(name).iter().collect();
    for value in values.into_iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for hop in value.rsplit(',') {
            if !trusted.contains(client.ip()) {
                return client;
            }
            match parse(hop) {
                Some(addr) => client = addr,
                None => return client,
            }
        }
    }
    client
}

/// One `X-Forwarded-For` hop: an address, perhaps with a port.
fn x_forwarded_for(hop: &str) -> Option<SocketAddr> {
    node(hop.trim())
}

/// The `for=` of one `Forwarded` element (`for=192.0.2.60;proto=http`).
fn forwarded_for(element: &str) -> Option<SocketAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        node(value)
    })
}

/// A node: `192.0.2.60`, `192.0.2.60:4711`, `[2001:db8::17]`,
/// `[2001:db8::17]:4711` or a bare IPv6 address; the port is 0 when not given.
fn node(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip = s.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
    Some(SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> TrustedProxies {
        TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).unwrap()
    }

    fn client_of(peer: &str, headers: &[(&str, &str)]) -> String {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        client(&map, peer.parse().unwrap(), &trusted())
            .ip()
            .to_string()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let forged = [
            ("x-forwarded-for", "10.9.9.9"),
            ("forwarded", "for=10.9.9.9"),
        ];
        assert_eq!(client_of("192.0.2.1:5000", &forged), "192.0.2.1");
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let xff = |v| client_of("127.0.0.1:5000", &[("x-forwarded-for", v)]);
        assert_eq!(xff("203.0.113.9"), "203.0.113.9");
        // The client forged its own header: the hop the proxy appended wins.
        assert_eq!(xff("6.6.6.6, 203.0.113.9"), "203.0.113.9");
        // Through two trusted proxies.
        assert_eq!(xff("6.6.6.6, 203.0.113.9, 10.1.1.1"), "203.0.113.9");
        // Everyone trusted: the left-most.
        assert_eq!(xff("10.2.2.2, 10.1.1.1"), "10.2.2.2");
        // Garbage ends the walk at the proxy that wrote it.
        assert_eq!(xff("203.0.113.9, nonsense"), "127.0.0.1");
        assert_eq!(xff("203.0.113.9, nonsense, 10.1.1.1"), "10.1.1.1");
        assert_eq!(xff(" 2001:db8::7 "), "2001:db8::7");
        assert_eq!(xff("[2001:db8::7]:80"), "2001:db8::7");
    }

    #[test]
    fn header_lines_are_one_list_in_order() {
        let c = client_of(
            "127.0.0.1:1",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-for", "10.1.1.1"),
            ],
        );
        assert_eq!(c, "203.0.113.9");
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for() {
        let c = client_of(
            "127.0.0.1:1",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                (
                    "forwarded",
                    "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, For=10.3.3.3;by=10.0.0.1",
                ),
            ],
        );
        assert_eq!(c, "2001:db8:cafe::17");
        let c = client_of("127.0.0.1:1", &[("forwarded", "for=unknown")]);
        assert_eq!(c, "127.0.0.1");
        let c = client_of("127.0.0.1:1", &[("forwarded", "proto=http;for=192.0.2.60")]);
        assert_eq!(c, "192.0.2.60");
    }

    #[test]
    fn no_header_leaves_the_proxy() {
        assert_eq!(client_of("10.0.0.5:1", &[]), "10.0.0.5");
    }
}
