//! Recombination when the catalog step fails once (a failpoint: the catalog
//! is not a store, so the fault-injecting store cannot fail it). Alone in
//! its file: failpoints are process-wide.
#![cfg(feature = "failpoints")]

mod common;

use common::*;
use reel_proto::v1::Location;
use reel_storage::keys;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_catalog_commit_changes_nothing_and_the_retry_completes() {
    let scenario = fail::FailScenario::setup();
    let rig = rig(|_| {}).await;
    let engine = &rig.engine;
    let (id, events) = split_recording(&rig, 120).await;
    let before = engine.recording(id).await.unwrap();

    fail::cfg("compactor-commit", "1*return").unwrap();
    assert!(engine.compact(Some(id)).await.is_ok());
    // The object was written but the catalog does not point at it: the
    // recording is as before, still marked, and reads the same.
    let after_failure = engine.recording(id).await.unwrap();
    assert_eq!(after_failure.segments, before.segments);
    assert_eq!(after_failure.recombine.as_deref(), Some("split"));
    assert!(
        engine
            .compactor_status()
            .last_error
            .unwrap()
            .contains("failpoint")
    );
    assert_eq!(
        engine.pending_deletions().await.unwrap(),
        0,
        "nothing deleted"
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

    // The retry overwrites the unreferenced object and completes.
    assert_eq!(engine.compact(Some(id)).await.unwrap(), 1);
    while engine.drain_deletions().await.unwrap() > 0 {}
    let done = engine.recording(id).await.unwrap();
    assert!(
        done.segments
            .iter()
            .all(|s| s.combined_offset.is_some() && s.locations == [Location::Primary as i32])
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
    let object = keys::recording_object(id);
    let stored = object_store::ObjectStoreExt::head(rig.primary_store.as_ref(), &object)
        .await
        .unwrap();
    assert_eq!(stored.size, done.row.combined_size);
    engine.shutdown().await;
    scenario.teardown();
}
