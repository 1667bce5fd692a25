//! The store's writer thread: group commits.

use super::{Op, Storage, StoreError, Waiter};
use crate::metrics::Metrics;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::mpsc;

/// Most operations in one commit, so that one commit's memory and time stay bounded.
pub(super) const MAX_BATCH: usize = 8192;

/// What the writer thread shares with the store's handles.
pub(super) struct Writer {
    /// Set when a commit fails; the store is then fail-stop.
    pub(super) failed: Arc<OnceLock<StoreError>>,
    /// Bytes of records waiting: the thread takes off what it has written.
    pub(super) pending: Arc<AtomicUsize>,
    pub(super) metrics: Arc<Metrics>,
}

/// One group commit being gathered.
#[derive(Default)]
pub(super) struct WriteBatch {
    pub(super) puts: Vec<(u64, Vec<u8>)>,
    /// Bytes of the records taken, cancelled ones included.
    taken_bytes: usize,
    pub(super) deletes: Vec<u64>,
    waiters: Vec<Waiter>,
    close: Option<tokio::sync::oneshot::Sender<()>>,
}

impl WriteBatch {
    fn take(&mut self, op: Op) {
        match op {
            Op::Put { key, record } => {
                self.taken_bytes += record.len();
                self.puts.push((key, record));
            }
            Op::Delete(key) => self.deletes.push(key),
            Op::Wait(w) => self.waiters.push(w),
            Op::Close(done) => self.close = Some(done),
        }
    }

    fn len(&self) -> usize {
        self.puts.len() + self.deletes.len() + self.waiters.len()
    }

    /// Drops puts deleted within the same batch, and their deletes: such a message
    /// was acked before it had to be durable, so it never needs to reach the disk.
    pub(super) fn cancel_short_lived(&mut self) {
        if self.puts.is_empty() || self.deletes.is_empty() {
            return;
        }
        let mut put: HashSet<u64> = self.puts.iter().map(|(k, _)| *k).collect();
        let mut gone = HashSet::new();
        self.deletes.retain(|k| {
            if put.remove(k) {
                gone.insert(*k);
                false
            } else {
                true
            }
        });
        if !gone.is_empty() {
            self.puts.retain(|(k, _)| !gone.contains(k));
        }
    }
}

