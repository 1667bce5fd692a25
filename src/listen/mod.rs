//! The listeners: accept loops for HTTP (WebSocket STOMP at `/ws`, metrics,
//! health, the page) and for STOMP over TCP, plain or TLS.
//!
//! An accepted socket is admitted (per-address and global connection limits),
//! wrapped by [`crate::transport`] into a reader and a writer, and handed to a new
//! [`crate::session`] task. The loops never die: accept errors are logged and
//! retried after a pause.

pub mod http;
pub mod tcp;
pub mod web;
