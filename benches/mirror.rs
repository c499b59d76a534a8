//! Mirror mode against two real S3 servers (Garage processes on
//! 127.0.0.1), beside raw figures of the same servers in the same run.
//!
//! 1. Drain. A backlog is spooled while both stores refuse (the
//!    fault-injecting wrapper around the real Garage clients); then both
//!    return, and the time until both hold every segment is measured. Each
//!    segment is one spool read, a SHA-256 check, two PUTs at once and
//!    synced catalog commits. Beside it: the same number of bodies of the
//!    same size put to both buckets through object_store, with as many
//!    puts in flight in all as Reel has (`upload_concurrency`). MB/s count
//!    the backlog's bytes once.
//! 2. Ingest. 100 closed-loop recorders (128-byte events, small segments
//!    so that uploads run all the time), both stores healthy, in rounds
//!    alternating failover and mirror mode: acknowledgement p50/p99 of each.
//!    Acknowledgements wait on the journal only, so mirror mode should not
//!    move them. The rounds run twice: with the two Garage servers at the
//!    same CPU priority as Reel (on this box their work, doubled in mirror
//!    mode, competes with the recorders), and at nice 19 (Reel's threads
//!    go first, as when the stores run on other hosts).
//!
//! Run: `cargo bench --bench mirror` (`-- --quick` for a smaller backlog
//! and shorter rounds). Needs Garage (`scripts/install-garage`).

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use reel_engine::{Engine, EngineConfig, ReleaseAfter, UploadMode};
use reel_testkit::Garage;

#[path = "common/upload.rs"]
mod upload;
use upload::{Failure, bodies, ingest_during, mb_per_s, raw_puts, reel_drain, wait_for_primary};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn main_async(quick: bool) {
    let dir = reel_testkit::bench_dir();
    let mut primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let concurrency = EngineConfig::new("unused").upload_concurrency;
    let total: usize = if quick { 64 << 20 } else { 256 << 20 };
    let reps = if quick { 1 } else { 3 };
    let mirror = UploadMode::Mirror {
        release_after: ReleaseAfter::One,
    };

    println!(
        "## Mirror mode's drain to two Garage servers, {} MiB per case, {concurrency} puts in flight, median of {reps} runs\n",
        total >> 20
    );
    println!("| segment size | raw put to both MB/s | Reel mirror drain MB/s | Reel / raw |");
    println!("|---:|---:|---:|---:|");
    let stores: [Arc<dyn ObjectStore>; 2] = [
        Arc::new(primary.object_store()),
        Arc::new(secondary.object_store()),
    ];
    let mut ratios = Vec::new();
    for size in [1usize << 20, 8 << 20] {
        let count = total / size;
        let (mut raw, mut reel) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            let bodies = bodies(count, size, 100 + rep as u64);
            let raw_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
            let (took, _) = raw_puts(&stores, bodies, concurrency).await;
            raw.push(mb_per_s(raw_bytes, took));
            let (took, bytes, _) =
                reel_drain(dir.path(), &primary, &secondary, size, count, mirror).await;
            reel.push(mb_per_s(bytes, took));
        }
        let (raw_mb, reel_mb) = (median(&mut raw), median(&mut reel));
        ratios.push(reel_mb / raw_mb);
        println!(
            "| {} MiB | {raw_mb:.1} | {reel_mb:.1} | {:.2} |",
            size >> 20,
            reel_mb / raw_mb
        );
    }

    let run = Duration::from_secs(if quick { 4 } else { 8 });
    println!(
        "\n## Ingest acknowledgement latency, failover against mirror mode (100 recorders, 128-byte events, {} s per round, median of {reps} rounds)\n",
        run.as_secs()
    );
    println!("| stores' CPU priority | mode | p50 ms | p99 ms | p99 of each round |");
    println!("|---|---|---:|---:|---|");
    let mut p99_ratio = Vec::new();
    for (placement, nice) in [("same as Reel's", 0), ("nice 19", 19)] {
        for garage in [&primary, &secondary] {
            garage.renice(nice).unwrap();
        }
        let rounds = ingest_rounds(&dir, &mut primary, &secondary, mirror, run, reps).await;
        let mut p99s = Vec::new();
        for (name, mut p50, mut p99) in rounds {
            let each = p99.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>();
            let p99m = median(&mut p99);
            p99s.push(p99m);
            println!(
                "| {placement} | {name} | {:.2} | {p99m:.2} | {} |",
                median(&mut p50),
                each.join(", ")
            );
        }
        p99_ratio.push((placement, p99s[1] / p99s[0]));
    }

    println!(
        "\n### Goals: mirror drain >= 0.85 x raw put to both; ingest p99 unchanged from failover mode\n"
    );
    println!(
        "drain: {}",
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (placement, ratio) in p99_ratio {
        println!("ingest p99, stores' priority {placement}: mirror / failover = {ratio:.2}");
    }
}

/// `reps` rounds of closed-loop ingest, alternating failover and mirror
/// mode (a new engine each): each mode's name, p50s and p99s in ms.
async fn ingest_rounds(
    dir: &tempfile::TempDir,
    primary: &mut Garage,
    secondary: &Garage,
    mirror: UploadMode,
    run: Duration,
    reps: usize,
) -> Vec<(&'static str, Vec<f64>, Vec<f64>)> {
    let mut out = vec![
        ("failover", UploadMode::Failover, Vec::new(), Vec::new()),
        ("mirror", mirror, Vec::new(), Vec::new()),
    ];
    for round in 0..reps {
        for (name, mode, p50, p99) in &mut out {
            let data = dir.path().join(format!("ingest-{name}-{round}"));
            let mut config = EngineConfig::new(&data);
            config.primary = primary.store_config();
            config.secondary = secondary.store_config();
            config.segment_target_bytes = 64 << 10;
            config.segment_max_age = Duration::from_millis(500);
            config.upload_mode = *mode;
            let engine = Engine::open(config).await.unwrap();
            wait_for_primary(&engine).await;
            let (mut lat, _) = ingest_during(&engine, primary, Failure::None, run).await;
            p50.push(lat.percentile(0.5));
            p99.push(lat.percentile(0.99));
            engine.shutdown().await;
            let _ = std::fs::remove_dir_all(&data);
        }
    }
    out.into_iter()
        .map(|(name, _, p50, p99)| (name, p50, p99))
        .collect()
}

fn main() {
    reel_testkit::bench_main(main_async);
}
