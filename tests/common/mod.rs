//! Shared helpers for integration tests: a broker on ephemeral loopback ports and
//! STOMP clients over TCP and WebSocket, built on the broker's own codec.

#![allow(dead_code, clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use stompede::codec::{Command, Decoded, Decoder, Frame, Limits, Version, encode};
use stompede::config::Config;
use stompede::server::{RunningBroker, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected event may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Test accounts: (login, password, roles).
pub const USERS: [(&str, &str, &str); 4] = [
    ("alice", "alice-pw", "trader"),
    ("bob", "bob-pw", "trader"),
    ("svc", "svc-pw", "service"),
    ("root", "root-pw", "admin"),
];

/// `[[auth.users]]` entries for [`USERS`], hashed once per test binary at the lowest
/// argon2 cost so that tests stay fast (the broker verifies whatever cost a hash says).
pub fn users_toml() -> &'static str {
    static TOML: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOML.get_or_init(|| {
        use argon2::password_hash::PasswordHasher;
        let cheap = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8, 1, 1, None).unwrap(),
        );
        USERS
            .iter()
            .map(|(login, pw, role)| {
                let hash = cheap.hash_password(pw.as_bytes()).unwrap().to_string();
                format!("[[auth.users]]\nlogin = \"{login}\"\npassword_hash = \"{hash}\"\nroles = [\"{role}\"]\n")
            })
            .collect()
    })
}

/// An `Authorization: Basic` value for `login` and `password`.
pub fn basic(login: &str, password: &str) -> String {
    use base64::Engine as _;
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
    format!("Basic {pair}")
}

/// An `[[auth.users]]` entry, hashed at the lowest argon2 cost.
pub fn user_toml(login: &str, password: &str, role: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    let cheap = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(8, 1, 1, None).unwrap(),
    );
    let hash = cheap
        .hash_password(password.as_bytes())
        .unwrap()
        .to_string();
    format!(
        "[[auth.users]]\nlogin = \"{login}\"\npassword_hash = \"{hash}\"\nroles = [\"{role}\"]\n"
    )
}

/// A broker started by [`broker`], with the temporary directory its queue store
/// lives in (removed when this is dropped).
pub struct TestBroker {
    running: RunningBroker,
    _store: tempfile::TempDir,
}

impl std::ops::Deref for TestBroker {
    type Target = RunningBroker;
    fn deref(&self) -> &RunningBroker {
        &self.running
    }
}

/// Starts a broker on 127.0.0.1 ephemeral ports with `extra` TOML merged over the
/// test base (addresses, the [`USERS`], and a fresh store directory unless `extra`
/// sets `[store] path`).
pub fn broker(extra: &str) -> TestBroker {
    let (config, dir) = test_config(extra);
    TestBroker {
        running: start(config).unwrap(),
        _store: dir,
    }
}

/// The configuration [`broker`] starts with, and the temporary directory of its
/// store (keep it as long as the broker runs).
pub fn test_config(extra: &str) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nhttp_addr = \"127.0.0.1:0\"\nstomp_addr = \"127.0.0.1:0\"\n[store]\npath = {:?}\n{extra}",
        dir.path().display().to_string()
    );
    let toml = format!("{}\n{}", fix_sections(&toml), users_toml());
    (Config::from_toml(&toml).unwrap(), dir)
}

/// Lets tests write `[server]` again in `extra`: merges repeated `[section]`s (a
/// later key wins). `[[array]]` entries are kept as they are, each its own table.
fn fix_sections(toml: &str) -> String {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    let mut current = 0;
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with("[[") {
            sections.push((t.to_owned(), Vec::new()));
            current = sections.len() - 1;
            continue;
        }
        if t.starts_with('[') && t.ends_with(']') {
            current = match sections.iter().position(|(s, _)| s == t) {
                Some(i) => i,
                None => {
                    sections.push((t.to_owned(), Vec::new()));
                    sections.len() - 1
                }
            };
            continue;
        }
        if t.is_empty() {
            continue;
        }
        if sections.is_empty() {
            sections.push((String::new(), Vec::new()));
        }
        let lines = &mut sections[current].1;
        let key = t.split('=').next().unwrap().trim().to_owned();
        lines.retain(|l| l.split('=').next().unwrap().trim() != key);
        lines.push(t.to_owned());
    }
    sections
        .into_iter()
        .map(|(s, lines)| format!("{s}\n{}\n", lines.join("\n")))
        .collect()
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

enum Conn {
    Tcp(TcpStream),
    Ws(Box<Ws>),
}

