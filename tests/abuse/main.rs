//! Attacks on the broker, one module per family of attack (issue: hostile anonymous
//! clients). Every test runs the attack against a real broker over loopback and shows
//! that it is refused with an ERROR naming the limit, and that other clients keep
//! being served while it runs.

// A panic in a test is a failed test, not a crashed broker.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod connections;
mod frames;
mod partial;
mod queues;
mod routing;
mod transactions;
