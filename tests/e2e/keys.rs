//! The server's keys: made on first start, kept across restarts, readable
//! by their owner only; the public key served and printed by `reel keys
//! public` (from the server or, offline, from the data directory); a master
//! key given in the environment never shown, logged or written; master
//! key rotation.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use std::time::Duration;

use object_store::ObjectStoreExt;
use reel_api::{AuditRecord, MasterKeys, PublicKeyInfo, RetiredMasterKeys};
use reel_proto::v1::Event;
use reel_testkit::{Garage, Recorder, Reeld, bin, drained, metadata, terminal_event, wait_for};

fn stdout_of(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_is_made_once_kept_private_and_its_public_key_printed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut reeld = Reeld::start(&data, &[]).unwrap();
    let keys = data.join("keys");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&keys), 0o700);
    let files: Vec<_> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("signing.pem")),
        "{files:?}"
    );
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }

    let pem = stdout_of(reeld.reel(&["keys", "public"]));
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    let info: PublicKeyInfo = reeld.get_json("/api/v1/keys/public").await.unwrap();
    assert_eq!(
        (info.pem.as_str(), info.algorithm.as_str()),
        (pem.as_str(), "ed25519")
    );
    // The private key is not in what was printed.
    let private = std::fs::read_to_string(keys.join("signing.pem")).unwrap();
    let private_body: String = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!pem.contains(&private_body));

    // The same key after a restart, and offline from the data directory.
    reeld.restart().unwrap();
    assert_eq!(stdout_of(reeld.reel(&["keys", "public"])), pem);
    reeld.stop();
    let offline = Command::new(bin("reel"))
        .args(["keys", "public", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(stdout_of(offline), pem);

    // Reading it is audited like any read.
    reeld.restart().unwrap();
    let audit: Vec<AuditRecord> = reeld.get_json("/api/v1/audit?limit=1000").await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "public-key" && e.by == "admin" && e.detail == info.id),
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_others_can_read_stops_the_server_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut reeld = Reeld::start(&data, &[]).unwrap();
    reeld.stop();
    let signing = data.join("keys").join("signing.pem");
    std::fs::set_permissions(&signing, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = reeld.restart().unwrap_err().to_string();
    assert!(
        err.contains("signing.pem") && err.contains("chmod 600"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_key_from_the_environment_is_never_shown_logged_or_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let master = "5eed".repeat(16);
    let mut reeld = Reeld::start(&data, &[]).unwrap();
    reeld.env = vec![("REEL_MASTER_KEY".into(), master.clone())];
    reeld.restart().unwrap();
    let printed = Command::new(bin("reeld"))
        .args(["--print-config", "--data-dir"])
        .arg(&data)
        .env("REEL_MASTER_KEY", &master)
        .output()
        .unwrap();
    let printed = stdout_of(printed);
    let compact: String = printed.split_whitespace().collect();
    assert!(
        compact.contains("master_key:Some(<redacted>,)"),
        "{printed}"
    );
    assert!(!printed.contains(&master));
    let status = stdout_of(reeld.reel(&["status", "--json"]));
    assert!(!status.contains(&master));
    reeld.stop();
    let log = std::fs::read_to_string(&reeld.log).unwrap();
    assert!(!log.contains(&master));
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(master.len()).any(|w| w == master.as_bytes()),
            "the master key is in {}",
            entry.display()
        );
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn events(recording: usize, from: u64, n: u64) -> Vec<Event> {
    (from..from + n)
        .map(|i| terminal_event(recording, i))
        .collect()
}

/// The master key each key object on `garage` is wrapped by.
async fn key_object_masters(garage: &Garage) -> Vec<(String, String)> {
    let store = garage.object_store();
    let mut out = Vec::new();
    for (key, _) in garage.list().await.unwrap() {
        if key.starts_with("keys/") {
            let path = object_store::path::Path::from(key.as_str());
            let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
            let wrapped = reel_keys::WrappedKey::from_bytes(&bytes).unwrap();
            out.push((key, wrapped.master_key_id.to_string()));
        }
    }
    out
}

fn master_of_file(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    reel_keys::WrappedKey::from_bytes(&bytes)
        .unwrap()
        .master_key_id
        .to_string()
}

/// `reel keys rotate`: a new master key wraps every recording's data key
/// (catalog rows, the spool's key files, key objects on both stores);
/// retiring the old key is refused while a store cannot be checked; once
/// it is destroyed, recordings written before, during (one open across the
/// rotation, one waiting in the spool) and after read identically, after a
/// restart and from a catalog rebuilt from the stores alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_master_key_rotation_every_recording_reads_without_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let crate::TwoStores {
        mut primary,
        mut secondary,
        cfg,
        mut reeld,
    } = crate::two_stores_small_segments(dir.path());
    let keys_dir = reeld.data_dir.join("keys");

    // Before: one recording closed and uploaded, one left open.
    let mut closed = Recorder::start(&reeld.grpc, metadata("alice", "db1"))
        .await
        .unwrap();
    closed.append(events(0, 0, 150)).await.unwrap();
    let a = closed.id.clone();
    closed.close().await.unwrap();
    let mut open = Recorder::start(&reeld.grpc, metadata("bob", "db2"))
        .await
        .unwrap();
    open.append(events(1, 0, 100)).await.unwrap();
    let b = open.id.clone();
    wait_for("uploaded", Duration::from_secs(60), async || {
        drained(&reeld).await
    })
    .await;

    // One more, closed while both stores are down: its segments and its
    // key file wait in the spool.
    primary.kill9();
    secondary.kill9();
    let mut spooled = Recorder::start(&reeld.grpc, metadata("carol", "db3"))
        .await
        .unwrap();
    spooled.append(events(2, 0, 120)).await.unwrap();
    let d = spooled.id.clone();
    spooled.close().await.unwrap();
    let spool_key = reeld.data_dir.join("spool").join(format!("{d}.key"));
    wait_for(
        "the spool's key file",
        Duration::from_secs(30),
        async || spool_key.exists(),
    )
    .await;

    let before: MasterKeys = reeld.get_json("/api/v1/keys").await.unwrap();
    let old = before.current.clone();
    assert_eq!(before.held, vec![old.clone()]);
    assert!(keys_dir.join(format!("master-{old}.key")).exists());
    assert_eq!(master_of_file(&spool_key), old);

    let out = reeld.reel(&["keys", "rotate", "--no-wait", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotated: MasterKeys = serde_json::from_slice(&out.stdout).unwrap();
    let new = rotated.current.clone();
    assert_ne!(new, old);
    assert!(rotated.held.contains(&old) && rotated.held.contains(&new));
    // The rows and the spool are wrapped again at once; the stores wait.
    wait_for(
        "the spool's key file rewrapped",
        Duration::from_secs(30),
        async || master_of_file(&spool_key) == new,
    )
    .await;
    let waiting: MasterKeys = reeld.get_json("/api/v1/keys").await.unwrap();
    assert!(waiting.rewrapping, "{waiting:?}");
    // Retiring the old key is refused while a store cannot be checked: a
    // key object there may still need it.
    let refused = reeld.reel(&["keys", "rotate", "--finish"]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("older master keys are kept"), "{why}");
    assert!(keys_dir.join(format!("master-{old}.key")).exists());

    primary.restart().unwrap();
    secondary.restart().unwrap();
    // After: the open recording goes on, a new one is made.
    open.append(events(1, 100, 100)).await.unwrap();
    open.close().await.unwrap();
    let mut after = Recorder::start(&reeld.grpc, metadata("dave", "db4"))
        .await
        .unwrap();
    after.append(events(3, 0, 130)).await.unwrap();
    let c = after.id.clone();
    after.close().await.unwrap();
    wait_for(
        "uploaded, every key rewrapped",
        Duration::from_secs(90),
        async || {
            let keys: MasterKeys = reeld.get_json("/api/v1/keys").await.unwrap();
            drained(&reeld).await && !keys.rewrapping
        },
    )
    .await;
    // Every recording's key object is on the store(s) its objects went to
    // (after the outage, uploads may still go to the secondary), and every
    // key object is wrapped by the new key.
    let mut key_objects = key_object_masters(&primary).await;
    key_objects.extend(key_object_masters(&secondary).await);
    for id in [&a, &b, &c, &d] {
        assert!(
            key_objects.iter().any(|(k, _)| k == &format!("keys/{id}")),
            "{id}: {key_objects:?}"
        );
    }
    for (key, master) in &key_objects {
        assert_eq!(master, &new, "{key}");
    }

    let out = reeld.reel(&["keys", "rotate", "--finish", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let retired: RetiredMasterKeys = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(retired.retired, vec![old.clone()]);
    assert!(!keys_dir.join(format!("master-{old}.key")).exists());
    let audit: Vec<AuditRecord> = reeld.get_json("/api/v1/audit?limit=1000").await.unwrap();
    for action in ["rotate-master-key", "retire-master-keys"] {
        assert!(
            audit.iter().any(|e| e.action == action && e.by == "admin"),
            "{action}: {audit:?}"
        );
    }

    let expected = [
        (a.clone(), events(0, 0, 150)),
        (b.clone(), events(1, 0, 200)),
        (c.clone(), events(3, 0, 130)),
        (d.clone(), events(2, 0, 120)),
    ];
    let check = async |reeld: &Reeld, stage: &str| {
        for (id, events) in &expected {
            assert!(
                &reeld.export_events(id).await.unwrap() == events,
                "{stage}: {id} does not read as written"
            );
        }
    };
    check(&reeld, "once the old key is destroyed").await;
    reeld.restart().unwrap();
    let keys: MasterKeys = reeld.get_json("/api/v1/keys").await.unwrap();
    assert_eq!(keys.held, vec![new.clone()]);
    check(&reeld, "after a restart").await;
    // The key objects alone open what a rebuilt catalog adopts.
    let report = crate::lose_and_rebuild_catalog(&mut reeld, &cfg);
    assert_eq!(
        report["skipped"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    reeld.restart().unwrap();
    check(&reeld, "from a rebuilt catalog").await;
}
