//! `reel verify` (without content checks) and `reel rebuild-catalog` over
//! 100,000 segment objects on a real S3 server (a Garage process), beside a
//! raw object_store listing of the same buckets in the same run.
//!
//! Setup: 1,000 closed recordings of 100 small segments each, encoded with
//! Reel's segment codec, put on the primary, and their rows written to a
//! catalog. Then, interleaved, 3 times each:
//!
//! - raw: `list` of both buckets through object_store, counting objects;
//! - verify: `Engine::verify` without content checks (both listings, the
//!   catalog walk, the comparison); it must find nothing wrong;
//! - rebuild: `Engine::rebuild_catalog` into an empty catalog (both
//!   listings, then a GET and a decode of every object).
//!
//! Reports objects per second of each, and verify and rebuild as ratios to
//! the raw listing. Goal: verify >= 0.50 x the raw listing.
//!
//! Run: `cargo bench --bench verify` (`-- --quick`: 10,000 segments).
//! Needs Garage (`scripts/install-garage`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};
use reel_catalog::{Batch, Catalog, RecordingId};
use reel_engine::{Engine, EngineConfig, VerifyOptions, VerifyProgress};
use reel_keys::{FileKeys, KeyProvider};
use reel_log::{SegmentSpec, encode_signed_segment};
use reel_proto::v1::{
    Event, EventKind, Location, RecordingMetadata, RecordingRow, RecordingState, SegmentRow,
};
use reel_storage::keys;
use reel_testkit::Garage;

const SEGMENTS_PER_RECORDING: u64 = 100;

