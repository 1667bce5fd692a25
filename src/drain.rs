//! Draining: how a node leaves a load balancer's pool without dropping what its
//! clients rely on (SIGTERM, `POST /api/drain`).
//!
//! Draining begins at once: `/readyz` answers 503 so balancers stop sending new
//! clients. New connections are still served for `server.drain_grace_s` (a
//! balancer takes a few health checks to notice); then the client listeners
//! close and each connection is closed at its own moment within
//! `server.drain_spread_s`, so the nodes left take the reconnections spread out,
//! not all in one instant. A session closes itself when its moment comes
//! ([`DrainPlan::close_at`]): nobody holds a list of sessions.

use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// When a drain began and how it closes connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainPlan {
    /// When draining began.
    pub began: Instant,
    /// When the client listeners close and the first connections go.
    pub close_from: Instant,
    /// Over how long connections are closed.
    pub spread: Duration,
}

impl DrainPlan {
    /// When connection `id` closes: its own point in the spread, from a
    /// low-discrepancy sequence over ids (the golden ratio's), so any run of
    /// consecutive ids is spread evenly over the whole window.
    pub fn close_at(&self, id: u64) -> Instant {
        const GOLDEN: f64 = 0.618_033_988_749_894_9;
        let fraction = (id as f64 * GOLDEN).fract();
        self.close_from + self.spread.mul_f64(fraction)
    }

    /// When the last connection is closed.
    pub fn last_close(&self) -> Instant {
        self.close_from + self.spread
    }
}

/// A node's drain state, shared by its listeners and sessions.
#[derive(Debug)]
pub struct Drain {
    plan: watch::Sender<Option<DrainPlan>>,
    stop_accepting: CancellationToken,
}

impl Drain {
    /// Not draining; `stop_accepting` is cancelled when the client listeners
    /// must close (it should be a child of the broker's shutdown token).
    pub fn new(stop_accepting: CancellationToken) -> Drain {
        Drain {
            plan: watch::Sender::new(None),
            stop_accepting,
        }
    }

    /// Begins draining with `grace` and `spread`, or returns the plan of the
    /// drain already under way (a second request changes nothing).
    pub fn begin(&self, grace: Duration, spread: Duration) -> DrainPlan {
        let began = Instant::now();
        let fresh = DrainPlan {
            began,
            close_from: began + grace,
            spread,
        };
        let mut plan = fresh;
        self.plan.send_if_modified(|current| match current {
            Some(existing) => {
                plan = *existing;
                false
            }
            None => {
                *current = Some(fresh);
                true
            }
        });
        plan
    }

    /// The drain under way, if any.
    pub fn plan(&self) -> Option<DrainPlan> {
        *self.plan.borrow()
    }

    /// Whether the node drains.
    pub fn is_draining(&self) -> bool {
        self.plan.borrow().is_some()
    }

    /// Watches for a drain to begin.
    pub fn watch(&self) -> watch::Receiver<Option<DrainPlan>> {
        self.plan.subscribe()
    }

    /// Resolves once a drain has begun.
    pub async fn begun(&self) -> DrainPlan {
        let mut rx = self.plan.subscribe();
        loop {
            if let Some(plan) = *rx.borrow_and_update() {
                return plan;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`: nothing more will come.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Cancelled when the client listeners stop taking connections.
    pub fn stop_accepting(&self) -> &CancellationToken {
        &self.stop_accepting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn connections_close_spread_over_the_window() {
        let drain = Drain::new(CancellationToken::new());
        assert!(!drain.is_draining());
        let plan = drain.begin(Duration::from_secs(5), Duration::from_secs(10));
        // A second request keeps the first plan.
        assert_eq!(
            drain.begin(Duration::ZERO, Duration::ZERO).close_from,
            plan.close_from
        );
        assert!(drain.is_draining());
        assert_eq!(drain.begun().await, plan);
        // 1000 consecutive ids: every tenth of the window gets about a tenth.
        let mut buckets = [0usize; 10];
        for id in 1..=1000 {
            let at = plan.close_at(id);
            assert!(at >= plan.close_from && at < plan.last_close());
            let offset = at.duration_since(plan.close_from).as_secs_f64();
            buckets[(offset / 1.0) as usize] += 1;
        }
        for (i, n) in buckets.iter().enumerate() {
            assert!((95..=105).contains(n), "bucket {i}: {n}");
        }
        // No spread: all close when the grace ends.
        let now = Drain::new(CancellationToken::new());
        let plan = now.begin(Duration::from_secs(1), Duration::ZERO);
        assert_eq!(plan.close_at(7), plan.close_from);
    }
}
