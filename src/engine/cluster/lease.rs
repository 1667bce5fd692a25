//! A lease on a name, held by one node of the cluster at a time: the way the
//! cluster picks the node that runs something there must be one of (the
//! trading market). NATS decides, not us: the lease is a key of the JetStream
//! key-value bucket `STOMPEDE_LEASES`, whose entries expire [`TTL`] after their
//! last write. A node takes the lease by creating the key (which fails while
//! someone holds it), keeps it by updating it every [`RENEW_EVERY`] at the
//! revision it last wrote (which fails if anyone else wrote since), and stops
//! holding it at the first failed renewal, or when its last good renewal is
//! older than [`HOLD_FOR`], whichever comes first: before the key can expire for
//! the others. A node that dies (kill -9) stops renewing; [`TTL`] later the key
//! is gone and the next node's create succeeds.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The key-value bucket of leases.
pub const BUCKET: &str = "STOMPEDE_LEASES";
/// How long a lease lasts after its holder's last renewal.
pub const TTL: Duration = Duration::from_secs(4);
/// How often the holder renews, and how often the others try to take it.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long after its last good renewal a holder still counts itself the
/// holder: well before [`TTL`], so two nodes never both believe they hold it.
pub const HOLD_FOR: Duration = Duration::from_millis(2500);
/// The longest one request to JetStream may take.
const ATTEMPT: Duration = Duration::from_millis(900);

/// Takes and keeps the lease on `name` for `node` until `stop`, telling
/// `held` whether this node holds it now. Gives the lease back (deletes the
/// key) when stopped while holding it, so a restart or a drain hands it over
/// at once.
pub async fn hold(
    client: async_nats::Client,
    name: String,
    node: String,
    held: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let js = jetstream::new(client.clone());
    let mut store = None;
    // The revision this node last wrote, and when: while holding.
    let mut mine: Option<(u64, Instant)> = None;
    loop {
        if store.is_none() {
            store = bucket(&js, &client).await;
        }
        if let Some(kv) = &store {
            mine = match mine {
                None => take(kv, &name, &node).await.map(|r| (r, Instant::now())),
                Some((revision, at)) => match renew(kv, &name, &node, revision).await {
                    Some(r) => Some((r, Instant::now())),
                    None if at.elapsed() < HOLD_FOR => Some((revision, at)),
                    None => None,
                },
            };
        }
        // A renewal that failed (or could not be sent) only counts against
        // the holder once HOLD_FOR has passed since the last good one.
        let holding = mine.is_some_and(|(_, at)| at.elapsed() < HOLD_FOR);
        if !holding {
            mine = None;
        }
        held.send_if_modified(|h| std::mem::replace(h, holding) != holding);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
    }
    if let (Some(kv), Some((revision, _))) = (&store, mine) {
        let _ =
            tokio::time::timeout(ATTEMPT, kv.delete_expect_revision(&name, Some(revision))).await;
    }
    held.send_replace(false);
}

/// The leases bucket, made if missing; `None` while JetStream does not answer.
async fn bucket(js: &jetstream::Context, client: &async_nats::Client) -> Option<kv::Store> {
    let config = kv::Config {
        bucket: BUCKET.to_owned(),
        history: 1,
        max_age: TTL,
        num_replicas: super::retained::replicas(client),
        storage: jetstream::stream::StorageType::Memory,
        ..Default::default()
    };
    match tokio::time::timeout(ATTEMPT, js.create_key_value(config)).await {
        Ok(Ok(store)) => Some(store),
        Ok(Err(e)) => {
            // Made by another node with other settings, or JetStream not ready.
            tracing::debug!(error = %e, "leases bucket not created; opening it");
            tokio::time::timeout(ATTEMPT, js.get_key_value(BUCKET))
                .await
                .ok()?
                .ok()
        }
        Err(_) => None,
    }
}

/// Creates the key: the revision if it was free.
async fn take(kv: &kv::Store, name: &str, node: &str) -> Option<u64> {
    let created = tokio::time::timeout(ATTEMPT, kv.create(name, Bytes::from(node.to_owned())));
    let revision = created.await.ok()?.ok()?;
    tracing::info!(lease = name, node, "lease taken");
    Some(revision)
}

/// Updates the key at `revision`: the new revision, or `None` if anyone else
/// wrote it since (or JetStream did not answer).
async fn renew(kv: &kv::Store, name: &str, node: &str, revision: u64) -> Option<u64> {
    let updated = tokio::time::timeout(
        ATTEMPT,
        kv.update(name, Bytes::from(node.to_owned()), revision),
    );
    match updated.await {
        Ok(Ok(r)) => Some(r),
        Ok(Err(e)) => {
            tracing::warn!(lease = name, node, error = %e, "lease not renewed");
            None
        }
        Err(_) => None,
    }
}
