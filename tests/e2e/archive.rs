//! Archives end to end with a real `reeld`: recordings exported to a file
//! with `--remove` are gone from Reel only after the file is written and
//! checked; imported back they list with their ids and metadata and export
//! byte for byte as before. A damaged or truncated file imports nothing; an
//! open recording is not archived; an import twice is refused.

use std::time::Duration;

use reel_api::RecordingList;
use reel_proto::v1::{Event, RecordingMetadata};
use reel_testkit::{Recorder, Reeld, terminal_event, wait_for};

async fn export_bytes(reeld: &Reeld, id: &str, format: &str) -> (u16, Vec<u8>) {
    let r = reeld
        .get(&format!("/api/v1/recordings/{id}/export?format={format}"))
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_archived_with_remove_come_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(
        &dir.path().join("data"),
        &[
            "--segment-target-bytes",
            "4096",
            "--segment-max-age",
            "200ms",
        ],
    )
    .unwrap();
    let mut ids = Vec::new();
    for (slot, user) in ["alice", "bob", "carol"].iter().enumerate() {
        let mut rec = Recorder::start(
            &reeld.grpc,
            RecordingMetadata {
                user: user.to_string(),
                target: format!("db-{slot}"),
                labels: [("ticket".to_string(), format!("T-{slot}"))].into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let events: Vec<Event> = (0..300).map(|i| terminal_event(slot, i)).collect();
        for batch in events.chunks(30) {
            rec.append(batch.to_vec()).await.unwrap();
        }
        ids.push(rec.id.clone());
        rec.close().await.unwrap();
    }
    let mut open = Recorder::start(&reeld.grpc, RecordingMetadata::default())
        .await
        .unwrap();
    open.append(vec![terminal_event(9, 0)]).await.unwrap();
    let out = reeld.reel(&["compact", "--recording", &ids[1], "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let list = |reeld: &Reeld| {
        let out = reeld.reel(&["ls", "--json", "--all", "--state", "closed"]);
        serde_json::from_slice::<RecordingList>(&out.stdout).unwrap()
    };
    let before = list(&reeld);
    let mut exports = Vec::new();
    for id in &ids {
        exports.push((
            export_bytes(&reeld, id, "cast").await.1,
            export_bytes(&reeld, id, "raw").await.1,
        ));
    }

    // An open recording is not archived, and nothing is written.
    let file = dir.path().join("old.reelarchive");
    let out = reeld.reel(&["export-archive", &open.id, "-o", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("still open"));
    assert!(!file.exists());

    let mut args = vec!["export-archive"];
    args.extend(ids.iter().map(String::as_str));
    args.extend(["-o", file.to_str().unwrap(), "--remove"]);
    let out = reeld.reel(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("archived 3 recordings") && stdout.contains("removed 3"),
        "{stdout}"
    );
    for id in &ids {
        assert_eq!(
            export_bytes(&reeld, id, "cast").await.0,
            404,
            "{id} is still in Reel"
        );
    }

    // Anyone with the file and the server's public key checks it, with no
    // server and no catalog: whole and intact; one flipped byte, or another
    // key, and it is not (exit 1, naming what).
    let bytes = std::fs::read(&file).unwrap();
    let key = dir.path().join("reeld.pub");
    std::fs::write(&key, reeld.reel(&["keys", "public"]).stdout).unwrap();
    let verify = |file: &std::path::Path, key: &std::path::Path| {
        let out = std::process::Command::new(reel_testkit::bin("reel"))
            .arg("verify-archive")
            .arg(file)
            .arg("--public-key")
            .arg(key)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, said) = verify(&file, &key);
    assert!(ok, "{said}");
    assert_eq!(said.matches(": intact (").count(), 3, "{said}");
    assert!(said.contains("whole, signed by key"), "{said}");
    let flipped = dir.path().join("flipped.reelarchive");
    let mut changed = bytes.clone();
    changed[bytes.len() / 2] ^= 1;
    std::fs::write(&flipped, &changed).unwrap();
    let (ok, said) = verify(&flipped, &key);
    assert!(!ok, "{said}");
    let other = dir.path().join("other.pub");
    let stranger = reel_keys::FileKeys::ephemeral().unwrap();
    std::fs::write(
        &other,
        reel_keys::KeyProvider::public_key(&stranger).to_pem(),
    )
    .unwrap();
    let (ok, said) = verify(&file, &other);
    assert!(!ok && said.contains("not by the key given"), "{said}");

    // A truncated copy imports nothing.
    let cut = dir.path().join("cut.reelarchive");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let out = reeld.reel(&["import-archive", cut.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
    assert!(list(&reeld).recordings.is_empty());

    let out = reeld.reel(&["import-archive", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 3 of 3"));
    // Same ids, metadata and content; placement follows once uploaded.
    wait_for("uploaded again", Duration::from_secs(30), async || {
        list(&reeld)
            .recordings
            .iter()
            .all(|r| r.placement == "primary")
    })
    .await;
    let after = list(&reeld);
    let strip = |l: &RecordingList| {
        l.recordings
            .iter()
            .map(|r| {
                (
                    r.id.clone(),
                    r.user.clone(),
                    r.target.clone(),
                    r.labels.clone(),
                    r.started_at_us,
                    r.duration_us,
                    r.event_count,
                    r.data_bytes,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&after), strip(&before));
    for (id, (cast, raw)) in ids.iter().zip(&exports) {
        assert!(
            &export_bytes(&reeld, id, "cast").await.1 == cast,
            "{id}: cast differs"
        );
        assert!(
            &export_bytes(&reeld, id, "raw").await.1 == raw,
            "{id}: raw differs"
        );
    }
    // Twice: refused, nothing changes.
    let out = reeld.reel(&["import-archive", file.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in Reel"));
    assert_eq!(list(&reeld).recordings.len(), 3);
    drop(open);
}
