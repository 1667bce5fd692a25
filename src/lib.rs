//! stompede: a STOMP 1.0/1.1/1.2 message broker over WebSocket and TCP.
//!
//! The library holds the broker's internals so that integration tests, benchmarks
//! and the load generator can use them; the `stompede` binary is a thin front end.
//! Data flows transport → session → router → destination → subscriber writer; the
//! [`codec`] is the first and last step of that path.

#![deny(missing_docs)]

pub mod codec;
