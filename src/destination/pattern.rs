//! Topic words and wildcard patterns: the limits a client's pattern must keep, and
//! matching in time linear in the destination whatever the pattern.
//!
//! A destination's words are the dot-separated parts after its family prefix
//! (`/topic/` or `/queue/`). In a pattern, a word that is exactly `*` matches one
//! word and a word that is exactly `#` zero or more (RabbitMQ semantics). A run of
//! `#` words means the same as one `#`, so runs are collapsed before matching.
//!
//! Matching simulates the pattern as a small automaton (one state per pattern word)
//! instead of backtracking: each destination word advances every live state at
//! once, so one match costs at most (pattern words + 1) × (destination words) steps.

use thiserror::Error;

/// The family prefix of topics.
pub const TOPIC: &str = "/topic/";

/// Bounds on the size of one topic destination or pattern (`limits.max_topic_words`,
/// `limits.max_topic_wildcards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLimits {
    /// Dot-separated words in one topic destination or pattern.
    pub max_words: usize,
    /// `*` and `#` words in one pattern.
    pub max_wildcards: usize,
}

/// Why a topic destination or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    /// More words than `limits.max_topic_words`.
    #[error("topic has {words} words; at most {max} allowed (limits.max_topic_words)")]
    TooManyWords {
        /// Words seen (counting stops just past the limit).
        words: usize,
        /// The limit.
        max: usize,
    },
    /// More wildcards than `limits.max_topic_wildcards`.
    #[error(
        "topic pattern has {wildcards} wildcards; at most {max} allowed (limits.max_topic_wildcards)"
    )]
    TooManyWildcards {
        /// Wildcards seen.
        wildcards: usize,
        /// The limit.
        max: usize,
    },
}

impl TopicError {
    /// A short, bounded label for `stompede_errors_sent_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            TopicError::TooManyWords { .. } => "too_many_topic_words",
            TopicError::TooManyWildcards { .. } => "too_many_topic_wildcards",
        }
    }
}

/// Checks a topic name (the part after `/topic/`) against `limits`. Stops counting
/// just past a limit, so a hostile header costs no more than the limit to check.
pub fn check_topic(name: &str, limits: TopicLimits) -> Result<(), TopicError> {
    let (mut words, mut wildcards) = (0, 0);
    for w in name.split('.') {
        words += 1;
        if words > limits.max_words {
            return Err(TopicError::TooManyWords {
                words,
                max: limits.max_words,
            });
        }
        if is_wildcard(w) {
            wildcards += 1;
            if wildcards > limits.max_wildcards {
                return Err(TopicError::TooManyWildcards {
                    wildcards,
                    max: limits.max_wildcards,
                });
            }
        }
    }
    Ok(())
}

/// Whether `word` is a wildcard word (`*` or `#`, alone).
pub fn is_wildcard(word: &str) -> bool {
    word == "*" || word == "#"
}

/// Whether a destination of the family `family` is a wildcard pattern.
pub fn is_pattern_in(family: &str, destination: &str) -> bool {
    destination
        .strip_prefix(family)
        .is_some_and(|name| name.split('.').any(is_wildcard))
}

/// Whether a topic destination is a wildcard pattern.
pub fn is_pattern(destination: &str) -> bool {
    is_pattern_in(TOPIC, destination)
}

/// The words of a pattern with every run of `#` collapsed to one.
pub fn collapsed(name: &str) -> impl Iterator<Item = &str> {
    let mut previous_hash = false;
    name.split('.').filter(move |w| {
        let hash = *w == "#";
        let keep = !(hash && previous_hash);
        previous_hash = hash;
        keep
    })
}

/// Whether topic `destination` matches `pattern` (a pattern without wildcards
/// matches only itself).
pub fn matches(pattern: &str, destination: &str) -> bool {
    matches_in(TOPIC, pattern, destination)
}

/// [`matches`] for the destinations under `family` (`/topic/` or `/queue/`). A
/// pattern never matches outside its own family.
pub fn matches_in(family: &str, pattern: &str, destination: &str) -> bool {
    let (Some(p), Some(d)) = (
        pattern.strip_prefix(family),
        destination.strip_prefix(family),
    ) else {
        return false;
    };
    if !p.split('.').any(is_wildcard) {
        return p == d;
    }
    // Cheap rejection without allocating (this runs on every publish to check the
    // retain patterns): the words before the first wildcard must match literally.
    let literal_words = p.split('.').take_while(|w| !is_wildcard(w)).count();
    if p.split('.')
        .zip(d.split('.'))
        .take(literal_words)
        .any(|(a, b)| a != b)
    {
        return false;
    }
    let tokens: Vec<&str> = collapsed(p).collect();
    Automaton::new(&tokens).accepts(d.split('.'))
}

/// A pattern run as a nondeterministic automaton: state `i` means "the first `i`
/// pattern words are matched".
struct Automaton<'p> {
    tokens: &'p [&'p str],
}

