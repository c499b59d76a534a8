//! The server's keys: made on first start, kept across restarts, readable
//! by their owner only; the public key served and printed by `reel keys
//! public` (from the server or, offline, from the data directory); a master
//! key given in the environment never shown, logged or written.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use reel_api::{AuditRecord, PublicKeyInfo};
use reel_testkit::{Reeld, bin};

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
