//! Mirror mode on real local-directory stores: a recombined recording is
//! one combined object on each store; when the secondary's is lost,
//! `verify` finds it, repair stops naming that copy without calling the
//! recording damaged (the primary's remains), and the catch-up at the next
//! start gives the secondary its copy again, from which the recording
//! reads with the primary failing.

use std::time::Duration;

use object_store::ObjectStoreExt;
use reel_engine::{Engine, ReleaseAfter, UploadMode, VerifyOptions};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, Location};
use reel_storage::faults::{Fault, Ops};
use reel_storage::keys;

use crate::common::{
    closed_recording, compact_until_done, event, read_all, restart, rig, verify, wait_for,
};

/// Every segment is named on both stores.
async fn on_both(engine: &Engine, id: RecordingId) -> bool {
    let both = [Location::Primary as i32, Location::Secondary as i32];
    let info = engine.recording(id).await.unwrap();
    info.unsealed_events == 0 && info.segments.iter().all(|s| s.locations == both)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_combined_copy_is_found_forgotten_and_copied_again_from_the_other_store() {
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
    assert!(
        info.segments
            .iter()
            .all(|s| s.combined_offset.is_some() && s.secondary_combined),
        "{:?}",
        info.segments
    );
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

    // The secondary's combined object is lost.
    rig.secondary_store.delete(&combined).await.unwrap();
    let found = verify(engine, VerifyOptions::default()).await;
    assert_eq!(found.problems.len(), 1, "{:?}", found.problems);
    assert_eq!(found.problems[0].store, Location::Secondary);
    assert_eq!(found.problems[0].key, combined.to_string());
    let repaired = verify(
        engine,
        VerifyOptions {
            repair: true,
            ..Default::default()
        },
    )
    .await;
    assert!(repaired.damaged.is_empty(), "{:?}", repaired.damaged);
    let note = repaired.problems[0].repair.clone().unwrap_or_default();
    assert!(note.contains("the other store's copy remains"), "{note}");
    let info = engine.recording(id).await.unwrap();
    assert!(
        info.segments
            .iter()
            .all(|s| s.locations == [Location::Primary as i32] && !s.secondary_combined)
    );
    let events: Vec<Event> = (0..300).map(event).collect();
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
