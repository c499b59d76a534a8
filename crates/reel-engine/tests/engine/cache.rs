//! The read cache (`[cache]`): stored segments kept on local disk serve
//! reads with both stores down; eviction keeps it within `max_bytes` and
//! `max_age`, oldest first, and never drops a segment no store holds (those
//! are in the spool, never in the cache); a purge empties it of the
//! recording.

use std::path::Path;
use std::time::Duration;

use reel_engine::{Actor, Engine};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, Location};
use reel_storage::faults::{Fault, Ops};

use crate::common::{all_uploaded, closed_recording, event, read_all, rig, wait_for};

/// The cache's files of recording `id`.
fn cached(data_dir: &Path, id: RecordingId) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(data_dir.join("cache"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&id.to_string()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

async fn stored(engine: &Engine, id: RecordingId) {
    wait_for("stored", Duration::from_secs(20), || {
        all_uploaded(engine, id)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_segments_read_with_both_stores_down_and_eviction_spares_what_no_store_holds() {
    let rig = rig(|c| {
        c.cache.max_bytes = 12 << 10;
        c.cache.max_age = Duration::from_secs(3600);
    })
    .await;
    let engine = &rig.engine;
    let data = rig.engine.config().data_dir.clone();

    let a = closed_recording(engine, 60).await;
    stored(engine, a).await;
    let a_segments = engine.recording(a).await.unwrap().segments;
    assert!(a_segments.len() > 1, "the test wants several segments");
    assert_eq!(cached(&data, a).len(), a_segments.len());
    let status = engine.local_status().unwrap().cache;
    assert_eq!(status.segments, a_segments.len() as u64);
    assert_eq!(status.bytes, a_segments.iter().map(|s| s.size).sum::<u64>());

    // Both stores down: the cached recording reads whole, from the cache.
    rig.primary.fail_always(Ops::ALL, Fault::Error);
    rig.secondary.fail_always(Ops::ALL, Fault::Error);
    wait_for("both stores down", Duration::from_secs(10), || async {
        engine.storage_status().writing_to.is_none()
    })
    .await;
    let a_events: Vec<Event> = (0..60).map(event).collect();
    assert_eq!(read_all(engine, a).await, a_events);
    let info = engine.recording(a).await.unwrap();
    assert!(info.readability.readable, "{:?}", info.readability);
    assert_eq!(info.readability.from, ["local"]);

    // Recorded while no store takes anything: its segments wait in the
    // spool, the cache takes none of them and evicts nothing.
    // Far more than the cache holds (about 27 KB against 12 KiB), however
    // the sealer happens to cut it: a's segments must make room.
    let b = closed_recording(engine, 600).await;
    wait_for("sealed", Duration::from_secs(10), || async {
        engine.recording(b).await.unwrap().unsealed_events == 0
    })
    .await;
    let b_segments = engine.recording(b).await.unwrap().segments;
    assert!(
        b_segments
            .iter()
            .all(|s| s.locations == [Location::Local as i32])
    );
    assert!(cached(&data, b).is_empty());
    assert_eq!(cached(&data, a).len(), a_segments.len());
    let b_events: Vec<Event> = (0..600).map(event).collect();
    assert_eq!(read_all(engine, b).await, b_events);

    // The stores return: b's segments are stored and cached, the cache
    // stays within its bytes by evicting the oldest first (a's, then b's
    // first ones), and everything still reads, from wherever it is.
    rig.primary.clear();
    rig.secondary.clear();
    stored(engine, b).await;
    let status = engine.local_status().unwrap().cache;
    assert!(status.bytes <= 12 << 10, "{status:?}");
    assert!(
        cached(&data, a).is_empty(),
        "the oldest were not evicted first"
    );
    let b_cached = cached(&data, b);
    assert!(!b_cached.is_empty());
    let newest = format!("{b}-{:010}.seg", b_segments.last().unwrap().sequence);
    assert!(b_cached.contains(&newest), "{b_cached:?}");
    assert_eq!(read_all(engine, a).await, a_events);
    assert_eq!(read_all(engine, b).await, b_events);

    // A purge takes the recording out of the cache too.
    engine
        .purge(
            vec![b],
            Actor {
                by: "alice".into(),
                reason: "test".into(),
            },
            false,
        )
        .await
        .unwrap();
    assert!(cached(&data, b).is_empty());
    assert_eq!(engine.local_status().unwrap().cache.segments, 0);
    rig.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_older_than_max_age_leave_the_cache_and_a_restart_keeps_the_rest() {
    let rig = rig(|c| {
        c.cache.max_bytes = 1 << 20;
        c.cache.max_age = Duration::from_secs(1);
    })
    .await;
    let engine = &rig.engine;
    let data = rig.engine.config().data_dir.clone();
    let old = closed_recording(engine, 30).await;
    stored(engine, old).await;
    assert!(!cached(&data, old).is_empty());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let new = closed_recording(engine, 30).await;
    stored(engine, new).await;
    assert!(
        cached(&data, old).is_empty(),
        "a segment older than max_age stayed"
    );
    let kept = cached(&data, new);
    assert!(!kept.is_empty());

    let rig = crate::common::restart(rig).await;
    assert_eq!(
        rig.engine.local_status().unwrap().cache.segments,
        kept.len() as u64,
        "the cache's index is rebuilt from its files at open"
    );
    rig.primary.fail_always(Ops::ALL, Fault::Error);
    rig.secondary.fail_always(Ops::ALL, Fault::Error);
    let events: Vec<Event> = (0..30).map(event).collect();
    assert_eq!(read_all(&rig.engine, new).await, events);
    rig.engine.shutdown().await;
}
