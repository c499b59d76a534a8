//! Recombination on real local-directory stores behind the fault-injecting
//! wrapper: a split recording becomes one object on the primary; each step
//! (read, write, verify, delete) failing once gives the same result; a
//! corrupted copy is reported and the good one used; a failed catalog
//! commit (a failpoint) changes nothing and the retry completes.

use std::time::Duration;

use crate::common::*;
use reel_proto::v1::{Event, Location, RecordingMetadata};
use reel_storage::faults::{Fault, Ops};
use reel_storage::{Role, keys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_recording_becomes_one_object_on_the_primary() {
    let rig = rig(|_| {}).await;
    let (id, events) = split_recording(&rig, 300).await;
    let plan = rig.engine.compaction_plan(None).await.unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(
        (plan[0].reason.as_str(), plan[0].waiting.as_deref()),
        ("split", None)
    );
    assert_eq!(rig.engine.compact(None).await.unwrap(), 1);
    assert_recombined(&rig, id, &events).await;
    assert!(rig.engine.compaction_plan(None).await.unwrap().is_empty());
    rig.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_recording_streams_as_a_multipart_upload() {
    let rig = rig(|c| c.segment_target_bytes = 1 << 20).await;
    let engine = &rig.engine;
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    // About 12 MiB of events: more than one part.
    let big = |i: u64| Event {
        data: format!("{i:08}").repeat(8 << 10).into_bytes(),
        ..event(i)
    };
    for i in 0..200 {
        w.append(None, vec![big(i)]).unwrap().await.unwrap();
    }
    w.close(0).await.unwrap();
    wait_for("all stored", Duration::from_secs(20), || {
        all_uploaded(engine, id)
    })
    .await;
    assert_eq!(engine.compact(Some(id)).await.unwrap(), 1);
    let events: Vec<Event> = (0..200).map(big).collect();
    assert_recombined(&rig, id, &events).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_failing_once_gives_the_same_result() {
    // (store, operations, what the step is)
    let steps: [(&str, Ops, &str); 4] = [
        ("secondary", Ops::GET, "read a segment"),
        ("primary", Ops::PUT, "write the object"),
        ("primary", Ops::HEAD, "verify its size"),
        ("secondary", Ops::DELETE, "delete an old copy"),
    ];
    for (store, ops, step) in steps {
        let rig = rig(|_| {}).await;
        let (id, events) = split_recording(&rig, 150).await;
        let faults = if store == "primary" {
            &rig.primary
        } else {
            &rig.secondary
        };
        faults.fail_next(ops, 1, Fault::Error);
        compact_until_done(&rig.engine, id).await;
        // The deleter may have met the failure: retry until the queue is empty.
        for _ in 0..10 {
            rig.engine.drain_deletions().await.unwrap();
        }
        assert_recombined(&rig, id, &events).await;
        assert!(faults.count(ops) > 0, "{step}: the faulty step never ran");
        rig.engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_copy_is_reported_and_the_good_one_used() {
    let rig = rig(|_| {}).await;
    let engine = &rig.engine;
    // The first segments go to the primary (and with them the recording's
    // key object); then every put to the primary lands but reports
    // failure: the next segments go to the secondary, with a (good)
    // uncertain copy on the primary.
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    write(&mut w, 0..10).await;
    wait_for("first segments stored", Duration::from_secs(10), || {
        all_uploaded(engine, id)
    })
    .await;
    rig.primary.fail_always(Ops::PUT, Fault::AfterWrite);
    write(&mut w, 10..60).await;
    w.close(0).await.unwrap();
    wait_for("all stored", Duration::from_secs(10), || {
        all_uploaded(engine, id)
    })
    .await;
    rig.primary.clear();
    wait_for("failback", Duration::from_secs(5), || async {
        engine.storage_status().writing_to == Some(Role::Primary)
    })
    .await;
    // Damage the secondary's copy of one segment that has a primary copy.
    let info = engine.recording(id).await.unwrap();
    let victim = info
        .segments
        .iter()
        .find(|s| {
            s.locations == [Location::Secondary as i32]
                && s.uncertain.contains(&(Location::Primary as i32))
        })
        .expect("a segment on the secondary with a copy on the primary");
    let path = rig
        .dir
        .path()
        .join("secondary")
        .join(keys::segment(id, victim.sequence).as_ref());
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();

    assert_eq!(engine.compact(Some(id)).await.unwrap(), 1);
    let status = engine.compactor_status();
    assert_eq!(status.bad_copies.len(), 1, "{status:?}");
    assert!(
        status.bad_copies[0].contains(&format!("segment {}", victim.sequence)),
        "{status:?}"
    );
    assert!(
        engine
            .metrics()
            .contains("reel_bad_segment_copies_total{store=\"secondary\"} 1")
    );
    let events: Vec<Event> = (0..60).map(event).collect();
    assert_recombined(&rig, id, &events).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_recordings_wait_and_the_primary_being_down_stops_cleanly() {
    let rig = rig(|_| {}).await;
    let engine = &rig.engine;
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    // Two segments whatever the timing: one segment on the primary is
    // already one object and rightly needs no recombination.
    write(&mut w, 0..25).await;
    wait_for("a first segment", Duration::from_secs(5), || async {
        !engine.recording(id).await.unwrap().segments.is_empty()
    })
    .await;
    write(&mut w, 25..50).await;
    // Open: not marked yet (only closing marks a segmented recording).
    assert!(engine.compaction_plan(Some(id)).await.unwrap().is_empty());
    w.close(0).await.unwrap();
    wait_for("all stored", Duration::from_secs(10), || {
        all_uploaded(engine, id)
    })
    .await;
    let plan = engine.compaction_plan(Some(id)).await.unwrap();
    assert_eq!(plan[0].reason, "segmented");

    // The primary goes down: nothing is done, nothing changes.
    rig.primary.fail_always(Ops::ALL, Fault::Error);
    wait_for("primary down", Duration::from_secs(5), || async {
        engine.storage_status().primary.health.state != reel_storage::StoreState::Healthy
    })
    .await;
    let before = engine.recording(id).await.unwrap();
    let _ = engine.compact(Some(id)).await;
    assert_eq!(
        engine.recording(id).await.unwrap().segments,
        before.segments
    );
    assert!(
        objects(&rig.primary_store)
            .await
            .iter()
            .all(|k| !k.ends_with("recording.reel"))
    );

    // It comes back: the work is done.
    rig.primary.clear();
    wait_for("failback", Duration::from_secs(5), || async {
        engine.storage_status().primary.health.state == reel_storage::StoreState::Healthy
    })
    .await;
    compact_until_done(engine, id).await;
    let events: Vec<Event> = (0..50).map(event).collect();
    assert_recombined(&rig, id, &events).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_compactor_does_it_alone() {
    let rig = rig(|c| {
        c.compactor.enabled = true;
        c.compactor.interval = Duration::from_millis(200);
    })
    .await;
    let (id, events) = split_recording(&rig, 120).await;
    wait_for("recombined", Duration::from_secs(10), || async {
        rig.engine.recording(id).await.unwrap().recombine.is_none()
    })
    .await;
    wait_for("old copies deleted", Duration::from_secs(10), || async {
        rig.engine.pending_deletions().await.unwrap() == 0
    })
    .await;
    assert_recombined(&rig, id, &events).await;
    rig.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_read_back_reads_the_object_back_and_a_failed_read_is_retried() {
    let rig = rig(|c| c.compactor.verify_read_back = true).await;
    let (id, events) = split_recording(&rig, 150).await;
    rig.primary.reset_counts();
    rig.primary.fail_next(Ops::GET, 1, Fault::Error);
    compact_until_done(&rig.engine, id).await;
    assert!(rig.primary.count(Ops::GET) >= 3, "the object was read back");
    assert_recombined(&rig, id, &events).await;
    rig.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cut_short_by_a_crash_leaves_no_orphan() {
    // One put at a time, and no time-out that would end the hung put
    // before the "crash".
    let rig = rig(|c| {
        c.upload_concurrency = 1;
        c.health.op_timeout = Duration::from_secs(600);
    })
    .await;
    let engine = &rig.engine;
    // The primary is down: uploads go to the secondary, whose first put
    // stores the object and then never answers, and the process dies.
    rig.primary.fail_always(Ops::ALL, Fault::Error);
    rig.secondary.fail_next(Ops::PUT, 1, Fault::HangAfterWrite);
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    write(&mut w, 0..60).await;
    drop(w);
    let secondary = rig.secondary_store.clone();
    wait_for(
        "a put landed on the secondary",
        Duration::from_secs(10),
        || {
            let secondary = secondary.clone();
            async move { !objects(&secondary).await.is_empty() }
        },
    )
    .await;

    // After the restart the primary takes everything; the copy the dead
    // put left on the secondary is known to the catalog, so recombination
    // deletes it and verify finds nothing to report.
    let rig = restart(rig).await;
    let engine = &rig.engine;
    let mut w = engine.resume(id).await.unwrap();
    write(&mut w, 60..80).await;
    w.close(0).await.unwrap();
    wait_for("all stored", Duration::from_secs(10), || {
        all_uploaded(engine, id)
    })
    .await;
    compact_until_done(engine, id).await;
    assert_recombined(&rig, id, &(0..80).map(event).collect::<Vec<_>>()).await;
    let report = engine
        .verify(Default::default(), &Default::default())
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_catalog_commit_changes_nothing_and_the_retry_completes() {
    // The engine's own failpoints: other tests running beside this one
    // have theirs, untouched.
    let failpoints = std::sync::Arc::new(fail_parallel::FailPointRegistry::new());
    let rig = rig(|c| c.failpoints = failpoints.clone()).await;
    let engine = &rig.engine;
    let (id, events) = split_recording(&rig, 120).await;
    let before = engine.recording(id).await.unwrap();

    // The catalog is not a store, so the fault-injecting store cannot fail
    // this step: a failpoint does.
    fail_parallel::cfg(failpoints, "compactor-commit", "1*return").unwrap();
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
    assert_eq!(read_all(engine, id).await, events);

    // The retry overwrites the unreferenced object and completes.
    assert_eq!(engine.compact(Some(id)).await.unwrap(), 1);
    // One object on the primary, nothing else anywhere, read back as sent.
    assert_recombined(&rig, id, &events).await;
    engine.shutdown().await;
}
