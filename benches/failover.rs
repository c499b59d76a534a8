//! Uploads and failover against real S3 servers (two Garage processes on
//! 127.0.0.1), beside the raw object_store figures of the same server in the
//! same run.
//!
//! 1. Upload throughput. For each segment size, a backlog is built while
//!    both stores refuse (the fault-injecting wrapper around the real Garage
//!    clients), then the stores return and the time for Reel to drain the
//!    backlog to the primary is measured: from the moment the router picks
//!    the primary again to an empty backlog. Each upload is a spool read, a
//!    SHA-256 check, one PUT and one synced catalog commit. Beside it: raw
//!    `put`s of the same sizes, same count, same concurrency, to the same
//!    bucket.
//! 2. Ingest while the primary fails. 100 closed-loop recorders (128-byte
//!    events, as in the ingest bench) with small segments so that uploads
//!    run all the time; acknowledgement p50/p99 with the primary healthy,
//!    then while it is killed (SIGKILL) and while it is frozen (SIGSTOP, a
//!    hung server: only time-outs tell). The switch time (failure to the
//!    router choosing the secondary) is printed for each.
//!
//! Run: `cargo bench --bench failover` (`-- --quick` for a smaller backlog
//! and shorter phases). Needs Garage (`scripts/install-garage`).

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use reel_engine::{Engine, EngineConfig, UploadMode};
use reel_testkit::Garage;

#[path = "common/upload.rs"]
mod upload;
use upload::{Failure, bodies, ingest_during, mb_per_s, raw_puts, reel_drain, wait_for_primary};

/// One upload case: raw MB/s, Reel MB/s, raw and Reel mean put time.
type UploadRun = (f64, f64, Duration, Duration);

async fn main_async(quick: bool) {
    let dir = reel_testkit::bench_dir();
    let mut primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let concurrency = EngineConfig::new("unused").upload_concurrency;
    let total: usize = if quick { 64 << 20 } else { 256 << 20 };
    let reps = if quick { 1 } else { 3 };

    println!(
        "## Upload throughput to Garage (primary), {} MiB per case, {concurrency} uploads in flight, median of {reps} runs\n",
        total >> 20
    );
    println!(
        "| segment size | raw put MB/s | Reel drain MB/s | Reel / raw | raw ms/put | Reel ms/put |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let raw_store: Arc<dyn ObjectStore> = Arc::new(primary.object_store());
    let mut ratios = Vec::new();
    for size in [1usize << 20, 8 << 20] {
        let count = total / size;
        let mut runs = Vec::new();
        for rep in 0..reps {
            let bodies = bodies(count, size, rep as u64);
            let raw_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
            let (raw, raw_put) =
                raw_puts(std::slice::from_ref(&raw_store), bodies, concurrency).await;
            let (took, bytes, reel_put) = reel_drain(
                dir.path(),
                &primary,
                &secondary,
                size,
                count,
                UploadMode::Failover,
            )
            .await;
            runs.push((
                mb_per_s(raw_bytes, raw),
                mb_per_s(bytes, took),
                raw_put,
                reel_put,
            ));
        }
        let median = |f: &dyn Fn(&UploadRun) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (raw_mb, reel_mb) = (median(&|r| r.0), median(&|r| r.1));
        ratios.push(reel_mb / raw_mb);
        println!(
            "| {} MiB | {raw_mb:.1} | {reel_mb:.1} | {:.2} | {:.1} | {:.1} |",
            size >> 20,
            reel_mb / raw_mb,
            median(&|r| r.2.as_secs_f64() * 1e3),
            median(&|r| r.3.as_secs_f64() * 1e3),
        );
    }

    let run = Duration::from_secs(if quick { 5 } else { 8 });
    println!(
        "\n## Ingest acknowledgement latency while the primary fails (100 recorders, 128-byte events, {} s per case, median of {reps} rounds)\n",
        run.as_secs()
    );
    let data = dir.path().join("ingest");
    let mut config = EngineConfig::new(&data);
    config.primary = primary.store_config();
    config.secondary = secondary.store_config();
    config.segment_target_bytes = 64 << 10;
    config.segment_max_age = Duration::from_millis(500);
    let engine = Engine::open(config).await.unwrap();
    wait_for_primary(&engine).await;
    // Rounds of (healthy, killed, frozen), so that drift and noise on two
    // shared cores fall on every case alike; medians over the rounds.
    let cases = ["healthy", "killed (SIGKILL)", "frozen (SIGSTOP)"];
    let mut p50 = vec![Vec::new(); 3];
    let mut p99 = vec![Vec::new(); 3];
    let mut switch = vec![Vec::new(); 3];
    for _ in 0..reps {
        for (c, failure) in [Failure::None, Failure::Kill, Failure::Freeze]
            .into_iter()
            .enumerate()
        {
            let failed = !matches!(failure, Failure::None);
            let (mut lat, took) = ingest_during(&engine, &mut primary, failure, run).await;
            p50[c].push(lat.percentile(0.5));
            p99[c].push(lat.percentile(0.99));
            if let Some(t) = took {
                switch[c].push(t.as_secs_f64());
            }
            if failed {
                tokio::task::block_in_place(|| primary.restart()).unwrap();
                wait_for_primary(&engine).await;
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    println!("| primary | p50 ms | p99 ms | p99 / healthy | switch to secondary (max) |");
    println!("|---|---:|---:|---:|---:|");
    let base = median(&mut p99[0]).unwrap_or(0.0);
    let mut switches = Vec::new();
    for c in 0..3 {
        let p99c = median(&mut p99[c]).unwrap_or(0.0);
        let sw = if c == 0 {
            "-".to_string()
        } else {
            switch[c]
                .iter()
                .copied()
                .reduce(f64::max)
                .map(|t| format!("{t:.2} s"))
                .unwrap_or("none".into())
        };
        println!(
            "| {} | {:.2} | {p99c:.2} | {:.2} | {sw} |",
            cases[c],
            median(&mut p50[c]).unwrap_or(0.0),
            p99c / base
        );
        if c > 0 {
            switches.push((cases[c], p99c / base, sw));
        }
    }
    engine.shutdown().await;

    println!(
        "\n### Goals: upload >= 0.90 x raw put; p99 ack within 10% of healthy during a primary failure\n"
    );
    println!(
        "upload: {}",
        ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (name, ratio, switch) in switches {
        println!("primary {name}: p99 x {ratio:.2}, switch {switch}");
    }
}

fn main() {
    reel_testkit::bench_main(main_async);
}
