//! The rig of the engine's store tests: an engine on two real local
//! directory stores, each behind the fault-injecting wrapper.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStore;
use reel_engine::{Engine, EngineConfig, RecordingWriter};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, EventKind, Location, RecordingMetadata};
use reel_storage::faults::{Fault, FaultHandle, FaultyStore, Ops};
use reel_storage::{DurableLocalStore, HealthConfig, Role, Router, Store, keys};
pub use reel_testkit::wait_for;

pub fn event(i: u64) -> Event {
    Event {
        time_us: i * 1000,
        kind: EventKind::Output as i32,
        data: format!("event {i:08} {}\r\n", "#".repeat((i % 50) as usize)).into_bytes(),
    }
}

pub struct Rig {
    pub engine: Engine,
    pub primary: FaultHandle,
    pub secondary: FaultHandle,
    pub primary_store: Arc<DurableLocalStore>,
    pub secondary_store: Arc<DurableLocalStore>,
    pub dir: tempfile::TempDir,
}

pub fn health() -> HealthConfig {
    HealthConfig {
        op_timeout: Duration::from_millis(300),
        op_timeout_per_mib: Duration::from_millis(100),
        failure_threshold: 3,
        suspect_window: Duration::from_millis(500),
        probe_interval: Duration::from_millis(100),
        healthy_probe_interval: Duration::from_millis(500),
        recovery_successes: 2,
    }
}

pub async fn rig(tune: impl FnOnce(&mut EngineConfig)) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path().join("data"));
    config.segment_target_bytes = 2048;
    config.segment_max_age = Duration::from_millis(200);
    config.min_free_disk_bytes = 0;
    config.health = health();
    // Tests that want it run the compactor themselves.
    config.compactor.enabled = false;
    tune(&mut config);
    let primary_store = Arc::new(DurableLocalStore::new(dir.path().join("primary")).unwrap());
    let secondary_store = Arc::new(DurableLocalStore::new(dir.path().join("secondary")).unwrap());
    open_rig(config, primary_store, secondary_store, dir).await
}

/// The rig's engine stopped (what was in flight is cut short, as by a crash
/// of the process) and opened again on the same directory and stores, with
/// new fault handles that inject nothing.
pub async fn restart(rig: Rig) -> Rig {
    restart_with(rig, |_| {}).await
}

/// [`restart`], with the configuration changed by `tune`.
pub async fn restart_with(rig: Rig, tune: impl FnOnce(&mut EngineConfig)) -> Rig {
    let mut config = rig.engine.config().clone();
    tune(&mut config);
    rig.engine.shutdown().await;
    rig.primary.release();
    rig.secondary.release();
    let Rig {
        engine,
        primary_store,
        secondary_store,
        dir,
        ..
    } = rig;
    drop(engine);
    open_rig(config, primary_store, secondary_store, dir).await
}

async fn open_rig(
    config: EngineConfig,
    primary_store: Arc<DurableLocalStore>,
    secondary_store: Arc<DurableLocalStore>,
    dir: tempfile::TempDir,
) -> Rig {
    let router = Arc::new(Router::new(config.health.clone(), config.clock.clone()));
    let (p, primary) = FaultyStore::wrap(primary_store.clone());
    let (s, secondary) = FaultyStore::wrap(secondary_store.clone());
    let engine = Engine::open_with_stores(
        config,
        Store::new(Role::Primary, p, "faulty primary", router.primary.clone()),
        Store::new(
            Role::Secondary,
            s,
            "faulty secondary",
            router.secondary.clone(),
        ),
        router,
    )
    .await
    .unwrap();
    Rig {
        engine,
        primary,
        secondary,
        primary_store,
        secondary_store,
        dir,
    }
}

/// A configuration of the engine alone on `dir` (its default local
/// stores) that cuts small segments and seals them after `max_age`.
pub fn small_segments_aged(dir: &std::path::Path, max_age: Duration) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.segment_target_bytes = 4096;
    c.segment_max_age = max_age;
    c.min_free_disk_bytes = 0;
    c
}

/// [`small_segments_aged`], sealing idle recordings after 300 ms.
pub fn small_segments(dir: &std::path::Path) -> EngineConfig {
    small_segments_aged(dir, Duration::from_millis(300))
}

/// Every event of a recording, read back.
pub async fn read_all(engine: &Engine, id: RecordingId) -> Vec<Event> {
    engine
        .events(id)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
}

pub async fn write(w: &mut RecordingWriter, range: std::ops::Range<u64>) {
    for i in range {
        w.append(None, vec![event(i)]).unwrap().await.unwrap();
    }
}

/// Every segment is uploaded (to any store).
/// A recording of events `0..n`, closed.
pub async fn closed_recording(engine: &Engine, n: u64) -> RecordingId {
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    write(&mut w, 0..n).await;
    w.close(0).await.unwrap();
    id
}

