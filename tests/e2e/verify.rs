//! `reel verify` against two real S3 servers (Garage processes): objects
//! deleted by hand through the S3 API, a copy put back by hand into the
//! other bucket and an unknown object are each found; `--repair` restores
//! the segment that has another copy, marks the rest damaged (exports then
//! carry a gap marker there), deletes the unknown object when asked; a
//! second run finds the catalog and the stores in agreement.

use std::path::Path;
use std::time::Duration;

use object_store::ObjectStoreExt;
use reel_api::{RecordingDetail, VerifyReport};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, EventKind, RecordingMetadata};
use reel_storage::keys;
use reel_testkit::{
    Garage, Recorder, Reeld, drained, garage_config_file, terminal_event, wait_for,
};

async fn record(reeld: &Reeld, slot: usize, n: u64) -> String {
    let mut rec = Recorder::start(&reeld.grpc, RecordingMetadata::default())
        .await
        .unwrap();
    let events: Vec<Event> = (0..n).map(|i| terminal_event(slot, i)).collect();
    for batch in events.chunks(25) {
        rec.append(batch.to_vec()).await.unwrap();
    }
    let id = rec.id.clone();
    rec.close().await.unwrap();
    id
}

fn start(dir: &Path, primary: &Garage, secondary: &Garage) -> Reeld {
    let cfg = garage_config_file(dir, primary, secondary, "[compactor]\nenabled = false\n");
    Reeld::start(&dir.join("data"), &["--config", cfg.to_str().unwrap()]).unwrap()
}

