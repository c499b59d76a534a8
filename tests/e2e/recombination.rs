//! Recombination end to end, against two real S3 servers (Garage processes):
//! recordings made while the primary was killed and restarted end as one
//! object each on the primary, the secondary empty of recorded data, and
//! every recording exports as the recorder sent it; and reeld SIGKILLed at
//! random points during recombination converges to the same state.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reel_api::{CompactStatus, RecordingDetail};
use reel_proto::v1::Event;
use reel_testkit::{
    Garage, Reeld, Rng, drained, garage_config_file, stream, terminal_event, wait_for,
};

/// (slot, id, acknowledged events) of each recording made.
type Made = Vec<(usize, String, u64)>;

/// Records `n` sessions while the primary is killed and restarted; returns
/// them once everything is uploaded. At least one ends split.
async fn record_through_a_failover(
    reeld: &Reeld,
    primary: &mut Garage,
    n: usize,
    rng: &mut Rng,
) -> Made {
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for slot in 0..n {
        let (endpoint, stop, seed) = (reeld.grpc.clone(), stop.clone(), rng.next_u64());
        handles.push(tokio::spawn(async move {
            (slot, stream(endpoint, slot, stop, seed).await)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    primary.kill9();
    tokio::time::sleep(Duration::from_secs(4)).await;
    tokio::task::block_in_place(|| primary.restart()).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut made = Vec::new();
    for h in handles {
        let (slot, seen) = h.await.unwrap();
        assert!(seen.error.is_none(), "recorder {slot}: {:?}", seen.error);
        made.push((slot, seen.id, seen.acked));
    }
    wait_for("everything uploaded", Duration::from_secs(30), async || {
        drained(reeld).await
    })
    .await;
    made
}

async fn compact_status(reeld: &Reeld) -> CompactStatus {
    reeld.get_json("/api/v1/compact").await.unwrap()
}

/// Each recording is exactly one object on the primary (beside its key
/// object), the secondary holds nothing recorded, the catalog says so, and every recording exports as
/// the recorder sent it.
async fn assert_converged(reeld: &Reeld, made: &Made, primary: &Garage, secondary: &Garage) {
    wait_for("old copies deleted", Duration::from_secs(30), async || {
        compact_status(reeld).await.pending_deletions == 0
    })
    .await;
    // One object per recording, and its key object (its wrapped data key).
    let expected: BTreeSet<String> = made
        .iter()
        .flat_map(|(_, id, _)| {
            [
                format!("recordings/{id}/recording.reel"),
                format!("keys/{id}"),
            ]
        })
        .collect();
    let on_primary: BTreeSet<String> = primary
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        on_primary, expected,
        "the primary holds one object per recording, nothing else"
    );
    // Only key objects stay on the secondary (a catalog rebuilt from it
    // alone still opens what it finds).
    let mut on_secondary = secondary.list().await.unwrap();
    on_secondary.retain(|(k, _)| !k.starts_with("keys/"));
    assert!(
        on_secondary.is_empty(),
        "the secondary still holds {on_secondary:?}"
    );
    let sizes: Vec<(String, u64)> = primary.list().await.unwrap();
    for (slot, id, acked) in made {
        let d: RecordingDetail = reeld
            .get_json(&format!("/api/v1/recordings/{id}"))
            .await
            .unwrap();
        assert_eq!(d.recombine, None, "{id} still waits for recombination");
        let object = d
            .object
            .as_ref()
            .unwrap_or_else(|| panic!("{id} has no combined object"));
        assert!(
            sizes.contains(&(object.key.clone(), object.size)),
            "{object:?} not in the bucket as such"
        );
        assert!(
            d.segments
                .iter()
                .all(|s| s.locations == ["primary"] && s.combined_offset.is_some())
        );
        let events = reeld.export_events(id).await.unwrap();
        let sent: Vec<Event> = (0..*acked).map(|i| terminal_event(*slot, i)).collect();
        assert!(
            events == sent,
            "{id}: {} events exported, {acked} acknowledged",
            events.len()
        );
    }
}

fn start(dir: &Path, primary: &Garage, secondary: &Garage, compactor: &str) -> Reeld {
    let cfg = garage_config_file(
        dir,
        primary,
        secondary,
        &format!("[compactor]\n{compactor}"),
    );
    Reeld::start(&dir.join("data"), &["--config", cfg.to_str().unwrap()]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_split_by_a_failover_end_as_one_object_on_the_primary() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    // The background compactor is off until the CLI asks, so that the test
    // sees split recordings first.
    let reeld = start(dir.path(), &primary, &secondary, "enabled = false\n");
    let mut rng = Rng::from_env("recombination");
    let made = record_through_a_failover(&reeld, &mut primary, 8, &mut rng).await;

    let plan: CompactStatus = compact_status(&reeld).await;
    assert_eq!(plan.plan.len(), made.len(), "{plan:?}");
    assert!(plan.plan.iter().any(|p| p.reason == "split"), "{plan:?}");
    let dry = reeld.reel(&["compact", "--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    assert!(String::from_utf8_lossy(&dry.stdout).contains("split"));
    assert_eq!(
        compact_status(&reeld).await.plan.len(),
        made.len(),
        "a dry run changes nothing"
    );

    let out = reeld.reel(&["compact", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("recombined {} recording(s)", made.len())),
        "{said}"
    );
    assert_converged(&reeld, &made, &primary, &secondary).await;
    let shown = reeld.reel(&["show", &made[0].1]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("1 object on primary"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reeld_killed_during_recombination_converges() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let mut reeld = start(dir.path(), &primary, &secondary, "enabled = false\n");
    let mut rng = Rng::from_env("recombination-crash");
    let made = record_through_a_failover(&reeld, &mut primary, 10, &mut rng).await;

    // Now recombine in the background, paced so that all of it takes some
    // 6 s of copying, and kill reeld at random moments: while copying,
    // between a commit and the deletions, while idle.
    let total: u64 = compact_status(&reeld)
        .await
        .plan
        .iter()
        .map(|p| p.bytes)
        .sum();
    garage_config_file(
        dir.path(),
        &primary,
        &secondary,
        &format!(
            "[compactor]\ninterval = \"50ms\"\nmax_bytes_per_second = {}\n",
            total / 6 + 1
        ),
    );
    let rounds: usize = std::env::var("REEL_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut recombined_at_kill = Vec::new();
    for _ in 0..rounds {
        reeld.kill9();
        tokio::task::block_in_place(|| reeld.restart()).unwrap();
        tokio::time::sleep(Duration::from_millis(rng.range(100..1500))).await;
        let left = compact_status(&reeld).await;
        recombined_at_kill.push(made.len() - left.plan.len());
    }
    eprintln!("recordings recombined at each kill: {recombined_at_kill:?}");
    assert!(
        recombined_at_kill.iter().any(|&n| n > 0 && n < made.len()),
        "the kills never fell between recombinations: {recombined_at_kill:?}"
    );
    // Full speed to the end.
    garage_config_file(
        dir.path(),
        &primary,
        &secondary,
        "[compactor]\ninterval = \"50ms\"\n",
    );
    reeld.kill9();
    tokio::task::block_in_place(|| reeld.restart()).unwrap();
    wait_for(
        "nothing left to recombine",
        Duration::from_secs(60),
        async || compact_status(&reeld).await.plan.is_empty(),
    )
    .await;
    assert_converged(&reeld, &made, &primary, &secondary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reel_compact_works_offline_on_a_data_directory_and_refuses_a_busy_one() {
    let dir = tempfile::tempdir().unwrap();
    let (primary, secondary) = (dir.path().join("primary"), dir.path().join("secondary"));
    let cfg = dir.path().join("reel.toml");
    std::fs::write(
        &cfg,
        format!(
            "[primary]\ntype = \"local\"\npath = \"{}\"\n[secondary]\ntype = \"local\"\npath = \"{}\"\n\
             [segments]\ntarget_bytes = 4096\nmax_age = \"200ms\"\n\
             [health]\nprobe_interval = \"100ms\"\n[compactor]\nenabled = false\n",
            primary.display(),
            secondary.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut reeld = Reeld::start(&data, &["--config", cfg.to_str().unwrap()]).unwrap();

    // One recording half on the primary, half on the secondary (the
    // primary's directory replaced by a file for a while).
    let mut rec =
        reel_testkit::Recorder::start(&reeld.grpc, reel_testkit::metadata("offline", "host"))
            .await
            .unwrap();
    let id = rec.id.clone();
    rec.append((0..100).map(|i| terminal_event(3, i)).collect())
        .await
        .unwrap();
    // Sealed and on the primary (an empty upload queue alone can come
    // before the events are even sealed).
    wait_for(
        "first half on the primary",
        Duration::from_secs(10),
        async || {
            let d: RecordingDetail = reeld
                .get_json(&format!("/api/v1/recordings/{id}"))
                .await
                .unwrap();
            d.unsealed_events == 0 && d.summary.placement == "primary" && drained(&reeld).await
        },
    )
    .await;
    std::fs::rename(&primary, dir.path().join("primary.away")).unwrap();
    std::fs::write(&primary, b"not a directory").unwrap();
    rec.append((100..200).map(|i| terminal_event(3, i)).collect())
        .await
        .unwrap();
    rec.close().await.unwrap();
    // Sealed and uploaded to the secondary (an empty queue alone can come
    // before the second half is even sealed).
    wait_for(
        "second half on the secondary",
        Duration::from_secs(15),
        async || {
            let d: RecordingDetail = reeld
                .get_json(&format!("/api/v1/recordings/{id}"))
                .await
                .unwrap();
            d.unsealed_events == 0 && d.summary.placement == "split" && drained(&reeld).await
        },
    )
    .await;
    std::fs::remove_file(&primary).unwrap();
    std::fs::rename(dir.path().join("primary.away"), &primary).unwrap();
    let d: RecordingDetail = reeld
        .get_json(&format!("/api/v1/recordings/{id}"))
        .await
        .unwrap();
    assert_eq!(d.summary.placement, "split");

    // While reeld runs, the data directory is its own.
    let busy = reeld.reel(&[
        "compact",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(!busy.status.success());
    let said = String::from_utf8_lossy(&busy.stderr);
    assert!(said.contains("in use") && said.contains("reeld"), "{said}");

    reeld.stop();
    let out = reeld.reel(&[
        "compact",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("recombined 1 recording(s)"));

    tokio::task::block_in_place(|| reeld.restart()).unwrap();
    let d: RecordingDetail = reeld
        .get_json(&format!("/api/v1/recordings/{id}"))
        .await
        .unwrap();
    assert!(d.object.is_some() && d.recombine.is_none(), "{d:?}");
    let sent: Vec<Event> = (0..200).map(|i| terminal_event(3, i)).collect();
    assert!(reeld.export_events(&id).await.unwrap() == sent);
    let left = |p: &Path| -> Vec<_> {
        walk(p)
            .into_iter()
            .filter(|f| !f.contains("_reel") && !f.starts_with("audit/"))
            .collect()
    };
    // The combined object, and the key object on each store that held any
    // of the recording's objects.
    assert_eq!(
        left(&primary),
        vec![
            format!("keys/{id}"),
            format!("recordings/{id}/recording.reel")
        ]
    );
    let on_secondary: Vec<_> = left(&secondary)
        .into_iter()
        .filter(|k| *k != format!("keys/{id}"))
        .collect();
    assert!(on_secondary.is_empty(), "{on_secondary:?}");
}

/// Files under `root`, as paths relative to it.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}