/// Puts `recordings` x 100 segments on `store` and writes their rows into
/// the catalog at `catalog_dir`.
async fn populate(
    store: Arc<dyn ObjectStore>,
    catalog_dir: &std::path::Path,
    keys: &dyn KeyProvider,
    recordings: u64,
) {
    let catalog = Catalog::open(catalog_dir).unwrap();
    let mut puts = Vec::new();
    for r in 0..recordings {
        let id = RecordingId::generate();
        let metadata = RecordingMetadata {
            user: format!("user-{}", r % 17),
            target: format!("host-{}", r % 31),
            protocol: "ssh".into(),
            started_at_us: 1_700_000_000_000_000 + r as i64,
            ..Default::default()
        };
        let mut batch = Batch::new();
        let mut prev = None;
        let mut row = RecordingRow {
            id: id.to_bytes().to_vec(),
            metadata: Some(metadata.clone()),
            state: RecordingState::Closed as i32,
            close_reason: "closed".into(),
            ..Default::default()
        };
        for seq in 0..SEGMENTS_PER_RECORDING {
            let events: Vec<Event> = (0..4)
                .map(|i| Event {
                    time_us: (seq * 4 + i) * 1000,
                    kind: EventKind::Output as i32,
                    data: reel_testkit::varied_bytes(r * 1000 + seq * 4 + i, 200),
                })
                .collect();
            let last = seq + 1 == SEGMENTS_PER_RECORDING;
            let seg = encode_signed_segment(
                SegmentSpec {
                    recording_id: id.to_bytes(),
                    sequence: seq,
                    first_event_index: seq * 4,
                    prev_hash: prev,
                    metadata: metadata.clone(),
                    is_final: last,
                    duration_us: if last { (seq * 4 + 4) * 1000 } else { 0 },
                    sealed_at_us: 1,
                },
                &events,
                keys,
            );
            prev = Some(seg.sha256);
            batch.put_segment(
                id,
                &SegmentRow {
                    sequence: seq,
                    first_event_index: seq * 4,
                    event_count: 4,
                    start_time_us: seg.header.start_time_us,
                    end_time_us: seg.header.end_time_us,
                    data_bytes: 800,
                    size: seg.bytes.len() as u64,
                    sha256: seg.sha256.to_vec(),
                    locations: vec![Location::Primary as i32],
                    r#final: last,
                    content_offset: seg.content_offset,
                    blocks: seg.header.blocks.clone(),
                    ..Default::default()
                },
            );
            row.event_count += 4;
            row.data_bytes += 800;
            row.segment_count += 1;
            row.stored_bytes += seg.bytes.len() as u64;
            row.last_segment_hash = seg.sha256.to_vec();
            row.last_time_us = seg.header.end_time_us;
            row.next_event_index = seq * 4 + 4;
            row.duration_us = seg.header.duration_us;
            puts.push((keys::segment(id, seq), seg.bytes));
        }
        batch.put_recording(&row);
        catalog.commit(batch).unwrap();
    }
    catalog.close();
    futures::stream::iter(puts)
        .map(|(key, bytes)| {
            let store = store.clone();
            async move { store.put(&key, bytes.into()).await.unwrap() }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

async fn engine(data_dir: &std::path::Path, primary: &Garage, secondary: &Garage) -> Engine {
    let mut config = EngineConfig::new(data_dir);
    config.primary = primary.store_config();
    config.secondary = secondary.store_config();
    config.compactor.enabled = false;
    Engine::open(config).await.unwrap()
}

async fn raw_list(stores: &[Arc<dyn ObjectStore>]) -> u64 {
    let mut n = 0;
    for s in stores {
        n += s
            .list(Some(&Key::from("recordings")))
            .try_fold(0u64, |n, _| async move { Ok(n + 1) })
            .await
            .unwrap();
    }
    n
}

/// Copies the files of `from` (keys: flat, modes kept) into `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

fn per_s(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn main_async(quick: bool) {
    let dir = reel_testkit::bench_dir();
    let primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let stores: Vec<Arc<dyn ObjectStore>> = vec![
        Arc::new(primary.object_store()),
        Arc::new(secondary.object_store()),
    ];
    let recordings = if quick { 100 } else { 1000 };
    let segments = recordings * SEGMENTS_PER_RECORDING;
    let started = Instant::now();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Signed with the keys the engine then opens, as reeld's sealer signs.
    let signing = FileKeys::open(&data.join("keys"), None).unwrap();
    populate(
        stores[0].clone(),
        &data.join("catalog"),
        &signing,
        recordings,
    )
    .await;
    eprintln!("{segments} segments stored in {:.1?}", started.elapsed());
    let reel = engine(&data, &primary, &secondary).await;

    let (mut raw, mut verify, mut rebuild) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let t = Instant::now();
        let n = raw_list(&stores).await;
        raw.push(per_s(n, t.elapsed()));
        assert_eq!(n, segments);

        let t = Instant::now();
        let report = reel
            .verify(VerifyOptions::default(), &VerifyProgress::default())
            .await
            .unwrap();
        verify.push(per_s(report.objects, t.elapsed()));
        assert!(
            report.problems.is_empty(),
            "{:?}",
            &report.problems[..3.min(report.problems.len())]
        );
        assert_eq!(report.segments, segments);

        // A lost catalog, the keys kept: the rebuild adopts what they signed.
        let rebuilt_dir = dir.path().join(format!("rebuilt-{round}"));
        copy_dir(&data.join("keys"), &rebuilt_dir.join("keys"));
        let fresh = engine(&rebuilt_dir, &primary, &secondary).await;
        let t = Instant::now();
        let rebuilt = fresh
            .rebuild_catalog(&VerifyProgress::default(), false)
            .await
            .unwrap();
        rebuild.push(per_s(rebuilt.objects_read, t.elapsed()));
        assert_eq!(rebuilt.segments, segments);
        assert!(rebuilt.skipped.is_empty());
        fresh.shutdown().await;
    }
    let (raw, verify, rebuild) = (median(raw), median(verify), median(rebuild));
    println!(
        "## verify and rebuild-catalog over {segments} segment objects on Garage (median of 3)\n"
    );
    println!("| | objects/s | / raw listing |");
    println!("|---|---:|---:|");
    println!("| raw object_store listing of both buckets | {raw:.0} | 1.00 |");
    println!(
        "| reel verify (no content check) | {verify:.0} | {:.2} |",
        verify / raw
    );
    println!(
        "| reel rebuild-catalog (a GET and decode per object) | {rebuild:.0} | {:.2} |",
        rebuild / raw
    );
    println!(
        "\nGoal: verify >= 0.50 x the raw listing: {:.2} x",
        verify / raw
    );
    reel.shutdown().await;
}

fn main() {
    reel_testkit::bench_main(main_async);
}
