//! Memory of the metrics recorder does not depend on being scraped: histogram
//! samples recorded with no scrape are folded on the recorder's own timer.
//! Its own test binary, so nothing else in the process moves the figures.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};
use stompede::metrics::{self, names};

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

// 24 million samples over six seconds (as a busy fan-out records, one per write
// batch) and no scrape: without upkeep they pile up (8 bytes and more each,
// about 200 MB and growing); with it, what is held stays bounded.
#[test]
fn histogram_samples_with_no_scrape_stay_bounded() {
    let _handle = metrics::install();
    let histogram = ::metrics::histogram!(names::PUBLISH_TO_WRITE_SECONDS);
    let before = rss();
    let mut peak = before;
    let start = Instant::now();
    for second in 0..6u32 {
        let until = start + Duration::from_secs(u64::from(second) + 1);
        for i in 0..4_000_000u32 {
            histogram.record(f64::from(i % 1000) * 1e-6);
        }
        peak = peak.max(rss());
        // Paced at most as fast as real time, so the upkeep timer runs between.
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }
    let grown = peak.saturating_sub(before) / (1024 * 1024);
    assert!(grown < 100, "grew {grown} MiB with no scrape");
}
