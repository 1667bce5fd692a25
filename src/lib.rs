//! stompede: a STOMP 1.0/1.1/1.2 message broker over WebSocket and TCP.
//!
//! The `stompede` binary is a thin front end over [`server::start`]. Data flows
//! one way: listen → transport → session → engine → registry or queue → outbox →
//! writer (docs/architecture.md has the diagram; `tests/layers.rs` checks that no
//! module uses one above it).
//!
//! The public surface is what a program embedding or testing the broker needs:
//!
//! - [`server`]: start a broker from a [`config::Config`] (with your own `/app`
//!   handlers: [`server::Builder`]) and shut it down;
//! - [`app`]: application handlers for `/app/**` ([`app::AppHandler`]);
//! - [`config`]: the configuration (broker.toml and `STOMPEDE__` variables);
//! - [`codec`]: STOMP frames to and from bytes, for clients and load generators;
//! - [`command`]: frames checked into typed client commands;
//! - [`engine`]: the seam a cluster engine implements;
//! - [`broker`]: the state shared by a running broker's connections;
//! - [`drain`]: how a node leaves its load balancer's pool;
//! - [`auth`]: password hashes (`stompede hash-password`) and tokens.
//!
//! Everything else is internal to the crate.

#![deny(missing_docs)]

pub(crate) mod admission;
pub mod app;
pub mod auth;
pub mod broker;
pub mod codec;
pub mod command;
pub mod config;
pub(crate) mod destination;
pub mod drain;
pub mod engine;
pub(crate) mod listen;
pub mod metrics;
pub(crate) mod outbox;
pub(crate) mod queue;
pub(crate) mod registry;
pub mod server;
pub(crate) mod session;
pub(crate) mod store;
pub(crate) mod transport;
pub(crate) mod writer;
