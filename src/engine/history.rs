//! Topic history: the recent messages of destinations matching `topics.history`,
//! each numbered by its offset on its own destination, so a client that lost its
//! connection can resume where it stopped (SUBSCRIBE `x-stream-offset`).
//!
//! A destination's log keeps at most `topics.history_max_messages` messages, none
//! older than `topics.history_max_age_s`; at most `topics.history_max_destinations`
//! destinations have one (past it, new destinations get no history and no
//! offsets). Offsets grow by one per message on a destination.
//!
//! Kept messages are also written to the embedded store (without waiting for the
//! disk: a publisher is never held up), and deleted from it when they leave the
//! log, so a restarted broker has its history and goes on counting where it
//! stopped. A log made new starts at the clock's milliseconds times 1000, so even
//! a destination whose history had all expired never sees its offsets go back.

use crate::codec::Headers;
use crate::command::StreamOffset;
use crate::store::{Record, Recovered};
use bytes::Bytes;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::time::Duration;

/// Bounds of the topic history (`[topics]`).
#[derive(Debug, Clone)]
pub struct HistoryLimits {
    /// `topics.history`: destinations or patterns that keep history.
    pub patterns: Vec<String>,
    /// `topics.history_max_messages`: messages kept per destination.
    pub max_messages: usize,
    /// `topics.history_max_age_s`: how long a message is kept.
    pub max_age: Duration,
    /// `topics.history_max_destinations`: destinations with a log.
    pub max_destinations: usize,
    /// `topics.history_max_bytes`: bytes all logs together may hold.
    pub max_bytes: usize,
    /// `topics.max_replay_destinations`: destinations one subscription may be
    /// reading from the logs at once (a replay, or having fallen behind).
    pub max_held: usize,
}

/// Bytes a kept message is counted at besides its id, headers and body (its
/// place in the log and the allocations that hold it).
const KEPT_OVERHEAD: usize = 96;

/// What the store's record of a kept message names instead of a queue: NUL
/// cannot be in a destination, so no queue can have it.
const RECORD_PREFIX: &str = "\0history:";

/// Whether a stored record is a kept history message.
pub fn is_history_record(r: &Recovered) -> bool {
    r.record.queue.starts_with(RECORD_PREFIX)
}

/// One kept message.
#[derive(Debug, Clone)]
pub(super) struct Kept {
    /// Its key in the store.
    pub(super) key: u64,
    pub(super) offset: u64,
    pub(super) at_ms: u64,
    pub(super) message_id: String,
    pub(super) headers: Headers,
    pub(super) body: Bytes,
}

impl Kept {
    /// Bytes this message counts against `topics.history_max_bytes`.
    fn cost(&self) -> usize {
        KEPT_OVERHEAD
            + self.message_id.len()
            + self.body.len()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// The log of one destination.
#[derive(Debug)]
pub(super) struct Log {
    next: u64,
    kept: VecDeque<Kept>,
    /// Whether a message was ever dropped (to the bound or for age).
    dropped: bool,
    /// Store keys of dropped messages, for the caller to delete.
    dropped_keys: Vec<u64>,
    /// Whether kept messages are in the embedded store (their keys are store
    /// keys); a cluster node's are stream sequences, kept by the stream.
    stored: bool,
    /// What the kept messages cost ([`Kept::cost`]).
    bytes: usize,
}

/// Where a replay starts.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Start {
    /// Index into the kept messages.
    pub(super) index: usize,
    /// What was asked for is no longer kept: the first replayed message says so.
    pub(super) gap: bool,
}

impl Log {
    /// An empty log whose first offset is `first`.
    pub(super) fn new(first: u64) -> Log {
        Log {
            next: first,
            kept: VecDeque::new(),
            dropped: false,
            dropped_keys: Vec::new(),
            stored: true,
            bytes: 0,
        }
    }

    /// An empty log of messages numbered by a cluster's history stream; keys
    /// are stream sequences, and nothing is for the store to delete.
    pub(super) fn numbered_elsewhere() -> Log {
        Log {
            stored: false,
            ..Log::new(0)
        }
    }

    /// Store keys of messages dropped since the last call.
    pub(super) fn take_dropped(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.dropped_keys)
    }

    /// The store record of the newest kept message of `destination`.
    pub(super) fn record_of_last(&self, destination: &str) -> Option<Vec<u8>> {
        let k = self.kept.back()?;
        let mut headers = k.headers.clone();
        headers.push("\0offset", k.offset.to_string());
        headers.push("\0at", k.at_ms.to_string());
        headers.push("\0id", k.message_id.clone());
        Some(Record::encode(
            &format!("{RECORD_PREFIX}{destination}"),
            None,
            &headers,
            &k.body,
        ))
    }

