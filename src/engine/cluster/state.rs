//! Values the broker's own applications keep cluster-wide (the trading market's
//! prices and resting orders): a JetStream key-value bucket, `STOMPEDE_STATE`,
//! one revision per key. What the lease holder saves is what the next holder
//! loads.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use std::time::Duration;

/// The bucket.
pub const BUCKET: &str = "STOMPEDE_STATE";
/// The largest value kept (NATS' default max_payload is 1 MiB).
pub const MAX_VALUE: usize = 1024 * 1024;
/// The longest one request may take.
const ATTEMPT: Duration = Duration::from_secs(2);

/// The bucket, made if missing; `None` while JetStream does not answer.
async fn bucket(js: &jetstream::Context, replicas: usize) -> Option<kv::Store> {
    let config = kv::Config {
        bucket: BUCKET.to_owned(),
        history: 1,
        max_value_size: MAX_VALUE as i32,
        num_replicas: replicas,
        ..Default::default()
    };
    match tokio::time::timeout(ATTEMPT, js.create_key_value(config)).await {
        Ok(Ok(store)) => Some(store),
        _ => tokio::time::timeout(ATTEMPT, js.get_key_value(BUCKET))
            .await
            .ok()?
            .ok(),
    }
}

/// The value under `key`, if any.
pub(super) async fn load(js: &jetstream::Context, replicas: usize, key: &str) -> Option<Bytes> {
    let store = bucket(js, replicas).await?;
    tokio::time::timeout(ATTEMPT, store.get(key))
        .await
        .ok()?
        .ok()?
}

/// Puts `value` under `key`; whether it was stored.
pub(super) async fn save(
    js: &jetstream::Context,
    replicas: usize,
    key: &str,
    value: Bytes,
) -> bool {
    if value.len() > MAX_VALUE {
        tracing::warn!(
            key,
            bytes = value.len(),
            "state larger than {MAX_VALUE} bytes: not saved"
        );
        return false;
    }
    let Some(store) = bucket(js, replicas).await else {
        return false;
    };
    matches!(
        tokio::time::timeout(ATTEMPT, store.put(key, value)).await,
        Ok(Ok(_))
    )
}
