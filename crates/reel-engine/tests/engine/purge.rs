//! Purge, legal hold and retention on real local-directory stores behind
//! the fault-injecting wrapper: each state (open, segmented, split,
//! recombined) purged leaves nothing anywhere and other recordings
//! untouched, with the audit log saying who and why; a hold stops purges
//! by hand and by rule; an upload in flight when its recording is purged
//! leaves no orphan.

use std::time::Duration;

use crate::common::*;
use reel_engine::{Actor, EngineError, Filter, Query, RetentionRule, Window};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, RecordingMetadata};
use reel_storage::faults::{Fault, Ops};

fn actor(why: &str) -> Actor {
    Actor {
        by: "alice".into(),
        reason: why.into(),
    }
}

/// Objects of `id` in either store.
async fn objects_of(rig: &Rig, id: RecordingId) -> Vec<String> {
    let mut all = objects(&rig.primary_store).await;
    all.extend(objects(&rig.secondary_store).await);
    all.retain(|k| k.contains(&id.to_string()));
    all
}

async fn listed(rig: &Rig) -> Vec<RecordingId> {
    let (infos, _) = rig
        .engine
        .find(Query {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    infos.into_iter().map(|i| i.id).collect()
}

async fn finish_purges(rig: &Rig, ids: &[RecordingId]) {
    wait_for("purges complete", Duration::from_secs(10), || async {
        rig.engine.drain_deletions().await.unwrap();
        let mut gone = true;
        for &id in ids {
            gone &= objects_of(rig, id).await.is_empty();
        }
        gone && rig.engine.pending_deletions().await.unwrap() == 0
    })
    .await;
}

/// Purges `id` and waits until the purge is over: objects deleted, rows gone.
async fn purge_to_the_end(rig: &Rig, id: RecordingId) {
    let engine = &rig.engine;
    engine.purge(vec![id], actor("now"), false).await.unwrap();
    finish_purges(rig, &[id]).await;
    wait_for("the purge is over", Duration::from_secs(10), || async {
        engine.drain_deletions().await.unwrap();
        matches!(engine.recording(id).await, Err(EngineError::NotFound(_)))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_state_purged_leaves_nothing_and_touches_nothing_else() {
    let rig = rig(|c| c.segment_max_age = Duration::from_secs(600)).await;
    let engine = &rig.engine;
    let (split, _) = split_recording(&rig, 300).await;
    let (combined, _) = split_recording(&rig, 300).await;
    compact_until_done(engine, combined).await;
    while engine.drain_deletions().await.unwrap() > 0 {}

    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let segmented = w.id();
    write(&mut w, 0..200).await;
    w.close(0).await.unwrap();
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let bystander = w.id();
    write(&mut w, 0..200).await;
    w.close(0).await.unwrap();
    let mut open = engine.start(RecordingMetadata::default()).await.unwrap();
    let open_id = open.id();
    write(&mut open, 0..200).await;
    wait_for("uploaded", Duration::from_secs(10), || async {
        all_uploaded(engine, segmented).await && all_uploaded(engine, bystander).await
    })
    .await;
    write(&mut open, 200..230).await; // a tail only in the journal

    let targets = [split, combined, segmented, open_id];
    for &id in &targets {
        assert!(!objects_of(&rig, id).await.is_empty() || id == open_id);
    }
    let before = objects_of(&rig, bystander).await;
    let out = engine
        .purge(targets.to_vec(), actor("ticket CHG-1"), false)
        .await
        .unwrap();
    assert_eq!(out.purged, targets);
    assert!(out.refused.is_empty());
    // Gone at once for listings, reads and the recorder.
    assert_eq!(listed(&rig).await, vec![bystander]);
    for &id in &targets {
        assert!(matches!(
            engine.recording(id).await,
            Err(EngineError::NotFound(_))
        ));
        assert!(matches!(
            engine.read(id, Window::ALL).await,
            Err(EngineError::NotFound(_))
        ));
    }
    let err = open.append(None, vec![event(230)]);
    let failed = match err {
        Err(e) => e.to_string(),
        Ok(ack) => ack.await.unwrap_err().to_string(),
    };
    assert!(failed.contains("purged"), "{failed}");

    finish_purges(&rig, &targets).await;
    for &id in &targets {
        assert!(objects_of(&rig, id).await.is_empty(), "{id} left objects");
    }
    let spool: Vec<_> = std::fs::read_dir(rig.dir.path().join("data/spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| targets.iter().any(|id| n.starts_with(&id.to_string())))
        .collect();
    assert!(spool.is_empty(), "spool files left: {spool:?}");
    assert_eq!(
        objects_of(&rig, bystander).await,
        before,
        "the bystander is untouched"
    );
    assert_eq!(
        engine
            .events(bystander)
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap(),
        (0..200).map(event).collect::<Vec<Event>>()
    );
    let audit = engine.audit(0, 100).await.unwrap();
    let purge = audit
        .iter()
        .find(|e| e.action == "purge")
        .expect("a purge entry");
    assert_eq!(
        (purge.by.as_str(), purge.reason.as_str()),
        ("alice", "ticket CHG-1")
    );
    assert_eq!(purge.recordings.len(), 4);
    assert_eq!(audit.iter().filter(|e| e.action == "purged").count(), 4);
    drop(open);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legal_hold_stops_purges_by_hand_and_by_rule() {
    let rig = rig(|c| {
        c.retention.min_age = Duration::ZERO;
        c.retention.rules = vec![RetentionRule {
            older_than: Duration::ZERO,
            user: Some("b*".into()),
            target: None,
            protocol: None,
            label: None,
        }];
    })
    .await;
    let engine = &rig.engine;
    let mut ids = Vec::new();
    for user in ["bob", "bea", "carl"] {
        let mut w = engine
            .start(RecordingMetadata {
                user: user.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        write(&mut w, 0..20).await;
        ids.push(w.id());
        w.close(0).await.unwrap();
    }
    let (bob, bea, carl) = (ids[0], ids[1], ids[2]);
    engine.hold(bob, actor("litigation 7")).await.unwrap();
    let out = engine
        .purge(vec![bob], actor("cleanup"), false)
        .await
        .unwrap();
    assert!(out.purged.is_empty());
    assert!(
        out.refused[0].1.contains("legal hold (litigation 7"),
        "{:?}",
        out.refused
    );
    assert_eq!(
        engine.recording(bob).await.unwrap().hold.unwrap().reason,
        "litigation 7"
    );

    // The rule matches bob and bea; only bea goes.
    assert_eq!(engine.apply_retention(true).await.unwrap(), vec![bea]);
    assert_eq!(listed(&rig).await, ids, "a dry run changes nothing");
    assert_eq!(engine.apply_retention(false).await.unwrap(), vec![bea]);
    assert_eq!(listed(&rig).await, vec![bob, carl]);
    let by_hand = engine
        .purge_matching(
            Filter {
                user: Some("bob".into()),
                ..Default::default()
            },
            actor("cleanup"),
            false,
        )
        .await
        .unwrap();
    assert!(by_hand.purged.is_empty() && by_hand.refused.len() == 1);

    engine.release(bob, actor("case closed")).await.unwrap();
    assert!(matches!(
        engine.release(bob, actor("again")).await,
        Err(EngineError::FailedPrecondition(_))
    ));
    assert_eq!(engine.apply_retention(false).await.unwrap(), vec![bob]);
    finish_purges(&rig, &[bob, bea]).await;
    assert_eq!(listed(&rig).await, vec![carl]);
    let actions: Vec<String> = engine
        .audit(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{}:{}", e.action, e.by))
        .collect();
    for want in [
        "hold:alice",
        "purge:retention",
        "release:alice",
        "purged:retention",
    ] {
        assert!(
            actions.contains(&want.to_string()),
            "{want} not in {actions:?}"
        );
    }
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_flight_when_its_recording_is_purged_leaves_no_orphan() {
    let rig = rig(|_| {}).await;
    let engine = &rig.engine;
    rig.primary
        .fail_always(Ops::PUT, Fault::Delay(Duration::from_millis(400)));
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    write(&mut w, 0..100).await;
    w.close(0).await.unwrap();
    // Puts are in flight (delayed) when the purge comes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    engine.purge(vec![id], actor("now"), false).await.unwrap();
    rig.primary.clear();
    tokio::time::sleep(Duration::from_millis(800)).await;
    finish_purges(&rig, &[id]).await;
    assert!(objects_of(&rig, id).await.is_empty());
    assert!(engine.local_status().unwrap().upload_queue == 0);
    engine.shutdown().await;
}

/// The purge over, its rows gone, before a put in flight lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_that_lands_after_its_recording_was_purged_leaves_nothing() {
    // Slow puts, not failed ones: the time-out is longer than the delay.
    let rig = rig(|c| c.health.op_timeout = Duration::from_secs(10)).await;
    let engine = &rig.engine;
    rig.primary
        .fail_always(Ops::PUT, Fault::Delay(Duration::from_secs(3)));
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    write(&mut w, 0..100).await;
    w.close(0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    purge_to_the_end(&rig, id).await;
    rig.primary.clear();
    // The put, delayed 3 s from before the purge, lands.
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_for(
        "the late put is undone",
        Duration::from_secs(15),
        || async {
            engine.drain_deletions().await.unwrap();
            engine.local_status().unwrap().upload_queue == 0
                && objects_of(&rig, id).await.is_empty()
                && engine.pending_deletions().await.unwrap() == 0
        },
    )
    .await;
    assert!(matches!(
        engine.recording(id).await,
        Err(EngineError::NotFound(_))
    ));
    engine.shutdown().await;
}

/// The same for a recombination whose object lands after the purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recombination_that_lands_after_its_recording_was_purged_leaves_nothing() {
    let rig = rig(|c| c.health.op_timeout = Duration::from_secs(10)).await;
    let (id, _) = split_recording(&rig, 120).await;
    rig.primary.fail_always(
        Ops::PUT.union(Ops::PART),
        Fault::Delay(Duration::from_secs(3)),
    );
    let engine = rig.engine.clone();
    let compaction = tokio::spawn(async move { engine.compact(Some(id)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let engine = &rig.engine;
    purge_to_the_end(&rig, id).await;
    rig.primary.clear();
    // Whatever it answers (the recording is gone), it is over.
    let _ = compaction.await.unwrap();
    wait_for(
        "the late object is undone",
        Duration::from_secs(15),
        || async {
            engine.drain_deletions().await.unwrap();
            objects_of(&rig, id).await.is_empty() && engine.pending_deletions().await.unwrap() == 0
        },
    )
    .await;
    assert!(matches!(
        engine.recording(id).await,
        Err(EngineError::NotFound(_))
    ));
    engine.shutdown().await;
}

/// The same, but the recombination never commits (its process died
/// between its put and its commit, as the 1,000-kill torture run found):
/// after the restart, the compactor's next pass meets the mark of a
/// recording that is no more and deletes the object nobody knew of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recombination_cut_after_its_put_when_its_recording_was_purged_leaves_nothing() {
    let failpoints = std::sync::Arc::new(fail_parallel::FailPointRegistry::new());
    let rig = rig(|c| {
        c.health.op_timeout = Duration::from_secs(10);
        c.failpoints = failpoints.clone();
    })
    .await;
    let (id, _) = split_recording(&rig, 120).await;
    rig.primary.fail_always(
        Ops::PUT.union(Ops::PART),
        Fault::Delay(Duration::from_secs(3)),
    );
    // Every commit of a recombination fails: as if the process died there.
    fail_parallel::cfg(failpoints.clone(), "compactor-commit", "return").unwrap();
    let engine = rig.engine.clone();
    let compaction = tokio::spawn(async move { engine.compact(Some(id)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    purge_to_the_end(&rig, id).await;
    rig.primary.clear();
    let _ = compaction.await.unwrap();
    let landed = objects(&rig.primary_store).await;
    assert!(
        landed.contains(&format!("recordings/{id}/recording.reel")),
        "the recombination's object landed after the purge: {landed:?}"
    );
    fail_parallel::cfg(failpoints, "compactor-commit", "off").unwrap();
    let rig = restart(rig).await;
    let engine = &rig.engine;
    engine.compact(None).await.unwrap();
    // The object nobody knew of is deleted.
    finish_purges(&rig, &[id]).await;
    let state = engine.compaction_state(None).await.unwrap();
    assert!(state.plan.is_empty(), "{:?}", state.plan);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_counts_age_from_receipt_and_survives_any_name() {
    let rig = rig(|c| {
        c.retention.min_age = Duration::ZERO;
        c.retention.rules = vec![RetentionRule {
            older_than: Duration::from_secs(3600),
            user: Some("a*b".into()),
            target: None,
            protocol: None,
            label: None,
        }];
    })
    .await;
    let engine = &rig.engine;
    let mut ids = Vec::new();
    // A recorder claims its session started in 1970; a user name ends in
    // a character of two bytes where the pattern's last byte would fall.
    for user in ["ab", "aé", "a€b"] {
        let mut w = engine
            .start(RecordingMetadata {
                user: user.into(),
                started_at_us: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        write(&mut w, 0..5).await;
        ids.push(w.id());
        w.close(0).await.unwrap();
    }
    assert_eq!(engine.apply_retention(false).await.unwrap(), vec![]);
    assert_eq!(listed(&rig).await, ids, "nothing received an hour ago");
    let by_age = engine
        .purge_matching(
            Filter {
                received_before_us: Some(
                    (std::time::SystemTime::now() - Duration::from_secs(60))
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_micros() as i64,
                ),
                ..Default::default()
            },
            actor("older than a minute"),
            false,
        )
        .await
        .unwrap();
    assert!(by_age.purged.is_empty(), "{by_age:?}");
    engine.shutdown().await;
}

/// Keyframes (what a player computed a recording to show at a moment) are
/// kept in the catalog sealed with the recording's data key: found again
/// after a restart, never in the clear on disk, bounded, and gone with a
/// purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframes_are_sealed_kept_and_purged_with_their_recording() {
    let rig = rig(|_| {}).await;
    let engine = &rig.engine;
    let id = closed_recording(engine, 10).await;
    let secret = b"keyframe-screen-Qx7-hunter2-typed".to_vec();
    engine
        .put_keyframe(id, 5_000, secret.clone())
        .await
        .unwrap();
    engine
        .put_keyframe(id, 9_000, b"later".to_vec())
        .await
        .unwrap();
    let too_big = vec![b'x'; reel_engine::MAX_KEYFRAME_BYTES + 1];
    assert!(matches!(
        engine.put_keyframe(id, 1, too_big).await,
        Err(EngineError::InvalidArgument(_))
    ));
    let missing = RecordingId::generate();
    assert!(matches!(
        engine.put_keyframe(missing, 1, b"x".to_vec()).await,
        Err(EngineError::NotFound(_))
    ));

    let rig = restart(rig).await;
    let engine = &rig.engine;
    assert_eq!(
        engine.keyframe_at_or_before(id, 8_999).await.unwrap(),
        Some((5_000, secret.clone()))
    );
    assert_eq!(
        engine.keyframe_at_or_before(id, u64::MAX).await.unwrap(),
        Some((9_000, b"later".to_vec()))
    );
    assert_eq!(engine.keyframe_at_or_before(id, 4_999).await.unwrap(), None);
    let (mut found, mut scanned) = (Vec::new(), 0);
    reel_testkit::files_holding(rig.dir.path(), &secret, &mut found, &mut scanned);
    assert!(scanned > 0);
    assert!(found.is_empty(), "a keyframe in the clear in {found:?}");

    purge_to_the_end(&rig, id).await;
    assert!(matches!(
        engine.keyframe_at_or_before(id, u64::MAX).await,
        Err(EngineError::NotFound(_))
    ));
    let catalog_dir = engine.config().catalog_dir();
    engine.shutdown().await;
    let catalog = reel_catalog::Catalog::open(&catalog_dir).unwrap();
    assert_eq!(catalog.keyframe_times(id).unwrap(), Vec::<u64>::new());
}