fn verify(reeld: &Reeld, args: &[&str]) -> (Option<i32>, VerifyReport) {
    let mut all = vec!["verify", "--json"];
    all.extend_from_slice(args);
    let out = reeld.reel(&all);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_deleted_by_hand_are_found_and_repaired_where_a_copy_allows() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let reeld = start(dir.path(), &primary, &secondary);
    let plain = record(&reeld, 1, 600).await;
    let combined = record(&reeld, 2, 600).await;
    wait_for("uploaded", Duration::from_secs(60), async || {
        drained(&reeld).await
    })
    .await;
    let out = reeld.reel(&["compact", "--recording", &combined, "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("old copies deleted", Duration::from_secs(30), async || {
        let s: reel_api::CompactStatus = reeld.get_json("/api/v1/compact").await.unwrap();
        s.pending_deletions == 0
    })
    .await;

    let (code, clean) = verify(&reeld, &["--content"]);
    assert_eq!(code, Some(0), "{clean:?}");
    assert!(clean.problems.is_empty());
    assert_eq!(clean.recordings, 2);

    // By hand, through the S3 API, as an operator would.
    let p = primary.object_store();
    let s = secondary.object_store();
    let id: RecordingId = plain.parse().unwrap();
    let k1 = keys::segment(id, 1);
    let k2 = keys::segment(id, 2);
    let backup = p.get(&k2).await.unwrap().bytes().await.unwrap();
    s.put(&k2, backup.into()).await.unwrap();
    p.delete(&k1).await.unwrap();
    p.delete(&k2).await.unwrap();
    let kc = keys::recording_object(combined.parse::<RecordingId>().unwrap());
    p.delete(&kc).await.unwrap();
    let junk = keys::segment(RecordingId::generate(), 0);
    s.put(&junk, "junk".into()).await.unwrap();

    let (code, found) = verify(&reeld, &[]);
    assert_eq!(code, Some(1));
    let mut seen: Vec<(String, String, String)> = found
        .problems
        .iter()
        .map(|p| (p.kind.clone(), p.store.clone(), p.key.clone()))
        .collect();
    seen.sort();
    let t = |a: &str, b: &str, k: &object_store::path::Path| (a.into(), b.into(), k.to_string());
    let mut want = vec![
        t("missing", "primary", &k1),
        t("missing", "primary", &k2),
        t("missing", "primary", &kc),
        t("orphan", "secondary", &k2),
        t("orphan", "secondary", &junk),
    ];
    want.sort();
    assert_eq!(seen, want);

    let (code, repaired) = verify(&reeld, &["--repair", "--delete-orphans"]);
    assert_eq!(code, Some(0), "{repaired:#?}");
    let how = |key: &object_store::path::Path, kind: &str| {
        repaired
            .problems
            .iter()
            .find(|p| p.key == key.to_string() && p.kind == kind)
            .and_then(|p| p.repair.clone())
            .unwrap_or_default()
    };
    assert!(how(&k2, "missing").contains("restored from the secondary copy"));
    assert!(how(&k1, "missing").contains("marked damaged"));
    assert!(how(&kc, "missing").contains("marked damaged"));
    assert!(how(&junk, "orphan").contains("queued for deletion"));
    assert!(
        p.head(&k2).await.is_ok(),
        "segment 2 is back on the primary"
    );
    wait_for(
        "the unknown object deleted",
        Duration::from_secs(30),
        async || s.head(&junk).await.is_err(),
    )
    .await;

    let (code, after) = verify(&reeld, &["--content"]);
    assert_eq!(code, Some(0), "{after:#?}");
    assert!(after.problems.is_empty());
    // The export plays on: segment 1 is a gap marker, segment 2 is back.
    let d: RecordingDetail = reeld
        .get_json(&format!("/api/v1/recordings/{plain}"))
        .await
        .unwrap();
    assert!(d.summary.damage.iter().any(|x| x.contains("segment 1")));
    let seg1 = &d.segments[1];
    let events = reeld.export_events(&plain).await.unwrap();
    let markers = events
        .iter()
        .filter(|e| e.kind == EventKind::Marker as i32)
        .count();
    assert_eq!(markers, 1);
    let lost = seg1.first_event_index..seg1.first_event_index + seg1.event_count;
    let want: Vec<Event> = (0..600)
        .filter(|i| !lost.contains(i))
        .map(|i| terminal_event(1, i))
        .collect();
    let got: Vec<Event> = events
        .into_iter()
        .filter(|e| e.kind != EventKind::Marker as i32)
        .collect();
    assert!(got == want, "everything but segment 1 exports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_catalog_is_rebuilt_from_the_stores() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    // Small segments, so that the split recording's first half is sealed
    // and on the primary before the primary stops answering.
    let cfg = garage_config_file(
        dir.path(),
        &primary,
        &secondary,
        "[compactor]\nenabled = false\n",
    );
    let mut reeld = Reeld::start(
        &dir.path().join("data"),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--segment-target-bytes",
            "4096",
        ],
    )
    .unwrap();
    // Segmented, recombined, and split (half on each store).
    let mut ids = vec![record(&reeld, 1, 600).await, record(&reeld, 2, 600).await];
    wait_for("uploaded", Duration::from_secs(60), async || {
        drained(&reeld).await
    })
    .await;
    let out = reeld.reel(&["compact", "--recording", &ids[1], "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rec = Recorder::start(
        &reeld.grpc,
        RecordingMetadata {
            user: "alice".into(),
            target: "db-1".into(),
            labels: [("ticket".to_string(), "T-9".to_string())].into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let events: Vec<Event> = (0..400).map(|i| terminal_event(3, i)).collect();
    for batch in events[..200].chunks(25) {
        rec.append(batch.to_vec()).await.unwrap();
    }
    wait_for("on the primary", Duration::from_secs(60), async || {
        drained(&reeld).await
    })
    .await;
    primary.freeze();
    for batch in events[200..].chunks(25) {
        rec.append(batch.to_vec()).await.unwrap();
    }
    ids.push(rec.id.clone());
    rec.close().await.unwrap();
    wait_for("on the secondary", Duration::from_secs(60), async || {
        drained(&reeld).await
    })
    .await;
    primary.thaw();
    wait_for("old copies deleted", Duration::from_secs(60), async || {
        let s: reel_api::CompactStatus = reeld.get_json("/api/v1/compact").await.unwrap();
        s.pending_deletions == 0
    })
    .await;

    let ls = |reeld: &Reeld| {
        let out = reeld.reel(&["ls", "--json", "--all"]);
        assert!(out.status.success());
        serde_json::from_slice::<reel_api::RecordingList>(&out.stdout).unwrap()
    };
    // Listings say whether each recording is readable now: the thawed
    // primary must be back first, as it is after the restart below.
    wait_for("the primary is back", Duration::from_secs(60), async || {
        let s: reel_api::StorageStatus = reeld.get_json("/api/v1/storage").await.unwrap();
        s.primary.health.state == "healthy"
    })
    .await;
    let before = ls(&reeld);
    assert_eq!(before.recordings.len(), 3);
    assert_eq!(before.recordings[2].placement, "split");
    let mut exports = Vec::new();
    for id in &ids {
        exports.push(reeld.export_events(id).await.unwrap());
    }

    let audit_before: Vec<reel_api::AuditRecord> =
        reeld.get_json("/api/v1/audit?limit=10000").await.unwrap();
    assert!(audit_before.iter().any(|e| e.action == "compact"));

    // The catalog directory is lost (a clean stop copies the audit log's
    // last entries to the stores first).
    reeld.stop();
    std::fs::remove_dir_all(reeld.data_dir.join("catalog")).unwrap();
    let cfg = dir.path().join("reel.toml");
    let out = reel_cmd(&[
        "rebuild-catalog",
        "--data-dir",
        reeld.data_dir.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("rebuilt 3 recordings"));
    // A second rebuild over a full catalog is refused.
    let again = reel_cmd(&[
        "rebuild-catalog",
        "--data-dir",
        reeld.data_dir.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    reeld.restart().unwrap();
    assert_eq!(ls(&reeld), before, "reel ls is as before");
    for (id, events) in ids.iter().zip(&exports) {
        assert!(
            &reeld.export_events(id).await.unwrap() == events,
            "{id} exports as before"
        );
    }
    let (code, report) = verify(&reeld, &["--content"]);
    assert_eq!(code, Some(0), "{report:#?}");
    // The audit log came back from the stores' copies, intact.
    let audit_after: Vec<reel_api::AuditRecord> =
        reeld.get_json("/api/v1/audit?limit=10000").await.unwrap();
    assert!(
        audit_after.starts_with(&audit_before),
        "{} entries before, {} after",
        audit_before.len(),
        audit_after.len()
    );
    assert!(audit_after.iter().any(|e| e.action == "rebuild"));
    let out = reeld.reel(&["audit", "--verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Segments never uploaded (both stores were down) live only in the spool:
/// a catalog lost then must not take them with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_catalog_is_rebuilt_with_segments_only_in_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let mut secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let mut reeld = start(dir.path(), &primary, &secondary);
    primary.kill9();
    secondary.kill9();
    let id = record(&reeld, 7, 300).await;
    let events = reeld.export_events(&id).await.unwrap();
    assert_eq!(events.len(), 300);
    reeld.stop();
    let spooled = std::fs::read_dir(reeld.data_dir.join("spool"))
        .unwrap()
        .count();
    assert!(spooled > 0, "the segments wait in the spool");

    primary.restart().unwrap();
    secondary.restart().unwrap();
    std::fs::remove_dir_all(reeld.data_dir.join("catalog")).unwrap();
    let cfg = dir.path().join("reel.toml");
    let out = reel_cmd(&[
        "rebuild-catalog",
        "--data-dir",
        reeld.data_dir.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("rebuilt 1 recordings"), "{stdout}");

    reeld.restart().unwrap();
    wait_for("uploaded", Duration::from_secs(60), async || {
        drained(&reeld).await
    })
    .await;
    assert!(reeld.export_events(&id).await.unwrap() == events);
    let (code, report) = verify(&reeld, &["--content"]);
    assert_eq!(code, Some(0), "{report:#?}");
}

fn reel_cmd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(reel_testkit::bin("reel"))
        .args(args)
        .output()
        .expect("run reel")
}