/// What arrived on a WebSocket besides STOMP bytes, for tests that look at messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsKind {
    Text,
    Binary,
}

/// A STOMP test client.
pub struct Client {
    conn: Conn,
    decoder: Decoder,
    buf: BytesMut,
    /// Kinds of the WebSocket data messages received so far, in order.
    pub ws_kinds: Vec<WsKind>,
    /// Subprotocol the server chose in the handshake.
    pub subprotocol: Option<String>,
    /// Heart-beats received so far.
    pub heartbeats: usize,
    /// Frames that arrived while waiting for a receipt, handed out next.
    stash: std::collections::VecDeque<Frame>,
    /// The WebSocket close frame's code and reason, once one arrived.
    pub close: Option<(u16, String)>,
}

impl Client {
    fn new(conn: Conn) -> Client {
        Client {
            conn,
            decoder: Decoder::new(Limits {
                max_frame_bytes: 64 * 1024 * 1024,
                max_body_bytes: 64 * 1024 * 1024,
                ..Limits::default()
            }),
            buf: BytesMut::new(),
            ws_kinds: Vec::new(),
            subprotocol: None,
            heartbeats: 0,
            stash: std::collections::VecDeque::new(),
            close: None,
        }
    }

    /// A client over an already connected TCP stream.
    pub fn from_tcp(s: TcpStream) -> Client {
        let _ = s.set_nodelay(true);
        Client::new(Conn::Tcp(s))
    }

    /// The TCP stream under this client (for tests that write raw bytes).
    pub fn into_tcp(self) -> TcpStream {
        match self.conn {
            Conn::Tcp(s) => s,
            Conn::Ws(_) => panic!("a WebSocket client"),
        }
    }

    /// A plain TCP connection to the broker's STOMP listener.
    pub async fn tcp(broker: &RunningBroker) -> Client {
        Client::tcp_at(broker.stomp_addr.unwrap()).await
    }

    /// A plain TCP connection to a STOMP listener at `addr`.
    pub async fn tcp_at(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Client::new(Conn::Tcp(s))
    }

    /// A plain TCP connection from loopback address `local` (e.g. `127.0.0.7`), so
    /// one test can play clients at several addresses.
    pub async fn tcp_from(broker: &RunningBroker, local: &str) -> Client {
        let s = connect_from(local, broker.stomp_addr.unwrap())
            .await
            .unwrap();
        s.set_nodelay(true).unwrap();
        Client::new(Conn::Tcp(s))
    }

    /// A WebSocket connection to `/ws` from loopback address `local`; the HTTP
    /// status on refusal.
    pub async fn ws_from(broker: &RunningBroker, local: &str) -> Result<Client, u16> {
        Client::ws_from_with(broker.http_addr, local, b"", &[]).await
    }

