//! Topic history shared by the nodes of a cluster, with the same offsets on every
//! node.
//!
//! A message of a history destination goes to `stompede.h.<subject>`, which the
//! JetStream stream `STOMPEDE_HISTORY` keeps (limits retention: at most
//! `topics.history_max_messages` per subject, none older than
//! `topics.history_max_age_s`, at most `topics.history_max_bytes` in all). JetStream numbers a stream, not a subject, so the
//! publishing node numbers each destination itself: the message carries
//! `Stompede-Offset` (one past the destination's newest) and is published with
//! `Nats-Expected-Last-Subject-Sequence` naming that newest message. If another
//! node published to the destination in between, JetStream refuses it; the node
//! reads the destination's newest message and tries again. So offsets grow by one
//! per message in stream order, whichever node published. The nodes' historians
//! publish one message per destination at a time and many destinations at once.
//!
//! Every node follows the stream with an ordered consumer into its local logs and
//! delivers kept destinations' messages to its subscribers from that copy only:
//! a replay and the live messages after it come from one feed, under the lock the
//! single-node engine uses for its seam. A node is ready once it has read what
//! the stream held when it started; what it reads until then is kept, not
//! delivered (it is history, not news).

use super::link::LinkMetrics;
use super::retained::{ATTEMPT, connected, replicas};
use super::{LocalEngine, subject, wire};
use crate::engine::history::HistoryLimits;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The JetStream stream of kept topic messages.
pub const STREAM: &str = "STOMPEDE_HISTORY";

/// The header holding a message's offset on its destination.
const OFFSET: &str = "Stompede-Offset";
/// The header holding when the publishing node took the message (ms since the
/// Unix epoch).
const AT: &str = "Stompede-At";

/// How often one message is tried against other nodes' publishes to the same
/// destination before it is given up (and counted as a publish failure).
const CONTENDED_ATTEMPTS: usize = 16;

/// One message for the history stream.
#[derive(Debug)]
pub(super) struct ToKeep {
    pub(super) destination: String,
    pub(super) subject: String,
    pub(super) payload: Bytes,
}

