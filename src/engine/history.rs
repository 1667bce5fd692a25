//! Topic history: the recent messages of destinations matching `topics.history`,
//! each numbered by its offset on its own destination, so a client that lost its
//! connection can resume where it stopped (SUBSCRIBE `x-stream-offset`).
//!
//! A destination's log keeps at most `topics.history_max_messages` messages, none
//! older than `topics.history_max_age_s`; at most `topics.history_max_destinations`
//! destinations have one (past it, new destinations get no history and no
//! offsets). Offsets grow by one per message on a destination. A log made in this
//! run starts at the clock's milliseconds times 1000, so offsets do not go back
//! when the broker restarts (the history itself does not survive a restart yet).

use crate::codec::Headers;
use crate::command::StreamOffset;
use bytes::Bytes;
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
}

/// One kept message.
#[derive(Debug, Clone)]
pub(super) struct Kept {
    pub(super) offset: u64,
    pub(super) at_ms: u64,
    pub(super) message_id: String,
    pub(super) headers: Headers,
    pub(super) body: Bytes,
}

/// The log of one destination.
#[derive(Debug)]
pub(super) struct Log {
    next: u64,
    kept: VecDeque<Kept>,
    /// Whether a message was ever dropped (to the bound or for age).
    dropped: bool,
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
        }
    }

    /// Keeps a message; returns its offset.
    pub(super) fn push(
        &mut self,
        at_ms: u64,
        message_id: &str,
        headers: &Headers,
        body: Bytes,
        limits: &HistoryLimits,
    ) -> u64 {
        let offset = self.next;
        self.next += 1;
        self.kept.push_back(Kept {
            offset,
            at_ms,
            message_id: message_id.to_owned(),
            headers: headers.clone(),
            body,
        });
        while self.kept.len() > limits.max_messages.max(1) {
            self.kept.pop_front();
            self.dropped = true;
        }
        self.expire(at_ms, limits.max_age);
        offset
    }

    /// Drops what is older than `max_age` at `now_ms`.
    pub(super) fn expire(&mut self, now_ms: u64, max_age: Duration) {
        let oldest = now_ms.saturating_sub(max_age.as_millis() as u64);
        while self.kept.front().is_some_and(|k| k.at_ms < oldest) {
            self.kept.pop_front();
            self.dropped = true;
        }
    }

    /// The kept messages from `index` on.
    pub(super) fn from(&self, index: usize) -> impl Iterator<Item = &Kept> {
        self.kept.iter().skip(index)
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
                let index = n.saturating_sub(oldest.offset) as usize;
                // Offsets below the oldest kept existed (here or before a
                // restart) and are gone.
                Some(Start {
                    index,
                    gap: n < oldest.offset,
                })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_messages: usize) -> HistoryLimits {
        HistoryLimits {
            patterns: Vec::new(),
            max_messages,
            max_age: Duration::from_secs(60),
            max_destinations: 10,
        }
    }

    fn log_of(n: u64, max: usize) -> Log {
        let mut log = Log::new(100);
        for i in 0..n {
            log.push(
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
    fn old_messages_expire() {
        let mut log = log_of(10, 100);
        log.expire(1_000_000 + 9000 + 60_000 - 2500, Duration::from_secs(60));
        let offsets: Vec<u64> = log.from(0).map(|k| k.offset).collect();
        assert_eq!(offsets, [107, 108, 109]);
    }
}
