//! Transports: bytes in and out over plain TCP or WebSocket.
//!
//! A connection is split into a [`Reader`] (owned by the session task) and a
//! [`Writer`] (owned by the writer task). Nothing above this module knows which
//! transport a connection uses. This module only moves bytes: accepting
//! connections and starting sessions is [`crate::listen`]'s job.

pub mod metered;
pub mod tls;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

/// A server-side WebSocket over an upgraded HTTP connection, its reads counted.
pub type WsStream = WebSocketStream<metered::Metered<TokioIo<Upgraded>>>;

/// Read buffers start empty and grow to this per read; an idle connection holds none.
const READ_CHUNK: usize = 4096;

/// Largest WebSocket message the writer builds from consecutive frames.
const MAX_WS_BATCH: usize = 64 * 1024;

/// Why reading stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// A WebSocket message was larger than the transport accepts.
    #[error("WebSocket message too large")]
    MessageTooLarge,
    /// The WebSocket protocol was violated.
    #[error("WebSocket protocol error: {0}")]
    WebSocket(String),
}

/// STOMP over TLS over TCP.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// The read half of a connection.
#[derive(Debug)]
pub enum Reader {
    /// Plain TCP.
    Tcp(OwnedReadHalf),
    /// TLS over TCP.
    Tls(tokio::io::ReadHalf<TlsStream>),
    /// WebSocket: text and binary messages both carry STOMP bytes. The progress
    /// counts bytes tungstenite holds in a message it has not finished.
    Ws(SplitStream<WsStream>, Arc<metered::Progress>),
}

/// The write half of a connection.
#[derive(Debug)]
pub enum Writer {
    /// Plain TCP.
    Tcp(OwnedWriteHalf),
    /// TLS over TCP.
    Tls(tokio::io::WriteHalf<TlsStream>),
    /// WebSocket.
    Ws(SplitSink<WsStream, Message>),
}

/// Splits a TCP connection.
pub fn tcp(stream: TcpStream) -> (Reader, Writer) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    (Reader::Tcp(r), Writer::Tcp(w))
}

/// Splits a TLS connection.
pub fn tls(stream: TlsStream) -> (Reader, Writer) {
    let (r, w) = tokio::io::split(stream);
    (Reader::Tls(r), Writer::Tls(w))
}

/// Splits a WebSocket connection whose socket reads are counted in `progress`.
pub fn ws(stream: WsStream, progress: Arc<metered::Progress>) -> (Reader, Writer) {
    let (w, r) = stream.split();
    (Reader::Ws(r, progress), Writer::Ws(w))
}

impl Reader {
    /// What this transport has read and not yet handed on (WebSocket: part of a
    /// message), shared so it can be looked at while a read is under way.
    pub fn progress(&self) -> Option<Arc<metered::Progress>> {
        match self {
            Reader::Tcp(_) | Reader::Tls(_) => None,
            Reader::Ws(_, p) => Some(p.clone()),
        }
    }

    /// Waits for bytes and appends them to `buf`. `Ok(0)` means the peer closed.
    ///
    /// Ping and pong are handled below this call (tungstenite answers pings).
    pub async fn read(&mut self, buf: &mut BytesMut) -> Result<usize, ReadError> {
        match self {
            Reader::Tcp(r) => loop {
                // Wait for readiness before reserving, so an idle connection holds no buffer.
                r.readable().await?;
                buf.reserve(READ_CHUNK);
                match r.try_read_buf(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e.into()),
                }
            },
            // TLS decrypts in records: a read buffer is held while waiting.
            Reader::Tls(r) => {
                buf.reserve(READ_CHUNK);
                Ok(r.read_buf(buf).await?)
            }
            Reader::Ws(r, progress) => loop {
                let next = r.next().await;
                progress.consume_all();
                match next {
                    None => return Ok(0),
                    Some(Ok(Message::Text(t))) => {
                        buf.extend_from_slice(t.as_bytes());
                        if !t.is_empty() {
                            return Ok(t.len());
                        }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        buf.extend_from_slice(&b);
                        if !b.is_empty() {
                            return Ok(b.len());
                        }
                    }
                    Some(Ok(Message::Close(_))) => return Ok(0),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Err(tungstenite::Error::Capacity(_))) => {
                        return Err(ReadError::MessageTooLarge);
                    }
                    Some(Err(tungstenite::Error::Io(e))) => return Err(e.into()),
                    Some(Err(
                        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                    )) => return Ok(0),
                    Some(Err(e)) => return Err(ReadError::WebSocket(e.to_string())),
                }
            },
        }
    }
}

