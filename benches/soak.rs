//! The soak (issue 11): reeld under steady load for 30 minutes against two
//! Garage servers, the primary killed every 4 minutes and back a minute
//! later; resident memory, file descriptors, journal, spool, catalog,
//! upload backlog and the compactor's and deleter's queues sampled every
//! 5 s. The driver is `reel_testkit::soak` (shared with the 2 minute CI version,
//! `tests/soak.rs`); see it for what is measured and how growth is judged.
//!
//! Load: 300 recorders, each streaming terminal-like events open loop at
//! 20 events/s (6,000 events/s, about 0.6 MB/s, in all), recordings of
//! 30 s to 3 min, 1 MiB journal files (a new one every 2 s), segments
//! sealed at 64 KiB or 30 s (10 a second), the compactor on, retention
//! purging recordings after 6 minutes (each one is exported and checked
//! byte for byte 90 s after it closed, before that). Segments are sealed
//! every 30 s rather than every second because recombination reads them
//! one at a time, and each small GET from Garage on a kept-alive
//! connection stalls about 40 ms (Nagle against delayed ACKs): the
//! compactor cannot recombine more than about 25 segments a second here,
//! and 300 recorders sealing every second would grow its queue without end
//! (a throughput limit, reported as such, not what a soak is for).
//!
//! Prints the samples (every 2 minutes; all of them as they are taken, on
//! stderr), the growth figures and the totals, writes every sample to
//! `target/soak.csv` (`scripts/plot-soak` draws it), and exits non-zero on
//! more than 10 % growth over the last 20 minutes, any refused event or any
//! acknowledged event lost.
//!
//! Run: `cargo bench --bench soak`. `REEL_SOAK_SECS` sets the length (the
//! judged window is the last 20 minutes, or the last two thirds of a
//! shorter run); `-- --quick` is 5 minutes. `REEL_SOAK_RECORDERS`,
//! `REEL_SOAK_EVENTS_PER_SECOND` and `REEL_SOAK_SEGMENT_MAX_AGE_MS` change
//! the load; `REEL_SOAK_SEED` repeats a run's choices; `REEL_SOAK_CSV`
//! writes the samples elsewhere. Needs Garage (`scripts/install-garage`).

use std::path::PathBuf;
use std::time::Duration;

use reel_testkit::soak::{SoakConfig, run};

async fn main_async(quick: bool) {
    let secs = std::env::var("REEL_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 300 } else { 1800 });
    let seed = std::env::var("REEL_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let duration = Duration::from_secs(secs);
    let dir = reel_testkit::bench_dir();
    let mut config = SoakConfig::bench(dir.path(), duration, seed);
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    if let Some(n) = var("REEL_SOAK_RECORDERS") {
        config.recorders = n as usize;
    }
    if let Some(ms) = var("REEL_SOAK_SEGMENT_MAX_AGE_MS") {
        config.segment_max_age = Duration::from_millis(ms);
    }
    if let Some(n) = var("REEL_SOAK_EVENTS_PER_SECOND") {
        config.events_per_second = n as f64;
    }
    let report = run(config).await.expect("the soak runs");
    let csv = std::env::var_os("REEL_SOAK_CSV")
        .map(PathBuf::from)
        .unwrap_or_else(|| reel_testkit::target_dir().join("soak.csv"));
    std::fs::write(&csv, report.csv()).expect("write the CSV");
    println!("{}\n", report.summary());
    println!("{}\n", report.table(Duration::from_secs(120)));
    println!("{}\n", report.growth_table());
    println!("every sample: {} (REEL_SOAK_SEED={seed})", csv.display());
    let failures = report.failures();
    if !failures.is_empty() {
        let kept = dir.keep();
        eprintln!("soak FAILED (data and logs kept in {}):", kept.display());
        for f in &failures {
            eprintln!("- {f}");
        }
        std::process::exit(1);
    }
    println!("soak passed");
}

fn main() {
    reel_testkit::bench_main(main_async);
}
