//! Recombination throughput against real S3 servers (two Garage processes),
//! beside a raw copy of the same bytes through object_store in the same run.
//!
//! For recordings of 1 MiB, 64 MiB and 1 GiB (8 MiB segments, the first
//! half uploaded to the primary and the second to the secondary while the
//! primary refuses, so the recording is split):
//!
//! - raw: `get` of each segment object from its store and a multipart `put`
//!   of all of them, in order, as one new object on the primary (same part
//!   size and parts in flight as Reel): the least any recombination costs.
//! - Reel: `Engine::compact` of the recording: the same reads, each checked
//!   against its SHA-256, the same multipart write with the index, the
//!   verification (size and index read back) and the catalog commit.
//!
//! Each size is recombined by an engine storing recordings in the clear
//! (`[keys] encrypt = false`) and by one sealing them (the default), each
//! beside its own raw copy: recombination copies sealed blocks as bytes,
//! so encryption should cost it nothing but the checks. Sizes up to 64 MiB
//! are run in 3 rounds (a new split recording each, raw copy then Reel)
//! and the medians compared: one Garage multipart copy of 64 MiB varies by
//! more than half from one run to the next.
//!
//! Prints MB/s of both and their ratio, and the peak resident memory of the
//! whole bench process during Reel's recombination (Linux `VmHWM`, reset
//! through `/proc/self/clear_refs` just before): it stays far below the
//! recording's size when recombination streams.
//!
//! Then the acknowledgement latency of 100 closed-loop recorders alone and
//! while a 512 MiB recording recombines on the same engine.
//!
//! Run: `cargo bench --bench recombine` (`-- --quick` skips 1 GiB and uses
//! 64 MiB beside ingest).
//! Needs Garage (`scripts/install-garage`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use reel_engine::{Engine, EngineConfig};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, EventKind, Location, RecordingMetadata};
use reel_storage::faults::{Fault, FaultHandle, FaultyStore, Ops};
use reel_storage::{HealthConfig, PART_BYTES, PARTS_IN_FLIGHT, Role, Router, Store, keys};
use reel_testkit::Garage;

const EVENT_BYTES: usize = 64 << 10;

fn event(i: u64) -> Event {
    let data = reel_testkit::varied_bytes(i, EVENT_BYTES);
    Event {
        time_us: i * 1000,
        kind: EventKind::Output as i32,
        data,
    }
}

/// Kilobytes of the process's peak resident set since the last reset.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Flushes dirty pages (Garage's writes) and lets the machine settle.
async fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Rig {
    engine: Engine,
    primary_faults: FaultHandle,
}

/// An engine on both servers; `pace` is the compactor's byte rate limit;
/// `encrypt` whether it seals what it stores.
async fn engine_rig(
    dir: &std::path::Path,
    primary: &Garage,
    secondary: &Garage,
    pace: u64,
    encrypt: bool,
) -> Rig {
    let mut config = EngineConfig::new(dir.join(format!("reel-{pace}-{encrypt}")));
    config.encrypt = encrypt;
    config.compactor.max_bytes_per_second = pace;
    config.segment_target_bytes = 8 << 20;
    config.segment_max_age = Duration::from_secs(3600);
    config.compactor.enabled = false;
    config.health = HealthConfig {
        probe_interval: Duration::from_millis(50),
        ..HealthConfig::default()
    };
    let router = Arc::new(Router::new(config.health.clone(), config.clock.clone()));
    let p = Store::build(
        Role::Primary,
        &primary.store_config(),
        router.primary.clone(),
    )
    .unwrap();
    let (p, primary_faults) = FaultyStore::wrap_store(&p);
    let s = Store::build(
        Role::Secondary,
        &secondary.store_config(),
        router.secondary.clone(),
    )
    .unwrap();
    let engine = Engine::open_with_stores(config, p, s, router)
        .await
        .unwrap();
    Rig {
        engine,
        primary_faults,
    }
}

