//! Mirror mode on real local-directory stores: a recombined recording is
//! one combined object on each store; when one store's is lost or altered,
//! `verify` finds it and repair copies the other store's back. When that
//! copy cannot be made, repair stops naming the lost copy without calling
//! the recording damaged (the other store's remains), and the catch-up at
//! the next start gives the store its copy again, from which the recording
//! reads with the other store failing.

use std::time::Duration;

use object_store::ObjectStoreExt;
use reel_engine::{Engine, ReleaseAfter, UploadMode, VerifyOptions};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, Location};
use reel_storage::DurableLocalStore;
use reel_storage::faults::{Fault, Ops};
use reel_storage::keys;

use crate::common::{
    Rig, closed_recording, compact_until_done, event, read_all, restart, rig, verify, wait_for,
};

/// Every segment is named on both stores.
async fn on_both(engine: &Engine, id: RecordingId) -> bool {
    let both = [Location::Primary as i32, Location::Secondary as i32];
    let info = engine.recording(id).await.unwrap();
    info.unsealed_events == 0 && info.segments.iter().all(|s| s.locations == both)
}

/// A mirror-mode rig holding one closed recording of 300 events,
/// recombined into one combined object on each store.
async fn recombined_on_both() -> (Rig, RecordingId) {
    let rig = rig(|c| {
        c.upload_mode = UploadMode::Mirror {
            release_after: ReleaseAfter::One,
        };
    })
    .await;
    let engine = &rig.engine;
    let id = closed_recording(engine, 300).await;
    wait_for("on both stores", Duration::from_secs(20), || {
        on_both(engine, id)
    })
    .await;
    compact_until_done(engine, id).await;
    while engine.drain_deletions().await.unwrap() > 0 {}
    let info = engine.recording(id).await.unwrap();
    assert!(info.segments.len() > 1);
    assert!(on_both_combined(engine, id).await, "{:?}", info.segments);
    (rig, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_or_altered_combined_copy_is_copied_back_from_the_other_store_or_else_forgotten_and_copied_again()
 {
    let (rig, id) = recombined_on_both().await;
    let engine = &rig.engine;
    let info = engine.recording(id).await.unwrap();
    let combined = keys::recording_object(id);
    for store in [&rig.primary_store, &rig.secondary_store] {
        assert!(store.head(&combined).await.is_ok());
        let seg0 = keys::segment(id, info.segments[0].sequence);
        assert!(store.head(&seg0).await.is_err(), "a segment object stayed");
    }
    let clean = verify(
        engine,
        VerifyOptions {
            content: true,
            ..Default::default()
        },
    )
    .await;
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);

    let events: Vec<Event> = (0..300).map(event).collect();
    let original = object(&rig.primary_store, &combined).await;

    // The secondary's combined object is lost: repair copies the
    // primary's back, and the secondary alone serves the recording.
    rig.secondary_store.delete(&combined).await.unwrap();
    let found = verify(engine, VerifyOptions::default()).await;
    assert_eq!(found.problems.len(), 1, "{:?}", found.problems);
    assert_eq!(found.problems[0].store, Location::Secondary);
    assert_eq!(found.problems[0].key, combined.to_string());
    let repaired = verify(engine, repair(false)).await;
    assert!(repaired.damaged.is_empty(), "{:?}", repaired.damaged);
    let note = repaired.problems[0].repair.clone().unwrap_or_default();
    assert!(
        note.contains("restored from the primary's combined object"),
        "{note}"
    );
    assert_eq!(object(&rig.secondary_store, &combined).await, original);
    assert!(on_both_combined(engine, id).await);
    rig.primary.fail_always(Ops::ALL, Fault::Error);
    assert_eq!(read_all(engine, id).await, events);
    rig.primary.clear();

    // A byte of the primary's combined object is changed (same size):
    // `verify --content` finds the segment it falls in, and repair copies
    // the secondary's object back over it.
    let mut altered = original.to_vec();
    let middle = altered.len() / 3;
    altered[middle] ^= 0x20;
    rig.primary_store
        .put(&combined, altered.into())
        .await
        .unwrap();
    let repaired = verify(engine, repair(true)).await;
    assert!(!repaired.problems.is_empty());
    for p in &repaired.problems {
        assert_eq!(p.store, Location::Primary, "{p:?}");
        let note = p.repair.clone().unwrap_or_default();
        assert!(
            note.contains("restored from the secondary's combined object"),
            "{note}"
        );
    }
    assert!(repaired.damaged.is_empty(), "{:?}", repaired.damaged);
    assert_eq!(object(&rig.primary_store, &combined).await, original);
    let clean = verify(engine, repair(true)).await;
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);

    // The secondary's combined object is lost while the secondary refuses
    // writes: repair cannot copy it back, so the catalog stops naming that
    // copy, without calling the recording damaged (the primary's remains).
    rig.secondary_store.delete(&combined).await.unwrap();
    rig.secondary
        .fail_always(Ops::PUT.union(Ops::PART), Fault::Error);
    let repaired = verify(engine, repair(false)).await;
    rig.secondary.clear();
    assert!(repaired.damaged.is_empty(), "{:?}", repaired.damaged);
    let note = repaired.problems[0].repair.clone().unwrap_or_default();
    assert!(note.contains("the other store's copy remains"), "{note}");
    let info = engine.recording(id).await.unwrap();
    assert!(
        info.segments
            .iter()
            .all(|s| s.locations == [Location::Primary as i32] && !s.secondary_combined)
    );
    assert_eq!(read_all(engine, id).await, events);

    // At the next start mirror mode finds the copies the secondary lacks
    // and makes them, as segment objects read from the primary's combined
    // object; then the recording reads from the secondary alone.
    let rig = restart(rig).await;
    let engine = &rig.engine;
    wait_for("copied again", Duration::from_secs(20), || {
        on_both(engine, id)
    })
    .await;
    let again = verify(
        engine,
        VerifyOptions {
            content: true,
            ..Default::default()
        },
    )
    .await;
    assert!(again.problems.is_empty(), "{:?}", again.problems);
    rig.primary.fail_always(Ops::ALL, Fault::Error);
    assert_eq!(read_all(engine, id).await, events);
    rig.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_primary_combined_object_that_repair_could_not_copy_back_is_copied_at_the_next_start()
 {
    let (rig, id) = recombined_on_both().await;
    let combined = keys::recording_object(id);
    let original = object(&rig.secondary_store, &combined).await;
    let events: Vec<Event> = (0..300).map(event).collect();

    rig.primary_store.delete(&combined).await.unwrap();
    rig.primary
        .fail_always(Ops::PUT.union(Ops::PART), Fault::Error);
    let repaired = verify(&rig.engine, repair(false)).await;
    rig.primary.clear();
    assert_eq!(repaired.problems.len(), 1, "{:?}", repaired.problems);
    assert!(repaired.damaged.is_empty(), "{:?}", repaired.damaged);
    let note = repaired.problems[0].repair.clone().unwrap_or_default();
    assert!(note.contains("the other store's copy remains"), "{note}");
    let info = rig.engine.recording(id).await.unwrap();
    assert!(
        info.segments
            .iter()
            .all(|s| s.locations == [Location::Secondary as i32]
                && s.secondary_combined
                && s.combined_offset.is_some()),
        "{:?}",
        info.segments
    );
    assert_eq!(read_all(&rig.engine, id).await, events);

    let rig = restart(rig).await;
    let engine = &rig.engine;
    wait_for("the primary's copy back", Duration::from_secs(20), || {
        on_both_combined(engine, id)
    })
    .await;
    assert_eq!(object(&rig.primary_store, &combined).await, original);
    let seg0 = keys::segment(id, info.segments[0].sequence);
    assert!(rig.primary_store.head(&seg0).await.is_err());
    let clean = verify(
        engine,
        VerifyOptions {
            content: true,
            ..Default::default()
        },
    )
    .await;
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    rig.secondary.fail_always(Ops::ALL, Fault::Error);
    assert_eq!(read_all(engine, id).await, events);
    rig.engine.shutdown().await;
}

/// Repair, reading every byte when `content`.
fn repair(content: bool) -> VerifyOptions {
    VerifyOptions {
        content,
        repair: true,
        ..Default::default()
    }
}

/// Every segment is in a combined object on each store.
async fn on_both_combined(engine: &Engine, id: RecordingId) -> bool {
    let both = [Location::Primary as i32, Location::Secondary as i32];
    let info = engine.recording(id).await.unwrap();
    info.segments
        .iter()
        .all(|s| s.locations == both && s.combined_offset.is_some() && s.secondary_combined)
}

async fn object(store: &DurableLocalStore, key: &object_store::path::Path) -> bytes::Bytes {
    store.get(key).await.unwrap().bytes().await.unwrap()
}