/// Runs until the store is closed or every handle is gone.
///
/// Fail-stop: after one failed commit, `failed` is set and nothing more is written;
/// every later waiter gets that error. A waiter cannot be told `Ok` safely once any
/// earlier operation may be missing (its operations may have gone into the failed
/// batch while it landed in the next one), and the operator is better served by a
/// broker that says so (`/readyz`) than by one that half works.
pub(super) fn run(
    mut storage: Box<dyn Storage>,
    mut rx: mpsc::UnboundedReceiver<Op>,
    writer: Writer,
) {
    let Writer {
        failed,
        pending,
        metrics,
    } = writer;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = WriteBatch::default();
        batch.take(first);
        // Everything that arrived while the last commit was on its way to disk.
        while batch.close.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.take(op),
                Err(_) => break,
            }
        }
        batch.cancel_short_lived();
        let writes = batch.puts.len() + batch.deletes.len();
        let result = if let Some(e) = failed.get() {
            Err(e.clone())
        } else if writes == 0 {
            Ok(())
        } else {
            let started = Instant::now();
            let r = storage.commit(&batch.puts, &batch.deletes);
            metrics
                .store_commit_seconds
                .record(started.elapsed().as_secs_f64());
            metrics.store_commits.increment(1);
            r
        };
        match &result {
            Ok(()) => {
                metrics.store_writes.increment(writes as u64);
                metrics.stored_messages.increment(batch.puts.len() as f64);
                metrics
                    .stored_messages
                    .decrement(batch.deletes.len() as f64);
            }
            Err(e) => {
                if failed.set(e.clone()).is_ok() {
                    metrics.store_failed.set(1.0);
                    tracing::error!(error = %e, writes, "queue store commit failed; storing no more until restart");
                }
            }
        }
        pending.fetch_sub(batch.taken_bytes, Ordering::AcqRel);
        for w in batch.waiters {
            w(result.clone());
        }
        if let Some(done) = batch.close {
            drop(storage);
            rx.close();
            // Anyone who raced the close learns that the store is gone.
            while let Ok(op) = rx.try_recv() {
                if let Op::Wait(w) = op {
                    w(Err(StoreError::Closed));
                }
            }
            let _ = done.send(());
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::sync::Mutex;
    use std::sync::mpsc as std_mpsc;

    /// Keys put and keys deleted, per commit.
    type Commits = Arc<Mutex<Vec<(Vec<u64>, Vec<u64>)>>>;

    /// Records each commit; fails every commit while `fail` is set.
    struct Fake {
        commits: Commits,
        fail: Arc<Mutex<bool>>,
    }

    impl Storage for Fake {
        fn recover(&mut self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
            Ok(vec![(41, b"not a record".to_vec())])
        }
        fn commit(&mut self, puts: &[(u64, Vec<u8>)], deletes: &[u64]) -> Result<(), StoreError> {
            if *self.fail.lock().expect("lock") {
                return Err(StoreError::Write("disk full".to_owned()));
            }
            let keys = puts.iter().map(|(k, _)| *k).collect();
            self.commits
                .lock()
                .expect("lock")
                .push((keys, deletes.to_vec()));
            Ok(())
        }
    }

    fn waiter(tx: &std_mpsc::Sender<Result<(), StoreError>>) -> Waiter {
        let tx = tx.clone();
        Box::new(move |r| {
            let _ = tx.send(r);
        })
    }

    #[tokio::test]
    async fn waiters_hear_after_their_commit_and_failures_reach_them() {
        let commits = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(Mutex::new(false));
        let fake = Fake {
            commits: commits.clone(),
            fail: fail.clone(),
        };
        let (store, recovered) =
            Store::start(Box::new(fake), Arc::new(Metrics::new()), usize::MAX).expect("starts");
        // An unreadable record is skipped, but keys continue after it.
        assert!(recovered.is_empty());
        assert_eq!(store.next_key(), 42);
        let (tx, rx) = std_mpsc::channel();
        store.put(42, vec![1]);
        store.when_durable(waiter(&tx));
        let wait = std::time::Duration::from_secs(5);
        assert_eq!(rx.recv_timeout(wait).expect("answered"), Ok(()));
        assert_eq!(
            commits.lock().expect("lock").last(),
            Some(&(vec![42], vec![]))
        );

        *fail.lock().expect("lock") = true;
        store.delete(42);
        store.when_durable(waiter(&tx));
        let full = Err(StoreError::Write("disk full".to_owned()));
        assert_eq!(rx.recv_timeout(wait).expect("answered"), full);
        assert_eq!(store.failure(), full.clone().err());

        // Fail-stop: once a commit failed, nothing is durable any more, even when
        // the disk recovers, and waiters with nothing of their own to write hear so.
        *fail.lock().expect("lock") = false;
        store.put(43, vec![2]);
        store.when_durable(waiter(&tx));
        assert_eq!(rx.recv_timeout(wait).expect("answered"), full);
        store.when_durable(waiter(&tx));
        assert_eq!(rx.recv_timeout(wait).expect("answered"), full);
        assert_eq!(commits.lock().expect("lock").len(), 1);

        store.close().await;
        store.when_durable(waiter(&tx));
        assert_eq!(
            rx.recv_timeout(wait).expect("answered"),
            Err(StoreError::Closed)
        );
    }

    #[test]
    fn a_message_acked_within_its_commit_is_never_written() {
        let mut b = WriteBatch::default();
        b.take(Op::Put {
            key: 1,
            record: vec![1],
        });
        b.take(Op::Put {
            key: 2,
            record: vec![2],
        });
        b.take(Op::Delete(1));
        b.take(Op::Delete(7));
        b.cancel_short_lived();
        assert_eq!(b.puts, vec![(2, vec![2])]);
        assert_eq!(b.deletes, vec![7]);
    }
}
