//! Encryption at rest, seen from outside: a secret typed in a recording is
//! found in no byte under reeld's data directory, in its log, in no object
//! of either store (two Garage servers, read through their S3 API) and in no
//! archive, in every state the recording passes through (open in the
//! journal, sealed in the spool, uploaded, split by a failover, recombined,
//! archived), while an export still shows it to whoever may read it.

use std::path::Path;
use std::time::Duration;

use object_store::ObjectStoreExt;
use reel_proto::v1::{Event, EventKind, RecordingMetadata};
use reel_testkit::{Garage, Recorder, Reeld, drained, files_holding, wait_for};

const SECRET: &[u8] = b"hunter2-Zq8vX3-typed-at-the-prompt";

/// What the recorder sends: keystrokes holding the secret among output.
fn events(from: u64, n: u64) -> Vec<Event> {
    (from..from + n)
        .map(|i| Event {
            time_us: i * 1000,
            kind: if i % 2 == 0 {
                EventKind::Input as i32
            } else {
                EventKind::Output as i32
            },
            data: [
                format!("[{i:06}] sudo -k; password: ").as_bytes(),
                SECRET,
                b"\r\n",
            ]
            .concat(),
        })
        .collect()
}

fn holds_secret(bytes: &[u8]) -> bool {
    bytes.windows(SECRET.len()).any(|w| w == SECRET)
}

/// Every file under `dir` (recursively) that holds the secret; and how
/// many bytes were looked at, so that an empty scan cannot pass.
fn files_with_secret(dir: &Path, found: &mut Vec<String>, scanned: &mut u64) {
    files_holding(dir, SECRET, found, scanned)
}

/// Every object of `garage` that holds the secret.
async fn objects_with_secret(garage: &Garage, found: &mut Vec<String>, scanned: &mut u64) {
    let store = garage.object_store();
    for (key, _) in garage.list_all().await.unwrap() {
        let path = object_store::path::Path::from(key.as_str());
        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        *scanned += bytes.len() as u64;
        if holds_secret(&bytes) {
            found.push(format!("{}: {key}", garage.bucket));
        }
    }
}

/// Asserts that the secret is nowhere at rest: the data directory, reeld's
/// log, the stores given (one may be down), the extra files.
async fn assert_nowhere(stage: &str, reeld: &Reeld, stores: &[&Garage], files: &[&Path]) {
    let mut found = Vec::new();
    let mut local = 0;
    files_with_secret(&reeld.data_dir, &mut found, &mut local);
    for file in std::iter::once(&reeld.log.as_path()).chain(files) {
        let bytes = std::fs::read(file).unwrap();
        local += bytes.len() as u64;
        if holds_secret(&bytes) {
            found.push(file.display().to_string());
        }
    }
    let mut stored = 0;
    for garage in stores {
        objects_with_secret(garage, &mut found, &mut stored).await;
    }
    assert!(
        found.is_empty(),
        "{stage}: the secret is in the clear in {found:#?}"
    );
    // Before the first upload the stores may hold nothing at all.
    assert!(
        local > 0 && (stage == "open" || stored > 0),
        "{stage}: nothing was scanned ({local} local bytes, {stored} stored)"
    );
    eprintln!("{stage}: {local} local bytes and {stored} stored bytes hold no secret");
}