    /// A WebSocket connection to `/ws` at `addr` from loopback address `local`,
    /// with `prefix` written first (a PROXY protocol header, say) and extra
    /// request `headers`; the HTTP status on refusal.
    pub async fn ws_from_with(
        addr: SocketAddr,
        local: &str,
        prefix: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<Client, u16> {
        let mut s = connect_from(local, addr).await.unwrap();
        if !prefix.is_empty() {
            s.write_all(prefix).await.unwrap();
        }
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("v12.stomp"),
        );
        for (k, v) in headers {
            req.headers_mut().append(
                tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let stream = MaybeTlsStream::Plain(s);
        match tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(req, stream))
            .await
            .unwrap()
        {
            Ok((ws, _)) => Ok(Client::new(Conn::Ws(Box::new(ws)))),
            Err(tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
            Err(e) => panic!("handshake failed: {e}"),
        }
    }

    /// A WebSocket connection to `/ws` offering the STOMP subprotocols.
    pub async fn ws(broker: &RunningBroker) -> Client {
        Client::ws_with(
            broker.http_addr,
            Some("v10.stomp, v11.stomp, v12.stomp"),
            None,
        )
        .await
        .unwrap()
    }

    /// A WebSocket connection with chosen subprotocols and Origin; the HTTP status on refusal.
    pub async fn ws_with(
        addr: SocketAddr,
        protocols: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Client, u16> {
        Client::ws_at(addr, "/ws", protocols, origin).await
    }

    /// [`Client::ws_with`] at `path`.
    pub async fn ws_at(
        addr: SocketAddr,
        path: &str,
        protocols: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Client, u16> {
        let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
        if let Some(p) = protocols {
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
        }
        if let Some(o) = origin {
            req.headers_mut()
                .insert("Origin", HeaderValue::from_str(o).unwrap());
        }
        match tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(req))
            .await
            .unwrap()
        {
            Ok((ws, res)) => {
                let mut c = Client::new(Conn::Ws(Box::new(ws)));
                c.subprotocol = res
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .map(|v| v.to_str().unwrap().to_owned());
                Ok(c)
            }
            Err(tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
            Err(e) => panic!("handshake failed: {e}"),
        }
    }

    /// Sends raw bytes (one WebSocket text message, if WebSocket).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        assert!(self.try_send_raw(bytes).await, "send failed");
    }

    /// As [`Client::send_raw`]; false if the connection is gone.
    async fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        match &mut self.conn {
            Conn::Tcp(s) => s.write_all(bytes).await.is_ok(),
            Conn::Ws(ws) => {
                let msg = match std::str::from_utf8(bytes) {
                    Ok(t) => Message::text(t),
                    Err(_) => Message::binary(Bytes::copy_from_slice(bytes)),
                };
                ws.send(msg).await.is_ok()
            }
        }
    }

    /// Sends one WebSocket message of the given kind (WebSocket clients only).
    pub async fn send_ws(&mut self, msg: Message) {
        match &mut self.conn {
            Conn::Ws(ws) => ws.send(msg).await.unwrap(),
            Conn::Tcp(_) => panic!("not a WebSocket client"),
        }
    }

    /// Sends a frame encoded for STOMP 1.2.
    pub async fn send(&mut self, frame: Frame) {
        assert!(self.try_send(frame).await, "send failed");
    }

    /// Sends a frame encoded for STOMP 1.2; false if the connection is gone (for
    /// tests that kill the broker).
    pub async fn try_send(&mut self, frame: Frame) -> bool {
        let mut out = BytesMut::new();
        encode(&frame, Version::V1_2, &mut out);
        self.try_send_raw(&out).await
    }

    /// Reads more bytes; false on EOF or close.
    async fn fill(&mut self) -> bool {
        match &mut self.conn {
            Conn::Tcp(s) => {
                self.buf.reserve(64 * 1024);
                matches!(s.read_buf(&mut self.buf).await, Ok(n) if n > 0)
            }
            Conn::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        self.ws_kinds.push(WsKind::Text);
                        self.buf.extend_from_slice(t.as_bytes());
                        return true;
                    }
                    Some(Ok(Message::Binary(b))) => {
                        self.ws_kinds.push(WsKind::Binary);
                        self.buf.extend_from_slice(&b);
                        return true;
                    }
                    Some(Ok(Message::Close(frame))) => {
                        self.close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        return false;
                    }
                    None | Some(Err(_)) => return false,
                    Some(Ok(_)) => continue,
                }
            },
        }
    }

    /// The next frame (heart-beats are counted and skipped); `None` if the
    /// connection closed first. Panics after [`TIMEOUT`].
    pub async fn next_frame(&mut self) -> Option<Frame> {
        if let Some(f) = self.stash.pop_front() {
            return Some(f);
        }
        tokio::time::timeout(TIMEOUT, async {
            loop {
                match self.decoder.decode(&mut self.buf).unwrap() {
                    Some(Decoded::Frame(f)) => return Some(f),
                    Some(Decoded::HeartBeat) => {
                        self.heartbeats += 1;
                        continue;
                    }
                    None => {}
                }
                if !self.fill().await {
                    return None;
                }
            }
        })
        .await
        .expect("timed out waiting for a frame")
    }

    /// The next frame without the [`TIMEOUT`] (the caller bounds the wait).
    pub async fn next_frame_untimed(&mut self) -> Option<Frame> {
        loop {
            match self.decoder.decode(&mut self.buf).ok()? {
                Some(Decoded::Frame(f)) => return Some(f),
                Some(Decoded::HeartBeat) => continue,
                None => {}
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next frame, which must be `command`.
    pub async fn expect(&mut self, command: Command) -> Frame {
        let f = self
            .next_frame()
            .await
            .unwrap_or_else(|| panic!("closed while expecting {command}"));
        assert_eq!(f.command, command, "unexpected frame: {f:?}");
        f
    }

    /// Reads up to the RECEIPT for `id`, keeping MESSAGEs that came before it for
    /// later reads: a queue may deliver before an ACK's receipt, or after.
    pub async fn expect_receipt_keeping_messages(&mut self, id: &str) -> Frame {
        let mut kept = std::collections::VecDeque::new();
        loop {
            let f = self
                .next_frame()
                .await
                .expect("closed while expecting a RECEIPT");
            if f.command == Command::Receipt {
                assert_eq!(f.headers.get("receipt-id"), Some(id), "{f:?}");
                kept.extend(self.stash.drain(..));
                self.stash = kept;
                return f;
            }
            assert_eq!(f.command, Command::Message, "unexpected frame: {f:?}");
            kept.push_back(f);
        }
    }

    /// Expects an ERROR whose `message` contains `text`, then the connection closing.
    pub async fn expect_error(&mut self, text: &str) -> Frame {
        let f = self.expect(Command::Error).await;
        let message = f.headers.get("message").unwrap_or_default();
        assert!(
            message.contains(text),
            "ERROR message {message:?} lacks {text:?}"
        );
        self.expect_closed().await;
        f
    }

    /// Expects the connection to close with no further frame.
    pub async fn expect_closed(&mut self) {
        if let Some(f) = self.next_frame().await {
            panic!("expected close, got {f:?}");
        }
    }

    /// Waits up to `wait` for a heart-beat or more bytes; true if any arrived.
    pub async fn heartbeat_within(&mut self, wait: Duration) -> bool {
        let before = self.heartbeats;
        let _ = tokio::time::timeout(wait, async {
            while self.heartbeats == before {
                match self.decoder.decode(&mut self.buf).unwrap() {
                    Some(Decoded::HeartBeat) => self.heartbeats += 1,
                    Some(Decoded::Frame(f)) => panic!("unexpected {f:?}"),
                    None => {
                        if !self.fill().await {
                            return;
                        }
                    }
                }
            }
        })
        .await;
        self.heartbeats > before
    }

    /// CONNECT as the test service account (may SEND anywhere), STOMP 1.2, no
    /// heart-beats; returns CONNECTED.
    pub async fn connect(&mut self) -> Frame {
        self.connect_as("svc", "svc-pw").await
    }

    /// CONNECT with a login and passcode; returns CONNECTED.
    pub async fn connect_as(&mut self, login: &str, passcode: &str) -> Frame {
        self.send(
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "localhost")
                .header("login", login)
                .header("passcode", passcode),
        )
        .await;
        self.expect(Command::Connected).await
    }

    /// CONNECT without credentials; returns CONNECTED.
    pub async fn connect_anonymously(&mut self) -> Frame {
        self.send(
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "localhost"),
        )
        .await;
        self.expect(Command::Connected).await
    }

    /// SUBSCRIBE with a receipt, waiting for it so later messages are sure to match.
    /// Messages that come first (retained ones) are kept for the next reads.
    pub async fn subscribe(&mut self, id: &str, destination: &str) {
        self.subscribe_with(id, destination, &[]).await;
    }

    /// [`Client::subscribe`] with more SUBSCRIBE headers (`ack`, `prefetch-count`).
    pub async fn subscribe_with(&mut self, id: &str, destination: &str, headers: &[(&str, &str)]) {
        let receipt = format!("sub-{id}");
        let mut frame = Frame::new(Command::Subscribe)
            .header("id", id)
            .header("destination", destination)
            .header("receipt", receipt.as_str());
        for (k, v) in headers {
            frame = frame.header(*k, *v);
        }
        self.send(frame).await;
        self.expect_receipt_keeping_messages(&receipt).await;
    }

    /// SEND with a receipt, waiting for it.
    pub async fn publish(&mut self, destination: &str, body: &str) {
        self.send(
            Frame::new(Command::Send)
                .header("destination", destination)
                .header("receipt", "pub")
                .body(body.to_owned()),
        )
        .await;
        self.expect(Command::Receipt).await;
    }

    /// SEND an order (a JSON body) to `/app/trade`, without a receipt.
    pub async fn trade(&mut self, body: &str) {
        self.send(
            Frame::new(Command::Send)
                .header("destination", "/app/trade")
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await;
    }

    /// The next MESSAGE; asserts its destination and returns its body as text.
    pub async fn message_on(&mut self, destination: &str) -> String {
        let m = self.expect(Command::Message).await;
        assert_eq!(m.headers.get("destination"), Some(destination));
        String::from_utf8(m.body.to_vec()).unwrap()
    }
}

/// A PROXY protocol v1 header naming `client` (an IPv4 address) as the source.
pub fn proxy_v1(client: &str, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 61613\r\n").into_bytes()
}

/// A PROXY protocol v2 header (PROXY command, TCP over IPv4) naming `client`.
pub fn proxy_v2(client: &str, port: u16) -> Vec<u8> {
    let ip: std::net::Ipv4Addr = client.parse().unwrap();
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&ip.octets());
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&61613u16.to_be_bytes());
    h
}

