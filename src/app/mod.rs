//! Application handlers for `/app/**` destinations.
//!
//! A SEND to `/app/NAME` is never delivered as-is: it goes to the handler
//! registered for that destination, with the sender's identity. Handlers answer by
//! publishing through the same [`Engine`](crate::engine::Engine) a backend service uses.

pub mod trading;

use crate::auth::Role;
use crate::command;
use std::collections::HashMap;
use std::sync::Arc;

/// Who sent a frame to an application handler. Always an authenticated login: the
/// rights check refuses anonymous SENDs before a handler sees them.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// The session's login.
    pub login: &'a str,
    /// Its roles.
    pub roles: &'a [Role],
    /// The session id, for logs.
    pub session: u64,
}

/// A handler for one `/app/...` destination.
pub trait AppHandler: Send + Sync + std::fmt::Debug {
    /// Handles one SEND. Problems with the request itself are the handler's to
    /// answer (for example on the sender's `/user/queue/errors`); the session stays open.
    fn handle(&self, sender: Sender<'_>, send: &command::Send);
}

/// Handlers by destination.
#[derive(Debug, Default, Clone)]
pub struct Apps {
    handlers: HashMap<String, Arc<dyn AppHandler>>,
}

impl Apps {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `destination` (a full `/app/...` destination).
    pub fn register(&mut self, destination: &str, handler: Arc<dyn AppHandler>) {
        self.handlers.insert(destination.to_owned(), handler);
    }

    /// The handler for `destination`.
    pub fn get(&self, destination: &str) -> Option<&Arc<dyn AppHandler>> {
        self.handlers.get(destination)
    }
}
