//! TLS: STOMP over TLS and `wss://` with a self-signed certificate made at run time.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::BytesMut;
use common::{TIMEOUT, broker};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use stompede::codec::{Command, Decoded, Decoder, Frame, Limits, Version, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A broker with TLS on a fresh self-signed certificate for 127.0.0.1, and a
/// client configuration that trusts exactly that certificate.
fn tls_broker() -> (common::TestBroker, TlsConnector, tempfile::TempDir) {
    tls_broker_with("")
}

/// [`tls_broker`] with `extra` configuration.
fn tls_broker_with(extra: &str) -> (common::TestBroker, TlsConnector, tempfile::TempDir) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let b = broker(&format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nhttps_addr = \"127.0.0.1:0\"\nstomp_addr = \"127.0.0.1:0\"\n{extra}",
        cert_file.display().to_string(),
        key_file.display().to_string()
    ));
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (b, TlsConnector::from(Arc::new(config)), dir)
}

fn frame_bytes(f: &Frame) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(f, Version::V1_2, &mut out);
    out.to_vec()
}

/// Reads frames from `read` until one arrives.
async fn next_frame<R: tokio::io::AsyncRead + Unpin>(
    read: &mut R,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
) -> Frame {
    tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(Decoded::Frame(f)) = decoder.decode(buf).unwrap() {
                return f;
            }
            buf.reserve(8192);
            assert!(read.read_buf(buf).await.unwrap() > 0, "closed");
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn stomp_over_tls_and_wss_reach_each_other() {
    let (b, connector, _dir) = tls_broker();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    // A wss:// subscriber.
    let tcp = tokio::net::TcpStream::connect(b.https_addr.unwrap())
        .await
        .unwrap();
    let tls = connector.connect(name.clone(), tcp).await.unwrap();
    let req = format!("wss://127.0.0.1:{}/ws", b.https_addr.unwrap().port())
        .into_client_request()
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    for f in [
        Frame::new(Command::Connect).header("accept-version", "1.2"),
        Frame::new(Command::Subscribe)
            .header("id", "s")
            .header("destination", "/topic/secure")
            .header("receipt", "r"),
    ] {
        ws.send(Message::text(String::from_utf8(frame_bytes(&f)).unwrap()))
            .await
            .unwrap();
    }
    let mut wsbuf = BytesMut::new();
    let mut wsdec = Decoder::new(Limits::default());
    let mut ws_next = async || -> Frame {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                if let Some(Decoded::Frame(f)) = wsdec.decode(&mut wsbuf).unwrap() {
                    return f;
                }
                match ws.next().await.unwrap().unwrap() {
                    Message::Text(t) => wsbuf.extend_from_slice(t.as_bytes()),
                    Message::Binary(d) => wsbuf.extend_from_slice(&d),
                    _ => {}
                }
            }
        })
        .await
        .unwrap()
    };
    assert_eq!(ws_next().await.command, Command::Connected);
    assert_eq!(ws_next().await.command, Command::Receipt);
    // A STOMP-over-TLS publisher (the test service account).
    let tcp = tokio::net::TcpStream::connect(b.stomps_addr.unwrap())
        .await
        .unwrap();
    let mut stomps = connector.connect(name, tcp).await.unwrap();
    let (mut dec, mut buf) = (Decoder::new(Limits::default()), BytesMut::new());
    let connect = Frame::new(Command::Connect)
        .header("accept-version", "1.2")
        .header("login", "svc")
        .header("passcode", "svc-pw");
    stomps.write_all(&frame_bytes(&connect)).await.unwrap();
    assert_eq!(
        next_frame(&mut stomps, &mut dec, &mut buf).await.command,
        Command::Connected
    );
    let send = Frame::new(Command::Send)
        .header("destination", "/topic/secure")
        .header("receipt", "p")
        .body("over tls");
    stomps.write_all(&frame_bytes(&send)).await.unwrap();
    assert_eq!(
        next_frame(&mut stomps, &mut dec, &mut buf).await.command,
        Command::Receipt
    );
    let m = ws_next().await;
    assert_eq!(m.command, Command::Message);
    assert_eq!(&m.body[..], b"over tls");
    // Plain text on the TLS port gets no STOMP answer; the broker closes it.
    let mut plain = tokio::net::TcpStream::connect(b.stomps_addr.unwrap())
        .await
        .unwrap();
    plain.write_all(&frame_bytes(&connect)).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, plain.read_to_end(&mut answer))
        .await
        .unwrap()
        .ok();
    assert!(!answer.starts_with(b"CONNECTED"), "{answer:?}");
    // The plain listeners stay as they were.
    let mut c = common::Client::tcp(&b).await;
    c.connect().await;
}

#[test]
fn unusable_certificates_stop_start_up_naming_the_key() {
    let e = stompede::config::Config::from_toml(
        "[tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("tls") && e.contains("cert_file"), "{e}");
}

/// STOMP over TLS behind a trusted proxy: the PROXY header comes before the
/// TLS handshake, and the client it names is the one counted.
#[tokio::test]
async fn a_proxy_header_before_tls_names_the_client() {
    let (b, connector, _dir) = tls_broker_with(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\nproxy_protocol = true\n[limits]\nmax_connections_per_ip = 1",
    );
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stomps = b.stomps_addr.unwrap();
    let open = |client: &'static str| {
        let (connector, name) = (connector.clone(), name.clone());
        async move {
            let mut tcp = tokio::net::TcpStream::connect(stomps).await.unwrap();
            tcp.write_all(&common::proxy_v2(client, 4000))
                .await
                .unwrap();
            connector.connect(name, tcp).await
        }
    };
    let mut held = Vec::new();
    for client in ["203.0.113.1", "203.0.113.2"] {
        let mut tls = open(client).await.expect("a TLS session");
        tls.write_all(&frame_bytes(
            &Frame::new(Command::Connect).header("accept-version", "1.2"),
        ))
        .await
        .unwrap();
        let (mut decoder, mut buf) = (Decoder::new(Limits::default()), BytesMut::new());
        let f = next_frame(&mut tls, &mut decoder, &mut buf).await;
        assert_eq!(f.command, Command::Connected, "{f:?}");
        held.push(tls);
    }
    // The first client's address holds its one place: over TLS the socket just closes.
    assert!(open("203.0.113.1").await.is_err());
}
