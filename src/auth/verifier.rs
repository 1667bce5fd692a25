//! Password checks on a small pool of dedicated threads, behind a bounded queue.
//!
//! An argon2id check takes ~19 MiB and tens of milliseconds on purpose. Run on
//! tokio's blocking pool, a burst of logins spread the checks over hundreds of
//! threads, and the allocator kept a check's worth of memory per thread (580 MiB
//! after 200 concurrent logins). Here at most `limits.max_concurrent_password_checks`
//! threads ever run checks, so at most that many arenas hold their memory, and at
//! most `limits.max_queued_logins` checks wait; past that a login is refused at
//! once instead of joining an ever longer line. A check whose CONNECT gave up
//! (connect timeout, closed) while waiting is skipped.
//!
//! Even on two threads, glibc kept 120-180 MiB after a storm of 200 logins: once
//! the first 19 MiB buffer is freed it raises its mmap threshold and serves later
//! buffers from arenas it never gives back (with the threshold pinned, RSS after
//! the same storm was 9 MiB). So [`verify`] gives argon2 a buffer whose capacity is
//! above glibc's largest threshold (32 MiB): always mapped on its own, unmapped when
//! freed, and only the pages argon2 touches are ever resident.

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The queue of password checks is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many logins waiting for a password check")]
pub struct Busy;

struct Job {
    hash: String,
    passcode: Vec<u8>,
    reply: oneshot::Sender<bool>,
}

impl Job {
    fn run(self) {
        if self.reply.is_closed() {
            return;
        }
        let _ = self.reply.send(verify(&self.hash, &self.passcode));
    }
}

/// Runs password checks on its own threads.
#[derive(Debug)]
pub struct Verifier {
    jobs: SyncSender<Job>,
}

impl Verifier {
    /// Starts `threads` checking threads (at least one) with room for `queued`
    /// waiting checks. The threads end when the verifier is dropped.
    pub fn new(threads: usize, queued: usize) -> Verifier {
        let (jobs, rx) = sync_channel::<Job>(queued);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("stompede-password-{i}"))
                .spawn(move || work(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-check thread");
            }
        }
        Verifier { jobs }
    }

    /// Whether `passcode` matches the PHC string `hash`; [`Busy`] if the queue is
    /// full (or no thread runs).
    pub async fn verify(&self, hash: String, passcode: Vec<u8>) -> Result<bool, Busy> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job {
                hash,
                passcode,
                reply,
            })
            .map_err(|e| match e {
                TrySendError::Full(_) | TrySendError::Disconnected(_) => Busy,
            })?;
        answer.await.map_err(|_| Busy)
    }
}

/// Blocks (1 KiB each) in a buffer larger than glibc's largest mmap threshold.
const MAPPED_ON_ITS_OWN: usize = 33 * 1024;

/// Whether `password` matches the argon2 PHC string `hash` (any variant, version
/// and cost it names), computed in a buffer that is returned to the system at once.
pub fn verify(hash: &str, password: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let blocks = params.block_count();
    let mut memory: Vec<Block> = Vec::with_capacity(blocks.max(MAPPED_ON_ITS_OWN));
    memory.resize(blocks, Block::default());
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password, salt, &mut out, &mut memory)
        .is_err()
    {
        return false;
    }
    // `Output` compares in constant time.
    Output::new(&out).is_ok_and(|computed| &computed == expected)
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // One thread waits in recv while holding the lock; the others wait for it.
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job.run(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_what_argon2_hashed_and_nothing_else() {
        use argon2::password_hash::PasswordHasher;
        let default = crate::auth::hash_password(b"pw").unwrap();
        assert!(verify(&default, b"pw"));
        assert!(!verify(&default, b"pw "));
        assert!(!verify(&default, b""));
        for algorithm in [Algorithm::Argon2i, Algorithm::Argon2d, Algorithm::Argon2id] {
            let params = Params::new(64, 2, 1, Some(16)).unwrap();
            let h = Argon2::new(algorithm, Version::V0x10, params)
                .hash_password(b"other")
                .unwrap()
                .to_string();
            assert!(verify(&h, b"other"), "{h}");
            assert!(!verify(&h, b"pw"), "{h}");
        }
        assert!(!verify("not a hash", b"pw"));
        assert!(!verify("$argon2id$v=19$m=64,t=2,p=1$c29tZXNhbHQ", b"pw"));
    }

    #[tokio::test]
    async fn checks_and_refuses_when_full() {
        let hash = crate::auth::hash_password(b"pw").unwrap();
        let v = Verifier::new(1, 1);
        assert_eq!(v.verify(hash.clone(), b"pw".to_vec()).await, Ok(true));
        assert_eq!(v.verify(hash.clone(), b"no".to_vec()).await, Ok(false));
        // One running, one queued: the third of a burst is refused at once.
        let burst =
            futures_util::future::join_all((0..8).map(|_| v.verify(hash.clone(), b"pw".to_vec())))
                .await;
        assert!(burst.contains(&Err(Busy)), "{burst:?}");
        assert!(burst.contains(&Ok(true)), "{burst:?}");
    }
}
