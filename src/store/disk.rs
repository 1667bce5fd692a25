//! The embedded default [`Storage`]: one redb file, `queues.redb`, under `store.path`.
//!
//! redb was chosen over fjall for this append-then-delete workload (figures and
//! reasons in docs/architecture.md): deleted records free pages that later commits
//! reuse, so the file is bounded by the deepest the queues have been; reopening
//! needs no log replay; and it runs no background threads. redb also locks the file,
//! so two brokers cannot share one store.

use super::{Storage, StoreError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

/// Stored records by key; a key is a message's place in the store's global order.
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");

/// Queue messages in a redb file.
#[derive(Debug)]
pub struct RedbStorage {
    db: Database,
}

impl RedbStorage {
    /// Opens (or creates) `dir/queues.redb`, creating `dir` if needed, caching at
    /// most `cache_bytes` of its pages in memory (`store.cache_bytes`; redb's own
    /// default is 1 GiB).
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<RedbStorage, StoreError> {
        let file = dir.join("queues.redb");
        let fail = |reason: String| StoreError::Open {
            path: file.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&file)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    fail("it is in use by another broker".to_owned())
                }
                e => fail(e.to_string()),
            })?;
        Ok(RedbStorage { db })
    }
}

fn write_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Write(e.to_string())
}

impl Storage for RedbStorage {
    fn recover(&mut self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let read = self.db.begin_read().map_err(write_error)?;
        let table = match read.open_table(MESSAGES) {
            Ok(t) => t,
            // A new store: nothing written yet.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(write_error(e)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(write_error)? {
            let (k, v) = entry.map_err(write_error)?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn commit(&mut self, puts: &[(u64, Vec<u8>)], deletes: &[u64]) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(write_error)?;
        // Immediate: the commit returns only once the data is on disk (fsync).
        tx.set_durability(Durability::Immediate)
            .map_err(write_error)?;
        {
            let mut table = tx.open_table(MESSAGES).map_err(write_error)?;
            for (k, v) in puts {
                table.insert(k, v.as_slice()).map_err(write_error)?;
            }
            for k in deletes {
                table.remove(k).map_err(write_error)?;
            }
        }
        tx.commit().map_err(write_error)
    }
}
