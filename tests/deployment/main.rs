//! Deployed as companies run brokers: behind proxies that name their clients
//! (PROXY protocol, `Forwarded`, `X-Forwarded-For`), with an operators'
//! listener outside the client limits, and draining for rolling restarts.

#[path = "../common/mod.rs"]
mod common;

mod drain;
mod ops;
mod proxies;
