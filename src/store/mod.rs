//! Durable storage for queue messages.
//!
//! Queue actors keep their messages in memory and, for durable ones, tell the
//! store: put this record, delete that one, tell me when what I asked is on disk.
//! One thread owns the [`Storage`] and writes in group commits: it takes every
//! operation that is waiting, writes them in one transaction with one fsync, then
//! answers everyone who was waiting on them. Under load a commit carries many
//! messages, so an fsync per commit does not cap throughput at an fsync per message.
//!
//! A message put and deleted within the same group commit (delivered and acked
//! quickly) is never written at all.

mod disk;
mod group_commit;
mod record;

pub use disk::RedbStorage;
pub use record::Record;

use crate::metrics::Metrics;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Why the store failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum StoreError {
    /// The store could not be opened at start-up.
    #[error("cannot open the queue store {path} (store.path): {reason}")]
    Open {
        /// The store's file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Writing (or reading back) failed; what was being written is not durable.
    #[error("the queue store failed: {0}")]
    Write(String),
    /// The store has been closed (shutdown).
    #[error("the queue store is closed")]
    Closed,
}

/// Where durable messages live. Implementations need not be thread-safe: one
/// thread owns the storage and calls it.
pub trait Storage: Send + 'static {
    /// Every record held, in key order.
    fn recover(&mut self) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    /// Writes `puts` and removes `deletes` as one commit that is durable when this
    /// returns `Ok`.
    fn commit(&mut self, puts: &[(u64, Vec<u8>)], deletes: &[u64]) -> Result<(), StoreError>;
}

/// Called once the operations before it are durable (or have failed).
pub type Waiter = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

enum Op {
    Put { key: u64, record: Vec<u8> },
    Delete(u64),
    Wait(Waiter),
    Close(oneshot::Sender<()>),
}

/// A handle to the store's writer thread. Cheap to clone; operations from one
/// handle are applied in the order they were made.
///
/// The channel to the thread counts the bytes of records waiting in it
/// (`pending`): topic history, which a publisher never waits for, is not written
/// past `store.max_pending_bytes` ([`Store::put_if_room`], shed and counted).
/// Queue records always go (a receipt promises them): what bounds those is the
/// queues' own bounds, since every waiting record is a message its queue holds.
/// Deletes and waiters are a few bytes each, one per ack or pending answer.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::UnboundedSender<Op>,
    /// Bytes of records sent to the writer thread and not yet committed.
    pending: Arc<AtomicUsize>,
    /// `store.max_pending_bytes`.
    max_pending: usize,
    next_key: Arc<AtomicU64>,
    /// Set by the writer thread when a commit fails; the store is then fail-stop.
    failed: Arc<OnceLock<StoreError>>,
    /// Counts records [`Store::put_if_room`] did not write.
    shed: metrics::Counter,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("next_key", &self.next_key)
            .finish()
    }
}

/// A message read back from the store at start-up.
#[derive(Debug)]
pub struct Recovered {
    /// Its key, to delete it once acked.
    pub key: u64,
    /// The message.
    pub record: Record,
}

impl Store {
    /// Reads back what `storage` holds and starts the writer thread. Records that
    /// cannot be decoded are logged and left in place.
    pub fn start(
        mut storage: Box<dyn Storage>,
        metrics: Arc<Metrics>,
        max_pending: usize,
    ) -> Result<(Store, Vec<Recovered>), StoreError> {
        let held = storage.recover()?;
        let next_key = held.last().map(|(k, _)| k + 1).unwrap_or(1);
        let mut recovered = Vec::with_capacity(held.len());
        for (key, bytes) in held {
            match Record::decode(&bytes) {
                Ok(record) => recovered.push(Recovered { key, record }),
                Err(e) => tracing::error!(key, error = %e, "skipping unreadable stored message"),
            }
        }
        metrics.stored_messages.set(recovered.len() as f64);
        // Unbounded in items, bounded in bytes as the `Store` doc says
        // (`store.max_pending_bytes` for history; queue records by the queues).
        let (tx, rx) = mpsc::unbounded_channel();
        let failed = Arc::new(OnceLock::new());
        let pending = Arc::new(AtomicUsize::new(0));
        let writer = group_commit::Writer {
            failed: failed.clone(),
            pending: pending.clone(),
            metrics: metrics.clone(),
        };
        let shed = metrics.store_shed.clone();
        std::thread::Builder::new()
            .name("stompede-store".to_owned())
            .spawn(move || group_commit::run(storage, rx, writer))
            .map_err(|e| StoreError::Open {
                path: String::new(),
                reason: format!("cannot start the store thread: {e}"),
            })?;
        let store = Store {
            tx,
            pending,
            max_pending,
            shed,
            next_key: Arc::new(AtomicU64::new(next_key)),
            failed,
        };
        Ok((store, recovered))
    }

    /// The error of the commit that failed, if one has: from then on the store
    /// writes nothing and answers every waiter with it.
    pub fn failure(&self) -> Option<StoreError> {
        self.failed.get().cloned()
    }

    /// A key for a new record: keys only grow, so key order is arrival order.
    pub fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Writes a record (a queue's: always, however much is pending).
    pub fn put(&self, key: u64, record: Vec<u8>) {
        self.pending.fetch_add(record.len(), Ordering::AcqRel);
        if let Err(mpsc::error::SendError(Op::Put { record, .. })) =
            self.tx.send(Op::Put { key, record })
        {
            self.pending.fetch_sub(record.len(), Ordering::AcqRel);
        }
    }

    /// Writes a record that may be lost (topic history, kept in memory anyway),
    /// unless `store.max_pending_bytes` are waiting for the disk already: then it
    /// is not written, counted in `stompede_store_shed_total`, and false.
    pub fn put_if_room(&self, key: u64, record: Vec<u8>) -> bool {
        let before = self.pending.fetch_add(record.len(), Ordering::AcqRel);
        if before > 0 && before + record.len() > self.max_pending {
            self.pending.fetch_sub(record.len(), Ordering::AcqRel);
            self.shed.increment(1);
            return false;
        }
        if let Err(mpsc::error::SendError(Op::Put { record, .. })) =
            self.tx.send(Op::Put { key, record })
        {
            self.pending.fetch_sub(record.len(), Ordering::AcqRel);
        }
        true
    }

    /// Bytes of records waiting for the disk.
    pub fn pending_bytes(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Deletes a record.
    pub fn delete(&self, key: u64) {
        let _ = self.tx.send(Op::Delete(key));
    }

    /// Calls `waiter` once every operation made before this call is durable.
    pub fn when_durable(&self, waiter: Waiter) {
        if let Err(mpsc::error::SendError(Op::Wait(waiter))) = self.tx.send(Op::Wait(waiter)) {
            waiter(Err(StoreError::Closed));
        }
    }

    /// Writes what is pending, closes the storage (releasing its file) and stops
    /// the writer thread. Later operations fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.tx.send(Op::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}
