//! Counts the bytes read from a WebSocket's socket, so the session can see bytes
//! that tungstenite holds in a message it has not finished (it yields only whole
//! messages). Without this, a WebSocket message that never finishes would hold
//! memory where no limit could see it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from a socket, and how many of them the reader has handed on.
#[derive(Debug, Default)]
pub struct Progress {
    received: AtomicU64,
    consumed: AtomicU64,
}

impl Progress {
    /// Bytes read from the socket and not yet handed on in a whole message. Bytes
    /// read ahead past a message's end count as handed on (at most one read).
    pub fn unconsumed(&self) -> usize {
        let received = self.received.load(Ordering::Acquire);
        let consumed = self.consumed.load(Ordering::Acquire);
        usize::try_from(received.saturating_sub(consumed)).unwrap_or(usize::MAX)
    }

    /// Marks everything read so far as handed on.
    pub fn consume_all(&self) {
        let received = self.received.load(Ordering::Acquire);
        self.consumed.store(received, Ordering::Release);
    }
}

/// An I/O stream that counts what is read from it into a shared [`Progress`].
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    progress: Arc<Progress>,
}

impl<S> Metered<S> {
    /// Wraps `inner`; its reads are counted in `progress`.
    pub fn new(inner: S, progress: Arc<Progress>) -> Self {
        Metered { inner, progress }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            self.progress
                .received
                .fetch_add(read as u64, Ordering::AcqRel);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
