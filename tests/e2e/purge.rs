//! Purge end to end, against two real S3 servers (Garage processes):
//! recordings in each state (open with a tail in the journal, split across
//! both stores, recombined) purged with `reeld` SIGKILLed at random points
//! of the purge, round after round, converge to: each purged recording gone
//! everywhere (listing, reads, both buckets listed directly, the spool), the
//! audit log saying who and why, and every other recording untouched. A
//! legal hold refuses the purge through the CLI.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reel_api::{AuditRecord, PurgeRequest, RecordingList, StorageStatus};
use reel_proto::v1::{Event, RecordingMetadata};
use reel_testkit::{
    Garage, Recorder, Reeld, Rng, drained, garage_config_file, terminal_event, wait_for,
};

async fn append(rec: &mut Recorder, slot: usize, range: std::ops::Range<u64>) {
    let events: Vec<Event> = range.map(|i| terminal_event(slot, i)).collect();
    for batch in events.chunks(25) {
        rec.append(batch.to_vec()).await.unwrap();
    }
}

async fn storage(reeld: &Reeld) -> StorageStatus {
    reeld.get_json("/api/v1/storage").await.unwrap()
}

/// `n` recordings (slots from `first`) of 200 events, the first half on the
/// primary, the second on the secondary while the primary is frozen.
async fn split_set(
    reeld: &Reeld,
    primary: &Garage,
    first: usize,
    n: usize,
) -> Vec<(usize, String)> {
    let mut recs = Vec::new();
    for slot in first..first + n {
        let mut rec = Recorder::start(&reeld.grpc, RecordingMetadata::default())
            .await
            .unwrap();
        append(&mut rec, slot, 0..100).await;
        recs.push((slot, rec));
    }
    wait_for("on the primary", Duration::from_secs(60), async || {
        drained(reeld).await
    })
    .await;
    primary.freeze();
    let mut made = Vec::new();
    for (slot, mut rec) in recs {
        append(&mut rec, slot, 100..200).await;
        made.push((slot, rec.id.clone()));
        rec.close().await.unwrap();
    }
    wait_for("on the secondary", Duration::from_secs(60), async || {
        drained(reeld).await
    })
    .await;
    primary.thaw();
    wait_for("failback", Duration::from_secs(60), async || {
        storage(reeld).await.writing_to.as_deref() == Some("primary")
    })
    .await;
    made
}

fn start(dir: &Path, primary: &Garage, secondary: &Garage) -> Reeld {
    let cfg = garage_config_file(dir, primary, secondary, "[compactor]\nenabled = false\n");
    Reeld::start(&dir.join("data"), &["--config", cfg.to_str().unwrap()]).unwrap()
}

async fn listed(reeld: &Reeld) -> Vec<String> {
    let list: RecordingList = reeld
        .get_json("/api/v1/recordings?limit=1000")
        .await
        .unwrap();
    list.recordings.into_iter().map(|r| r.id).collect()
}

async fn objects(g: &Garage) -> Vec<String> {
    g.list()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Where a purge stands, seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// Still listed: the kill came before the mark.
    NotMarked,
    /// Gone from listings, objects still in a bucket.
    Deleting,
    /// Gone everywhere.
    Done,
}

/// Where a purge stood when reeld was killed, read from its catalog (opened
/// while reeld is down): 0 not marked, 1 marked, 2 objects queued for
/// deletion, 3 finished.
fn stage_at_kill(data_dir: &Path, id: &str) -> u8 {
    let catalog = reel_catalog::Catalog::open(&data_dir.join("catalog")).unwrap();
    let id: reel_proto::RecordingId = id.parse().unwrap();
    let stage = match (
        catalog.recording(id).unwrap().is_some(),
        catalog.purge_mark(id).unwrap().is_some(),
        catalog.segments(id).unwrap().is_empty(),
    ) {
        (true, false, _) => 0,
        (_, true, false) => 1,
        (_, true, true) => 2,
        (false, false, _) => 3,
    };
    catalog.close();
    stage
}

async fn stage(reeld: &Reeld, primary: &Garage, secondary: &Garage, id: &str) -> Stage {
    if listed(reeld).await.contains(&id.to_string()) {
        return Stage::NotMarked;
    }
    let mut all = objects(primary).await;
    all.extend(objects(secondary).await);
    if all.iter().any(|k| k.contains(id)) {
        Stage::Deleting
    } else {
        Stage::Done
    }
}

/// `f`'s output, or a panic naming `what` if it takes over 60 s (a hung
/// request fails the test instead of stalling the suite).
async fn within<T>(what: &str, f: impl std::future::IntoFuture<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 60 s"))
}

