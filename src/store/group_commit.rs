//! The store's writer thread: group commits.

use super::{Op, Storage, StoreError, Waiter};
use crate::metrics::Metrics;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Most operations in one commit, so that one commit's memory and time stay bounded.
pub(super) const MAX_BATCH: usize = 8192;

/// One group commit being gathered.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) puts: Vec<(u64, Vec<u8>)>,
    pub(super) deletes: Vec<u64>,
    waiters: Vec<Waiter>,
    close: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Batch {
    fn take(&mut self, op: Op) {
        match op {
            Op::Put { key, record } => self.puts.push((key, record)),
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
pub(super) fn run(
    mut storage: Box<dyn Storage>,
    mut rx: mpsc::UnboundedReceiver<Op>,
    metrics: Arc<Metrics>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = Batch::default();
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
        let result = if writes == 0 {
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
            Err(e) => tracing::error!(error = %e, writes, "queue store commit failed"),
        }
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

    #[test]
    fn a_message_acked_within_its_commit_is_never_written() {
        let mut b = Batch::default();
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
