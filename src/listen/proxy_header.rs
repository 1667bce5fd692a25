//! The PROXY protocol header (HAProxy's, v1 text and v2 binary) that a proxy
//! sends before the client's bytes when `server.proxy_protocol = true`.
//!
//! Read only from a trusted proxy, and exactly: the header's bytes are peeked,
//! parsed (by the `ppp` crate) and only then consumed, so the client's first
//! bytes stay in the socket for the STOMP or HTTP reader. From any other peer a
//! header is refused: it would let a client choose its own address.

use ppp::PartialResult;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 header's first 12 bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header's first bytes.
const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The longest header taken: a v1 header is at most 107 bytes; a v2 header is
/// 16 bytes, the addresses (at most 216) and TLVs, which HAProxy keeps small.
pub const MAX_HEADER: usize = 1024;

/// What a peer's first bytes were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preamble {
    /// Not a PROXY header: the client's own bytes.
    None,
    /// A header naming the client, of `len` bytes.
    Client {
        /// The client the proxy speaks for.
        addr: SocketAddr,
        /// The header's length.
        len: usize,
    },
    /// A header that names no client (v2 `LOCAL`, as health checks send, v1
    /// `UNKNOWN`, a UNIX socket), of `len` bytes: the proxy speaks for itself.
    Local {
        /// The header's length.
        len: usize,
    },
}

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeaderError {
    /// A header from a peer not in `server.trusted_proxies`.
    #[error("a PROXY protocol header from an address not in server.trusted_proxies")]
    Untrusted,
    /// Not a well-formed header, or longer than [`MAX_HEADER`].
    #[error("a malformed PROXY protocol header")]
    Malformed,
    /// The peer sent nothing whole in time, or closed.
    #[error("no complete PROXY protocol header in time")]
    Incomplete,
    /// As many headers are being read as may be at once.
    #[error("too many PROXY protocol headers being read at once")]
    Busy,
}

/// Classifies the first bytes of a connection: a complete header, not a header,
/// or `Err(Incomplete)` when more bytes are needed to tell.
pub fn classify(bytes: &[u8]) -> Result<Preamble, ProxyHeaderError> {
    let prefix_of = |sig: &[u8]| {
        let n = bytes.len().min(sig.len());
        bytes[..n] == sig[..n]
    };
    if !prefix_of(V1_PREFIX) && !prefix_of(V2_SIGNATURE) {
        return Ok(Preamble::None);
    }
    let header = ppp::HeaderResult::parse(bytes);
    if header.is_incomplete() {
        return Err(if bytes.len() >= MAX_HEADER {
            ProxyHeaderError::Malformed
        } else {
            ProxyHeaderError::Incomplete
        });
    }
    match header {
        ppp::HeaderResult::V1(Ok(h)) => {
            let len = h.header.len();
            Ok(match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => Preamble::Client {
                    addr: SocketAddr::from((a.source_address, a.source_port)),
                    len,
                },
                ppp::v1::Addresses::Tcp6(a) => Preamble::Client {
                    addr: SocketAddr::from((a.source_address, a.source_port)),
                    len,
                },
                ppp::v1::Addresses::Unknown => Preamble::Local { len },
            })
        }
        ppp::HeaderResult::V2(Ok(h)) => {
            let len = h.len();
            if len > MAX_HEADER {
                return Err(ProxyHeaderError::Malformed);
            }
            Ok(match (h.command, h.addresses) {
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => Preamble::Client {
                    addr: SocketAddr::from((a.source_address, a.source_port)),
                    len,
                },
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => Preamble::Client {
                    addr: SocketAddr::from((a.source_address, a.source_port)),
                    len,
                },
                _ => Preamble::Local { len },
            })
        }
        _ => Err(ProxyHeaderError::Malformed),
    }
}

