//! Retained values shared by the nodes of a cluster, and the streams a node
//! needs before it is ready.
//!
//! A retained topic's message is also published to `stompede.r.<subject>`, which
//! the JetStream stream `STOMPEDE_RETAINED` keeps (the last message per subject,
//! at most `topics.max_retained` subjects, oldest dropped first). Each node keeps
//! a copy of that stream in its local engine through an ordered consumer that
//! starts with the last message of every subject and then follows new ones, so a
//! subscribe hands retained values over from memory, as on one node.

use super::queue::QueueSettings;
use super::{LocalEngine, subject, wire};
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one JetStream request may take before it is retried.
pub(super) const ATTEMPT: Duration = Duration::from_secs(5);

/// The JetStream stream of retained values.
pub const STREAM: &str = "STOMPEDE_RETAINED";

/// Replicas for the cluster's streams: three when the NATS cluster has three
/// servers or more, otherwise as many as it has.
pub(super) fn replicas(client: &async_nats::Client) -> usize {
    (1 + client.server_info().connect_urls.len()).min(3)
}

/// Waits until `client` is connected (or `stop`); false when stopped.
pub(super) async fn connected(client: &async_nats::Client, stop: &CancellationToken) -> bool {
    while client.connection_state() != async_nats::connection::State::Connected {
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    true
}

/// Keeps the local engine's retained values equal to the cluster's, until `stop`.
/// Creates the stream if it is missing; retries (every second) until JetStream
/// answers.
pub(super) async fn mirror(
    client: async_nats::Client,
    local: Arc<LocalEngine>,
    queues: QueueSettings,
    following: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let js = jetstream::new(client.clone());
    loop {
        if !connected(&client, &stop).await {
            return;
        }
        let follow = follow(&js, &client, &local, &queues, &following);
        tokio::select! {
            () = stop.cancelled() => return,
            result = follow => {
                following.store(false, Ordering::Relaxed);
                if let Err(e) = result {
                    tracing::warn!(error = %e, stream = STREAM, "retained values: retrying in 1 s");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Reads the stream into the local engine until an error.
async fn follow(
    js: &jetstream::Context,
    client: &async_nats::Client,
    local: &LocalEngine,
    queues: &QueueSettings,
    following: &AtomicBool,
) -> Result<(), async_nats::Error> {
    let config = stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![subject::RETAINED_SUBJECTS.to_owned()],
        max_messages_per_subject: 1,
        max_messages: i64::try_from(local.max_retained()).unwrap_or(i64::MAX),
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: replicas(client),
        ..Default::default()
    };
    // Short attempts: right after a NATS cluster starts, JetStream answers only
    // once it has elected a leader, and a long wait would delay readiness.
    let stream = tokio::time::timeout(ATTEMPT, js.get_or_create_stream(config)).await??;
    tokio::time::timeout(
        ATTEMPT,
        js.get_or_create_stream(super::queue::stream_config(queues, replicas(client))),
    )
    .await??;
    let consumer = tokio::time::timeout(
        ATTEMPT,
        stream.create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject::RETAINED_SUBJECTS.to_owned(),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        }),
    )
    .await??;
    let mut messages = consumer.messages().await?;
    following.store(true, Ordering::Relaxed);
    tracing::info!(stream = STREAM, "following the cluster's retained values");
    while let Some(message) = messages.next().await {
        let message = message?;
        let subject = message.subject.to_string();
        match wire::decode(message.message.payload.clone()) {
            Ok(w) if subject::retained(&w.destination).is_ok_and(|s| s == subject) => {
                local.store_retained(&w.destination, &w.message_id, w.headers, w.body);
            }
            _ => tracing::warn!(subject, "dropped a retained value no node wrote"),
        }
    }
    Ok(())
}