pub async fn all_uploaded(engine: &Engine, id: RecordingId) -> bool {
    let info = engine.recording(id).await.unwrap();
    info.unsealed_events == 0
        && !info.segments.is_empty()
        && info
            .segments
            .iter()
            .all(|s| !s.locations.contains(&(Location::Local as i32)))
}

pub fn locations(info: &reel_engine::RecordingInfo) -> Vec<Vec<i32>> {
    info.segments.iter().map(|s| s.locations.clone()).collect()
}

/// A closed recording of `n` events, the first third uploaded to the
/// primary, the rest to the secondary while the primary fails.
pub async fn split_recording(rig: &Rig, n: u64) -> (RecordingId, Vec<Event>) {
    let engine = &rig.engine;
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    write(&mut w, 0..n / 3).await;
    wait_for("on the primary", Duration::from_secs(5), || {
        all_uploaded(engine, id)
    })
    .await;
    rig.primary.fail_always(Ops::ALL, Fault::Error);
    write(&mut w, n / 3..n).await;
    w.close(0).await.unwrap();
    wait_for("all stored", Duration::from_secs(10), || {
        all_uploaded(engine, id)
    })
    .await;
    assert_eq!(
        engine.recording(id).await.unwrap().placement().to_string(),
        "split"
    );
    rig.primary.clear();
    wait_for_failback(engine).await;
    (id, (0..n).map(event).collect())
}

/// Waits until uploads go to the primary again.
pub async fn wait_for_failback(engine: &Engine) {
    wait_for("failback", Duration::from_secs(5), || async {
        engine.storage_status().writing_to == Some(Role::Primary)
    })
    .await;
}

/// Every object key in a store, but health probes and the audit log's
/// copies.
pub async fn objects(store: &DurableLocalStore) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.retain(|k| !k.starts_with("_reel/") && !k.starts_with("audit/"));
    keys.sort();
    keys
}

/// The recording is one object on the primary (beside its key object),
/// nothing of it is left anywhere else (but its key object), and it reads back as written.
pub async fn assert_recombined(rig: &Rig, id: RecordingId, events: &[Event]) {
    let engine = &rig.engine;
    while engine.drain_deletions().await.unwrap() > 0 {}
    assert_eq!(engine.pending_deletions().await.unwrap(), 0);
    assert_eq!(
        objects(&rig.primary_store).await,
        vec![
            keys::data_key(id).to_string(),
            keys::recording_object(id).to_string()
        ],
        "the primary holds exactly the combined object and its key object"
    );
    let mut on_secondary = objects(&rig.secondary_store).await;
    // A key object stays wherever the recording had objects.
    on_secondary.retain(|k| *k != keys::data_key(id).to_string());
    assert!(
        on_secondary.is_empty(),
        "the secondary holds nothing of the recording but its key object"
    );
    let info = engine.recording(id).await.unwrap();
    assert_eq!(info.recombine, None);
    assert_eq!(info.placement().to_string(), "primary");
    assert!(info.row.combined_size > 0);
    assert!(
        info.segments
            .iter()
            .all(|s| s.locations == [Location::Primary as i32]
                && s.uncertain.is_empty()
                && s.combined_offset.is_some())
    );
    assert_eq!(
        engine
            .events(id)
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap(),
        events
    );
    // The object is self-describing: its index names every segment.
    let bytes =
        object_store::ObjectStoreExt::get(rig.primary_store.as_ref(), &keys::recording_object(id))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    assert_eq!(bytes.len() as u64, info.row.combined_size);
    assert_eq!(reel_log::sha256(&bytes).to_vec(), info.row.combined_sha256);
    let index = reel_log::combined::decode_index(&bytes).unwrap();
    assert_eq!(index.segments.len(), info.segments.len());
    for (entry, seg) in index.segments.iter().zip(&info.segments) {
        let part = &bytes[entry.offset as usize..(entry.offset + entry.size) as usize];
        assert_eq!(reel_log::sha256(part).to_vec(), seg.sha256);
    }
}

/// Runs the compactor on `id` until it is recombined.
pub async fn compact_until_done(engine: &Engine, id: RecordingId) {
    for _ in 0..10 {
        if engine.compact(Some(id)).await.is_ok()
            && engine.recording(id).await.unwrap().recombine.is_none()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!(
        "recording {id} never recombined: {:?}",
        engine.compactor_status()
    );
}

/// `engine.verify` with `options`, which must not fail.
pub async fn verify(
    engine: &Engine,
    options: reel_engine::VerifyOptions,
) -> reel_engine::VerifyReport {
    engine
        .verify(options, &reel_engine::VerifyProgress::default())
        .await
        .unwrap()
}
