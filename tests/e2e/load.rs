//! `reel load` against a real reeld: every acknowledged event is stored
//! and exports exactly as the generator made it (its events are a function
//! of the seed, the recording's number and the index); 2,000 streams open,
//! ingest and close at once without an error.

use std::time::Duration;

use reel_api::RecordingList;
use reel_testkit::{Reeld, wait_for};

/// Runs `reel load ARGS --json` against `reeld`; its report.
fn load(reeld: &Reeld, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["load", "--json", "--grpc", reeld.grpc.as_str()];
    all.extend_from_slice(args);
    let out = reeld.reel(&all);
    assert!(
        out.status.success(),
        "reel load failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("reel load {args:?}: {report}");
    report
}

async fn recordings_of_seed(reeld: &Reeld, seed: u64) -> RecordingList {
    reeld
        .get_json(&format!("/api/v1/recordings?label=load={seed}&limit=1000"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_reel_load_sends_and_is_acknowledged_is_stored_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let report = load(
        &reeld,
        &[
            "--recordings",
            "20",
            "--events-per-second",
            "40",
            "--event-bytes",
            "100",
            "--duration",
            "3s",
            "--connections",
            "3",
            "--seed",
            "7",
            "--interval",
            "1s",
        ],
    );
    let sent = report["events_sent"].as_u64().unwrap();
    let acked = report["events_acknowledged"].as_u64().unwrap();
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(sent, acked, "{report}");
    // 20 recordings at 40 a second for 3 s: about 2,400, bursts and all.
    assert!((1200..4800).contains(&sent), "{report}");
    for field in [
        "ack_p50_ms",
        "ack_p99_ms",
        "ack_p999_ms",
        "events_per_second",
    ] {
        assert!(report[field].as_f64().unwrap() > 0.0, "{field}: {report}");
    }
    assert!(report["ack_p50_ms"].as_f64() <= report["ack_p99_ms"].as_f64());
    // Each second of the 3 has its own latencies, and between them every
    // acknowledgement of the run.
    let intervals = report["intervals"].as_array().unwrap();
    let from: Vec<f64> = intervals
        .iter()
        .map(|i| i["from_seconds"].as_f64().unwrap())
        .collect();
    assert_eq!(from, [0.0, 1.0, 2.0], "{report}");
    let worst = intervals
        .iter()
        .map(|i| i["ack_max_ms"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(worst, report["ack_max_ms"].as_f64().unwrap(), "{report}");
    assert!(
        intervals
            .iter()
            .all(|i| i["acknowledgements"].as_u64() > Some(0))
    );
    // Opening and closing are timed apart from the 3 s of sending.
    let seconds = report["seconds"].as_f64().unwrap();
    let (open, close) = (
        report["open_seconds"].as_f64().unwrap(),
        report["close_seconds"].as_f64().unwrap(),
    );
    assert!(open > 0.0 && close > 0.0, "{report}");
    assert!(open + 3.0 + close <= seconds + 0.01, "{report}");

    let list = recordings_of_seed(&reeld, 7).await;
    assert_eq!(list.recordings.len(), 20);
    let mut stored = 0;
    for r in &list.recordings {
        assert_eq!(r.state, "closed");
        let number: usize = r.target.strip_prefix("load-").unwrap().parse().unwrap();
        let events = reeld.export_events(&r.id).await.unwrap();
        assert_eq!(events.len() as u64, r.event_count);
        for (i, e) in events.iter().enumerate() {
            assert!(
                e.data == reel_cli::load::event_data(7, number, i as u64, 100),
                "recording {number} event {i} is not what was sent"
            );
        }
        stored += events.len() as u64;
    }
    assert_eq!(stored, acked);

    // Closed loop: one event a message, the next once the last is durable.
    let closed = load(
        &reeld,
        &[
            "--recordings",
            "8",
            "--closed-loop",
            "--duration",
            "2s",
            "--seed",
            "8",
        ],
    );
    assert_eq!(closed["errors"], 0, "{closed}");
    assert!(
        closed["events_acknowledged"].as_u64().unwrap() > 8,
        "{closed}"
    );

    // Bad arguments are refused before anything is sent.
    let out = reeld.reel(&["load", "--event-bytes", "8", "--grpc", reeld.grpc.as_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--event-bytes must be at least 32"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_streams_open_ingest_and_close_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let report = load(
        &reeld,
        &[
            "--recordings",
            "2000",
            "--events-per-second",
            "2",
            "--duration",
            "4s",
            "--connections",
            "4",
            "--seed",
            "9",
        ],
    );
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(
        report["events_sent"], report["events_acknowledged"],
        "{report}"
    );
    let mut closed = 0;
    wait_for("listed", Duration::from_secs(30), async || {
        let mut after: Option<String> = None;
        closed = 0;
        loop {
            let path = match &after {
                Some(c) => format!("/api/v1/recordings?label=load=9&limit=1000&cursor={c}"),
                None => "/api/v1/recordings?label=load=9&limit=1000".to_string(),
            };
            let page: RecordingList = reeld.get_json(&path).await.unwrap();
            closed += page
                .recordings
                .iter()
                .filter(|r| r.state == "closed")
                .count();
            match page.next_cursor {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        closed == 2000
    })
    .await;
    assert_eq!(closed, 2000);
}
