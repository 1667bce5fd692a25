//! Application handlers for `/app/**` destinations: the broker's own code, the
//! way a Spring STOMP application's `@MessageMapping` methods are.
//!
//! A SEND to `/app/...` is never delivered as it is: it goes to the handler
//! registered for its destination (an exact destination, or a pattern such as
//! `/app/chat.*`), with the sender's identity, after the same rights check as
//! any SEND (`[[auth.acl]]`; anonymous sessions never reach a handler). Handlers
//! answer by publishing through the [`Engine`] a backend service uses.
//!
//! A program embedding the broker registers its own handlers with
//! [`crate::server::Builder::app`], which hands each handler's maker an
//! [`AppContext`]; the built-in trading application is registered the same way
//! ([`trading::app`]). `examples/embed.rs` is a small chat handler.

pub mod consumer;
pub mod http;
pub mod market;
pub mod routes;
pub mod trading;

use crate::auth::Role;
use crate::command;
use crate::destination::pattern::{is_pattern_in, matches_in};
use crate::engine::Engine;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The destinations application handlers serve.
const APP: &str = "/app/";

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

/// A handler for `/app/...` destinations.
///
/// `handle` runs on the sender's session task: it must not block. Work that
/// takes time goes to a task of the handler's own ([`AppContext::spawn`]),
/// reached through a bounded channel, as the trading app's market is. A panic
/// ends the sender's session with an ERROR (`internal error in the handler`)
/// and nothing else.
pub trait AppHandler: Send + Sync + std::fmt::Debug {
    /// Handles one SEND. Problems with the request itself are the handler's to
    /// answer (for example on the sender's `/user/queue/errors`); the session
    /// stays open.
    fn handle(&self, sender: Sender<'_>, send: &command::Send);
}

/// What a handler's maker is given when the broker starts: the engine to
/// publish through, and a place for the handler's background tasks, which the
/// broker stops and waits for at shutdown.
#[derive(Debug, Clone)]
pub struct AppContext {
    engine: Arc<dyn Engine>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// The broker's session ids, for in-process consumers.
    session_ids: Arc<AtomicU64>,
}

impl AppContext {
    /// A context over `engine`, whose tasks run on `tasks` until `shutdown`.
    pub(crate) fn new(
        engine: Arc<dyn Engine>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        session_ids: Arc<AtomicU64>,
    ) -> AppContext {
        AppContext {
            engine,
            shutdown,
            tasks,
            session_ids,
        }
    }

    /// Consumes `/queue/{queue}` in this process, with at most `prefetch`
    /// unacked deliveries, competing with every other consumer of it.
    pub async fn consume(
        &self,
        queue: &str,
        prefetch: usize,
    ) -> Result<consumer::QueueConsumer, crate::queue::QueueError> {
        let handle = self.engine.queue(queue)?;
        let session = self.session_ids.fetch_add(1, Ordering::Relaxed);
        Ok(consumer::QueueConsumer::start(handle, session, prefetch).await)
    }

    /// The engine: publish to topics ([`Engine::publish_topic`]) and to users'
    /// destinations ([`Engine::publish_user`]), as a backend service would.
    pub fn engine(&self) -> Arc<dyn Engine> {
        self.engine.clone()
    }

    /// Cancelled when the broker shuts down: a background task ends then.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs `task` for the handler; the broker waits for it at shutdown (so it
    /// must end soon after [`AppContext::shutdown`] is cancelled).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }
}

/// Makes a handler once the broker's engine exists.
pub type AppMaker = Box<dyn FnOnce(&AppContext) -> Arc<dyn AppHandler> + Send>;

/// Starts a service of the broker's own that has no destination (its work
/// comes through a queue route), once the engine exists.
pub type ServiceMaker = Box<dyn FnOnce(&AppContext) + Send>;

/// What a broker starts beside its engine: handlers by destination, and
/// services.
#[derive(Default)]
pub struct AppSpecs {
    /// Handlers, by `/app/...` destination or pattern.
    pub handlers: Vec<(String, AppMaker)>,
    /// Services.
    pub services: Vec<ServiceMaker>,
}

impl std::fmt::Debug for AppSpecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSpecs")
            .field(
                "handlers",
                &self.handlers.iter().map(|(d, _)| d).collect::<Vec<_>>(),
            )
            .field("services", &self.services.len())
            .finish()
    }
}