async fn post_purge(
    http: String,
    token: String,
    ids: Vec<String>,
) -> Result<reqwest::StatusCode, String> {
    let req = PurgeRequest {
        ids,
        // Open recordings (a journal tail) are purged too.
        force: true,
        reason: "round".into(),
        ..Default::default()
    };
    reqwest::Client::new()
        .post(format!("{http}/api/v1/purge"))
        .bearer_auth(token)
        .json(&req)
        .send()
        .await
        .map(|r| r.status())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_cut_by_sigkill_converge_and_touch_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let mut reeld = start(dir.path(), &primary, &secondary);
    let mut rng = Rng::from_env("purge");
    let rounds: usize = std::env::var("REEL_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // Per state: one recording per round, plus two that are never purged.
    let n = rounds + 2;

    let recombined = split_set(&reeld, &primary, 0, n).await;
    let out = reeld.reel(&["compact", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let split = split_set(&reeld, &primary, 1000, n).await;
    let mut open = Vec::new();
    let mut streams = Vec::new();
    for slot in 2000..2000 + n {
        let mut rec = Recorder::start(&reeld.grpc, RecordingMetadata::default())
            .await
            .unwrap();
        append(&mut rec, slot, 0..100).await;
        open.push((slot, rec.id.clone()));
        streams.push((slot, rec));
    }
    wait_for(
        "open recordings' segments stored",
        Duration::from_secs(60),
        async || drained(&reeld).await,
    )
    .await;
    for (slot, rec) in &mut streams {
        append(rec, *slot, 100..110).await; // a tail in the journal
    }
    let sent: BTreeMap<String, Vec<Event>> = recombined
        .iter()
        .chain(&split)
        .map(|(slot, id)| {
            (
                id.clone(),
                (0..200).map(|i| terminal_event(*slot, i)).collect(),
            )
        })
        .chain(open.iter().map(|(slot, id)| {
            (
                id.clone(),
                (0..110).map(|i| terminal_event(*slot, i)).collect(),
            )
        }))
        .collect();

    let mut stages = Vec::new();
    let mut purged: Vec<String> = Vec::new();
    for round in 0..rounds {
        let ids = vec![
            recombined[round].1.clone(),
            split[round].1.clone(),
            open[round].1.clone(),
        ];
        let request = tokio::spawn(post_purge(
            reeld.http.clone(),
            reeld.token().unwrap(),
            ids.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(rng.range(0..25))).await;
        reeld.kill9();
        for id in &ids {
            stages.push(stage_at_kill(&reeld.data_dir, id));
        }
        tokio::task::block_in_place(|| reeld.restart()).unwrap();
        // Its server is gone: it failed, or it finished before the kill. Its
        // outcome does not matter, only that the test does not wait forever.
        if tokio::time::timeout(Duration::from_secs(60), request)
            .await
            .is_err()
        {
            eprintln!("round {round}: the purge cut by the kill had no answer within 60 s");
        }
        // An operator whose purge was cut off asks again.
        let still: Vec<String> = {
            let listed = within("the listing after a restart", listed(&reeld)).await;
            ids.iter()
                .filter(|id| listed.contains(id))
                .cloned()
                .collect()
        };
        if !still.is_empty() {
            let status = within(
                "the purge asked again",
                post_purge(reeld.http.clone(), reeld.token().unwrap(), still),
            )
            .await
            .unwrap();
            assert!(status.is_success(), "{status}");
        }
        purged.extend(ids);
    }
    drop(streams);
    stages.sort();
    eprintln!("purge stage at each kill (0 unmarked .. 3 finished): {stages:?}");
    assert!(
        stages.iter().any(|&s| s == 1 || s == 2),
        "no kill landed inside a purge: {stages:?}"
    );

    wait_for(
        "every purge complete",
        Duration::from_secs(120),
        async || {
            let mut done = true;
            for id in &purged {
                done &= stage(&reeld, &primary, &secondary, id).await == Stage::Done;
            }
            done
        },
    )
    .await;
    let audit: Vec<AuditRecord> = reeld.get_json("/api/v1/audit?limit=10000").await.unwrap();
    let spool: Vec<String> = std::fs::read_dir(reeld.data_dir.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut all_objects = objects(&primary).await;
    all_objects.extend(objects(&secondary).await);
    for id in &purged {
        let response = reeld
            .get(&format!("/api/v1/recordings/{id}/export"))
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{id} still exports");
        assert!(
            !spool.iter().any(|f| f.contains(id.as_str())),
            "{id} in the spool"
        );
        assert!(!all_objects.iter().any(|k| k.contains(id.as_str())));
        for action in ["purge", "purged"] {
            assert!(
                audit
                    .iter()
                    .any(|e| e.action == action && e.recordings.contains(id) && e.by == "admin"),
                "no {action} audit entry for {id}"
            );
        }
    }
    // Everything else is as it was.
    let left = listed(&reeld).await;
    let untouched: Vec<&String> = sent.keys().filter(|id| !purged.contains(id)).collect();
    assert_eq!(untouched.len(), 6);
    for id in untouched {
        assert!(left.contains(id), "{id} is gone");
        let events = reeld.export_events(id).await.unwrap();
        assert!(events == sent[id], "{id} changed: {} events", events.len());
    }

    // A legal hold refuses the purge, and says so.
    let held = &left[0];
    let out = reeld.reel(&["hold", held, "--reason", "case 42"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = reeld.reel(&["purge", held, "--reason", "cleanup"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("legal hold (case 42"), "{stderr}");
    let out = reeld.reel(&["purge", "--older-than", "0s", "--dry-run"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(held.as_str()));
    assert!(listed(&reeld).await.contains(held));
}
