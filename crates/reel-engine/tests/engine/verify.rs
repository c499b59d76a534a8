//! Verification and repair on real local-directory stores: objects deleted,
//! planted and corrupted by hand are each found; repair restores what a
//! good copy allows, adopts a valid stray copy, marks the rest damaged
//! (reads then show a gap), deletes unknown objects only when asked; a
//! second run finds nothing.

use std::time::Duration;

use crate::common::*;
use object_store::ObjectStoreExt;
use reel_engine::{VerifyOptions, VerifyProgress, VerifyReport};
use reel_proto::RecordingId;
use reel_proto::v1::RecordingMetadata;
use reel_storage::faults::{Fault, Ops};
use reel_storage::keys;

async fn get(
    store: &reel_storage::DurableLocalStore,
    key: &object_store::path::Path,
) -> bytes::Bytes {
    store.get(key).await.unwrap().bytes().await.unwrap()
}

fn kinds(report: &VerifyReport) -> Vec<(String, String, String)> {
    let mut k: Vec<_> = report
        .problems
        .iter()
        .map(|p| {
            let store = reel_engine::location_name(p.store as i32);
            (p.kind.to_string(), store.to_string(), p.key.clone())
        })
        .collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_broken_by_hand_is_found_and_repaired_where_a_copy_allows() {
    let rig = rig(|c| c.segment_max_age = Duration::from_secs(600)).await;
    let engine = &rig.engine;
    let (split, _) = split_recording(&rig, 300).await;
    let (combined, _) = split_recording(&rig, 300).await;
    compact_until_done(engine, combined).await;
    while engine.drain_deletions().await.unwrap() > 0 {}
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let plain = w.id();
    write(&mut w, 0..300).await;
    w.close(0).await.unwrap();
    wait_for("uploaded", Duration::from_secs(10), || {
        all_uploaded(engine, plain)
    })
    .await;

    let clean = verify(
        engine,
        VerifyOptions {
            content: true,
            ..Default::default()
        },
    )
    .await;
    assert!(clean.problems.is_empty(), "{:#?}", clean.problems);
    assert_eq!(clean.recordings, 3);

    let primary = &rig.primary_store;
    let secondary = &rig.secondary_store;
    // Segment 1 of `plain` deleted; segment 2 deleted from the primary but
    // a copy of it put on the secondary first (a backup put back by hand).
    let k1 = keys::segment(plain, 1);
    let k2 = keys::segment(plain, 2);
    let copy = get(primary, &k2).await;
    secondary.put(&k2, copy.into()).await.unwrap();
    primary.delete(&k1).await.unwrap();
    primary.delete(&k2).await.unwrap();
    // One of the split recording's secondary segments deleted.
    let info = engine.recording(split).await.unwrap();
    let on_secondary = info
        .segments
        .iter()
        .find(|s| s.locations == [reel_proto::v1::Location::Secondary as i32])
        .unwrap()
        .sequence;
    let k3 = keys::segment(split, on_secondary);
    secondary.delete(&k3).await.unwrap();
    // Junk nobody knows of.
    let junk = keys::segment(RecordingId::generate(), 0);
    secondary.put(&junk, "junk".into()).await.unwrap();
    // A flipped byte in the middle of the combined object (same size).
    let kc = keys::recording_object(combined);
    let mut bytes = get(primary, &kc).await.to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    primary.put(&kc, bytes.into()).await.unwrap();

    let found = verify(engine, VerifyOptions::default()).await;
    let s = |a: &str, b: &str, k: &object_store::path::Path| {
        (a.to_string(), b.to_string(), k.to_string())
    };
    assert_eq!(
        kinds(&found),
        {
            let mut want = vec![
                s("missing", "primary", &k1),
                s("missing", "primary", &k2),
                s("missing", "secondary", &k3),
                s("orphan", "secondary", &k2),
                s("orphan", "secondary", &junk),
            ];
            want.sort();
            want
        },
        "without reading content, the flipped byte goes unseen"
    );
    let deep = verify(
        engine,
        VerifyOptions {
            content: true,
            ..Default::default()
        },
    )
    .await;
    let corrupt: Vec<_> = deep
        .problems
        .iter()
        .filter(|p| p.kind == reel_engine::ProblemKind::Corrupt)
        .collect();
    assert_eq!(corrupt.len(), 1, "{:#?}", deep.problems);
    assert_eq!(corrupt[0].key, kc.to_string());

    let repaired = verify(
        engine,
        VerifyOptions {
            content: true,
            repair: true,
            delete_orphans: true,
        },
    )
    .await;
    let how = |key: &object_store::path::Path, kind: &str| {
        repaired
            .problems
            .iter()
            .find(|p| p.key == key.to_string() && p.kind.as_str() == kind)
            .and_then(|p| p.repair.clone())
            .unwrap_or_default()
    };
    assert!(how(&k2, "missing").contains("restored from the secondary copy"));
    assert!(how(&k2, "orphan").contains("adopted"));
    assert!(how(&k1, "missing").contains("marked damaged"));
    assert!(how(&k3, "missing").contains("marked damaged"));
    assert!(how(&kc, "corrupt").contains("marked damaged"));
    assert!(how(&junk, "orphan").contains("queued for deletion"));
    assert_eq!(repaired.unresolved(), 0);
    let mut damaged = repaired.damaged.clone();
    damaged.sort();
    let mut want = vec![plain.to_string(), split.to_string(), combined.to_string()];
    want.sort();
    assert_eq!(damaged, want);
    while engine.drain_deletions().await.unwrap() > 0 {}

    let after = verify(
        engine,
        VerifyOptions {
            content: true,
            ..Default::default()
        },
    )
    .await;
    assert!(after.problems.is_empty(), "{:#?}", after.problems);
    // Segment 2 reads again; segment 1 is a gap, noted on the recording.
    let (_, gaps) = engine
        .events(plain)
        .await
        .unwrap()
        .collect_with_gaps()
        .await
        .unwrap();
    assert_eq!(gaps.iter().map(|g| g.sequence).collect::<Vec<_>>(), vec![1]);
    let row = engine.recording(plain).await.unwrap().row;
    assert!(
        row.damage.iter().any(|d| d.contains("segment 1")),
        "{:?}",
        row.damage
    );
    engine.shutdown().await;
}

/// A store that stops answering is a store that is unavailable, whatever
/// the engine was doing with it: verification fails with that kind (which
/// the server answers as 503 / UNAVAILABLE), naming the store and the
/// time-out, not as an internal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_hangs_makes_verification_unavailable_not_internal() {
    let rig = rig(|_| {}).await;
    let mut w = rig
        .engine
        .start(RecordingMetadata::default())
        .await
        .unwrap();
    write(&mut w, 0..20).await;
    w.close(0).await.unwrap();
    rig.primary.fail_always(Ops::LIST, Fault::Hang);
    let err = rig
        .engine
        .verify(VerifyOptions::default(), &VerifyProgress::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), reel_engine::ErrorKind::Unavailable, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("primary") && text.contains("timed out"),
        "{text}"
    );
}
