//! Destinations as NATS subjects.
//!
//! A topic `/topic/w1.w2` is `stompede.t.W1.W2` and a user destination
//! `/user/{login}/queue/{queue}` is `stompede.u.LOGIN.QUEUE`, each word one NATS
//! token. A word made only of `[A-Za-z0-9_-]` is kept as it is; any other word (a
//! dot-free word holding `*`, `>`, a space, non-ASCII, or nothing) becomes `~` and
//! its bytes in hex. Plain words never hold `~`, so the mapping is injective and no
//! client-chosen word can become a NATS wildcard or reach another family's subjects.

use crate::destination::pattern::{TOPIC, collapsed, is_pattern};
use std::fmt::Write;

/// Longest subject the cluster publishes or subscribes to. NATS refuses protocol
/// lines past its `max_control_line` (4 KiB by default); this leaves room for the
/// rest of the line.
pub const MAX_SUBJECT_BYTES: usize = 3072;

/// Every topic subject starts with this.
const TOPIC_PREFIX: &str = "stompede.t";
/// Every retained value's subject starts with this (the retained stream's).
const RETAINED_PREFIX: &str = "stompede.r";
/// The subjects of the retained stream.
pub const RETAINED_SUBJECTS: &str = "stompede.r.>";
/// Every kept history message's subject starts with this (the history stream's).
const HISTORY_PREFIX: &str = "stompede.h";
/// The subjects of the history stream.
pub const HISTORY_SUBJECTS: &str = "stompede.h.>";
/// Every user destination subject starts with this.
const USER_PREFIX: &str = "stompede.u";

/// A subject too long for NATS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    /// The subject's length.
    pub bytes: usize,
}

/// Appends `.` and `word` as one safe token.
fn push_token(out: &mut String, word: &str) {
    out.push('.');
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        out.push_str(word);
    } else {
        out.push('~');
        for b in word.bytes() {
            let _ = write!(out, "{b:02x}");
        }
    }
}

fn bounded(subject: String) -> Result<String, TooLong> {
    if subject.len() > MAX_SUBJECT_BYTES {
        Err(TooLong {
            bytes: subject.len(),
        })
    } else {
        Ok(subject)
    }
}

/// The subject of a concrete topic destination (`/topic/...`, no wildcard).
pub fn topic(destination: &str) -> Result<String, TooLong> {
    topic_under(TOPIC_PREFIX, destination)
}

/// The subject that keeps a topic destination's retained value.
pub fn retained(destination: &str) -> Result<String, TooLong> {
    topic_under(RETAINED_PREFIX, destination)
}

/// The subject that keeps a history destination's messages.
pub fn history(destination: &str) -> Result<String, TooLong> {
    topic_under(HISTORY_PREFIX, destination)
}

fn topic_under(prefix: &str, destination: &str) -> Result<String, TooLong> {
    under(
        prefix,
        destination.strip_prefix(TOPIC).unwrap_or(destination),
    )
}

/// `prefix` and the dot-separated words of `name`, each one safe token.
pub fn under(prefix: &str, name: &str) -> Result<String, TooLong> {
    let mut out = String::with_capacity(prefix.len() + name.len() + 8);
    out.push_str(prefix);
    for word in name.split('.') {
        push_token(&mut out, word);
    }
    bounded(out)
}

/// The subject of `/user/{login}/queue/{queue}`.
pub fn user(login: &str, queue: &str) -> Result<String, TooLong> {
    let mut out = String::with_capacity(USER_PREFIX.len() + login.len() + queue.len() + 8);
    out.push_str(USER_PREFIX);
    push_token(&mut out, login);
    push_token(&mut out, queue);
    bounded(out)
}

/// The NATS subscriptions that together receive every message a topic pattern
/// matches, each message through exactly one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interest {
    /// Subjects to subscribe to (one or two; disjoint).
    pub subjects: Vec<String>,
    /// Whether what arrives must still be matched against the pattern here (a `#`
    /// before the last word is wider in NATS, which has `>` only at the end).
    pub filter: bool,
}

