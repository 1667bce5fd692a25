//! Memory of the metrics recorder does not depend on being scraped: histogram
//! samples recorded with no scrape are folded on the recorder's own timer.
//! Its own test binary, so nothing else in the process moves the figures.

#![allow(clippy::unwrap_used)]

use std::time::Duration;
use stompede::metrics::{self, names};

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

// 20 million samples (as a busy fan-out records, one per write batch) and no
// scrape: without upkeep they pile up (8 bytes and more each, about 170 MB and
// growing); with it, what is held stays bounded. Recorded in rounds with a pause
// longer than the upkeep's period between them, so the reading does not depend
// on how fast this machine records.
#[test]
fn histogram_samples_with_no_scrape_stay_bounded() {
    let _handle = metrics::install();
    let histogram = ::metrics::histogram!(names::PUBLISH_TO_WRITE_SECONDS);
    let before = rss();
    let mut peak = before;
    for _ in 0..10 {
        for i in 0..2_000_000u32 {
            histogram.record(f64::from(i % 1000) * 1e-6);
        }
        peak = peak.max(rss());
        std::thread::sleep(metrics::UPKEEP_EVERY + Duration::from_millis(500));
    }
    let grown = peak.saturating_sub(before) / (1024 * 1024);
    assert!(grown < 100, "grew {grown} MiB with no scrape");
}
