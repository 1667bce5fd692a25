//! Compares redb and fjall on the durable-queue workload: messages are appended,
//! kept while a consumer works, then deleted. Every batch is one group commit
//! that must be on disk (fsync) before its senders get their receipts.
//!
//! Run: `cargo run --release --manifest-path benches/store-compare/Cargo.toml`
//! (optional args: messages, body bytes, depth). Writes under a temporary directory.

use redb::{ReadableDatabase, ReadableTable};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One store under test.
trait Store {
    fn name(&self) -> &'static str;
    /// Writes `puts` and deletes `deletes` in one durable (fsynced) commit.
    fn commit(&mut self, puts: &[(u64, Vec<u8>)], deletes: &[u64]);
    /// Bytes the store occupies on disk.
    fn disk_bytes(&self) -> u64;
}

/// Reopens a store and counts what it holds; returns (count, time taken).
type Reopen = fn(&Path) -> (usize, Duration);

struct Redb {
    db: redb::Database,
    dir: PathBuf,
}

const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("messages");

impl Redb {
    fn open(dir: &Path) -> Redb {
        std::fs::create_dir_all(dir).expect("dir");
        let db = redb::Database::create(dir.join("queues.redb")).expect("open redb");
        Redb {
            db,
            dir: dir.to_owned(),
        }
    }

    fn reopen(dir: &Path) -> (usize, Duration) {
        let start = Instant::now();
        let db = redb::Database::create(dir.join("queues.redb")).expect("open redb");
        let read = db.begin_read().expect("read");
        let table = read.open_table(TABLE).expect("table");
        let n = table.iter().expect("iter").count();
        (n, start.elapsed())
    }
}

impl Store for Redb {
    fn name(&self) -> &'static str {
        "redb 4.5"
    }
    fn commit(&mut self, puts: &[(u64, Vec<u8>)], deletes: &[u64]) {
        let tx = self.db.begin_write().expect("begin");
        {
            let mut t = tx.open_table(TABLE).expect("table");
            for (k, v) in puts {
                t.insert(k, v.as_slice()).expect("insert");
            }
            for k in deletes {
                t.remove(k).expect("remove");
            }
        }
        tx.commit().expect("commit");
    }
    fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.dir)
    }
}

struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
    dir: PathBuf,
}

impl Fjall {
    fn open(dir: &Path) -> Fjall {
        let db = fjall::Database::builder(dir).open().expect("open fjall");
        let ks = db
            .keyspace("messages", fjall::KeyspaceCreateOptions::default)
            .expect("keyspace");
        Fjall {
            db,
            ks,
            dir: dir.to_owned(),
        }
    }

    fn reopen(dir: &Path) -> (usize, Duration) {
        let start = Instant::now();
        let s = Fjall::open(dir);
        let n = s.ks.iter().count();
        (n, start.elapsed())
    }
}

impl Store for Fjall {
    fn name(&self) -> &'static str {
        "fjall 3.1"
    }
    fn commit(&mut self, puts: &[(u64, Vec<u8>)], deletes: &[u64]) {
        let mut b = self.db.batch();
        for (k, v) in puts {
            b.insert(&self.ks, k.to_be_bytes(), v.as_slice());
        }
        for k in deletes {
            b.remove(&self.ks, k.to_be_bytes());
        }
        b.commit().expect("commit");
        self.db.persist(fjall::PersistMode::SyncAll).expect("persist");
    }
    fn disk_bytes(&self) -> u64 {
        dir_bytes(&self.dir)
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            total += if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                meta.len()
            };
        }
    }
    total
}

/// Appends `messages` in batches of `batch`, deleting each message once `depth`
/// newer ones exist (a consumer acking behind the producers). Returns messages/s.
fn run(store: &mut dyn Store, messages: u64, batch: u64, body: usize, depth: u64) -> f64 {
    let value = vec![0x5a_u8; body];
    let start = Instant::now();
    let mut next = 0;
    while next < messages {
        let end = (next + batch).min(messages);
        let puts: Vec<(u64, Vec<u8>)> = (next..end).map(|k| (k, value.clone())).collect();
        let deletes: Vec<u64> = (next.saturating_sub(depth)..end.saturating_sub(depth)).collect();
        store.commit(&puts, &deletes);
        next = end;
    }
    // Drain what is left, as the consumer catches up.
    let rest: Vec<u64> = (messages.saturating_sub(depth)..messages).collect();
    for chunk in rest.chunks(batch as usize) {
        store.commit(&[], chunk);
    }
    messages as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let messages = args.first().copied().unwrap_or(100_000);
    let body = args.get(1).copied().unwrap_or(256) as usize;
    let depth = args.get(2).copied().unwrap_or(1_000);
    let root = std::env::temp_dir().join(format!("store-compare-{}", std::process::id()));
    println!("{messages} messages of {body} B, consumer {depth} behind; fsync per commit");
    println!("store      batch  msg/s     disk after  reopen+scan (left)");
    for batch in [1_u64, 16, 128] {
        // Batch 1 fsyncs once per message: fewer messages keep the run short.
        let n = if batch == 1 { messages / 50 } else { messages };
        let openers: [(fn(&Path) -> Box<dyn Store>, Reopen); 2] = [
            (|d| Box::new(Redb::open(d)), Redb::reopen),
            (|d| Box::new(Fjall::open(d)), Fjall::reopen),
        ];
        for (open, reopen) in openers {
            let dir = root.join(format!("b{batch}-{}", rand_suffix()));
            let mut store = open(&dir);
            let rate = run(store.as_mut(), n, batch, body, depth);
            let disk = store.disk_bytes();
            let name = store.name();
            drop(store);
            let (left, took) = reopen(&dir);
            println!(
                "{name:<10} {batch:>5}  {rate:>8.0}  {:>8.1} MiB  {:>7.1} ms ({left})",
                disk as f64 / 1048576.0,
                took.as_secs_f64() * 1000.0
            );
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
