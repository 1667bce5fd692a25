//! stompede: a STOMP 1.0/1.1/1.2 message broker over WebSocket and TCP.
//!
//! The library holds the broker's internals so that integration tests, benchmarks
//! and the load generator can use them; the `stompede` binary is a thin front end.
//! Data flows transport → session → router → destination → subscriber writer:
//!
//! - [`transport`]: bytes in and out, TCP or WebSocket;
//! - [`codec`]: bytes ⇄ frames;
//! - [`session`]: one task per connection, acting on frames;
//! - [`router`] and [`registry`]: who gets a published message;
//! - [`outbox`] and [`writer`]: bounded per-connection queue and its writer task.

#![deny(missing_docs)]

pub mod admission;
pub mod app;
pub mod auth;
pub mod broker;
pub mod codec;
pub mod command;
pub mod config;
pub mod destination;
pub mod engine;
pub mod listen;
pub mod metrics;
pub mod outbox;
pub mod queue;
pub mod registry;
pub mod server;
pub mod session;
pub mod store;
pub mod transport;
pub mod writer;