/// What to subscribe to for a topic destination or pattern. `*` is NATS' `*`; a
/// trailing `#` (zero or more words) is the prefix itself plus `prefix.>`; a `#`
/// anywhere else subscribes to everything under the words before it and filters.
pub fn topic_interest(pattern: &str) -> Result<Interest, TooLong> {
    if !is_pattern(pattern) {
        return Ok(Interest {
            subjects: vec![topic(pattern)?],
            filter: false,
        });
    }
    let name = pattern.strip_prefix(TOPIC).unwrap_or(pattern);
    let words: Vec<&str> = collapsed(name).collect();
    let first_hash = words.iter().position(|w| *w == "#");
    let literal = first_hash.unwrap_or(words.len());
    let mut prefix = String::from(TOPIC_PREFIX);
    for word in &words[..literal] {
        if *word == "*" {
            prefix.push_str(".*");
        } else {
            push_token(&mut prefix, word);
        }
    }
    let prefix = bounded(prefix)?;
    let Some(hash) = first_hash else {
        return Ok(Interest {
            subjects: vec![prefix],
            filter: false,
        });
    };
    let all_below = format!("{prefix}.>");
    // `#` alone at the end: the prefix matches with zero words, unless there is no
    // prefix word at all (a topic has at least one word, so `prefix.>` is all).
    if hash + 1 == words.len() {
        let subjects = if literal == 0 {
            vec![all_below]
        } else {
            vec![prefix, all_below]
        };
        return Ok(Interest {
            subjects,
            filter: false,
        });
    }
    Ok(Interest {
        subjects: vec![all_below],
        filter: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::pattern::matches;

    /// NATS subject matching, for checking interests against destinations.
    fn nats_matches(subject: &str, filter: &str) -> bool {
        let s: Vec<&str> = subject.split('.').collect();
        let f: Vec<&str> = filter.split('.').collect();
        for (i, t) in f.iter().enumerate() {
            match *t {
                ">" => return s.len() > i,
                "*" if i < s.len() => {}
                t if i < s.len() && s[i] == t => {}
                _ => return false,
            }
        }
        s.len() == f.len()
    }

    /// How many of an interest's subscriptions a destination's message reaches,
    /// after the local filter.
    fn arrivals(pattern: &str, destination: &str) -> usize {
        let interest = topic_interest(pattern).unwrap();
        let subject = topic(destination).unwrap();
        interest
            .subjects
            .iter()
            .filter(|f| nats_matches(&subject, f))
            .filter(|_| !interest.filter || matches(pattern, destination))
            .count()
    }

    #[test]
    fn plain_words_stay_and_others_are_hex() {
        assert_eq!(
            topic("/topic/stock-quotes.AAPL").unwrap(),
            "stompede.t.stock-quotes.AAPL"
        );
        assert_eq!(
            topic("/topic/a b.>.x*").unwrap(),
            "stompede.t.~612062.~3e.~782a"
        );
        assert_eq!(topic("/topic/.").unwrap(), "stompede.t.~.~");
        assert_eq!(topic("/topic/~41").unwrap(), "stompede.t.~7e3431");
        assert_eq!(topic("/topic/é").unwrap(), "stompede.t.~c3a9");
        assert_eq!(retained("/topic/a.b c").unwrap(), "stompede.r.a.~622063");
        assert_eq!(
            user("alice", "trade-confirmation").unwrap(),
            "stompede.u.alice.trade-confirmation"
        );
        // A login with dots stays one token: it cannot reach another login's subjects.
        assert_eq!(user("a.b", "q").unwrap(), "stompede.u.~612e62.q");
        assert_ne!(user("a.b", "q"), user("a", "b.q"));
    }

    #[test]
    fn no_two_words_share_a_token() {
        let words = [
            "a", "A", "~61", "", "*", "#", ">", "a b", "a-b", "a_b", "61",
        ];
        let tokens: std::collections::HashSet<String> = words
            .iter()
            .map(|w| topic(&format!("/topic/{w}")).unwrap())
            .collect();
        assert_eq!(tokens.len(), words.len());
        for t in &tokens {
            let last = t.rsplit('.').next().unwrap();
            assert!(last != "*" && last != ">", "{t}");
        }
    }

    #[test]
    fn wildcards_map_to_nats_wildcards() {
        let i = topic_interest("/topic/stock-quotes.*").unwrap();
        assert_eq!(i.subjects, ["stompede.t.stock-quotes.*"]);
        assert!(!i.filter);
        let i = topic_interest("/topic/a.#").unwrap();
        assert_eq!(i.subjects, ["stompede.t.a", "stompede.t.a.>"]);
        let i = topic_interest("/topic/#").unwrap();
        assert_eq!(i.subjects, ["stompede.t.>"]);
        let i = topic_interest("/topic/a.#.#").unwrap();
        assert_eq!(i.subjects, ["stompede.t.a", "stompede.t.a.>"]);
        let i = topic_interest("/topic/*.#.b").unwrap();
        assert_eq!(i.subjects, ["stompede.t.*.>"]);
        assert!(i.filter);
        let i = topic_interest("/topic/a.b").unwrap();
        assert_eq!(i.subjects, ["stompede.t.a.b"]);
    }

    /// Every pattern receives exactly the destinations it matches, each once.
    #[test]
    fn each_match_arrives_once_and_nothing_else() {
        let patterns = [
            "/topic/a",
            "/topic/a.b",
            "/topic/*",
            "/topic/a.*",
            "/topic/#",
            "/topic/a.#",
            "/topic/#.b",
            "/topic/a.#.b",
            "/topic/*.#",
            "/topic/#.*.c",
            "/topic/a.*.#",
            "/topic/x y.#",
            "/topic/a.#.#.c",
        ];
        let destinations = [
            "/topic/a",
            "/topic/b",
            "/topic/a.b",
            "/topic/a.c",
            "/topic/a.b.c",
            "/topic/a.x.b",
            "/topic/x y",
            "/topic/x y.z",
            "/topic/a.b.b",
            "/topic/c",
            "/topic/",
        ];
        for p in patterns {
            for d in destinations {
                let want = usize::from(matches(p, d));
                assert_eq!(arrivals(p, d), want, "{p} vs {d}");
            }
        }
    }

    #[test]
    fn long_subjects_are_refused() {
        let long = format!("/topic/{}", "é".repeat(MAX_SUBJECT_BYTES / 4 + 1));
        assert!(matches!(topic(&long), Err(TooLong { bytes }) if bytes > MAX_SUBJECT_BYTES));
        assert!(topic_interest(&format!("{long}.#")).is_err());
        assert!(user("alice", &"é".repeat(MAX_SUBJECT_BYTES)).is_err());
    }
}