/// Objects of the recording on `garage` (segments and combined object).
async fn recording_objects(garage: &Garage, id: &str) -> usize {
    garage
        .list()
        .await
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("recordings/{id}/")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_secret_is_in_no_byte_at_rest_in_any_state() {
    let dir = tempfile::tempdir().unwrap();
    let crate::TwoStores {
        mut primary,
        secondary,
        reeld,
        ..
    } = crate::two_stores_small_segments(dir.path());
    let mut rec = Recorder::start(&reeld.grpc, RecordingMetadata::default())
        .await
        .unwrap();
    let id = rec.id.clone();

    // Open: a few events, acknowledged, so in the journal; less than a
    // segment, so nothing sealed yet.
    rec.append(events(0, 3)).await.unwrap();
    assert_eq!(recording_objects(&primary, &id).await, 0);
    assert_nowhere("open", &reeld, &[&primary, &secondary], &[]).await;

    // Sealed and uploaded to the primary.
    rec.append(events(3, 200)).await.unwrap();
    wait_for("uploaded", Duration::from_secs(60), async || {
        drained(&reeld).await && recording_objects(&primary, &id).await > 0
    })
    .await;
    assert_nowhere("uploaded", &reeld, &[&primary, &secondary], &[]).await;

    // Split: the primary is gone, the next segments go to the secondary.
    primary.kill9();
    rec.append(events(203, 200)).await.unwrap();
    wait_for("on the secondary", Duration::from_secs(90), async || {
        recording_objects(&secondary, &id).await > 0
    })
    .await;
    assert_nowhere("split, primary down", &reeld, &[&secondary], &[]).await;
    tokio::task::block_in_place(|| primary.restart()).unwrap();
    rec.append(events(403, 50)).await.unwrap();
    rec.close().await.unwrap();
    wait_for(
        "uploaded after the failback",
        Duration::from_secs(90),
        async || drained(&reeld).await,
    )
    .await;
    assert_nowhere("split", &reeld, &[&primary, &secondary], &[]).await;

    // Recombined into one object on the primary.
    let out = reeld.reel(&["compact", "--recording", &id, "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let combined = format!("recordings/{id}/recording.reel");
    assert!(
        primary
            .list()
            .await
            .unwrap()
            .iter()
            .any(|(k, _)| *k == combined),
        "not recombined"
    );
    assert_nowhere("recombined", &reeld, &[&primary, &secondary], &[]).await;

    // Archived.
    let archive = dir.path().join("kept.reelarchive");
    let out = reeld.reel(&["export-archive", &id, "-o", archive.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_nowhere("archived", &reeld, &[&primary, &secondary], &[&archive]).await;

    // Whoever may read the recording still sees every event as typed.
    let exported = reeld.export_events(&id).await.unwrap();
    assert_eq!(exported, events(0, 453));
    assert!(exported.iter().all(|e| holds_secret(&e.data)));
}

/// Crypto-shredding: objects copied aside before a purge and put back
/// afterwards (a stray copy, a backup, an object version) can be neither
/// read nor rebuilt into a readable recording: the purge destroyed the
/// recording's data key first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_put_back_after_a_purge_cannot_be_read_or_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let crate::TwoStores {
        primary,
        secondary,
        cfg,
        mut reeld,
    } = crate::two_stores_small_segments(dir.path());
    // Two recordings: one purged, one kept (the rebuild must still adopt
    // what it may read).
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut rec = Recorder::start(&reeld.grpc, RecordingMetadata::default())
            .await
            .unwrap();
        rec.append(events(0, 150)).await.unwrap();
        ids.push(rec.id.clone());
        rec.close().await.unwrap();
    }
    let (gone, kept) = (ids[0].clone(), ids[1].clone());
    // Closed, sealed to its last event and every segment on the primary (a
    // drained queue alone can come before the last seal).
    wait_for("uploaded", Duration::from_secs(60), async || {
        let d: reel_api::RecordingDetail = reeld
            .get_json(&format!("/api/v1/recordings/{gone}"))
            .await
            .unwrap();
        drained(&reeld).await
            && d.unsealed_events == 0
            && d.segments
                .iter()
                .all(|s| s.locations.iter().any(|l| l == "primary"))
    })
    .await;

    // Everything of the recording's, copied aside through the S3 API.
    let store = primary.object_store();
    let mut aside = Vec::new();
    for (key, _) in primary.list().await.unwrap() {
        if key.starts_with(&format!("recordings/{gone}/")) {
            let path = object_store::path::Path::from(key.as_str());
            let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
            aside.push((path, bytes));
        }
    }
    // One segment or more: whether the sealer cuts one before the close
    // comes is a matter of timing.
    assert!(
        !aside.is_empty(),
        "nothing of recording {gone} on the primary"
    );

    // Its wrapped data key, as its key object holds it.
    let wrapped = store
        .get(&object_store::path::Path::from(format!("keys/{gone}")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(wrapped.len(), reel_keys::WRAPPED_KEY_LEN);

    let out = reeld.reel(&["purge", &gone, "--reason", "retention ended"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("purged everywhere", Duration::from_secs(60), async || {
        let mut all = primary.list().await.unwrap();
        all.extend(secondary.list().await.unwrap());
        !all.iter().any(|(k, _)| k.contains(&gone))
    })
    .await;

    // Nor is the wrapped key left in any file of the data directory (the
    // catalog's earlier versions of the row included).
    // (The catalog is rewritten in batches, every few seconds.)
    wait_for(
        "the destroyed key gone from every file of the data directory",
        Duration::from_secs(30),
        async || {
            let mut holding = Vec::new();
            let mut scanned = 0;
            files_holding(&reeld.data_dir, &wrapped, &mut holding, &mut scanned);
            assert!(scanned > 0);
            holding.is_empty()
        },
    )
    .await;

    // Put back, under the same keys.
    for (path, bytes) in &aside {
        store.put(path, bytes.clone().into()).await.unwrap();
    }
    // The running server does not know it.
    let got = reeld
        .get(&format!("/api/v1/recordings/{gone}"))
        .await
        .unwrap();
    assert_eq!(got.status(), reqwest::StatusCode::NOT_FOUND);

    // Nor does a catalog rebuilt from the stores: the objects are named and
    // left out, for want of a key that opens them.
    let report = crate::lose_and_rebuild_catalog(&mut reeld, &cfg);
    let skipped = report["skipped"].to_string();
    assert!(
        skipped.contains(&gone) && skipped.contains("no key object"),
        "{skipped}"
    );
    reeld.restart().unwrap();
    let got = reeld
        .get(&format!("/api/v1/recordings/{gone}"))
        .await
        .unwrap();
    assert_eq!(got.status(), reqwest::StatusCode::NOT_FOUND);
    // The other recording came back whole, and reads.
    assert_eq!(reeld.export_events(&kept).await.unwrap(), events(0, 150));
}
