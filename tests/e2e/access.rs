//! Who may see and do what, end to end against a real reeld: every HTTP
//! route and the gRPC ingest method for every role, no token and a wrong
//! token; scopes; recordings resumed only by who started them; the audit
//! log naming the authenticated identity for every access and refusal; the
//! bootstrap token; and no secret in any answer or log line.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use reel_api::{AuditRecord, RecordingList};
use reel_proto::v1::{Event, RecordingMetadata};
use reel_testkit::{
    Garage, Recorder, Reeld, garage_config_file, metadata, terminal_event, wait_for,
};

const ROLES: [&str; 5] = ["recorder", "viewer", "auditor", "custodian", "admin"];

/// Who may use each route: the roles allowed, or `OPEN` for everyone
/// (no token needed). Written here, apart from the server's own rules,
/// which must agree with it row for row.
const OPEN: &[&str] = &["*"];
const TABLE: &[(&str, &str, &[&str])] = &[
    ("GET", "/healthz", OPEN),
    ("GET", "/metrics", &["auditor", "admin"]),
    ("GET", "/api/v1/status", &["auditor", "admin"]),
    ("GET", "/api/v1/storage", &["auditor", "admin"]),
    ("GET", "/api/v1/compact", &["auditor", "admin"]),
    ("POST", "/api/v1/compact", &["admin"]),
    (
        "GET",
        "/api/v1/recordings",
        &["viewer", "auditor", "custodian", "admin"],
    ),
    (
        "GET",
        "/api/v1/recordings/{id}",
        &["viewer", "auditor", "custodian", "admin"],
    ),
    (
        "GET",
        "/api/v1/recordings/{id}/export",
        &["viewer", "auditor", "custodian", "admin"],
    ),
    (
        "POST",
        "/api/v1/recordings/{id}/hold",
        &["custodian", "admin"],
    ),
    // Releasing a hold is a custodian's act, never an admin's alone.
    ("DELETE", "/api/v1/recordings/{id}/hold", &["custodian"]),
    ("POST", "/api/v1/purge", &["admin"]),
    ("POST", "/api/v1/retention", &["admin"]),
    ("GET", "/api/v1/audit", &["auditor", "admin"]),
    ("GET", "/api/v1/audit/verify", &["auditor", "admin"]),
    ("POST", "/api/v1/verify", &["auditor", "admin"]),
    ("GET", "/api/v1/archive", &["admin"]),
    ("POST", "/api/v1/archive", &["admin"]),
    ("GET", "/api/v1/tokens", &["admin"]),
    ("POST", "/api/v1/tokens", &["admin"]),
    ("DELETE", "/api/v1/tokens/{name}", &["admin"]),
    (
        "GET",
        "/api/v1/keys/public",
        &["viewer", "auditor", "custodian", "admin"],
    ),
    ("GET", "/api/v1/keys", &["auditor", "admin"]),
    ("POST", "/api/v1/keys/rotate", &["admin"]),
    ("POST", "/api/v1/keys/rotate/finish", &["admin"]),
    // asciinema: its live stream (the token in the path) and its upload.
    ("GET", "/ws/S/{token}", &["recorder", "admin"]),
    ("POST", "/api/v1/recordings", &["recorder", "admin"]),
    // The web UI: signing in and out, and the sign-in page's style, are
    // open; without a session a page sends to sign-in (counted as a 401).
    ("GET", "/signin", OPEN),
    ("POST", "/signin", OPEN),
    ("POST", "/signout", OPEN),
    ("GET", "/ui/reel.css", OPEN),
    ("GET", "/ui/assets/{file}", READERS),
    ("GET", "/", READERS),
    ("GET", "/recordings", READERS),
    ("GET", "/recordings/{id}", READERS),
    ("GET", "/recordings/{id}/player.json", READERS),
    ("GET", "/recordings/{id}/player/piece", READERS),
    ("GET", "/recordings/{id}/live", READERS),
];
const READERS: &[&str] = &["viewer", "auditor", "custodian", "admin"];