async fn wait_uploaded(engine: &Engine) {
    while engine.local_status().unwrap().upload_queue > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A closed recording of `bytes`, split over both stores.
async fn split_recording(rig: &Rig, bytes: usize, seed: u64) -> RecordingId {
    let engine = &rig.engine;
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    let n = (bytes / EVENT_BYTES).max(2) as u64;
    for i in 0..n / 2 {
        w.append(None, vec![event(seed + i)])
            .unwrap()
            .await
            .unwrap();
    }
    // The first half's full segments go to the primary (a 1 MiB recording
    // has none: it ends on the secondary only).
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_uploaded(engine).await;
    rig.primary_faults.fail_always(Ops::ALL, Fault::Error);
    for i in n / 2..n {
        w.append(None, vec![event(seed + i)])
            .unwrap()
            .await
            .unwrap();
    }
    w.close(0).await.unwrap();
    wait_uploaded(engine).await;
    rig.primary_faults.clear();
    while engine.storage_status().writing_to != Some(Role::Primary) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    id
}

/// get + multipart put of the recording's segment objects, as one object.
async fn raw_copy(
    engine: &Engine,
    id: RecordingId,
    primary: &Arc<dyn ObjectStore>,
    secondary: &Arc<dyn ObjectStore>,
) -> (Duration, u64) {
    let info = engine.recording(id).await.unwrap();
    let start = Instant::now();
    let upload = primary
        .put_multipart(&Key::from(format!("raw-copy/{id}")))
        .await
        .unwrap();
    let mut write = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    let mut bytes = 0;
    for s in &info.segments {
        let from = if s.locations.contains(&(Location::Primary as i32)) {
            primary
        } else {
            secondary
        };
        let body = from
            .get(&keys::segment(id, s.sequence))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        bytes += body.len() as u64;
        write.wait_for_capacity(PARTS_IN_FLIGHT - 1).await.unwrap();
        write.write(&body);
    }
    write.finish().await.unwrap();
    (start.elapsed(), bytes)
}

/// Acknowledgement latencies (µs) of 100 closed-loop recorders while
/// `work` runs, and how long it ran.
async fn recorders_during(
    engine: &Engine,
    work: impl std::future::Future<Output = ()>,
) -> (Vec<u32>, Duration) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for r in 0..100u64 {
        let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut data = format!("\x1b[32m{r:>4} {i:>10}\x1b[0m ").into_bytes();
                data.resize(126, b'.');
                data.extend_from_slice(b"\r\n");
                let e = Event {
                    time_us: i * 1000,
                    kind: EventKind::Output as i32,
                    data,
                };
                let t = Instant::now();
                w.append(None, vec![e]).unwrap().await.unwrap();
                lat.push(t.elapsed().as_micros() as u32);
                i += 1;
            }
            w.close(0).await.unwrap();
            lat
        }));
    }
    let start = Instant::now();
    work.await;
    let took = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, took)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / 1e6
}

