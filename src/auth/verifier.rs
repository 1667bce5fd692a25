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

use argon2::Argon2;
use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
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
        let ok = PasswordHash::new(&self.hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(&self.passcode, &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        let _ = self.reply.send(ok);
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
