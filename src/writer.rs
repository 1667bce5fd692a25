//! The writer task: sole owner of a connection's write half.
//!
//! It takes everything waiting in the outbox, encodes it into one batch and writes it
//! with one flush (thousands of small MESSAGE frames become a few syscalls). It sends
//! heart-beats when nothing else was written for the negotiated interval, and cuts
//! off a slow consumer: an outbox past its limit ends the connection with an ERROR.

use crate::codec::{Command, Frame, Version, encode, encode_heartbeat};
use crate::metrics::Metrics;
use crate::outbox::{OutboxReceiver, Outgoing};
use crate::transport::{FrameBatch, Goodbye, Writer};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Time allowed for the last words (an ERROR, a close frame) to a client.
const LAST_WORDS: Duration = Duration::from_secs(2);

/// How the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterEnd {
    /// Asked to close, or the session went away.
    Closed,
    /// Asked to close because the node drains.
    Restarted,
    /// The outbox overflowed between writes: slow consumer, told with an ERROR.
    SlowConsumer,
    /// The outbox overflowed while a write was stuck: slow consumer, whose stream may
    /// hold a partial frame, so it is closed without an ERROR.
    SlowConsumerMidWrite,
    /// A write failed or took longer than the write timeout.
    WriteFailed,
}

/// Settings for one writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Longest time one batch write may take.
    pub write_timeout: Duration,
    /// The outbox limit, for the slow-consumer ERROR text.
    pub max_outbox_bytes: usize,
}

/// Runs the writer until the connection ends; cancels `done` as soon as it stops
/// writing, so the session stops reading.
pub async fn run(
    mut writer: Writer,
    mut rx: OutboxReceiver,
    metrics: Arc<Metrics>,
    config: WriterConfig,
    shutdown: CancellationToken,
    done: CancellationToken,
) -> WriterEnd {
    let end = write_loop(&mut writer, &mut rx, &metrics, &config).await;
    // Stop the session first, so its subscriptions go at once, not after last words.
    done.cancel();
    match end {
        WriterEnd::SlowConsumer => {
            metrics.slow_consumers.increment(1);
            metrics.error_sent("slow_consumer");
            let error = Frame::new(Command::Error)
                .header("message", "slow consumer: too many unsent bytes")
                .header("content-type", "text/plain")
                .body(format!(
                    "More than {} bytes waited to be written to this connection (limits.max_outbox_bytes).",
                    config.max_outbox_bytes
                ));
            let mut batch = FrameBatch::default();
            batch.push(true, |out| encode(&error, Version::V1_2, out));
            let _ = timeout(LAST_WORDS, writer.write_batch(&mut batch)).await;
            let _ = timeout(LAST_WORDS, writer.close(Goodbye::Normal)).await;
        }
        WriterEnd::SlowConsumerMidWrite => {
            metrics.slow_consumers.increment(1);
        }
        WriterEnd::Closed => {
            let goodbye = match shutdown.is_cancelled() {
                true => Goodbye::GoingAway,
                false => Goodbye::Normal,
            };
            let _ = timeout(LAST_WORDS, writer.close(goodbye)).await;
        }
        WriterEnd::Restarted => {
            let _ = timeout(LAST_WORDS, writer.close(Goodbye::Restart)).await;
        }
        WriterEnd::WriteFailed => {}
    }
    end
}

async fn write_loop(
    writer: &mut Writer,
    rx: &mut OutboxReceiver,
    metrics: &Metrics,
    config: &WriterConfig,
) -> WriterEnd {
    let mut batch = FrameBatch::default();
    let mut heartbeat: Option<Duration> = None;
    let mut last_write = Instant::now();
    let overflow = rx.overflow_watch();
    loop {
        let beat_at = heartbeat.map(|d| tokio::time::Instant::from_std(last_write + d));
        // Owned per batch and dropped after it, so an idle writer holds no queue memory.
        let items = tokio::select! {
            biased;
            _ = overflow.overflowed() => return WriterEnd::SlowConsumer,
            taken = rx.recv_all() => {
                if taken.is_empty() {
                    return WriterEnd::Closed;
                }
                taken
            }
            _ = async { match beat_at { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                batch.push(true, encode_heartbeat);
                std::collections::VecDeque::new()
            }
        };
        let mut close = None;
        let mut cost = 0;
        let mut messages = Vec::new();
        for item in items {
            cost += item.cost();
            match item {
                Outgoing::Frame { bytes, command } => {
                    metrics.frames_sent(command, 1);
                    batch.push(std::str::from_utf8(&bytes).is_ok(), |out| {
                        out.extend_from_slice(&bytes)
                    });
                }
                Outgoing::Message { message, published } => {
                    batch.push(message.is_utf8(), |out| message.write_to(out));
                    messages.push(published);
                }
                Outgoing::HeartBeatEvery(d) => heartbeat = Some(d),
                Outgoing::Close => {
                    close = Some(WriterEnd::Closed);
                    break;
                }
                Outgoing::Restart => {
                    close = Some(WriterEnd::Restarted);
                    break;
                }
            }
        }
        if !batch.is_empty() {
            let bytes = batch.len();
            let write = timeout(config.write_timeout, writer.write_batch(&mut batch));
            tokio::select! {
                biased;
                // A client that stops reading mid-write is cut off without waiting
                // for the write timeout; its stream is then unusable, so no ERROR.
                _ = overflow.overflowed() => return WriterEnd::SlowConsumerMidWrite,
                result = write => match result {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return WriterEnd::WriteFailed,
                },
            }
            last_write = Instant::now();
            metrics.bytes_out.increment(bytes as u64);
            if !messages.is_empty() {
                metrics.frames_sent(Command::Message, messages.len() as u64);
                metrics.delivered.increment(messages.len() as u64);
                for published in messages.drain(..) {
                    metrics
                        .publish_to_write
                        .record(last_write.duration_since(published).as_secs_f64());
                }
            }
        }
        rx.written(cost);
        if let Some(end) = close {
            return end;
        }
    }
}
