//! Failover against two real S3 servers (Garage, as plain processes): the
//! primary is killed, frozen and restarted while many recordings stream;
//! both stores go down; reeld itself is killed in the middle of a failover.
//! Afterwards every acknowledged event reads back intact, no recorder saw an
//! error, and the catalog's locations match what each bucket really holds.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reel_api::{RecordingDetail, StorageStatus};
use reel_proto::v1::Event;
use reel_testkit::{
    Garage, Recorder, Reeld, Rng, drained, metadata, stream, terminal_event, wait_for,
};

/// These tests are about failover: the compactor stays off so that split
/// recordings stay split for the checks.
fn config(dir: &Path, primary: &Garage, secondary: &Garage, extra: &str) -> std::path::PathBuf {
    reel_testkit::garage_config_file(
        dir,
        primary,
        secondary,
        &format!("[compactor]\nenabled = false\n{extra}"),
    )
}

async fn storage(reeld: &Reeld) -> StorageStatus {
    reeld.get_json("/api/v1/storage").await.unwrap()
}

/// The catalog's locations agree with both buckets, listed directly: every
/// object the catalog names is there with its size, and every object there
/// is named by the catalog, or is an uncertain copy (an ambiguous put).
async fn check_buckets(reeld: &Reeld, ids: &[String], primary: &Garage, secondary: &Garage) {
    for (store, garage) in [("primary", primary), ("secondary", secondary)] {
        let in_bucket: BTreeSet<(String, u64)> = garage.list().await.unwrap().into_iter().collect();
        let mut named = BTreeSet::new();
        let mut uncertain = BTreeSet::new();
        for id in ids {
            let detail: RecordingDetail = reeld
                .get_json(&format!("/api/v1/recordings/{id}"))
                .await
                .unwrap();
            // A store that holds any of a recording's segments holds its key
            // object too (put before the first of them); one left from a
            // put that went elsewhere in the end is known as well.
            let key_object = (format!("keys/{id}"), reel_keys::WRAPPED_KEY_LEN as u64);
            if detail
                .segments
                .iter()
                .any(|s| s.locations.iter().any(|l| l == store))
            {
                named.insert(key_object);
            } else {
                uncertain.insert(key_object);
            }
            for s in &detail.segments {
                let key = (
                    format!("recordings/{id}/segments/{:010}.seg", s.sequence),
                    s.size,
                );
                if s.locations.iter().any(|l| l == store) {
                    named.insert(key);
                } else if s.uncertain.iter().any(|l| l == store) {
                    uncertain.insert(key);
                }
            }
        }
        let missing: Vec<_> = named.difference(&in_bucket).collect();
        assert!(
            missing.is_empty(),
            "{store}: the catalog names objects the bucket lacks: {missing:?}"
        );
        let unnamed: Vec<_> = in_bucket
            .difference(&named)
            .filter(|k| !uncertain.contains(*k))
            .collect();
        assert!(
            unnamed.is_empty(),
            "{store}: objects nobody knows of: {unnamed:?}"
        );
    }
}