/// A STOMP client over TCP at `addr` from loopback address `local`, with
/// `prefix` written first (a PROXY protocol header).
pub async fn tcp_with_prefix(addr: SocketAddr, local: &str, prefix: &[u8]) -> Client {
    let mut s = connect_from(local, addr).await.unwrap();
    s.write_all(prefix).await.unwrap();
    Client::from_tcp(s)
}

/// A `GET path` from loopback address `local`, with `prefix` written first
/// and extra `headers`: (status, body).
pub async fn http_get_from(
    addr: SocketAddr,
    local: &str,
    prefix: &[u8],
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut s = connect_from(local, addr).await.unwrap();
    let mut head = prefix.to_vec();
    head.extend_from_slice(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").as_bytes(),
    );
    for (k, v) in headers {
        head.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    s.write_all(&head).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A TCP connection to `addr` from loopback address `local`.
pub async fn connect_from(local: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(local.parse().unwrap(), 0))?;
    socket.connect(addr).await
}

/// A plain HTTP GET over loopback: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, &[], b"").await
}

/// `POST path` with `headers` and `body` (HTTP/1.1, one request per connection);
/// returns the status and the body.
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    http_request(addr, "POST", path, headers, body).await
}

/// A `method path` request with `headers` and `body` (HTTP/1.1, one request per
/// connection); returns the status and the body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // A refusal may come before the whole body is read; the broker then closes.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of a metric line (first one whose name and labels start with `prefix`).
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The real `stompede` binary running as a child process (for tests that kill it),
/// on ephemeral loopback ports with the test [`USERS`]. Killed when dropped.
pub struct BrokerProcess {
    child: std::process::Child,
    /// The TCP STOMP listener.
    pub stomp_addr: SocketAddr,
    /// The HTTP listener.
    pub http_addr: SocketAddr,
    /// Log lines written so far (JSON).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl BrokerProcess {
    /// Starts the binary with `config_dir/broker.toml` (written here: `extra` TOML
    /// plus the test users) and `env`; returns once it listens.
    pub fn start(config_dir: &std::path::Path, extra: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with_fd_limit(config_dir, extra, env, 0)
    }