/// Handlers by destination: exact destinations first, then patterns in the
/// order they were registered.
#[derive(Debug, Default, Clone)]
pub struct Apps {
    exact: HashMap<String, Arc<dyn AppHandler>>,
    patterns: Vec<(String, Arc<dyn AppHandler>)>,
}

/// Why a handler could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// Not an `/app/...` destination or pattern.
    #[error("{0:?} is not an /app/ destination or pattern")]
    NotApp(String),
    /// Another handler has that destination or pattern.
    #[error("{0:?} has a handler already")]
    Taken(String),
}

/// Checks that `destinations` can all be registered together: each an
/// `/app/...` destination or pattern, none twice.
pub fn check_destinations<'a>(
    destinations: impl IntoIterator<Item = &'a str>,
) -> Result<(), AppError> {
    let mut seen = std::collections::HashSet::new();
    for d in destinations {
        if d.len() <= APP.len() || !d.starts_with(APP) {
            return Err(AppError::NotApp(d.to_owned()));
        }
        if !seen.insert(d) {
            return Err(AppError::Taken(d.to_owned()));
        }
    }
    Ok(())
}

impl Apps {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `destination`: a full `/app/...` destination, or
    /// a pattern whose dot-separated words may be `*` (one word) or `#` (any).
    pub fn register(
        &mut self,
        destination: &str,
        handler: Arc<dyn AppHandler>,
    ) -> Result<(), AppError> {
        let registered = self
            .exact
            .keys()
            .map(String::as_str)
            .chain(self.patterns.iter().map(|(p, _)| p.as_str()));
        check_destinations(registered.chain([destination]))?;
        if is_pattern_in(APP, destination) {
            self.patterns.push((destination.to_owned(), handler));
        } else {
            self.exact.insert(destination.to_owned(), handler);
        }
        Ok(())
    }

    /// The handler for `destination`.
    pub fn get(&self, destination: &str) -> Option<&Arc<dyn AppHandler>> {
        self.exact.get(destination).or_else(|| {
            self.patterns
                .iter()
                .find(|(p, _)| matches_in(APP, p, destination))
                .map(|(_, h)| h)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Handler;

    impl AppHandler for Handler {
        fn handle(&self, _: Sender<'_>, _: &command::Send) {}
    }

    fn handler() -> Arc<dyn AppHandler> {
        Arc::new(Handler)
    }

    fn is(apps: &Apps, destination: &str, handler: &Arc<dyn AppHandler>) -> bool {
        apps.get(destination)
            .is_some_and(|h| Arc::ptr_eq(h, handler))
    }

    #[test]
    fn exact_destinations_win_then_patterns_in_order() {
        let (rooms, lobby, rest) = (handler(), handler(), handler());
        let mut apps = Apps::new();
        apps.register("/app/chat.*", rooms.clone()).unwrap();
        apps.register("/app/chat.lobby", lobby.clone()).unwrap();
        apps.register("/app/#", rest.clone()).unwrap();
        assert!(is(&apps, "/app/chat.lobby", &lobby));
        assert!(is(&apps, "/app/chat.room1", &rooms));
        assert!(is(&apps, "/app/chat.room1.x", &rest));
        assert!(apps.get("/topic/chat.room1").is_none());
        assert_eq!(
            apps.register("/app/#", handler()),
            Err(AppError::Taken("/app/#".into()))
        );
        for bad in ["/topic/x", "/app/", "/apps/x"] {
            assert_eq!(
                apps.register(bad, handler()),
                Err(AppError::NotApp(bad.into()))
            );
        }
    }
}