async fn check_events(reeld: &Reeld, results: &[(usize, String, u64)]) {
    for (slot, id, acked) in results {
        let events = reeld.export_events(id).await.unwrap();
        let expected: Vec<Event> = (0..*acked).map(|i| terminal_event(*slot, i)).collect();
        assert!(
            events == expected,
            "recording {id}: {} events, {acked} acknowledged",
            events.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_frozen_and_restarted_while_recording() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let cfg = config(dir.path(), &primary, &secondary, "");
    let reeld = Reeld::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    )
    .unwrap();
    let mut rng = Rng::from_env("failover");

    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for slot in 0..16 {
        let (endpoint, stop, seed) = (reeld.grpc.clone(), stop.clone(), rng.next_u64());
        handles.push(tokio::spawn(async move {
            (slot, stream(endpoint, slot, stop, seed).await)
        }));
    }
    let phase = |secs: f64| tokio::time::sleep(Duration::from_secs_f64(secs));
    phase(1.5).await;
    primary.kill9();
    phase(4.0).await;
    let during_kill = storage(&reeld).await;
    assert_eq!(
        during_kill.writing_to.as_deref(),
        Some("secondary"),
        "{during_kill:?}"
    );
    // What the outage hides, listed: the recordings with bytes only on the
    // primary (failover mode keeps one copy), each saying where they wait.
    let hidden: reel_api::RecordingList = reeld
        .get_json("/api/v1/recordings?readable=false")
        .await
        .unwrap();
    assert!(
        !hidden.recordings.is_empty(),
        "nothing is hidden by the primary's death"
    );
    for r in &hidden.recordings {
        assert!(!r.readable);
        let why = r.unreadable.as_deref().unwrap_or_default();
        assert!(
            why.contains("only on stores that are down: primary"),
            "{why}"
        );
    }
    let shown: reel_api::RecordingList = reeld
        .get_json("/api/v1/recordings?readable=true")
        .await
        .unwrap();
    assert!(
        shown
            .recordings
            .iter()
            .all(|r| r.readable && r.unreadable.is_none())
    );
    let status: reel_api::ServerStatus = reeld.get_json("/api/v1/status").await.unwrap();
    assert!(status.unreadable_recordings > 0, "{status:?}");
    let out = reeld.reel(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("recordings have bytes only on a store that is down"),
        "{text}"
    );
    let out = reeld.reel(&["show", &hidden.recordings[0].id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("readable   NO, not now:"), "{text}");
    tokio::task::block_in_place(|| primary.restart()).unwrap();
    phase(4.0).await;
    assert_eq!(storage(&reeld).await.writing_to.as_deref(), Some("primary"));
    primary.freeze();
    phase(5.0).await;
    let during_freeze = storage(&reeld).await;
    assert_eq!(
        during_freeze.writing_to.as_deref(),
        Some("secondary"),
        "{during_freeze:?}"
    );
    primary.thaw();
    phase(4.0).await;
    primary.kill9();
    phase(3.0).await;
    tokio::task::block_in_place(|| primary.restart()).unwrap();
    phase(3.0).await;
    stop.store(true, Ordering::Relaxed);

    let mut results = Vec::new();
    let mut slowest = Duration::ZERO;
    for h in handles {
        let (slot, seen) = h.await.unwrap();
        assert!(
            seen.error.is_none(),
            "recorder {slot} saw an error: {:?}",
            seen.error
        );
        assert!(seen.acked > 0);
        // No stall: a recorder waiting on a dead or hung store would wait
        // out the store's time-out (1 s here) and the 5 s freeze. Loose
        // enough for a debug build on 2 busy cores.
        assert!(
            seen.slowest_ack < Duration::from_secs(2),
            "recorder {slot} waited {:?} for an acknowledgement",
            seen.slowest_ack
        );
        slowest = slowest.max(seen.slowest_ack);
        results.push((slot, seen.id, seen.acked));
    }
    eprintln!("slowest acknowledgement of any recorder: {slowest:?}");
    wait_for("the backlog drains", Duration::from_secs(30), async || {
        drained(&reeld).await
    })
    .await;

    let status = storage(&reeld).await;
    let kinds: Vec<&str> = status.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.iter().filter(|k| **k == "failover").count() >= 3,
        "three failures, three failovers: {kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"failback"), "{kinds:?}");
    let ids: Vec<String> = results.iter().map(|r| r.1.clone()).collect();
    let mut split = 0;
    for id in &ids {
        let d: RecordingDetail = reeld
            .get_json(&format!("/api/v1/recordings/{id}"))
            .await
            .unwrap();
        if d.summary.placement == "split" {
            split += 1;
            assert!(
                d.recombine.is_some(),
                "split recording {id} is not marked for recombination"
            );
        }
    }
    assert!(split > 0, "no recording ended split");
    check_events(&reeld, &results).await;
    check_buckets(&reeld, &ids, &primary, &secondary).await;
    // What a scraper of either format reads: counters typed as counters.
    let response = reeld.get("/metrics").await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let metrics = response.text().await.unwrap();
    assert!(
        metrics.contains("reel_uploaded_segments_total{store=\"secondary\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("reel_store_state{"), "{metrics}");
    let text = openmetrics_parser::prometheus::parse_prometheus(&metrics).expect("text format");
    assert_eq!(
        text.families["reel_uploaded_segments_total"].family_type,
        openmetrics_parser::PrometheusType::Counter
    );
    let response = reeld
        .request(reqwest::Method::GET, "/metrics")
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
    let om = openmetrics_parser::openmetrics::parse_openmetrics(&response.text().await.unwrap())
        .expect("OpenMetrics");
    assert_eq!(
        om.families["reel_uploaded_segments"].family_type,
        openmetrics_parser::OpenMetricsType::Counter
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_down_fill_the_local_log_and_drain_when_one_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let mut secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let cfg = config(
        dir.path(),
        &primary,
        &secondary,
        "[ingest]\nlocal_capacity_bytes = 1048576\n",
    );
    let reeld = Reeld::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    )
    .unwrap();
    primary.kill9();
    secondary.kill9();

    let mut rec = Recorder::start(&reeld.grpc, metadata("both", "down"))
        .await
        .unwrap();
    let id = rec.id.clone();
    let big = |i: u64| {
        let mut e = terminal_event(0, i);
        e.data.resize(4096, b'.');
        e
    };
    let mut sent = Vec::new();
    let err = loop {
        let e = big(sent.len() as u64);
        match rec.append(vec![e.clone()]).await {
            Ok(_) => sent.push(e),
            Err(status) => break status,
        }
        assert!(sent.len() < 10_000, "the capacity never applied");
    };
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("local log full"), "{err:?}");
    // Refusal comes from the local capacity, whatever the stores' state;
    // the health tracker declares both down within its bounded time.
    wait_for(
        "both stores are seen down",
        Duration::from_secs(10),
        async || storage(&reeld).await.writing_to.is_none(),
    )
    .await;
    let status = storage(&reeld).await;
    assert_eq!(
        status.events.last().map(|e| e.kind.as_str()),
        Some("both-down"),
        "{status:?}"
    );
    assert!(status.backlog_segments > 0);
    // About half the capacity: the other half is the journal the spooled
    // segments were sealed from (each with its few bytes of framing and,
    // encrypted, its nonce and tag).
    assert!(status.backlog_bytes > 448 << 10, "{status:?}");
    // Acknowledged events are all there, read from the local log.
    assert_eq!(reeld.export_events(&id).await.unwrap(), sent);

    // The secondary returns: everything drains to it, recording resumes.
    tokio::task::block_in_place(|| secondary.restart()).unwrap();
    wait_for("the backlog drains", Duration::from_secs(30), async || {
        drained(&reeld).await
    })
    .await;
    let mut rec = Recorder::resume(&reeld.grpc, &id).await.unwrap();
    assert_eq!(rec.acked as usize, sent.len());
    let more: Vec<Event> = (sent.len() as u64..sent.len() as u64 + 20)
        .map(big)
        .collect();
    rec.append(more.clone()).await.unwrap();
    sent.extend(more);
    rec.close().await.unwrap();
    wait_for("all uploaded", Duration::from_secs(30), async || {
        drained(&reeld).await
    })
    .await;
    assert_eq!(reeld.export_events(&id).await.unwrap(), sent);
    let d: RecordingDetail = reeld
        .get_json(&format!("/api/v1/recordings/{id}"))
        .await
        .unwrap();
    assert_eq!(d.summary.placement, "secondary");
    assert_eq!(d.recombine.as_deref(), Some("secondary"));
    tokio::task::block_in_place(|| primary.restart()).unwrap();
    check_buckets(&reeld, std::slice::from_ref(&id), &primary, &secondary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reeld_killed_during_a_failover_comes_back_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let cfg = config(dir.path(), &primary, &secondary, "");
    let mut reeld = Reeld::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    )
    .unwrap();

    let mut rec = Recorder::start(&reeld.grpc, metadata("crash", "failover"))
        .await
        .unwrap();
    let id = rec.id.clone();
    let mut n = 0;
    for _ in 0..50 {
        rec.append(vec![terminal_event(9, n)]).await.unwrap();
        n += 1;
    }
    primary.kill9();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        rec.append(vec![terminal_event(9, n)]).await.unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // reeld dies in the middle of it, the primary still down.
    reeld.kill9();
    drop(rec);
    reeld.restart().unwrap();
    let mut rec = Recorder::resume(&reeld.grpc, &id).await.unwrap();
    assert!(
        rec.acked >= n,
        "{} of {n} acknowledged events survived",
        rec.acked
    );
    let n = rec.acked;
    rec.append((n..n + 100).map(|i| terminal_event(9, i)).collect())
        .await
        .unwrap();
    rec.close().await.unwrap();
    // The backlog drains to the store that works: the secondary.
    wait_for("the backlog drains", Duration::from_secs(30), async || {
        drained(&reeld).await
    })
    .await;
    assert_eq!(
        storage(&reeld).await.writing_to.as_deref(),
        Some("secondary")
    );
    tokio::task::block_in_place(|| primary.restart()).unwrap();
    wait_for("failback", Duration::from_secs(10), async || {
        storage(&reeld).await.writing_to.as_deref() == Some("primary")
    })
    .await;
    check_events(&reeld, &[(9, id.clone(), n + 100)]).await;
    check_buckets(&reeld, &[id], &primary, &secondary).await;
}