/// `reel token create`; returns the secret (the last line of its output).
fn create_token(reeld: &Reeld, name: &str, roles: &[&str], scopes: &[&str]) -> String {
    let mut args = vec!["token", "create", "--name", name];
    for r in roles {
        args.extend(["--role", r]);
    }
    for s in scopes {
        args.extend(["--scope", s]);
    }
    let out = reeld.reel(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let last = text.lines().last().unwrap().trim().to_string();
    assert!(last.starts_with("reel_"), "{text}");
    last
}

async fn record(endpoint: &str, token: &str, meta: RecordingMetadata, n: u64) -> String {
    let mut rec = Recorder::start_as(endpoint, token, meta).await.unwrap();
    let events: Vec<Event> = (0..n).map(|i| terminal_event(1, i)).collect();
    rec.append(events).await.unwrap();
    let id = rec.id.clone();
    rec.close().await.unwrap();
    id
}

/// A request that each route serves, with a body that changes nothing that
/// the rest of the test relies on.
fn request(
    reeld: &Reeld,
    method: &str,
    route: &str,
    id: &str,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    // asciinema's stream carries its token in the path, not in a header.
    let in_path = route.contains("{token}");
    let path = route
        .replace("{id}", id)
        .replace("{name}", "nobody")
        .replace("{file}", "reel.js")
        .replace("{token}", token.unwrap_or("none"));
    let path = match (method, route) {
        ("POST", "/api/v1/compact") | ("POST", "/api/v1/retention") => {
            format!("{path}?dry_run=true")
        }
        ("GET", "/api/v1/archive") => format!("{path}?ids=01KAZ3Q6Z2VJ6D1N7M4R8TXQ2C"),
        _ => path,
    };
    let method: reqwest::Method = method.parse().unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut r = client.request(method, format!("{}{path}", reeld.http));
    r = match route {
        "/api/v1/purge" => r.json(&serde_json::json!({ "ids": ["01KAZ3Q6Z2VJ6D1N7M4R8TXQ2C"] })),
        "/api/v1/recordings/{id}/hold" => r.json(&serde_json::json!({ "reason": "case 7" })),
        "/api/v1/tokens" => r.json(&serde_json::json!({ "name": "", "roles": [] })),
        "/api/v1/archive" => r.body(Vec::new()),
        _ => r,
    };
    match token {
        Some(t) if !in_path => r.bearer_auth(t),
        _ => r,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_method_answers_each_role_as_the_table_says() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();

    // The server's rules and this table agree, row for row.
    let served: BTreeSet<(String, String)> = reel_server::access::RULES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let table: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        served, table,
        "every route needs a row in this test's table, and every row a route"
    );

    let mut tokens = Vec::new();
    for role in ROLES {
        tokens.push((
            role,
            create_token(&reeld, &format!("t-{role}"), &[role], &[]),
        ));
    }
    let token = |role: &str| tokens.iter().find(|(r, _)| *r == role).unwrap().1.clone();
    let id = record(
        &reeld.grpc,
        &token("recorder"),
        metadata("alice", "db-1"),
        20,
    )
    .await;

    let mut failures = Vec::new();
    for (method, route, allowed) in TABLE {
        let mut callers: Vec<(&str, Option<String>)> = vec![
            ("no token", None),
            ("a wrong token", Some("reel_0000".into())),
        ];
        // The custodian acts on the hold after the admin, so that the
        // release finds one to release.
        for role in ["recorder", "viewer", "auditor", "admin", "custodian"] {
            callers.push((role, Some(token(role))));
        }
        for (who, t) in callers {
            let answer = request(&reeld, method, route, &id, t.as_deref())
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let to_sign_in = answer
                .headers()
                .get("location")
                .is_some_and(|l| l.to_str().unwrap().starts_with("/signin"));
            let expected = if *allowed == OPEN {
                "served"
            } else if t.is_none() || who == "a wrong token" {
                "401"
            } else if allowed.contains(&who) {
                "served"
            } else {
                "403"
            };
            let got = match status {
                401 => "401",
                303 if to_sign_in => "401",
                403 => "403",
                _ => "served",
            };
            if got != expected {
                failures.push(format!(
                    "{method} {route} by {who}: HTTP {status}, expected {expected}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every access served above is in the audit log, under the identity
    // that made it; every refusal too.
    let audit: Vec<AuditRecord> = reeld.get_json("/api/v1/audit?limit=10000").await.unwrap();
    for (action, by) in [
        ("list", "t-viewer"),
        ("show", "t-custodian"),
        ("export", "t-viewer"),
        ("export", "t-auditor"),
        ("export", "t-custodian"),
        ("export", "t-admin"),
        ("hold", "t-admin"),
        ("release", "t-custodian"),
        ("retention-run", "t-admin"),
        ("verify", "t-auditor"),
        ("compact", "t-admin"),
        ("forbidden", "t-recorder"),
        ("forbidden", "t-admin"),
        ("unauthenticated", ""),
        ("token-create", "admin"),
    ] {
        assert!(
            audit.iter().any(|e| e.action == action && e.by == by),
            "no {action} by {by:?} in the audit log"
        );
    }

    // gRPC: only recorders (and admins) may record; without a token no one.
    for role in ROLES {
        let result = Recorder::start_as(&reeld.grpc, &token(role), metadata("alice", "db-2")).await;
        match role {
            "recorder" | "admin" => assert!(result.is_ok(), "{role}: {:?}", result.err()),
            _ => {
                let status = result.err().unwrap();
                assert_eq!(status.code(), tonic::Code::PermissionDenied, "{role}");
                assert!(status.message().contains("recorder"), "{status:?}");
            }
        }
    }
    let status = Recorder::start_as(&reeld.grpc, "reel_wrong", metadata("a", "b"))
        .await
        .err()
        .unwrap();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_resume_audit_and_the_bootstrap_token() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded default's layout: ./reel-data beside where reel runs.
    let reeld = Reeld::start(&dir.path().join("reel-data"), &[]).unwrap();
    let token_file = dir.path().join("reel-data/admin.token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // `reel` with no token flag finds ./reel-data/admin.token.
    let out = std::process::Command::new(reel_testkit::bin("reel"))
        .current_dir(dir.path())
        .env_remove("REEL_TOKEN")
        .env_remove("REEL_TOKEN_FILE")
        .args(["--server", &reeld.http, "ls"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rec_a = create_token(&reeld, "bastion-a", &["recorder"], &[]);
    let rec_b = create_token(&reeld, "bastion-b", &["recorder"], &[]);
    let alice_viewer = create_token(&reeld, "alice-viewer", &["viewer"], &["user=alice"]);
    let alice = record(&reeld.grpc, &rec_a, metadata("alice", "db-1"), 30).await;
    let bob = record(&reeld.grpc, &rec_a, metadata("bob", "db-1"), 30).await;

    // A viewer scoped to alice sees and exports only alice's recordings.
    let as_viewer = |path: String| {
        reqwest::Client::new()
            .get(format!("{}{path}", reeld.http))
            .bearer_auth(&alice_viewer)
            .send()
    };
    let list: RecordingList = as_viewer("/api/v1/recordings".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list.recordings.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec![alice.as_str()]);
    for path in [
        format!("/api/v1/recordings/{alice}"),
        format!("/api/v1/recordings/{alice}/export"),
    ] {
        assert_eq!(as_viewer(path).await.unwrap().status(), 200);
    }
    for path in [
        format!("/api/v1/recordings/{bob}"),
        format!("/api/v1/recordings/{bob}/export"),
    ] {
        let r = as_viewer(path).await.unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("outside the scopes"));
    }

    // Only the identity that started a recording may resume it.
    let mut open = Recorder::start_as(&reeld.grpc, &rec_a, metadata("carol", "db-9"))
        .await
        .unwrap();
    open.append(vec![terminal_event(2, 0)]).await.unwrap();
    let open_id = open.id.clone();
    drop(open);
    let stolen = Recorder::resume_as(&reeld.grpc, &rec_b, &open_id)
        .await
        .err()
        .unwrap();
    assert_eq!(stolen.code(), tonic::Code::PermissionDenied, "{stolen:?}");
    // The server sees the dropped stream end a moment after the drop;
    // until then the recording still has its recorder attached.
    let mut resumed = None;
    wait_for(
        "the owner resumes",
        Duration::from_secs(10),
        async || match Recorder::resume_as(&reeld.grpc, &rec_a, &open_id).await {
            Ok(r) => {
                resumed = Some(r);
                true
            }
            Err(e) if e.message().contains("already has a recorder attached") => false,
            Err(e) => panic!("{e:?}"),
        },
    )
    .await;
    let mut back = resumed.unwrap();
    assert_eq!(back.acked, 1);

    // Purging an open recording is refused unless forced.
    let out = reeld.reel(&["purge", &open_id, "--reason", "test"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("still open"));
    back.append(vec![terminal_event(2, 1)]).await.unwrap();

    // `by` in a body is ignored: the audit log names the token.
    let r = reeld
        .request(reqwest::Method::POST, "/api/v1/purge")
        .json(&serde_json::json!({ "ids": [bob], "by": "mallory", "reason": "spoof" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let audit: Vec<AuditRecord> = reeld.get_json("/api/v1/audit?limit=10000").await.unwrap();
    let purge = audit.iter().find(|e| e.action == "purge").unwrap();
    assert_eq!(purge.by, "admin");
    assert!(audit.iter().all(|e| e.by != "mallory"));
    // Every access is there: the viewer's exports and its refusals, the
    // stolen resume, the tokens made.
    let has = |action: &str, by: &str, recording: Option<&str>| {
        audit.iter().any(|e| {
            e.action == action
                && e.by == by
                && recording.is_none_or(|id| e.recordings.iter().any(|r| r == id))
        })
    };
    assert!(has("export", "alice-viewer", Some(&alice)), "{audit:#?}");
    assert!(has("list", "alice-viewer", Some(&alice)), "{audit:#?}");
    assert!(has("forbidden", "alice-viewer", None), "{audit:#?}");
    assert!(has("forbidden", "bastion-b", None), "{audit:#?}");
    assert!(has("token-create", "admin", None), "{audit:#?}");
    assert!(
        audit
            .iter()
            .filter(|e| e.action == "forbidden" || e.action == "export")
            .all(|e| e.client.starts_with("127.0.0.1:")),
        "{audit:#?}"
    );
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/recordings", reeld.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let audit: Vec<AuditRecord> = reeld.get_json("/api/v1/audit?limit=10000").await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.action == "unauthenticated" && e.detail == "GET /api/v1/recordings")
    );

    // A revoked token stops working at once.
    let out = reeld.reel(&["token", "revoke", "alice-viewer"]);
    assert!(out.status.success());
    assert_eq!(
        as_viewer("/api/v1/recordings".into())
            .await
            .unwrap()
            .status(),
        401
    );
    back.close().await.unwrap();
}

/// Every answer of every GET route, with the admin's token.
async fn every_answer(reeld: &Reeld) -> String {
    let mut all = String::new();
    for (method, route, _) in TABLE {
        if *method == "GET" && !route.contains('{') {
            let r = reeld.get(route).await.unwrap();
            all.push_str(&r.text().await.unwrap());
        }
    }
    all
}

fn file_text(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_and_no_log_line_shows_a_store_secret() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let cfg = garage_config_file(dir.path(), &primary, &secondary, "");
    let reeld = Reeld::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    )
    .unwrap();
    record(&reeld.grpc, &reeld.token().unwrap(), metadata("a", "b"), 10).await;
    let mut seen = every_answer(&reeld).await;
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["token", "ls"],
        vec!["ls", "--json"],
    ] {
        let out = reeld.reel(&args);
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let out = std::process::Command::new(reel_testkit::bin("reeld"))
        .args(["--config", cfg.to_str().unwrap(), "--print-config"])
        .output()
        .unwrap();
    seen.push_str(&String::from_utf8_lossy(&out.stdout));
    assert!(seen.contains(&primary.bucket), "the answers name the store");
    seen.push_str(&file_text(&reeld.log));
    let admin = reeld.token().unwrap();
    for secret in [&primary.secret, &secondary.secret, &admin] {
        assert!(!seen.contains(secret.as_str()), "a secret was shown");
    }
}

/// reeld's catalog opened directly (reeld stopped), as someone with the
/// disk would.
fn open_catalog(reeld: &Reeld) -> rocksdb::DB {
    let path = reeld.data_dir.join("catalog");
    let opts = rocksdb::Options::default();
    let families = rocksdb::DB::list_cf(&opts, &path).unwrap();
    rocksdb::DB::open_cf(&opts, &path, families).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_entry_removed_from_the_catalog_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    for name in ["a", "b", "c", "d"] {
        create_token(&reeld, name, &["viewer"], &[]);
    }
    let out = reeld.reel(&["audit", "--verify"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("the audit log is intact"), "{text}");

    // Someone with the disk removes one entry (the third) from RocksDB.
    reeld.stop();
    {
        let db = open_catalog(&reeld);
        let cf = db.cf_handle("audit").unwrap();
        let keys: Vec<Box<[u8]>> = db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .map(|item| item.unwrap().0)
            .collect();
        assert!(keys.len() > 4, "{} keys", keys.len());
        db.delete_cf(cf, &keys[2]).unwrap();
    }
    reeld.restart().unwrap();
    let out = reeld.reel(&["audit", "--verify"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("entries 3..3 are missing"), "{text}");
}

/// Someone with the disk cuts the log's last entries and rewrites the head
/// to match: the catalog's chain is consistent, but the stores' copies
/// (written every few seconds and at a clean stop) still hold the entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_log_cut_short_with_its_head_rewritten_is_found_in_the_stores() {
    use prost::Message;
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let mut reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    for name in ["a", "b", "c", "d"] {
        create_token(&reeld, name, &["viewer"], &[]);
    }
    reeld.stop();
    {
        let db = open_catalog(&reeld);
        let cf = db.cf_handle("audit").unwrap();
        type Row = (Box<[u8]>, Box<[u8]>);
        let entries: Vec<Row> = db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .map(|item| item.unwrap())
            .filter(|(k, _)| k[0] < 0xf0)
            .collect();
        let n = entries.len();
        assert!(n >= 4, "{n} entries");
        for (k, _) in &entries[n - 2..] {
            db.delete_cf(cf, k).unwrap();
        }
        let (_, last) = &entries[n - 3];
        let kept = reel_proto::v1::AuditEntry::decode(&last[..]).unwrap();
        let head = reel_proto::v1::AuditHead {
            seq: kept.seq,
            sha256: sha2::Sha256::digest(last).to_vec(),
            at_us: kept.at_us,
        };
        db.put_cf(cf, [0xff], head.encode_to_vec()).unwrap();
    }
    reeld.restart().unwrap();
    let out = reeld.reel(&["audit", "--verify"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("past the catalog's head"), "{text}");
}

/// Whoever can write to a bucket can put objects under `audit/`: a huge
/// one is named without being fetched, a garbage one by the byte where it
/// goes wrong, and reeld serves on.
#[tokio::test]
async fn objects_planted_among_the_audit_copies_are_named_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut reeld = Reeld::start(&data, &[]).unwrap();
    create_token(&reeld, "a", &["viewer"], &[]);
    reeld.stop();
    let audit = data.join("primary").join("audit");
    assert!(
        std::fs::read_dir(&audit).unwrap().count() > 0,
        "a clean stop copies the log"
    );
    let huge = std::fs::File::create(audit.join("huge.pb")).unwrap();
    huge.set_len(reel_log::limits::MAX_AUDIT_COPY_BYTES + 1)
        .unwrap();
    let mut garbage = Vec::new();
    prost::encoding::encode_varint(u64::MAX, &mut garbage);
    std::fs::write(audit.join("garbage.pb"), &garbage).unwrap();
    reeld.restart().unwrap();
    let out = reeld.reel(&["audit", "--verify"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("huge.pb") && text.contains("larger than any audit copy"),
        "{text}"
    );
    assert!(
        text.contains("garbage.pb") && text.contains("byte 0") && text.contains("exceeds"),
        "{text}"
    );
    let health = reeld.get("/healthz").await.unwrap();
    assert!(health.status().is_success());
}