/// Looks at what `stream` starts with (waiting for it, within `within`) without
/// consuming anything.
async fn peek_preamble(stream: &TcpStream, within: Duration) -> Result<Preamble, ProxyHeaderError> {
    let look = async {
        let mut buf = vec![0u8; MAX_HEADER];
        let mut pause = Duration::from_millis(1);
        let mut seen = 0;
        loop {
            let n = stream
                .peek(&mut buf)
                .await
                .map_err(|_| ProxyHeaderError::Incomplete)?;
            if n == 0 {
                return Err(ProxyHeaderError::Incomplete);
            }
            match classify(&buf[..n]) {
                Err(ProxyHeaderError::Incomplete) => {}
                decided => return decided,
            }
            // A peek returns at once while any byte waits: pause before the next
            // look, shorter while bytes keep coming.
            if n > seen {
                pause = Duration::from_millis(1);
            }
            seen = n;
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    };
    tokio::time::timeout(within, look)
        .await
        .unwrap_or(Err(ProxyHeaderError::Incomplete))
}

/// From a trusted proxy: reads its header, if the connection starts with one,
/// and returns the client it names (`None`: no header, or one naming no client).
pub async fn read_from_trusted(
    stream: &mut TcpStream,
    within: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let preamble = peek_preamble(stream, within).await?;
    let (client, len) = match preamble {
        Preamble::None => return Ok(None),
        Preamble::Client { addr, len } => (Some(addr), len),
        Preamble::Local { len } => (None, len),
    };
    let mut header = vec![0u8; len];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|_| ProxyHeaderError::Incomplete)?;
    Ok(client)
}

/// From any other peer: refuses a connection that starts with a header (or
/// what begins like one). A peer that sends nothing in time is left to the
/// reader's own deadlines.
pub async fn refuse_from_untrusted(
    stream: &TcpStream,
    within: Duration,
) -> Result<(), ProxyHeaderError> {
    match peek_preamble(stream, within).await {
        Ok(Preamble::None) | Err(ProxyHeaderError::Incomplete) => Ok(()),
        Ok(_) | Err(_) => Err(ProxyHeaderError::Untrusted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    #[test]
    fn v1_headers_name_the_client() {
        let h = b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 61613\r\nCONNECT\n";
        assert_eq!(
            classify(h),
            Ok(Preamble::Client {
                addr: "203.0.113.9:5555".parse().unwrap(),
                len: 44
            })
        );
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 7 8\r\n";
        assert!(
            matches!(classify(h), Ok(Preamble::Client { addr, len: 40 }) if addr.to_string() == "[2001:db8::1]:7")
        );
        assert_eq!(
            classify(b"PROXY UNKNOWN\r\nGET"),
            Ok(Preamble::Local { len: 15 })
        );
    }

    #[test]
    fn v2_headers_name_the_client_or_none() {
        let mut addresses = vec![203, 0, 113, 9, 10, 0, 0, 1];
        addresses.extend_from_slice(&5555u16.to_be_bytes());
        addresses.extend_from_slice(&80u16.to_be_bytes());
        let mut h = v2(1, 0x11, &addresses);
        let len = h.len();
        h.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            classify(&h),
            Ok(Preamble::Client {
                addr: "203.0.113.9:5555".parse().unwrap(),
                len
            })
        );
        // LOCAL: a health check from the proxy itself.
        assert_eq!(classify(&v2(0, 0, &[])), Ok(Preamble::Local { len: 16 }));
    }

    #[test]
    fn partial_headers_wait_and_other_bytes_pass() {
        for partial in [
            &b"PRO"[..],
            b"PROXY TCP4 203.0.113.9",
            b"\r\n\r\n",
            &V2_SIGNATURE[..],
        ] {
            assert_eq!(
                classify(partial),
                Err(ProxyHeaderError::Incomplete),
                "{partial:?}"
            );
        }
        for client in [
            &b"CONNECT\n"[..],
            b"GET / HTTP/1.1",
            b"\r\nCONNECT",
            b"\x16\x03\x01",
        ] {
            assert_eq!(classify(client), Ok(Preamble::None), "{client:?}");
        }
        assert_eq!(
            classify(b"PROXY nonsense\r\n"),
            Err(ProxyHeaderError::Malformed)
        );
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; MAX_HEADER]].concat();
        assert!(classify(&endless).is_err());
        assert_ne!(classify(&endless), Err(ProxyHeaderError::Incomplete));
    }
}
