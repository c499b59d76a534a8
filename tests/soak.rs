//! The soak's CI version: two minutes of the 30 minute bench's load
//! (`benches/soak.rs`; the driver is `reel_testkit::soak`) against a debug reeld:
//! 100 recorders streaming terminal events open loop (2,000 events/s in
//! all), recordings of 20 to 40 s opening and closing, 1 MiB journal files
//! (a new one every 5 s) and segments sealed every 8 s, the compactor on,
//! retention purging recordings after 60 s, and the primary Garage killed
//! every 40 s and restarted 8 s later. It fails on any refused event, on
//! any acknowledged event missing or different in an export, and on growth.
//!
//! Growth is judged on the last 70 s (after 50 s of warm-up), only on
//! samples taken while the primary has been back for at least 8 s, each the
//! mean of 7 consecutive samples (14 s) without their lowest and highest,
//! as the largest of those against the first one (see `reel_testkit::soak::Growth`;
//! journal, spool and backlog against at least two journal files, the
//! compactor's and the deleter's queues against at least one item per
//! recorder, the catalog's files against its memtable budget, 8 MiB: what
//! flushes add before a compaction merges them). The bound is 25 % for
//! every quantity; the audit log, the catalog's write-ahead log (bounded by
//! its own budget) and its memtables are reported, not judged:
//! - flat here measures at +1 to +15 % (resident memory about +6 %, the
//!   journal +11 %, the compactor's queue +15 % of its floor): the window
//!   is 70 s, a handful of journal rotations and outage cycles, on two
//!   cores that also run both Garage servers and the load;
//! - a leak breaks 25 % by far in 70 s: the load is 200 kB/s of events, 12
//!   segments and 3 recordings a second. A journal or a spool that keeps
//!   its files gains 14 MiB (7x the floor); a descriptor or a connection
//!   kept per recording, 230 fds against 145; memory kept per event (100
//!   bytes would be 14 MiB against about 45 MiB); a queue entry kept per
//!   segment or per recording, 840 or 230 entries against a floor of 100.
//! - the catalog's files: in two minutes its writes (about 0.6 MiB a
//!   minute here) stay in its memtables and log, below their 8 MiB
//!   budgets, and nothing is flushed yet; the 30 minute bench judges the
//!   files, and the memtables and log are reported here.

use std::time::Duration;

use reel_testkit::Rng;
use reel_testkit::soak::{SoakConfig, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_minutes_of_load_and_primary_failures_stay_flat_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let seed = Rng::from_env("soak").next_u64();
    let config = SoakConfig {
        duration: Duration::from_secs(120),
        recorders: 100,
        events_per_second: 20.0,
        recording_length: (Duration::from_secs(20), Duration::from_secs(40)),
        outage_period: Duration::from_secs(40),
        outage_length: Duration::from_secs(8),
        settle: Duration::from_secs(8),
        sample_interval: Duration::from_secs(2),
        warmup: Duration::from_secs(50),
        window: Duration::from_secs(70),
        smooth: 7,
        segment_max_age: Duration::from_secs(8),
        growth_limit: 0.25,
        retention: Some((Duration::from_secs(60), Duration::from_secs(3))),
        check_after: Duration::from_secs(2),
        verbose: true,
        ..SoakConfig::bench(dir.path(), Duration::from_secs(120), seed)
    };
    let report = run(config).await.expect("the soak runs");
    eprintln!(
        "{}\n\n{}\n\n{}",
        report.summary(),
        report.table(Duration::from_secs(10)),
        report.growth_table()
    );
    let failures = report.failures();
    if !failures.is_empty() {
        let kept = dir.keep();
        panic!(
            "the soak failed (data and logs kept in {}):\n{}",
            kept.display(),
            failures.join("\n")
        );
    }
}