impl<'p> Automaton<'p> {
    fn new(tokens: &'p [&'p str]) -> Self {
        Automaton { tokens }
    }

    /// Adds the states reachable without reading a word: past each `#` (zero words).
    fn close(&self, live: &mut [bool]) {
        for i in 0..self.tokens.len() {
            if live[i] && self.tokens[i] == "#" {
                live[i + 1] = true;
            }
        }
    }

    fn accepts<'d>(&self, words: impl Iterator<Item = &'d str>) -> bool {
        let n = self.tokens.len();
        let mut live = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        live[0] = true;
        self.close(&mut live);
        for word in words {
            next.fill(false);
            let mut any = false;
            for i in 0..n {
                if !live[i] {
                    continue;
                }
                match self.tokens[i] {
                    // `#` takes this word and may take more.
                    "#" => next[i] = true,
                    "*" => next[i + 1] = true,
                    literal if literal == word => next[i + 1] = true,
                    _ => continue,
                }
                any = true;
            }
            if !any {
                return false;
            }
            self.close(&mut next);
            std::mem::swap(&mut live, &mut next);
        }
        live[n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious backtracking definition, for comparison on small inputs.
    fn reference(p: &[&str], d: &[&str]) -> bool {
        match p.split_first() {
            None => d.is_empty(),
            Some((&"#", rest)) => (0..=d.len()).any(|skip| reference(rest, &d[skip..])),
            Some((&"*", rest)) => !d.is_empty() && reference(rest, &d[1..]),
            Some((w, rest)) => d.first() == Some(w) && reference(rest, &d[1..]),
        }
    }

    #[test]
    fn agrees_with_the_backtracking_definition() {
        // Every pattern of up to 4 words over {a, b, *, #} against every destination
        // of up to 4 words over {a, b}.
        let alphabet = ["a", "b", "*", "#"];
        let mut patterns: Vec<Vec<&str>> = vec![vec![]];
        for _ in 0..4 {
            let longer: Vec<Vec<&str>> = patterns
                .iter()
                .filter(|p| p.len() == patterns.last().map_or(0, |l| l.len()))
                .flat_map(|p| {
                    alphabet.iter().map(move |w| {
                        let mut q = p.clone();
                        q.push(w);
                        q
                    })
                })
                .collect();
            patterns.extend(longer);
        }
        let mut dests: Vec<Vec<&str>> = vec![vec!["a"], vec!["b"]];
        for _ in 0..3 {
            let longer: Vec<Vec<&str>> = dests
                .iter()
                .flat_map(|d| {
                    ["a", "b"].iter().map(move |w| {
                        let mut e = d.clone();
                        e.push(w);
                        e
                    })
                })
                .collect();
            dests.extend(longer);
        }
        dests.sort();
        dests.dedup();
        for p in patterns.iter().filter(|p| !p.is_empty()) {
            let pattern = format!("/topic/{}", p.join("."));
            for d in &dests {
                let destination = format!("/topic/{}", d.join("."));
                assert_eq!(
                    matches(&pattern, &destination),
                    reference(p, d),
                    "{pattern} vs {destination}"
                );
            }
        }
    }

    #[test]
    fn rabbitmq_examples() {
        assert!(matches("/topic/stock-quotes.*", "/topic/stock-quotes.AAPL"));
        assert!(!matches("/topic/stock-quotes.*", "/topic/stock-quotes"));
        assert!(matches("/topic/stock-quotes.#", "/topic/stock-quotes"));
        assert!(matches("/topic/a.#.c", "/topic/a.b.x.c"));
        assert!(!matches("/topic/a.*.c", "/topic/a.c"));
        assert!(matches("/topic/x", "/topic/x") && !matches("/topic/x", "/topic/y"));
        assert!(!matches("/topic/a*", "/topic/ab"));
    }

    #[test]
    fn never_across_families() {
        assert!(!matches("/topic/#", "/user/alice/queue/x"));
        assert!(!matches("/topic/#", "/queue/x"));
        assert!(!matches_in(
            "/queue/",
            "/queue/orders.*",
            "/topic/orders.eu"
        ));
        assert!(matches_in("/queue/", "/queue/jobs.#", "/queue/jobs.a.b"));
        assert!(!matches(
            "/topic//user/alice/queue/c.#",
            "/user/alice/queue/c"
        ));
    }

    #[test]
    fn hostile_patterns_match_in_linear_time() {
        // Once cubic (or worse) in the number of `#`: now one pass per word.
        let pattern = format!("/topic/{}#", "#.".repeat(4086));
        let destination = format!("/topic/{}z", "w.".repeat(4000));
        assert!(matches(&pattern, &destination));
        let pattern = format!("/topic/{}zz", "#.".repeat(1000));
        assert!(!matches(&pattern, &destination));
        let pattern = format!("/topic/{}w", "#.w.".repeat(500));
        assert!(!matches(&pattern, &destination));
    }

    #[test]
    fn runs_of_hash_collapse() {
        assert_eq!(
            collapsed("#.#.a.#.#.#.*.#").collect::<Vec<_>>(),
            ["#", "a", "#", "*", "#"]
        );
        assert_eq!(collapsed("a.b").collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn limits_count_words_and_wildcards() {
        let l = TopicLimits {
            max_words: 4,
            max_wildcards: 2,
        };
        assert!(check_topic("a.b.c.d", l).is_ok());
        assert!(check_topic("*.#.c", l).is_ok());
        assert_eq!(
            check_topic("a.b.c.d.e", l),
            Err(TopicError::TooManyWords { words: 5, max: 4 })
        );
        assert_eq!(
            check_topic("*.*.*", l),
            Err(TopicError::TooManyWildcards {
                wildcards: 3,
                max: 2
            })
        );
        // Words that merely contain a wildcard character are literal.
        assert!(check_topic("a*.b#.c*", l).is_ok());
    }
}