/// The stream's configuration for `limits`.
fn stream_config(limits: &HistoryLimits, replicas: usize) -> stream::Config {
    let per_subject = i64::try_from(limits.max_messages.max(1)).unwrap_or(i64::MAX);
    let destinations = i64::try_from(limits.max_destinations.max(1)).unwrap_or(i64::MAX);
    stream::Config {
        name: STREAM.to_owned(),
        subjects: vec![subject::HISTORY_SUBJECTS.to_owned()],
        retention: stream::RetentionPolicy::Limits,
        max_messages_per_subject: per_subject,
        max_messages: per_subject.saturating_mul(destinations),
        max_age: limits.max_age,
        max_bytes: i64::try_from(limits.max_bytes).unwrap_or(i64::MAX),
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}

/// Makes the stream's bounds this node's (the last node to start or reload
/// sets them for the cluster).
async fn apply(
    js: &jetstream::Context,
    stream: &mut stream::Stream,
    limits: &HistoryLimits,
) -> Result<(), async_nats::Error> {
    let info = tokio::time::timeout(ATTEMPT, stream.info()).await??;
    let mut config = info.config.clone();
    let wanted = stream_config(limits, config.num_replicas);
    if (
        config.max_messages_per_subject,
        config.max_messages,
        config.max_age,
        config.max_bytes,
    ) != (
        wanted.max_messages_per_subject,
        wanted.max_messages,
        wanted.max_age,
        wanted.max_bytes,
    ) {
        config.max_messages_per_subject = wanted.max_messages_per_subject;
        config.max_messages = wanted.max_messages;
        config.max_age = wanted.max_age;
        config.max_bytes = wanted.max_bytes;
        tokio::time::timeout(ATTEMPT, js.update_stream(config)).await??;
        tracing::info!(stream = STREAM, "history bounds set to this node's");
    }
    Ok(())
}

/// Keeps the local engine's history logs equal to the cluster's stream, until
/// `stop`; `following` says the node has read what the stream held at start.
pub(super) async fn mirror(
    client: async_nats::Client,
    local: Arc<LocalEngine>,
    mut limits: watch::Receiver<Arc<HistoryLimits>>,
    following: Arc<AtomicBool>,
    metrics: LinkMetrics,
    stop: CancellationToken,
) {
    let js = jetstream::new(client.clone());
    // The last stream sequence read: a new consumer starts after it.
    let mut read = 0;
    loop {
        if !connected(&client, &stop).await {
            return;
        }
        let follow = follow(
            &js,
            &client,
            &local,
            &mut limits,
            &following,
            &metrics,
            &mut read,
        );
        tokio::select! {
            () = stop.cancelled() => return,
            result = follow => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, stream = STREAM, "topic history: retrying in 1 s");
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
    limits: &mut watch::Receiver<Arc<HistoryLimits>>,
    following: &AtomicBool,
    metrics: &LinkMetrics,
    read: &mut u64,
) -> Result<(), async_nats::Error> {
    let settings = limits.borrow_and_update().clone();
    let config = stream_config(&settings, replicas(client));
    let mut stream = tokio::time::timeout(ATTEMPT, js.get_or_create_stream(config)).await??;
    apply(js, &mut stream, &settings).await?;
    // On the first follow, what the stream holds already is history to keep;
    // after that, everything past what was read is news.
    let old_until = match following.load(Ordering::Relaxed) {
        true => 0,
        false => {
            let state = &tokio::time::timeout(ATTEMPT, stream.info()).await??.state;
            if state.messages == 0 {
                following.store(true, Ordering::Relaxed);
            }
            state.last_sequence
        }
    };
    let deliver_policy = match *read {
        0 => consumer::DeliverPolicy::All,
        n => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: n + 1,
        },
    };
    let consumer = tokio::time::timeout(
        ATTEMPT,
        stream.create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject::HISTORY_SUBJECTS.to_owned(),
            deliver_policy,
            ..Default::default()
        }),
    )
    .await??;
    let mut messages = consumer.messages().await?;
    tracing::info!(stream = STREAM, "following the cluster's topic history");
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Ok(()) };
                let message = message?;
                let (seq, pending) = {
                    let info = message.info()?;
                    (info.stream_sequence, info.pending)
                };
                *read = seq;
                metrics.messages_in.increment(1);
                let live = following.load(Ordering::Relaxed) || seq > old_until;
                if !keep(local, seq, &message.message, live) {
                    metrics.malformed.increment(1);
                    tracing::warn!(subject = %message.subject, "dropped a history message no node wrote");
                }
                if !live && (seq >= old_until || pending == 0) {
                    following.store(true, Ordering::Relaxed);
                    tracing::info!(stream = STREAM, "read the cluster's topic history");
                }
            }
            changed = limits.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let settings = limits.borrow_and_update().clone();
                apply(js, &mut stream, &settings).await?;
            }
            _ = check.tick(), if !following.load(Ordering::Relaxed) => {
                // What the stream held at start may have expired before it was
                // read: then nothing more is coming to say the node caught up.
                let state = &tokio::time::timeout(ATTEMPT, stream.info()).await??.state;
                if state.first_sequence > old_until || *read >= old_until {
                    following.store(true, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Keeps one stream message (sequence `seq`) in the local engine, delivering it
/// when `live`; false when it is not something a node wrote.
fn keep(local: &LocalEngine, seq: u64, message: &async_nats::Message, live: bool) -> bool {
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .and_then(|v| v.as_str().parse::<u64>().ok())
    };
    let (Some(offset), Some(at_ms)) = (header(OFFSET), header(AT)) else {
        return false;
    };
    let Ok(w) = wire::decode(message.payload.clone()) else {
        return false;
    };
    if !w
        .destination
        .starts_with(crate::destination::pattern::TOPIC)
        || subject::history(&w.destination).ok().as_deref() != Some(message.subject.as_str())
    {
        return false;
    }
    local.keep_arrival(
        &w.destination,
        seq,
        offset,
        at_ms,
        &w.message_id,
        w.headers,
        w.body,
        live,
    );
    true
}

/// Publishes what the engine hands over for kept destinations, until `stop`
/// (then what was taken still goes out, for at most a few seconds).
pub(super) async fn historian(
    client: async_nats::Client,
    local: Arc<LocalEngine>,
    mut taken: mpsc::Receiver<ToKeep>,
    max_waiting: usize,
    metrics: LinkMetrics,
    stop: CancellationToken,
) {
    let js = jetstream::new(client);
    // Messages waiting behind the one in flight for their destination, by
    // subject; a subject is here while one of its messages is in flight.
    let mut waiting: HashMap<String, VecDeque<ToKeep>> = HashMap::new();
    let mut held = 0usize;
    let mut in_flight = FuturesUnordered::new();
    let start = |m: ToKeep, newest: Option<(u64, u64)>| {
        let (js, local, metrics) = (js.clone(), local.clone(), metrics.clone());
        async move {
            let subject = m.subject.clone();
            match publish(&js, &local, &m, newest).await {
                Ok(published) => {
                    metrics.messages_out.increment(1);
                    (subject, Some(published))
                }
                Err(e) => {
                    metrics.publish_failures.increment(1);
                    tracing::error!(error = %e, destination = m.destination, "JetStream refused a history message the node had taken");
                    (subject, None)
                }
            }
        }
    };
    let mut stopping = false;
    loop {
        tokio::select! {
            Some((subject, newest)) = in_flight.next(), if !in_flight.is_empty() => {
                match waiting.get_mut(&subject).and_then(VecDeque::pop_front) {
                    Some(next) => {
                        held -= 1;
                        in_flight.push(start(next, newest));
                    }
                    None => {
                        waiting.remove(&subject);
                    }
                }
            }
            m = taken.recv(), if held < max_waiting => match m {
                Some(m) => match waiting.get_mut(&m.subject) {
                    Some(queue) => {
                        queue.push_back(m);
                        held += 1;
                    }
                    None => {
                        waiting.insert(m.subject.clone(), VecDeque::new());
                        in_flight.push(start(m, None));
                    }
                },
                None => break,
            },
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                taken.close();
            }
        }
        if stopping && in_flight.is_empty() && taken.is_empty() {
            break;
        }
    }
}

/// Publishes one message as its destination's next, however many nodes publish
/// to it; returns its stream sequence and offset. `newest` is the destination's
/// newest message as this node last saw it (its sequence and offset).
async fn publish(
    js: &jetstream::Context,
    local: &LocalEngine,
    m: &ToKeep,
    newest: Option<(u64, u64)>,
) -> Result<(u64, u64), async_nats::Error> {
    let (kept, next_kept) = local.last_kept(&m.destination);
    let mut newest: Option<(u64, Option<u64>)> =
        newest.or(kept).map(|(seq, offset)| (seq, Some(offset)));
    let at = now_ms().to_string();
    for _ in 0..CONTENDED_ATTEMPTS {
        let (seq, offset) = match newest.take() {
            Some(known) => known,
            None => newest_in_stream(js, &m.subject).await?,
        };
        // A destination with nothing kept (new, or all expired) starts past
        // anything it can have had, as on one node.
        let offset = match offset {
            Some(o) => o + 1,
            None => now_ms().saturating_mul(1000).max(next_kept.unwrap_or(0)),
        };
        let message = jetstream::message::PublishMessage::build()
            .payload(m.payload.clone())
            .expected_last_subject_sequence(seq)
            .header(OFFSET, offset.to_string().as_str())
            .header(AT, at.as_str());
        let ack = tokio::time::timeout(ATTEMPT, async {
            js.send_publish(m.subject.clone(), message).await?.await
        })
        .await?;
        match ack {
            Ok(ack) => return Ok((ack.sequence, offset)),
            Err(e) if another_was_first(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(format!(
        "{} was published to by other nodes {CONTENDED_ATTEMPTS} times in a row",
        m.destination
    )
    .into())
}

/// Whether JetStream refused a publish because the destination's newest
/// message is not the one named (another node published first). Servers since
/// 2.12 answer with a code of their own for it, which async-nats does not map.
fn another_was_first(e: &jetstream::context::PublishError) -> bool {
    e.kind() == PublishErrorKind::WrongLastSequence
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            .is_some_and(|s| {
                [
                    jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE,
                    jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT,
                ]
                .contains(&s.error_code())
            })
}

/// The stream sequence and offset of the newest message on `subject`; (0,
/// None) when it has none.
async fn newest_in_stream(
    js: &jetstream::Context,
    subject: &str,
) -> Result<(u64, Option<u64>), async_nats::Error> {
    let stream = tokio::time::timeout(ATTEMPT, js.get_stream_no_info(STREAM)).await??;
    match tokio::time::timeout(ATTEMPT, stream.get_last_raw_message_by_subject(subject)).await? {
        Ok(m) => Ok((
            m.sequence,
            m.headers
                .get(OFFSET)
                .and_then(|v| v.as_str().parse::<u64>().ok()),
        )),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok((0, None)),
        Err(e) => Err(e.into()),
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
