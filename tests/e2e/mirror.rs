//! Reading through outages. Mirror mode (`[upload] mode = "mirror"`):
//! every segment on both stores. Against two real S3 servers (Garage processes): with the primary killed,
//! every recording, those uploaded before the kill included, exports from
//! the secondary alone; recordings made during the outage are caught up
//! onto the primary when it returns, even with reeld SIGKILLed as it
//! begins. Against local directories: turning mirror mode on over
//! recordings stored in failover mode copies each one, recombined ones
//! included, and `reel verify --content` then checks both copies. The read
//! cache (`[cache]`): with both S3 servers killed, recent recordings export
//! from the local disk alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reel_api::{CompactStatus, RecordingDetail, ServerStatus, StorageStatus, VerifyReport};
use reel_proto::v1::Event;
use reel_storage::keys;
use reel_testkit::{Garage, Reeld, Rng, garage_config_file, stream, terminal_event, wait_for};

const MIRROR: &str = "[upload]\nmode = \"mirror\"\n[compactor]\ninterval = \"200ms\"\n";

/// What a store holds: object key to size.
type Listing = BTreeMap<String, u64>;

async fn status(reeld: &Reeld) -> ServerStatus {
    reeld.get_json("/api/v1/status").await.unwrap()
}

/// Records `slots` sessions at once for `secs`; each recording's slot, id
/// and acknowledged count. No recorder may see an error.
async fn record_for(
    reeld: &Reeld,
    slots: std::ops::Range<usize>,
    secs: f64,
    rng: &mut Rng,
) -> Vec<(usize, String, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for slot in slots {
        let (endpoint, stop, seed) = (reeld.grpc.clone(), stop.clone(), rng.next_u64());
        handles.push(tokio::spawn(async move {
            (slot, stream(endpoint, slot, stop, seed).await)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut out = Vec::new();
    for h in handles {
        let (slot, seen) = h.await.unwrap();
        assert!(seen.error.is_none(), "recorder {slot}: {:?}", seen.error);
        assert!(seen.acked > 0);
        out.push((slot, seen.id, seen.acked));
    }
    out
}

async fn exports_intact(reeld: &Reeld, recorded: &[(usize, String, u64)]) {
    for (slot, id, acked) in recorded {
        let events = reeld
            .export_events(id)
            .await
            .unwrap_or_else(|e| panic!("recording {id} does not export: {e:#}"));
        let expected: Vec<Event> = (0..*acked).map(|i| terminal_event(*slot, i)).collect();
        assert!(
            events == expected,
            "recording {id}: {} events back, {acked} acknowledged",
            events.len()
        );
    }
}

/// Mirrored, settled: the scan for missing copies done, nothing queued,
/// nothing lacking, no spool file, and nothing left for the compactor.
/// (Without the scan, a restart into mirror mode looked settled before
/// the scan had queued what the secondary lacked.)
async fn settled(reeld: &Reeld) -> bool {
    let s = status(reeld).await;
    let compact: CompactStatus = reeld.get_json("/api/v1/compact").await.unwrap();
    s.upload_queue == 0
        && s.spool_segments == 0
        && s.mirror_backlog
            .as_ref()
            .is_some_and(|m| m.scanned && m.primary_segments == 0 && m.secondary_segments == 0)
        && compact.plan.is_empty()
        && compact.pending_deletions == 0
}

/// Every segment of every recording is named on both stores by the
/// catalog, and really there: on each store either a segment object or its
/// range of that store's combined object (the secondary has one when mirror
/// mode recombined the recording; one recombined before, in failover mode,
/// has segment objects there). Returns how many recordings each store holds
/// as one combined object.
async fn on_both_stores(
    reeld: &Reeld,
    ids: &[String],
    primary: &Listing,
    secondary: &Listing,
) -> (usize, usize) {
    let mut combined_on = (0, 0);
    for id in ids {
        let d: RecordingDetail = reeld
            .get_json(&format!("/api/v1/recordings/{id}"))
            .await
            .unwrap();
        assert!(!d.segments.is_empty(), "recording {id} has no segment");
        let stores = d
            .object
            .as_ref()
            .map(|o| o.stores.clone())
            .unwrap_or_default();
        let on = |name: &str| stores.iter().any(|s| s == name);
        combined_on.0 += usize::from(on("primary"));
        combined_on.1 += usize::from(on("secondary"));
        let combined = keys::recording_object(id).to_string();
        for s in &d.segments {
            assert_eq!(
                s.locations,
                ["primary", "secondary"],
                "recording {id} segment {}",
                s.sequence
            );
            let object = keys::segment(id, s.sequence).to_string();
            for (name, listing) in [("primary", primary), ("secondary", secondary)] {
                match s.combined_offset.filter(|_| on(name)) {
                    None => assert_eq!(
                        listing.get(&object),
                        Some(&s.size),
                        "the {name} lacks {object}"
                    ),
                    Some(offset) => {
                        let size = listing.get(&combined).copied().unwrap_or(0);
                        assert!(
                            offset + s.size <= size,
                            "the {name}'s {combined} ({size} bytes) lacks segment {} at {offset}",
                            s.sequence
                        );
                        // Its segment objects went once it was made.
                        assert!(
                            !listing.contains_key(&object),
                            "the {name} still holds {object}"
                        );
                    }
                }
            }
        }
    }
    combined_on
}

/// `reel verify --content`: it exits 0 and finds nothing; its report.
fn verify_clean(reeld: &Reeld) -> VerifyReport {
    let out = reeld.reel(&["verify", "--json", "--content"]);
    let report: VerifyReport = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(out.status.code(), Some(0));
    report
}

/// The catalog lost and rebuilt from the stores, reeld started again on
/// it, and waited for until [`settled`].
async fn rebuild_and_settle(reeld: &mut Reeld, cfg: &Path) {
    crate::lose_and_rebuild_catalog(reeld, cfg);
    tokio::task::block_in_place(|| reeld.restart()).unwrap();
    wait_for(
        "settled after the rebuild",
        Duration::from_secs(60),
        async || settled(reeld).await,
    )
    .await;
}

async fn listing(garage: &Garage) -> Listing {
    garage.list().await.unwrap().into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_recordings_read_from_either_store_and_a_store_that_was_down_is_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let cfg = garage_config_file(dir.path(), &primary, &secondary, MIRROR);
    let mut reeld = Reeld::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    )
    .unwrap();
    let mut rng = Rng::from_env("mirror");

    // Both stores up: everything lands on both, and the multi-segment
    // recordings are recombined on the primary.
    let before = record_for(&reeld, 0..6, 2.0, &mut rng).await;
    wait_for(
        "mirrored and recombined",
        Duration::from_secs(60),
        async || settled(&reeld).await,
    )
    .await;
    let ids: Vec<String> = before.iter().map(|r| r.1.clone()).collect();
    let (on_primary, on_secondary) = on_both_stores(
        &reeld,
        &ids,
        &listing(&primary).await,
        &listing(&secondary).await,
    )
    .await;
    assert!(on_primary > 0, "no recording was recombined");
    assert_eq!(
        on_secondary, on_primary,
        "mirror mode writes each combined object to both stores"
    );

    // The primary dies: what was stored before reads from the secondary,
    // and new recordings go on (to the secondary alone).
    primary.kill9();
    wait_for("the primary is down", Duration::from_secs(30), async || {
        let s: StorageStatus = reeld.get_json("/api/v1/storage").await.unwrap();
        s.writing_to.as_deref() == Some("secondary")
    })
    .await;
    exports_intact(&reeld, &before).await;
    // Nothing is hidden by the outage, and each recording says where it
    // is read from now.
    let hidden: reel_api::RecordingList = reeld
        .get_json("/api/v1/recordings?readable=false")
        .await
        .unwrap();
    assert!(hidden.recordings.is_empty(), "{:?}", hidden.recordings);
    for id in &ids {
        let d: RecordingDetail = reeld
            .get_json(&format!("/api/v1/recordings/{id}"))
            .await
            .unwrap();
        assert!(d.summary.readable, "{:?}", d.summary);
        assert_eq!(d.summary.read_from, "secondary");
    }
    let out = reeld.reel(&["show", &ids[0]]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("readable   yes, from secondary"), "{text}");
    let during = record_for(&reeld, 6..10, 2.0, &mut rng).await;
    wait_for(
        "the outage's segments are on the secondary",
        Duration::from_secs(60),
        async || {
            let s = status(&reeld).await;
            s.spool_segments == 0
                && s.mirror_backlog
                    .as_ref()
                    .is_some_and(|m| m.secondary_segments == 0 && m.primary_segments > 0)
        },
    )
    .await;
    let lacking = status(&reeld)
        .await
        .mirror_backlog
        .unwrap()
        .primary_segments;
    let out = reeld.reel(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "mirror mode: the primary lacks {lacking} segments"
        )),
        "{text}"
    );
    exports_intact(&reeld, &during).await;

    // The primary returns; reeld is SIGKILLed as the catch-up begins, and
    // the catch-up still converges after its restart.
    tokio::task::block_in_place(|| primary.restart()).unwrap();
    wait_for("the primary is back", Duration::from_secs(30), async || {
        let s: StorageStatus = reeld.get_json("/api/v1/storage").await.unwrap();
        s.writing_to.as_deref() == Some("primary")
    })
    .await;
    // The live catch-up starts at once (no restart needed): wait for its
    // first copies, then SIGKILL reeld in the middle of it.
    wait_for("the catch-up begins", Duration::from_secs(30), async || {
        status(&reeld)
            .await
            .mirror_backlog
            .unwrap()
            .primary_segments
            < lacking
    })
    .await;
    let at_kill = status(&reeld).await.mirror_backlog.unwrap();
    eprintln!(
        "at the kill: {lacking} segments were lacking on the primary, {} still are",
        at_kill.primary_segments
    );
    reeld.kill9();
    tokio::task::block_in_place(|| reeld.restart()).unwrap();
    wait_for("caught up", Duration::from_secs(90), async || {
        settled(&reeld).await
    })
    .await;

    let all: Vec<(usize, String, u64)> = before.iter().chain(&during).cloned().collect();
    let ids: Vec<String> = all.iter().map(|r| r.1.clone()).collect();
    let combined = on_both_stores(
        &reeld,
        &ids,
        &listing(&primary).await,
        &listing(&secondary).await,
    )
    .await;
    assert_eq!(combined.0, combined.1);
    exports_intact(&reeld, &all).await;
    verify_clean(&reeld);
    let metrics = reeld.get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("reel_mirror_backlog_segments{store=\"primary\"} 0"),
        "{metrics}"
    );

    // The catalog is lost and rebuilt from the two buckets: both combined
    // objects are adopted as the two copies, nothing is copied again.
    rebuild_and_settle(&mut reeld, &cfg).await;
    let again = on_both_stores(
        &reeld,
        &ids,
        &listing(&primary).await,
        &listing(&secondary).await,
    )
    .await;
    assert_eq!(again, combined);
    let metrics = reeld.get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        !metrics.contains("reel_uploaded_segments_total{"),
        "the rebuilt catalog lost track of copies, they were copied again: {metrics}"
    );
    exports_intact(&reeld, &all).await;
}

