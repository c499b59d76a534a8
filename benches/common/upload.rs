//! What the upload benches share (`failover`, `mirror`): terminal-like
//! events, raw `put`s as the baseline, and Reel draining a spooled backlog
//! to real Garage servers.

// Each bench uses its part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use reel_engine::{Engine, EngineConfig, UploadMode};
use reel_proto::v1::{Event, EventKind, RecordingMetadata};
use reel_storage::faults::{Fault, FaultyStore, Ops};
use reel_storage::{HealthConfig, Role, Router, Store};
use reel_testkit::Garage;

/// Event size of the upload cases: large, so that ingest is quick.
pub const EVENT_BYTES: usize = 64 << 10;

pub fn event(i: u64, bytes: usize) -> Event {
    let mut data = format!("\x1b[32m{i:>10}\x1b[0m ").into_bytes();
    data.resize(bytes - 2, b'.');
    data.extend_from_slice(b"\r\n");
    Event {
        time_us: i * 1000,
        kind: EventKind::Output as i32,
        data,
    }
}

pub fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / 1e6
}

/// `count` bodies of `size` bytes that a store sees as it sees Reel's
/// segments: Reel encrypts them (the default), so they neither compress
/// nor repeat, and Garage (which compresses and deduplicates blocks) must
/// store every byte. Pseudo-random bytes (xorshift64*), new for each body;
/// `seed` keeps runs apart.
pub fn bodies(count: usize, size: usize, seed: u64) -> Vec<bytes::Bytes> {
    (0..count as u64)
        .map(|n| {
            let mut x = (seed << 32 | (n + 1)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut body = Vec::with_capacity(size + 8);
            while body.len() < size {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                body.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
            }
            body.truncate(size);
            bytes::Bytes::from(body)
        })
        .collect()
}

/// Puts of every body to every one of `stores` under new keys,
/// `concurrency` puts in flight in all. Returns the total time and the
/// mean time of one put.
pub async fn raw_puts(
    stores: &[Arc<dyn ObjectStore>],
    bodies: Vec<bytes::Bytes>,
    concurrency: usize,
) -> (Duration, Duration) {
    let puts: Vec<(Arc<dyn ObjectStore>, usize, bytes::Bytes)> = bodies
        .into_iter()
        .enumerate()
        .flat_map(|(i, body)| stores.iter().map(move |s| (s.clone(), i, body.clone())))
        .collect();
    let start = Instant::now();
    let lat = futures::stream::iter(puts)
        .map(|(store, i, body)| async move {
            let key = Key::from(format!("raw/{}/{i:06}", body.len()));
            let t = Instant::now();
            store.put(&key, PutPayload::from_bytes(body)).await.unwrap();
            t.elapsed()
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    let took = start.elapsed();
    (took, lat.iter().sum::<Duration>() / lat.len().max(1) as u32)
}

pub fn quick_health() -> HealthConfig {
    HealthConfig {
        probe_interval: Duration::from_millis(50),
        ..HealthConfig::default()
    }
}

/// Reel draining a backlog of `count` segments of about `size` bytes in
/// `mode`: the time, the bytes of the backlog and the mean time of one
/// put. The backlog is built while both stores refuse (the fault-injecting
/// wrapper around the real Garage clients). Failover mode: the primary
/// returns first, and the drain is timed from the router picking it to an
/// empty spool. Mirror mode: both return at once, and the drain is timed
/// to both stores holding every segment (an empty upload queue).
pub async fn reel_drain(
    dir: &Path,
    primary: &Garage,
    secondary: &Garage,
    size: usize,
    count: usize,
    mode: UploadMode,
) -> (Duration, u64, Duration) {
    let data = dir.join(format!("drain-{size}"));
    let mut config = EngineConfig::new(&data);
    config.segment_target_bytes = size as u64;
    config.segment_max_age = Duration::from_secs(3600);
    config.health = quick_health();
    config.upload_mode = mode;
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

    let start = match mode {
        UploadMode::Failover => {
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
            start
        }
        UploadMode::Mirror { .. } => {
            p_faults.clear();
            s_faults.clear();
            while engine.storage_status().writing_to != Some(Role::Primary) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let start = Instant::now();
            loop {
                let s = engine.local_status().unwrap();
                if s.upload_queue == 0 && s.spool_segments == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            start
        }
    };
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

#[derive(Default)]
pub struct Latencies(pub Vec<u32>);

impl Latencies {
    pub fn percentile(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() - 1) as f64 * p).round() as usize;
        self.0[i] as f64 / 1000.0
    }
}

pub enum Failure {
    None,
    Kill,
    Freeze,
}

/// 100 closed-loop recorders for `run`; the failure (if any) hits the
/// primary after a fifth of it. Returns the latencies and the switch time.
pub async fn ingest_during(
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

pub async fn wait_for_primary(engine: &Engine) {
    let start = Instant::now();
    while engine.storage_status().writing_to != Some(Role::Primary) {
        assert!(start.elapsed() < Duration::from_secs(60), "no failback");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
