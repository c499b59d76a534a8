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

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use reel_engine::{Engine, EngineConfig};
use reel_proto::v1::{Event, EventKind, RecordingMetadata};
use reel_storage::faults::{Fault, FaultyStore, Ops};
use reel_storage::{HealthConfig, Role, Router, Store};
use reel_testkit::Garage;

/// Event size of the upload cases: large, so that ingest is quick.
const EVENT_BYTES: usize = 64 << 10;

fn event(i: u64, bytes: usize) -> Event {
    let mut data = format!("\x1b[32m{i:>10}\x1b[0m ").into_bytes();
    data.resize(bytes - 2, b'.');
    data.extend_from_slice(b"\r\n");
    Event {
        time_us: i * 1000,
        kind: EventKind::Output as i32,
        data,
    }
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / 1e6
}

/// Puts of `bodies` under new keys, `concurrency` at a time.
/// Returns the total time and the mean time of one put.
async fn raw_puts(
    store: Arc<dyn ObjectStore>,
    bodies: Vec<bytes::Bytes>,
    concurrency: usize,
) -> (Duration, Duration) {
    let start = Instant::now();
    let lat = futures::stream::iter(bodies.into_iter().enumerate())
        .map(|(i, body)| {
            let store = store.clone();
            async move {
                let key = Key::from(format!("raw/{}/{i:06}", body.len()));
                let t = Instant::now();
                store.put(&key, PutPayload::from_bytes(body)).await.unwrap();
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let took = start.elapsed();
    (took, lat.iter().sum::<Duration>() / lat.len().max(1) as u32)
}

fn quick_health() -> HealthConfig {
    HealthConfig {
        probe_interval: Duration::from_millis(50),
        ..HealthConfig::default()
    }
}

/// Reel draining a backlog of `count` segments of about `size` bytes:
/// the time, the bytes and the mean time of one put.
async fn reel_drain(
    dir: &Path,
    primary: &Garage,
    secondary: &Garage,
    size: usize,
    count: usize,
) -> (Duration, u64, Duration) {
    let data = dir.join(format!("drain-{size}"));
    let mut config = EngineConfig::new(&data);
    config.segment_target_bytes = size as u64;
    config.segment_max_age = Duration::from_secs(3600);
    config.health = quick_health();
    let router = Arc::new(Router::new(config.health.clone(), config.clock.clone()));
    let build = |role, g: &Garage, health| {
        let real = Store::build(role, &g.store_config(), health).unwrap();
        let (store, handle) = FaultyStore::wrap_store(&real);
        handle.fail_always(Ops::ALL, Fault::Error);
        (store, handle)
    };
    let (p, p_faults) = build(Role::Primary, primary, router.primary.clone());
    let (s, s_faults) = build(Role::Secondary, secondary, router.secondary.clone());
    let engine = Engine::open_with_stores(config, p, s, router)
        .await
        .unwrap();

    // The backlog: recordings written while no store takes anything.
    let per_recording = size * count / 4 / EVENT_BYTES;
    let mut writers = Vec::new();
    for r in 0..4 {
        let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
        writers.push(tokio::spawn(async move {
            for i in 0..per_recording as u64 {
                w.append(None, vec![event(i + (r << 40), EVENT_BYTES)])
                    .unwrap()
                    .await
                    .unwrap();
            }
            w.close(0).await.unwrap();
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    // Closing sealed every final segment: the whole backlog is spooled.
    let local = engine.local_status().unwrap();
    assert_eq!(local.open_recordings, 0);
    assert_eq!(
        local.upload_queue as u64, local.spool_segments,
        "uploads happened while both stores refused"
    );
    assert!(local.spool_segments as usize >= count, "{local:?}");
    let backlog = engine.storage_status().backlog_bytes;

    // The primary returns first, so that every upload goes to it.
    p_faults.clear();
    while engine.storage_status().writing_to != Some(Role::Primary) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    s_faults.clear();
    while engine.storage_status().backlog_segments > 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = start.elapsed();
    let metrics = engine.metrics();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("store=\"primary\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let mean_put = Duration::from_secs_f64(
        metric("reel_upload_duration_seconds_sum")
            / metric("reel_upload_duration_seconds_count").max(1.0),
    );
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
    (took, backlog, mean_put)
}

/// One upload case: raw MB/s, Reel MB/s, raw and Reel mean put time.
type UploadRun = (f64, f64, Duration, Duration);

#[derive(Default)]
struct Latencies(Vec<u32>);

impl Latencies {
    fn percentile(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() - 1) as f64 * p).round() as usize;
        self.0[i] as f64 / 1000.0
    }
}

enum Failure {
    None,
    Kill,
    Freeze,
}

/// 100 closed-loop recorders for `run`; the failure (if any) hits the
/// primary after a fifth of it. Returns the latencies and the switch time.
async fn ingest_during(
    engine: &Engine,
    primary: &mut Garage,
    failure: Failure,
    run: Duration,
) -> (Latencies, Option<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for r in 0..100 {
        let mut w = engine
            .start(RecordingMetadata {
                user: format!("user{r}"),
                ..Default::default()
            })
            .await
            .unwrap();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                w.append(None, vec![event(i, 128)]).unwrap().await.unwrap();
                lat.push(t.elapsed().as_micros() as u32);
                i += 1;
            }
            w.close(0).await.unwrap();
            lat
        }));
    }
    tokio::time::sleep(run / 5).await;
    let failed_at = Instant::now();
    let failed = match failure {
        Failure::None => false,
        Failure::Kill => {
            primary.kill9();
            true
        }
        Failure::Freeze => {
            primary.freeze();
            true
        }
    };
    let mut switch = None;
    while failed_at.elapsed() < run * 4 / 5 {
        if failed && switch.is_none() && engine.storage_status().writing_to == Some(Role::Secondary)
        {
            switch = Some(failed_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut all = Latencies::default();
    for t in tasks {
        all.0.extend(t.await.unwrap());
    }
    (all, switch)
}

async fn wait_for_primary(engine: &Engine) {
    let start = Instant::now();
    while engine.storage_status().writing_to != Some(Role::Primary) {
        assert!(start.elapsed() < Duration::from_secs(60), "no failback");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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
            // Bytes like Reel's segments (the same events) but not the
            // same: Garage deduplicates blocks by hash and compresses them,
            // so the baseline must neither repeat Reel's bytes nor be
            // trivially compressible.
            let bodies: Vec<bytes::Bytes> = (0..count as u64)
                .map(|n| {
                    let mut body = Vec::with_capacity(size);
                    let mut i = ((rep as u64) << 48) + ((n + 1) << 32);
                    while body.len() < size {
                        body.extend_from_slice(&event(i, EVENT_BYTES).data);
                        i += 1;
                    }
                    body.truncate(size);
                    bytes::Bytes::from(body)
                })
                .collect();
            let raw_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
            let (raw, raw_put) = raw_puts(raw_store.clone(), bodies, concurrency).await;
            let (took, bytes, reel_put) =
                reel_drain(dir.path(), &primary, &secondary, size, count).await;
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
