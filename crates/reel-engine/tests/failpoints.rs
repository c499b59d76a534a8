//! Recombination when the catalog step fails once (a failpoint: the catalog
//! is not a store, so the fault-injecting store cannot fail it). Alone in
//! its file: failpoints are process-wide.
#![cfg(feature = "failpoints")]

#[path = "engine/common.rs"]
#[allow(dead_code)] // the failpoint tests use a part of it
mod common;

use common::*;

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
    // One object on the primary, nothing else anywhere, read back as sent.
    assert_recombined(&rig, id, &events).await;
    engine.shutdown().await;
    scenario.teardown();
}