/// A local directory store's objects, as keys relative to it.
fn local_listing(root: &Path) -> Listing {
    fn walk(root: &Path, dir: &Path, out: &mut Listing) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let key = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(key, entry.metadata().unwrap().len());
            }
        }
    }
    let mut out = Listing::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_mirror_mode_on_copies_the_recordings_already_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (primary, secondary) = (dir.path().join("primary"), dir.path().join("secondary"));
    let cfg = dir.path().join("reel.toml");
    let write_config = |extra: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[primary]\ntype = \"local\"\npath = \"{}\"\n[secondary]\ntype = \"local\"\npath = \"{}\"\n\
                 [segments]\nmax_age = \"300ms\"\ntarget_bytes = 8192\n[compactor]\ninterval = \"200ms\"\n{extra}",
                primary.display(),
                secondary.display()
            ),
        )
        .unwrap();
    };
    write_config("");
    let mut reeld = Reeld::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    )
    .unwrap();
    let mut rng = Rng::from_env("mirror-on");
    let recorded = record_for(&reeld, 0..4, 1.5, &mut rng).await;
    wait_for(
        "stored and recombined",
        Duration::from_secs(60),
        async || {
            let compact: CompactStatus = reeld.get_json("/api/v1/compact").await.unwrap();
            reel_testkit::drained(&reeld).await
                && compact.plan.is_empty()
                && compact.pending_deletions == 0
        },
    )
    .await;
    let failover = status(&reeld).await;
    assert_eq!(failover.upload_mode, "failover");
    assert!(failover.mirror_backlog.is_none());
    let segments_on_secondary = local_listing(&secondary)
        .keys()
        .filter(|k| k.ends_with(".seg"))
        .count();
    assert_eq!(
        segments_on_secondary, 0,
        "failover mode with a healthy primary wrote to the secondary"
    );

    reeld.stop();
    write_config("[upload]\nmode = \"mirror\"\nrelease_after = \"both\"\n");
    tokio::task::block_in_place(|| reeld.restart()).unwrap();
    wait_for(
        "every recording copied",
        Duration::from_secs(60),
        async || settled(&reeld).await,
    )
    .await;
    assert_eq!(status(&reeld).await.upload_mode, "mirror");
    let ids: Vec<String> = recorded.iter().map(|r| r.1.clone()).collect();
    on_both_stores(
        &reeld,
        &ids,
        &local_listing(&primary),
        &local_listing(&secondary),
    )
    .await;
    let report = verify_clean(&reeld);
    // The content check read both copies of every segment: the primary's
    // (segment objects and combined ranges) and the secondary's.
    let on_secondary: u64 = local_listing(&secondary)
        .iter()
        .filter(|(k, _)| k.ends_with(".seg"))
        .map(|(_, size)| size)
        .sum();
    assert!(
        report.bytes_read >= 2 * on_secondary,
        "verify read {} bytes; the secondary's copies alone are {on_secondary}",
        report.bytes_read
    );
    exports_intact(&reeld, &recorded).await;

    // The catalog is lost and rebuilt from the stores: the secondary's
    // segment objects beside the primary's combined objects are adopted as
    // its copies, so nothing needs copying again.
    rebuild_and_settle(&mut reeld, &cfg).await;
    on_both_stores(
        &reeld,
        &ids,
        &local_listing(&primary),
        &local_listing(&secondary),
    )
    .await;
    let metrics = reeld.get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        !metrics.contains("reel_uploaded_segments_total{store=\"secondary\"}"),
        "the rebuilt catalog lost track of the secondary's copies, they were copied again: {metrics}"
    );
    exports_intact(&reeld, &recorded).await;

    // A bad mode is refused at start, naming the key.
    reeld.stop();
    write_config("[upload]\nmode = \"mirrored\"\n");
    let refused = Reeld::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    let message = format!("{:#}", refused.err().expect("a bad mode is refused"));
    assert!(message.contains("upload.mode must be"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_both_stores_killed_the_read_cache_serves_recent_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let mut secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let cfg = garage_config_file(
        dir.path(),
        &primary,
        &secondary,
        "[cache]\nmax_bytes = 67108864\nmax_age = \"1h\"\n[compactor]\nenabled = false\n",
    );
    let reeld = Reeld::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    )
    .unwrap();
    let mut rng = Rng::from_env("read-cache");
    let recorded = record_for(&reeld, 0..4, 1.5, &mut rng).await;
    wait_for("stored", Duration::from_secs(60), async || {
        reel_testkit::drained(&reeld).await
    })
    .await;
    let s = status(&reeld).await;
    assert!(s.cache_segments > 0 && s.cache_bytes > 0, "{s:?}");
    let out = reeld.reel(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("cache      {} segments", s.cache_segments)),
        "{text}"
    );

    primary.kill9();
    secondary.kill9();
    wait_for("both stores down", Duration::from_secs(30), async || {
        let s: StorageStatus = reeld.get_json("/api/v1/storage").await.unwrap();
        s.writing_to.is_none()
    })
    .await;
    exports_intact(&reeld, &recorded).await;
    let hidden: reel_api::RecordingList = reeld
        .get_json("/api/v1/recordings?readable=false")
        .await
        .unwrap();
    assert!(hidden.recordings.is_empty(), "{:?}", hidden.recordings);
    let d: RecordingDetail = reeld
        .get_json(&format!("/api/v1/recordings/{}", recorded[0].1))
        .await
        .unwrap();
    assert_eq!(d.summary.read_from, "local");
    tokio::task::block_in_place(|| {
        primary.restart().unwrap();
        secondary.restart().unwrap();
    });
}