    /// Keeps a message; returns its offset.
    pub(super) fn push(
        &mut self,
        key: u64,
        at_ms: u64,
        message_id: &str,
        headers: &Headers,
        body: Bytes,
        limits: &HistoryLimits,
    ) -> u64 {
        let offset = self.next;
        self.next += 1;
        self.keep(Kept {
            key,
            offset,
            at_ms,
            message_id: message_id.to_owned(),
            headers: headers.clone(),
            body,
        });
        while self.kept.len() > limits.max_messages.max(1) {
            self.drop_oldest();
        }
        self.expire(at_ms, limits.max_age);
        offset
    }

    /// Keeps a message numbered elsewhere (a cluster's history stream) under its
    /// own `offset`; false, keeping nothing, when the log is past it already (a
    /// message seen before).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert(
        &mut self,
        key: u64,
        offset: u64,
        at_ms: u64,
        message_id: &str,
        headers: Headers,
        body: Bytes,
        limits: &HistoryLimits,
    ) -> bool {
        if offset < self.next {
            return false;
        }
        self.next = offset + 1;
        // Nodes' clocks differ a little: times never go back within a log, so
        // a replay by time finds its start by halving.
        let at_ms = at_ms.max(self.kept.back().map_or(0, |k| k.at_ms));
        self.keep(Kept {
            key,
            offset,
            at_ms,
            message_id: message_id.to_owned(),
            headers,
            body,
        });
        while self.kept.len() > limits.max_messages.max(1) {
            self.drop_oldest();
        }
        self.expire(at_ms, limits.max_age);
        true
    }

    /// The key and offset of the newest kept message.
    pub(super) fn last(&self) -> Option<(u64, u64)> {
        self.kept.back().map(|k| (k.key, k.offset))
    }

    /// The offset the next message would have.
    pub(super) fn next_offset(&self) -> u64 {
        self.next
    }

    /// How many messages are kept.
    pub(super) fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether no message is kept.
    pub(super) fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The newest kept message.
    pub(super) fn newest(&self) -> Option<&Kept> {
        self.kept.back()
    }

    /// Drops what is older than `max_age` at `now_ms`.
    pub(super) fn expire(&mut self, now_ms: u64, max_age: Duration) {
        let oldest = now_ms.saturating_sub(max_age.as_millis() as u64);
        while self.kept.front().is_some_and(|k| k.at_ms < oldest) {
            self.drop_oldest();
        }
    }

    fn keep(&mut self, mut k: Kept) {
        // A large body arrives as a slice of the connection's read buffer (or a
        // NATS payload), which it would keep alive whole: the log holds its own
        // copy, so what it holds is what `history_max_bytes` counts.
        k.body = Bytes::copy_from_slice(&k.body);
        self.bytes += k.cost();
        self.kept.push_back(k);
    }

    /// What the kept messages cost against `topics.history_max_bytes`.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops the oldest messages (the newest too, if need be) until at least
    /// `excess` bytes are freed or nothing is kept; returns the bytes freed.
    pub(super) fn shed(&mut self, excess: usize) -> usize {
        let before = self.bytes;
        while before - self.bytes < excess && !self.kept.is_empty() {
            self.drop_oldest();
        }
        before - self.bytes
    }

    fn drop_oldest(&mut self) {
        if let Some(k) = self.kept.pop_front() {
            self.bytes -= k.cost();
            self.dropped = true;
            if self.stored {
                self.dropped_keys.push(k.key);
            }
        }
    }

    /// Where offset `offset` is (or would be) among the kept messages, and
    /// whether it is missing there (dropped, or never kept).
    pub(super) fn position(&self, offset: u64) -> (usize, bool) {
        let index = self.kept.partition_point(|k| k.offset < offset);
        (
            index,
            self.kept.get(index).is_some_and(|k| k.offset != offset),
        )
    }

    /// The kept messages from `index` on.
    pub(super) fn from(&self, index: usize) -> impl Iterator<Item = &Kept> {
        self.kept.iter().skip(index)
    }

    /// Whether `from` asks for messages that existed and none of which is kept
    /// any more: then the next live message tells the subscriber so.
    pub(super) fn lost_all(&self, from: StreamOffset) -> bool {
        matches!(from, StreamOffset::Offset(n) if self.kept.is_empty() && n < self.next)
    }

    /// Where a replay asked for with `from` starts, or `None` for no replay.
    pub(super) fn start(&self, from: StreamOffset) -> Option<Start> {
        let oldest = self.kept.front()?;
        match from {
            StreamOffset::Next => None,
            StreamOffset::First => Some(Start {
                index: 0,
                gap: false,
            }),
            StreamOffset::Last => Some(Start {
                index: self.kept.len() - 1,
                gap: false,
            }),
            StreamOffset::Offset(n) => {
                if n >= self.next {
                    return None;
                }
                // Offsets below the oldest kept existed (here, before a restart
                // or on another node) and are gone; so is one missing between
                // kept ones (a cluster's stream dropped it first).
                let (index, gap) = self.position(n);
                Some(Start { index, gap })
            }
            StreamOffset::Timestamp(s) => {
                let at = s.saturating_mul(1000);
                let index = self.kept.partition_point(|k| k.at_ms < at);
                (index < self.kept.len()).then_some(Start {
                    index,
                    gap: self.dropped && at < oldest.at_ms,
                })
            }
        }
    }
}