async fn main_async(quick: bool) {
    let dir = reel_testkit::bench_dir();
    let primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let raw_primary: Arc<dyn ObjectStore> = Arc::new(primary.object_store());
    let raw_secondary: Arc<dyn ObjectStore> = Arc::new(secondary.object_store());
    let mut sizes = vec![1usize << 20, 64 << 20];
    if !quick {
        sizes.push(1 << 30);
    }
    println!(
        "## Recombination on Garage: split recordings (8 MiB segments, half on each store), {} MiB parts, {PARTS_IN_FLIGHT} in flight\n",
        PART_BYTES >> 20
    );
    println!(
        "| recording | stored | raw copy MB/s | Reel MB/s | Reel / raw | process peak RSS during Reel's run |"
    );
    println!("|---:|---|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    let mut rig = None;
    for encrypt in [false, true] {
        if let Some(old) = rig.take() {
            let old: Rig = old;
            old.engine.shutdown().await;
        }
        let this = engine_rig(dir.path(), &primary, &secondary, 0, encrypt).await;
        for (n, &size) in sizes.iter().enumerate() {
            let rounds = if size <= 64 << 20 { 3 } else { 1 };
            let (mut raw_rates, mut reel_rates, mut peak) = (Vec::new(), Vec::new(), 0);
            for round in 0..rounds {
                let seed = ((n as u64) << 40) | (round as u64) << 32;
                let id = split_recording(&this, size, seed).await;
                settle().await;
                let (raw, raw_bytes) =
                    raw_copy(&this.engine, id, &raw_primary, &raw_secondary).await;
                // The raw copy's writes reach the disk before Reel's run
                // starts, so that neither pays for the other's writeback.
                settle().await;
                reset_peak_rss();
                let start = Instant::now();
                assert_eq!(
                    this.engine.compact(Some(id)).await.unwrap(),
                    1,
                    "{:?}",
                    this.engine.compactor_status()
                );
                let took = start.elapsed();
                peak = peak.max(peak_rss_kib());
                let info = this.engine.recording(id).await.unwrap();
                let reel_bytes: u64 = info.segments.iter().map(|s| s.size).sum();
                raw_rates.push(mb_per_s(raw_bytes, raw));
                reel_rates.push(mb_per_s(reel_bytes, took));
                while this.engine.drain_deletions().await.unwrap() > 0 {}
            }
            if rounds > 1 {
                eprintln!(
                    "{} MiB {}: raw {raw_rates:.0?} MB/s, Reel {reel_rates:.0?} MB/s",
                    size >> 20,
                    if encrypt { "sealed" } else { "clear" }
                );
            }
            let (raw_mb, reel_mb) = (median(raw_rates), median(reel_rates));
            ratios.push((size, encrypt, reel_mb / raw_mb));
            let label = if size >= 1 << 30 {
                format!("{} GiB", size >> 30)
            } else {
                format!("{} MiB", size >> 20)
            };
            let stored = if encrypt { "sealed" } else { "clear" };
            println!(
                "| {label} | {stored} | {raw_mb:.1} | {reel_mb:.1} | {:.2} | {:.0} MiB |",
                reel_mb / raw_mb,
                peak as f64 / 1024.0,
            );
        }
        rig = Some(this);
    }
    let rig = rig.expect("the sealing engine");
    // Ingest beside recombination: the acknowledgement latency of 100
    // closed-loop recorders, alone and while a large recording recombines.
    let size = if quick { 64 << 20 } else { 512 << 20 };
    let id = split_recording(&rig, size, 7 << 40).await;
    settle().await;
    let (mut alone, _) = recorders_during(&rig.engine, async {
        tokio::time::sleep(Duration::from_secs(3)).await
    })
    .await;
    let engine = rig.engine.clone();
    let (mut beside, took) = recorders_during(&rig.engine, async move {
        engine.compact(Some(id)).await.unwrap();
    })
    .await;
    while rig.engine.drain_deletions().await.unwrap() > 0 {}
    rig.engine.shutdown().await;
    // The same, the compactor paced at 32 MB/s (its own engine and data).
    let paced = engine_rig(dir.path(), &primary, &secondary, 32_000_000, true).await;
    let id = split_recording(&paced, size / 4, 9 << 40).await;
    settle().await;
    let engine = paced.engine.clone();
    let (mut beside_paced, took_paced) = recorders_during(&paced.engine, async move {
        engine.compact(Some(id)).await.unwrap();
    })
    .await;
    paced.engine.shutdown().await;
    println!("\n## Ingest beside recombination (100 recorders, 128-byte events)\n");
    println!("| | events/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    for (name, lat, secs) in [
        ("alone".to_string(), &mut alone, 3.0),
        (
            format!(
                "while {} MiB recombine unpaced ({:.1} s)",
                size >> 20,
                took.as_secs_f64()
            ),
            &mut beside,
            took.as_secs_f64(),
        ),
        (
            format!(
                "while {} MiB recombine at 32 MB/s ({:.1} s)",
                size >> 22,
                took_paced.as_secs_f64()
            ),
            &mut beside_paced,
            took_paced.as_secs_f64(),
        ),
    ] {
        let n = lat.len();
        lat.sort_unstable();
        let pct = |p: f64| lat[((n - 1) as f64 * p) as usize] as f64 / 1000.0;
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} |",
            n as f64 / secs,
            pct(0.5),
            pct(0.99)
        );
    }
    println!(
        "\n### Goal: Reel >= 0.80 x the raw copy, sealed or clear; memory bounded (streamed)\n"
    );
    for (size, encrypt, r) in ratios {
        let stored = if encrypt { "sealed" } else { "clear" };
        println!("{:>5} MiB {stored}: {r:.2} x raw", size >> 20);
    }
}

fn main() {
    reel_testkit::bench_main(main_async);
}