    /// As [`BrokerProcess::start`], with the open-file limit (soft and hard) set to
    /// `fd_limit` by the shell that starts it (0: left as it is).
    pub fn start_with_fd_limit(
        config_dir: &std::path::Path,
        extra: &str,
        env: &[(&str, &str)],
        fd_limit: u32,
    ) -> Self {
        use std::io::BufRead;
        let file = config_dir.join("broker.toml");
        std::fs::write(&file, format!("{extra}\n{}", users_toml())).unwrap();
        let mut cmd = std::process::Command::new("sh");
        let ulimit = match fd_limit {
            0 => String::new(),
            n => format!("ulimit -n {n} && "),
        };
        cmd.arg("-c")
            .arg(format!("{ulimit}exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_stompede"))
            .arg("--config")
            .arg(&file)
            .env("STOMPEDE__SERVER__HTTP_ADDR", "127.0.0.1:0")
            .env("STOMPEDE__SERVER__STOMP_ADDR", "127.0.0.1:0")
            .env("STOMPEDE__LOG__FORMAT", "json")
            .env("STOMPEDE__LOG__FILTER", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let fields = &v["fields"];
                    if let (Some(stomp), Some(http)) =
                        (fields["stomp_addr"].as_str(), fields["http_addr"].as_str())
                    {
                        let _ = tx.send((stomp.parse().unwrap(), http.parse().unwrap()));
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut process = BrokerProcess {
            child,
            stomp_addr: "127.0.0.1:1".parse().unwrap(),
            http_addr: "127.0.0.1:1".parse().unwrap(),
            log,
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((stomp, http)) => (process.stomp_addr, process.http_addr) = (stomp, http),
            Err(_) => panic!("broker did not start: {:?}", process.log.lock().unwrap()),
        }
        process
    }

    /// Sends SIGHUP (reload the configuration).
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    /// Sends signal `name` (`TERM`, `INT`, `HUP`).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if it
    /// still runs.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (at most [`TIMEOUT`]) for the `nth` (from 1) log line containing
    /// `text`, and returns it.
    pub async fn log_line(&self, text: &str, nth: usize) -> String {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(line) = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(text))
                .nth(nth - 1)
            {
                return line.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line {nth} with {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: the process dies at once, without any shutdown.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of this test process, in bytes (Linux).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}