/// The logs a restarted broker had, from the store's history records (in key
/// order), trimmed to `limits` at `now_ms`; and the keys of records to delete
/// (trimmed, or unreadable).
pub(super) fn restore(
    records: Vec<Recovered>,
    limits: &HistoryLimits,
    now_ms: u64,
) -> (HashMap<String, Log>, Vec<u64>) {
    let mut logs: HashMap<String, Log> = HashMap::new();
    let mut delete = Vec::new();
    for r in records {
        let Some(destination) = r.record.queue.strip_prefix(RECORD_PREFIX) else {
            continue;
        };
        let mut headers = Headers::with_capacity(r.record.headers.len());
        let (mut offset, mut at, mut id) = (None, None, None);
        for (k, v) in r.record.headers.iter() {
            match k {
                "\0offset" => offset = v.parse::<u64>().ok(),
                "\0at" => at = v.parse::<u64>().ok(),
                "\0id" => id = Some(v.to_owned()),
                _ => headers.push(k, v),
            }
        }
        let (Some(offset), Some(at_ms), Some(message_id)) = (offset, at, id) else {
            delete.push(r.key);
            continue;
        };
        if !logs.contains_key(destination) && logs.len() >= limits.max_destinations {
            delete.push(r.key);
            continue;
        }
        let log = logs
            .entry(destination.to_owned())
            .or_insert_with(|| Log::new(offset));
        if offset < log.next {
            // Out of order or repeated: never let offsets go back.
            delete.push(r.key);
            continue;
        }
        log.next = offset + 1;
        log.keep(Kept {
            key: r.key,
            offset,
            at_ms,
            message_id,
            headers,
            body: r.record.body,
        });
        while log.kept.len() > limits.max_messages.max(1) {
            log.drop_oldest();
        }
    }
    for log in logs.values_mut() {
        log.expire(now_ms, limits.max_age);
        delete.extend(log.take_dropped());
    }
    (logs, delete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_messages: usize) -> HistoryLimits {
        HistoryLimits {
            patterns: Vec::new(),
            max_messages,
            max_age: Duration::from_secs(60),
            max_destinations: 10,
            max_bytes: usize::MAX,
            max_held: 10,
        }
    }

    fn log_of(n: u64, max: usize) -> Log {
        let mut log = Log::new(100);
        for i in 0..n {
            log.push(
                i,
                1_000_000 + i * 1000,
                &format!("m{i}"),
                &Headers::new(),
                Bytes::new(),
                &limits(max),
            );
        }
        log
    }

    #[test]
    fn offsets_count_up_and_the_log_keeps_its_bound() {
        let log = log_of(10, 4);
        let offsets: Vec<u64> = log.from(0).map(|k| k.offset).collect();
        assert_eq!(offsets, [106, 107, 108, 109]);
    }

    #[test]
    fn replays_start_where_asked_and_say_when_something_is_gone() {
        let log = log_of(10, 4);
        let start = |f| log.start(f);
        assert_eq!(start(StreamOffset::Next), None);
        assert_eq!(
            start(StreamOffset::First),
            Some(Start {
                index: 0,
                gap: false
            })
        );
        assert_eq!(
            start(StreamOffset::Last),
            Some(Start {
                index: 3,
                gap: false
            })
        );
        assert_eq!(
            start(StreamOffset::Offset(108)),
            Some(Start {
                index: 2,
                gap: false
            })
        );
        assert_eq!(
            start(StreamOffset::Offset(106)),
            Some(Start {
                index: 0,
                gap: false
            })
        );
        assert_eq!(
            start(StreamOffset::Offset(103)),
            Some(Start {
                index: 0,
                gap: true
            })
        );
        assert_eq!(start(StreamOffset::Offset(110)), None);
        assert_eq!(start(StreamOffset::Offset(5000)), None);
        // Message i was kept at 1,000 s + i s.
        assert_eq!(
            start(StreamOffset::Timestamp(1008)),
            Some(Start {
                index: 2,
                gap: false
            })
        );
        assert_eq!(
            start(StreamOffset::Timestamp(1000)),
            Some(Start {
                index: 0,
                gap: true
            })
        );
        assert_eq!(start(StreamOffset::Timestamp(1010)), None);
        assert_eq!(Log::new(7).start(StreamOffset::First), None);
    }

    #[test]
    fn messages_numbered_elsewhere_keep_their_offsets_and_holes_are_gaps() {
        let mut log = Log::numbered_elsewhere();
        let keep = |log: &mut Log, offset: u64| {
            log.insert(
                offset,
                offset,
                1_000_000,
                "m",
                Headers::new(),
                Bytes::new(),
                &limits(10),
            )
        };
        assert!(keep(&mut log, 40));
        assert!(keep(&mut log, 41));
        assert!(keep(&mut log, 45));
        assert!(!keep(&mut log, 41), "seen before");
        assert_eq!(log.last(), Some((45, 45)));
        assert!(log.take_dropped().is_empty(), "nothing is in the store");
        assert_eq!(log.next_offset(), 46);
        assert_eq!(
            log.start(StreamOffset::Offset(41)),
            Some(Start {
                index: 1,
                gap: false
            })
        );
        assert_eq!(
            log.start(StreamOffset::Offset(43)),
            Some(Start {
                index: 2,
                gap: true
            })
        );
        assert_eq!(
            log.start(StreamOffset::Offset(39)),
            Some(Start {
                index: 0,
                gap: true
            })
        );
    }

    #[test]
    fn shedding_drops_the_oldest_first_and_the_newest_last() {
        let mut log = log_of(4, 100);
        let each = log.bytes() / 4;
        assert_eq!(log.shed(1), each);
        assert_eq!(log.from(0).next().map(|k| k.offset), Some(101));
        assert_eq!(log.shed(2 * each + 1), 3 * each);
        assert!(log.is_empty());
        assert_eq!(log.bytes(), 0);
        assert_eq!(log.shed(1), 0);
        // What was there existed: asking for it now is a gap.
        assert_eq!(log.next_offset(), 104);
    }

    #[test]
    fn old_messages_expire() {
        let mut log = log_of(10, 100);
        log.expire(1_000_000 + 9000 + 60_000 - 2500, Duration::from_secs(60));
        let offsets: Vec<u64> = log.from(0).map(|k| k.offset).collect();
        assert_eq!(offsets, [107, 108, 109]);
    }

    #[test]
    fn a_restart_restores_the_logs_trims_them_and_names_what_to_delete() {
        let mut log = Log::new(500);
        let mut records = Vec::new();
        for i in 0..5u64 {
            log.push(
                10 + i,
                1_000_000 + i,
                &format!("m{i}"),
                &Headers::new(),
                Bytes::from(format!("b{i}")),
                &limits(100),
            );
            records.push(Recovered {
                key: 10 + i,
                record: Record::decode(&log.record_of_last("/topic/a").unwrap()).unwrap(),
            });
        }
        // A record without its offset is deleted.
        records.push(Recovered {
            key: 99,
            record: Record {
                queue: format!("{RECORD_PREFIX}/topic/b"),
                expires_at: None,
                headers: Headers::new(),
                body: Bytes::new(),
            },
        });
        let (logs, delete) = restore(records, &limits(3), 1_000_010);
        let a = &logs["/topic/a"];
        let kept: Vec<(u64, &str)> = a
            .from(0)
            .map(|k| (k.offset, std::str::from_utf8(&k.body).unwrap()))
            .collect();
        assert_eq!(kept, [(502, "b2"), (503, "b3"), (504, "b4")]);
        assert_eq!(a.next, 505);
        assert_eq!(delete, [99, 10, 11]);
        assert!(!logs.contains_key("/topic/b"));
    }
}