/// Encoded frames waiting to be written together, with their boundaries, so a
/// WebSocket writer can choose text or binary messages.
#[derive(Debug, Default)]
pub struct FrameBatch {
    data: BytesMut,
    /// (length, is UTF-8) of each frame, in order.
    frames: Vec<(usize, bool)>,
}

impl FrameBatch {
    /// Appends one frame produced by `write` into the batch buffer.
    pub fn push(&mut self, is_utf8: bool, write: impl FnOnce(&mut BytesMut)) {
        let before = self.data.len();
        write(&mut self.data);
        self.frames.push((self.data.len() - before, is_utf8));
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Drops what was written and gives back a large buffer, so an idle connection
    /// does not keep a burst's worth of memory.
    fn reset(&mut self) {
        self.frames.clear();
        self.data.clear();
        // Reallocating a burst-sized buffer costs far less than the write it carried.
        if self.data.capacity() > 16 * 1024 {
            self.data = BytesMut::new();
        }
        if self.frames.capacity() > 64 {
            self.frames = Vec::new();
        }
    }
}

impl Writer {
    /// Writes the whole batch and flushes once, then empties it.
    ///
    /// Over WebSocket, consecutive frames of the same kind travel in one message
    /// (text when valid UTF-8, else binary) of at most 64 KiB, or one frame if larger.
    pub async fn write_batch(&mut self, batch: &mut FrameBatch) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => {
                w.write_all(&batch.data).await?;
            }
            Writer::Tls(w) => {
                w.write_all(&batch.data).await?;
                w.flush().await?;
            }
            Writer::Ws(w) => {
                let mut data = std::mem::take(&mut batch.data).freeze();
                let mut i = 0;
                while i < batch.frames.len() {
                    let (mut len, utf8) = batch.frames[i];
                    i += 1;
                    while i < batch.frames.len()
                        && batch.frames[i].1 == utf8
                        && len + batch.frames[i].0 <= MAX_WS_BATCH
                    {
                        len += batch.frames[i].0;
                        i += 1;
                    }
                    let payload = data.split_to(len);
                    w.feed(ws_message(payload, utf8)).await.map_err(ws_io)?;
                }
                w.flush().await.map_err(ws_io)?;
            }
        }
        batch.reset();
        Ok(())
    }

    /// Closes cleanly: a WebSocket close frame with `goodbye`'s code, or a TCP
    /// shutdown.
    pub async fn close(&mut self, goodbye: Goodbye) -> io::Result<()> {
        match self {
            Writer::Tcp(w) => w.shutdown().await,
            Writer::Tls(w) => w.shutdown().await,
            Writer::Ws(w) => {
                let (code, reason) = match goodbye {
                    Goodbye::Normal => (CloseCode::Normal, ""),
                    Goodbye::GoingAway => (CloseCode::Away, ""),
                    Goodbye::Restart => (CloseCode::Restart, "service restart"),
                };
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                };
                // After the peer's close, sending ours fails: tungstenite has queued
                // the reply itself. Closing the sink flushes whichever is pending.
                let sent = w.send(Message::Close(Some(frame))).await;
                let closed = w.close().await;
                match sent.and(closed) {
                    Ok(())
                    | Err(
                        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                    ) => Ok(()),
                    Err(tungstenite::Error::Protocol(_)) => Ok(()),
                    Err(e) => Err(ws_io(e)),
                }
            }
        }
    }
}

/// Why a connection is closed, as a WebSocket close code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goodbye {
    /// 1000: done.
    Normal,
    /// 1001: the broker shuts down.
    GoingAway,
    /// 1012 "service restart": the node drains; reconnect (to another node).
    Restart,
}

fn ws_message(payload: Bytes, utf8: bool) -> Message {
    if utf8 {
        // The clone is a reference count; the check fails only if a frame lied.
        match Utf8Bytes::try_from(payload.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(payload),
        }
    } else {
        Message::Binary(payload)
    }
}

fn ws_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other),
    }
}
