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

/// Most messages in one atomic batch (JetStream takes at most 1,000).
const MAX_BATCH: usize = 256;
/// Most payload bytes in one atomic batch (beyond one message).
const MAX_BATCH_BYTES: usize = 1 << 20;

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
        allow_atomic_publish: true,
        ..Default::default()
    }
}

/// Makes the stream's bounds this node's (the last node to start or reload
/// sets them for the cluster).
async fn apply(
    js: &jetstream::Context,
    stream: &mut stream::Stream,
    limits: &HistoryLimits,
    atomic: &AtomicBool,
) -> Result<(), async_nats::Error> {
    let info = tokio::time::timeout(ATTEMPT, stream.info()).await??;
    let mut config = info.config.clone();
    let wanted = stream_config(limits, config.num_replicas);
    if (
        config.max_messages_per_subject,
        config.max_messages,
        config.max_age,
        config.max_bytes,
        config.allow_atomic_publish,
    ) != (
        wanted.max_messages_per_subject,
        wanted.max_messages,
        wanted.max_age,
        wanted.max_bytes,
        true,
    ) {
        config.max_messages_per_subject = wanted.max_messages_per_subject;
        config.max_messages = wanted.max_messages;
        config.max_age = wanted.max_age;
        config.max_bytes = wanted.max_bytes;
        config.allow_atomic_publish = true;
        let updated = tokio::time::timeout(ATTEMPT, js.update_stream(config)).await??;
        tracing::info!(stream = STREAM, "history bounds set to this node's");
        // A NATS server before 2.12 has no atomic batches: one message at a time.
        atomic.store(updated.config.allow_atomic_publish, Ordering::Relaxed);
    } else {
        atomic.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// How far a node's copy of the history stream is.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// The node has read what the stream held when it first followed it.
    pub(super) following: AtomicBool,
    /// Its consumer of the stream is in place on the current NATS connection,
    /// so kept destinations are delivered: false from a lost connection until
    /// a new consumer is made (the node is not ready meanwhile).
    pub(super) feeding: AtomicBool,
}

/// How often a follower checks that its NATS connection is still the one its
/// consumer was made on.
const CONNECTION_CHECK: Duration = Duration::from_millis(100);

/// Keeps the local engine's history logs equal to the cluster's stream, until
/// `stop` (see [`Progress`]).
pub(super) async fn mirror(
    client: async_nats::Client,
    local: Arc<LocalEngine>,
    mut limits: watch::Receiver<Arc<HistoryLimits>>,
    progress: Arc<Progress>,
    atomic: Arc<AtomicBool>,
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
            (&progress, &atomic),
            &metrics,
            &mut read,
        );
        let result = tokio::select! {
            () = stop.cancelled() => return,
            result = follow => result,
        };
        progress.feeding.store(false, Ordering::Relaxed);
        let wait = match result {
            // The connection went or was renewed: follow again once it is back.
            Ok(Followed::ConnectionChanged) => Duration::ZERO,
            Ok(Followed::Ended) => Duration::from_secs(1),
            Err(e) => {
                tracing::warn!(error = %e, stream = STREAM, "topic history: retrying in 250 ms");
                Duration::from_millis(250)
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Why [`follow`] stopped without an error.
enum Followed {
    /// The messages or the settings ended.
    Ended,
    /// The NATS connection was lost or made anew: an ordered consumer of the
    /// old connection may be gone from the server, and async-nats would find
    /// out only after backing off for seconds; a new one is made at once.
    ConnectionChanged,
}

/// Reads the stream into the local engine until an error.
async fn follow(
    js: &jetstream::Context,
    client: &async_nats::Client,
    local: &LocalEngine,
    limits: &mut watch::Receiver<Arc<HistoryLimits>>,
    (progress, atomic): (&Progress, &AtomicBool),
    metrics: &LinkMetrics,
    read: &mut u64,
) -> Result<Followed, async_nats::Error> {
    let following = &progress.following;
    let connects = client.statistics().connects.load(Ordering::Relaxed);
    let settings = limits.borrow_and_update().clone();
    let config = stream_config(&settings, replicas(client));
    let mut stream = tokio::time::timeout(ATTEMPT, js.get_or_create_stream(config)).await??;
    apply(js, &mut stream, &settings, atomic).await?;
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
    progress.feeding.store(true, Ordering::Relaxed);
    tracing::info!(stream = STREAM, "following the cluster's topic history");
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut connection = tokio::time::interval(CONNECTION_CHECK);
    loop {
        tokio::select! {
            _ = connection.tick() => {
                if client.connection_state() != async_nats::connection::State::Connected
                    || client.statistics().connects.load(Ordering::Relaxed) != connects
                {
                    tracing::info!(stream = STREAM, "NATS connection changed: following the topic history anew");
                    return Ok(Followed::ConnectionChanged);
                }
            }
            message = messages.next() => {
                let Some(message) = message else { return Ok(Followed::Ended) };
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
                    return Ok(Followed::Ended);
                }
                let settings = limits.borrow_and_update().clone();
                apply(js, &mut stream, &settings, atomic).await?;
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
    atomic: Arc<AtomicBool>,
    metrics: LinkMetrics,
    stop: CancellationToken,
) {
    let js = jetstream::new(client.clone());
    // Messages waiting behind the batch in flight for their destination, by
    // subject; a subject is here while one of its batches is in flight.
    let mut waiting: HashMap<String, VecDeque<ToKeep>> = HashMap::new();
    let mut held = 0usize;
    let mut in_flight = FuturesUnordered::new();
    let start = |batch: Vec<ToKeep>, newest: Option<(u64, u64)>| {
        let (js, client, local, metrics) =
            (js.clone(), client.clone(), local.clone(), metrics.clone());
        let atomic = atomic.load(Ordering::Relaxed);
        async move {
            let subject = batch[0].subject.clone();
            match publish(&js, &client, &local, &batch, newest, atomic).await {
                Ok(published) => {
                    metrics.messages_out.increment(batch.len() as u64);
                    (subject, Some(published))
                }
                Err(e) => {
                    metrics.publish_failures.increment(batch.len() as u64);
                    tracing::error!(error = %e, destination = batch[0].destination, messages = batch.len(), "JetStream refused history messages the node had taken");
                    (subject, None)
                }
            }
        }
    };
    let mut stopping = false;
    loop {
        tokio::select! {
            Some((subject, newest)) = in_flight.next(), if !in_flight.is_empty() => {
                let next = waiting.get_mut(&subject).map(take_batch).unwrap_or_default();
                if next.is_empty() {
                    waiting.remove(&subject);
                } else {
                    held -= next.len();
                    in_flight.push(start(next, newest));
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
                        in_flight.push(start(vec![m], None));
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

/// The next batch of one destination's waiting messages: as many as one atomic
/// batch takes, within [`MAX_BATCH_BYTES`] (at least one).
fn take_batch(queue: &mut VecDeque<ToKeep>) -> Vec<ToKeep> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(m) = queue.front() {
        if !batch.is_empty()
            && (batch.len() >= MAX_BATCH || bytes + m.payload.len() > MAX_BATCH_BYTES)
        {
            break;
        }
        bytes += m.payload.len();
        batch.extend(queue.pop_front());
    }
    batch
}

/// Publishes `batch` (messages of one destination) as the destination's next,
/// however many nodes publish to it; returns the stream sequence and offset of
/// its last message. `newest` is the destination's newest message as this node
/// last saw it (its sequence and offset). Several messages go as one atomic
/// batch when the stream allows it (`atomic`), else one at a time.
async fn publish(
    js: &jetstream::Context,
    client: &async_nats::Client,
    local: &LocalEngine,
    batch: &[ToKeep],
    newest: Option<(u64, u64)>,
    atomic: bool,
) -> Result<(u64, u64), async_nats::Error> {
    if !atomic && batch.len() > 1 {
        let mut newest = newest;
        for m in batch {
            newest = Some(publish_batch(js, client, local, std::slice::from_ref(m), newest).await?);
        }
        return newest.ok_or_else(|| "an empty batch".into());
    }
    publish_batch(js, client, local, batch, newest).await
}

/// [`publish`] of one message, or of several as one atomic batch.
async fn publish_batch(
    js: &jetstream::Context,
    client: &async_nats::Client,
    local: &LocalEngine,
    batch: &[ToKeep],
    newest: Option<(u64, u64)>,
) -> Result<(u64, u64), async_nats::Error> {
    let Some(first) = batch.first() else {
        return Err("an empty batch".into());
    };
    let (kept, next_kept) = local.last_kept(&first.destination);
    let mut newest: Option<(u64, Option<u64>)> =
        newest.or(kept).map(|(seq, offset)| (seq, Some(offset)));
    let at = now_ms().to_string();
    for _ in 0..CONTENDED_ATTEMPTS {
        let (seq, offset) = match newest.take() {
            Some(known) => known,
            None => {
                let newest = newest_in_stream(js, &first.subject).await?;
                (newest.seq, newest.offset)
            }
        };
        // A destination with nothing kept (new, or all expired) starts past
        // anything it can have had, as on one node.
        let offset = match offset {
            Some(o) => o + 1,
            None => now_ms().saturating_mul(1000).max(next_kept.unwrap_or(0)),
        };
        let last = offset + batch.len() as u64 - 1;
        let sent = match batch.len() {
            1 => publish_one(js, first, seq, offset, &at).await,
            _ => publish_atomic(client, local, batch, seq, offset, &at).await,
        };
        match sent {
            Ok(stored) => return Ok((stored, last)),
            Err(Refusal::Contended) => continue,
            Err(Refusal::Other(e)) if batch.len() > 1 => {
                // An atomic batch may be refused for the check on its first
                // message, or its acknowledgement lost: the stream tells which.
                let now = newest_in_stream(js, &first.subject).await?;
                if batch.last().is_some_and(|m| m.payload == now.payload) {
                    return Ok((now.seq, last));
                }
                if now.seq != seq {
                    newest = Some((now.seq, now.offset));
                    continue;
                }
                return Err(e);
            }
            Err(Refusal::Other(e)) => return Err(e),
        }
    }
    Err(format!(
        "{} was published to by other nodes {CONTENDED_ATTEMPTS} times in a row",
        first.destination
    )
    .into())
}

/// Why JetStream did not store a message or batch.
enum Refusal {
    /// The destination's newest message is not the one named: another node
    /// published first.
    Contended,
    /// Anything else.
    Other(async_nats::Error),
}

impl<E: Into<async_nats::Error>> From<E> for Refusal {
    fn from(e: E) -> Refusal {
        Refusal::Other(e.into())
    }
}

/// Publishes one message on condition that the destination's newest is `seq`;
/// returns its stream sequence.
async fn publish_one(
    js: &jetstream::Context,
    m: &ToKeep,
    seq: u64,
    offset: u64,
    at: &str,
) -> Result<u64, Refusal> {
    let message = jetstream::message::PublishMessage::build()
        .payload(m.payload.clone())
        .expected_last_subject_sequence(seq)
        .header(OFFSET, offset.to_string().as_str())
        .header(AT, at);
    let ack = tokio::time::timeout(ATTEMPT, async {
        js.send_publish(m.subject.clone(), message).await?.await
    })
    .await?;
    match ack {
        Ok(ack) => Ok(ack.sequence),
        Err(e) if another_was_first(&e) => Err(Refusal::Contended),
        Err(e) => Err(e.into()),
    }
}

/// Publishes `batch` as one atomic JetStream batch, numbered from `offset`, on
/// condition that the destination's newest is `seq`: all or none are stored,
/// in one round trip after the first message's. Returns the stream sequence of
/// the last.
async fn publish_atomic(
    client: &async_nats::Client,
    local: &LocalEngine,
    batch: &[ToKeep],
    seq: u64,
    offset: u64,
    at: &str,
) -> Result<u64, Refusal> {
    let id = local.message_id();
    let last = batch.len() - 1;
    for (i, m) in batch.iter().enumerate() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Batch-Id", id.as_str());
        headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
        headers.insert(OFFSET, (offset + i as u64).to_string().as_str());
        headers.insert(AT, at);
        if i == 0 {
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                seq.to_string().as_str(),
            );
        }
        if i == last {
            headers.insert("Nats-Batch-Commit", "1");
        }
        let subject = m.subject.clone();
        // The first and the commit are requests: the first so a stream that
        // refuses batches says so at once, the commit for the acknowledgement.
        if i == 0 || i == last {
            let reply = tokio::time::timeout(
                ATTEMPT,
                client.request_with_headers(subject, headers, m.payload.clone()),
            )
            .await??;
            match answer(&reply.payload)? {
                Answer::Stored(stored) if i == last => return Ok(stored),
                Answer::Stored(_) | Answer::Empty if i != last => {}
                Answer::Stored(_) | Answer::Empty => {
                    return Err(Refusal::Other("a batch commit without a sequence".into()));
                }
            }
        } else {
            client
                .publish_with_headers(subject, headers, m.payload.clone())
                .await?;
        }
    }
    Err(Refusal::Other("an empty batch".into()))
}

/// What JetStream answered a batch request.
enum Answer {
    /// Nothing (the first message of a batch, taken).
    Empty,
    /// Stored, at this stream sequence.
    Stored(u64),
}

/// Reads JetStream's answer to a publish request.
fn answer(payload: &[u8]) -> Result<Answer, Refusal> {
    #[derive(serde::Deserialize)]
    struct ApiError {
        #[serde(default)]
        err_code: u64,
        #[serde(default)]
        description: String,
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        error: Option<ApiError>,
        seq: Option<u64>,
    }
    if payload.is_empty() {
        return Ok(Answer::Empty);
    }
    let reply: Reply = serde_json::from_slice(payload)?;
    match (reply.error, reply.seq) {
        (Some(e), _) if WRONG_LAST_SEQUENCE.contains(&e.err_code) => Err(Refusal::Contended),
        (Some(e), _) => Err(Refusal::Other(
            format!("JetStream error {}: {}", e.err_code, e.description).into(),
        )),
        (None, Some(seq)) => Ok(Answer::Stored(seq)),
        (None, None) => Ok(Answer::Empty),
    }
}

/// JetStream's codes for "the newest message is not the one named".
const WRONG_LAST_SEQUENCE: [u64; 2] = [10071, 10164];

/// Whether JetStream refused a publish because the destination's newest
/// message is not the one named (another node published first). Servers since
/// 2.12 answer with a code of their own for it, which async-nats does not map.
fn another_was_first(e: &jetstream::context::PublishError) -> bool {
    e.kind() == PublishErrorKind::WrongLastSequence
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            .is_some_and(|s| WRONG_LAST_SEQUENCE.contains(&s.error_code().0))
}

/// A destination's newest message in the stream.
#[derive(Debug, Default)]
struct Newest {
    /// Its stream sequence; 0 when the destination has none.
    seq: u64,
    /// Its offset.
    offset: Option<u64>,
    /// What it carries.
    payload: Bytes,
}

/// The newest message on `subject`.
async fn newest_in_stream(
    js: &jetstream::Context,
    subject: &str,
) -> Result<Newest, async_nats::Error> {
    let stream = tokio::time::timeout(ATTEMPT, js.get_stream_no_info(STREAM)).await??;
    match tokio::time::timeout(ATTEMPT, stream.get_last_raw_message_by_subject(subject)).await? {
        Ok(m) => Ok(Newest {
            seq: m.sequence,
            offset: m
                .headers
                .get(OFFSET)
                .and_then(|v| v.as_str().parse::<u64>().ok()),
            payload: m.payload,
        }),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(Newest::default()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(bytes: usize) -> ToKeep {
        ToKeep {
            destination: "/topic/a".into(),
            subject: "stompede.h.a".into(),
            payload: Bytes::from(vec![b'x'; bytes]),
        }
    }

    #[test]
    fn a_batch_takes_what_fits_and_at_least_one() {
        let mut queue: VecDeque<ToKeep> = (0..300).map(|_| message(10)).collect();
        assert_eq!(take_batch(&mut queue).len(), MAX_BATCH);
        assert_eq!(take_batch(&mut queue).len(), 300 - MAX_BATCH);
        assert!(take_batch(&mut queue).is_empty());
        let mut big: VecDeque<ToKeep> = [MAX_BATCH_BYTES + 1, 10, MAX_BATCH_BYTES]
            .into_iter()
            .map(message)
            .collect();
        assert_eq!(
            take_batch(&mut big).len(),
            1,
            "one message larger than a batch"
        );
        assert_eq!(
            take_batch(&mut big).len(),
            1,
            "the next does not fit beside it"
        );
        assert_eq!(take_batch(&mut big).len(), 1);
    }

    #[test]
    fn jetstream_answers_are_read_and_contention_is_told_apart() {
        assert!(matches!(answer(b""), Ok(Answer::Empty)));
        assert!(matches!(
            answer(br#"{"stream":"S","seq":42,"batch":"b","count":3}"#),
            Ok(Answer::Stored(42))
        ));
        for code in WRONG_LAST_SEQUENCE {
            let refused = format!(
                r#"{{"error":{{"code":400,"err_code":{code},"description":"wrong last sequence"}}}}"#
            );
            assert!(matches!(
                answer(refused.as_bytes()),
                Err(Refusal::Contended)
            ));
        }
        let other = br#"{"error":{"code":400,"err_code":10174,"description":"atomic publish is disabled"}}"#;
        assert!(matches!(answer(other), Err(Refusal::Other(_))));
        assert!(matches!(answer(b"{not json"), Err(Refusal::Other(_))));
    }
}
