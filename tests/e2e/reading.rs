//! Reading end to end through `reeld`'s HTTP API and the `reel` CLI.
//!
//! - With two real S3 servers (Garage processes): the same recordings read
//!   identically in each state (open, segmented, split, secondary-only,
//!   recombined), whole and in random windows, and again while the primary
//!   is SIGSTOPped: what the secondary and the local log hold reads as
//!   before, what only the frozen primary holds gives a 503 naming the
//!   events and times missing.
//! - `reel ls` filters, sorts and pages; `reel play` replays.

use std::path::Path;
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use reel_api::{RecordingDetail, RecordingList, StorageStatus};
use reel_proto::v1::{Event, EventKind, RecordingMetadata};
use reel_testkit::{
    Garage, Recorder, Reeld, Rng, drained, garage_config_file, terminal_event, wait_for,
};

/// The recording's header and events, as exported (cast, or a window).
async fn export(reeld: &Reeld, id: &str, window: Option<(u64, u64)>) -> Result<Vec<Event>, String> {
    let mut path = format!("/api/v1/recordings/{id}/export?format=cast");
    if let Some((from, to)) = window {
        path += &format!("&from={}&to={}", seconds(from), seconds(to));
    }
    let response = reeld.get(&path).await.map_err(|e| e.to_string())?;
    let status = response.status();
    assert!(
        !status.is_success() || response.headers()["content-type"] == "application/x-asciicast",
        "{:?}",
        response.headers()
    );
    let text = response.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {}: {text}", status.as_u16()));
    }
    Ok(reel_asciicast::parse(&text)
        .map_err(|e| e.to_string())?
        .events)
}

async fn export_raw(reeld: &Reeld, id: &str) -> Vec<u8> {
    let response = reeld
        .get(&format!("/api/v1/recordings/{id}/export?format=raw"))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    response.bytes().await.unwrap().to_vec()
}

fn seconds(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// The events of `all` in `from..to`, with times counted from `from`: what
/// a window export must be.
fn slice(all: &[Event], from: u64, to: u64) -> Vec<Event> {
    all.iter()
        .filter(|e| e.time_us >= from && e.time_us < to)
        .map(|e| Event {
            time_us: e.time_us - from,
            ..e.clone()
        })
        .collect()
}

fn output_bytes(events: &[Event]) -> Vec<u8> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Output as i32)
        .flat_map(|e| e.data.clone())
        .collect()
}

/// The whole export is what was sent, raw too, and `windows` random windows
/// agree with slicing it.
async fn assert_reads(reeld: &Reeld, name: &str, id: &str, sent: &[Event], rng: &mut Rng) {
    let all = export(reeld, id, None)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        all == sent,
        "{name}: {} events read, {} sent",
        all.len(),
        sent.len()
    );
    assert_eq!(
        export_raw(reeld, id).await,
        output_bytes(sent),
        "{name}: raw"
    );
    let end = sent.last().map_or(1, |e| e.time_us + 1);
    for _ in 0..6 {
        let from = rng.range(0..end);
        let to = from + 1 + rng.range(0..end / 3);
        let got = export(reeld, id, Some((from, to)))
            .await
            .unwrap_or_else(|e| panic!("{name} window {from}..{to}: {e}"));
        assert!(
            got == slice(sent, from, to),
            "{name}: window {from}..{to} differs from the slice"
        );
    }
}

async fn append(rec: &mut Recorder, slot: usize, range: std::ops::Range<u64>) {
    let events: Vec<Event> = range.map(|i| terminal_event(slot, i)).collect();
    for batch in events.chunks(20) {
        rec.append(batch.to_vec()).await.unwrap();
    }
}

async fn storage(reeld: &Reeld) -> StorageStatus {
    reeld.get_json("/api/v1/storage").await.unwrap()
}

async fn detail(reeld: &Reeld, id: &str) -> RecordingDetail {
    reeld
        .get_json(&format!("/api/v1/recordings/{id}"))
        .await
        .unwrap()
}

async fn placement(reeld: &Reeld, id: &str) -> String {
    detail(reeld, id).await.summary.placement
}

fn start(dir: &Path, primary: &Garage, secondary: &Garage) -> Reeld {
    let cfg = garage_config_file(dir, primary, secondary, "[compactor]\nenabled = false\n");
    Reeld::start(&dir.join("data"), &["--config", cfg.to_str().unwrap()]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_read_the_same_in_every_state_and_while_the_primary_is_frozen() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let reeld = start(dir.path(), &primary, &secondary);
    let mut rng = Rng::from_env("reading");
    let sent = |slot: usize, n: u64| (0..n).map(|i| terminal_event(slot, i)).collect::<Vec<_>>();

    // Segmented, on the primary.
    let mut rec = Recorder::start(&reeld.grpc, RecordingMetadata::default())
        .await
        .unwrap();
    let segmented = rec.id.clone();
    append(&mut rec, 1, 0..600).await;
    rec.close().await.unwrap();
    // Split (and a second one to recombine): first half on the primary...
    let mut split_recs = Vec::new();
    for slot in [2, 3] {
        let mut rec = Recorder::start(&reeld.grpc, RecordingMetadata::default())
            .await
            .unwrap();
        append(&mut rec, slot, 0..300).await;
        split_recs.push(rec);
    }
    wait_for("on the primary", Duration::from_secs(30), async || {
        drained(&reeld).await
    })
    .await;
    // ... the rest on the secondary, while the primary is frozen.
    primary.freeze();
    let mut rec = Recorder::start(&reeld.grpc, RecordingMetadata::default())
        .await
        .unwrap();
    let on_secondary = rec.id.clone();
    append(&mut rec, 4, 0..600).await;
    rec.close().await.unwrap();
    for (slot, mut rec) in [2, 3].into_iter().zip(split_recs.drain(..)) {
        append(&mut rec, slot, 300..600).await;
        split_recs_close(rec).await;
    }
    wait_for("on the secondary", Duration::from_secs(60), async || {
        drained(&reeld).await
    })
    .await;
    primary.thaw();
    wait_for("failback", Duration::from_secs(60), async || {
        storage(&reeld).await.writing_to.as_deref() == Some("primary")
    })
    .await;
    let list: RecordingList = reeld.get_json("/api/v1/recordings").await.unwrap();
    let ids: Vec<String> = list.recordings.iter().map(|r| r.id.clone()).collect();
    let (split, combined) = (ids[1].clone(), ids[2].clone());
    assert_eq!(placement(&reeld, &split).await, "split");
    let out = reeld.reel(&["compact", "--recording", &combined, "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(detail(&reeld, &combined).await.object.is_some());
    assert_eq!(placement(&reeld, &on_secondary).await, "secondary");

    // Open: uploaded segments and a tail that may still be local.
    let mut open_rec = Recorder::start(&reeld.grpc, RecordingMetadata::default())
        .await
        .unwrap();
    let open = open_rec.id.clone();
    append(&mut open_rec, 5, 0..400).await;

    let states: Vec<(&str, String, Vec<Event>)> = vec![
        ("segmented", segmented.clone(), sent(1, 600)),
        ("split", split.clone(), sent(2, 600)),
        ("recombined", combined.clone(), sent(3, 600)),
        ("secondary", on_secondary.clone(), sent(4, 600)),
        ("open", open.clone(), sent(5, 400)),
    ];
    for (name, id, events) in &states {
        assert_reads(&reeld, name, id, events, &mut rng).await;
    }

    // The primary freezes (SIGSTOP): it neither answers nor refuses.
    primary.freeze();
    let mut during = Recorder::start(&reeld.grpc, RecordingMetadata::default())
        .await
        .unwrap();
    let during_id = during.id.clone();
    append(&mut during, 6, 0..300).await;
    wait_for("the primary is down", Duration::from_secs(60), async || {
        storage(&reeld).await.primary.health.state == "down"
    })
    .await;
    append(&mut during, 6, 300..400).await;
    append(&mut open_rec, 5, 400..450).await;
    // What the secondary and the local log hold reads as before.
    assert_reads(
        &reeld,
        "secondary, primary frozen",
        &on_secondary,
        &sent(4, 600),
        &mut rng,
    )
    .await;
    assert_reads(
        &reeld,
        "open during the freeze",
        &during_id,
        &sent(6, 400),
        &mut rng,
    )
    .await;
    let split_info = detail(&reeld, &split).await;
    let second_half = split_info
        .segments
        .iter()
        .find(|s| s.locations == ["secondary"])
        .expect("a segment on the secondary")
        .start_time_us;
    let window = (second_half, 600_000);
    assert_eq!(
        export(&reeld, &split, Some(window)).await.unwrap(),
        slice(&sent(2, 600), window.0, window.1),
        "the split recording's secondary half"
    );
    // What only the frozen primary holds: a 503 naming the events.
    for (name, id) in [
        ("segmented", &segmented),
        ("recombined", &combined),
        ("split", &split),
    ] {
        let err = export(&reeld, id, None).await.unwrap_err();
        assert!(
            err.starts_with("HTTP 503")
                && err.contains("events 0..")
                && err.contains("only on the primary store"),
            "{name}: {err}"
        );
    }
    let out = reeld.reel(&["export", &segmented]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("events 0.."),
        "{stderr}"
    );

    // Thawed: everything reads again.
    primary.thaw();
    during.close().await.unwrap();
    open_rec.close().await.unwrap();
    wait_for("the primary is back", Duration::from_secs(60), async || {
        storage(&reeld).await.primary.health.state == "healthy"
    })
    .await;
    for (name, id, events) in &states {
        let events = if *name == "open" {
            sent(5, 450)
        } else {
            events.clone()
        };
        assert_reads(&reeld, name, id, &events, &mut rng).await;
    }
    assert_reads(
        &reeld,
        "made during the freeze",
        &during_id,
        &sent(6, 400),
        &mut rng,
    )
    .await;

    // An operator deletes one segment object from the bucket (S3 API): the
    // recording still exports and plays, the gap marked and reported.
    let seg = detail(&reeld, &segmented).await.segments[2].clone();
    let key = reel_storage::keys::segment(segmented.parse::<reel_proto::RecordingId>().unwrap(), 2);
    primary.object_store().delete(&key).await.unwrap();
    let out = reeld.reel(&["export", &segmented]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lost = seg.first_event_index..seg.first_event_index + seg.event_count;
    assert!(
        stderr.contains("gap") && stderr.contains(&format!("events {}..{}", lost.start, lost.end)),
        "{stderr}"
    );
    let cast = reel_asciicast::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let markers: Vec<&Event> = cast
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Marker as i32)
        .collect();
    assert_eq!(markers.len(), 1);
    assert!(String::from_utf8_lossy(&markers[0].data).starts_with(reel_api::GAP_MARKER));
    let rest: Vec<Event> = cast
        .events
        .into_iter()
        .filter(|e| e.kind != EventKind::Marker as i32)
        .collect();
    let want: Vec<Event> = sent(1, 600)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !lost.contains(&(*i as u64)))
        .map(|(_, e)| e)
        .collect();
    assert!(rest == want, "everything but the lost segment exports");
    let out = reeld.reel(&["play", &segmented, "--idle-limit", "0"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, output_bytes(&want));
}

async fn split_recs_close(rec: Recorder) {
    rec.close().await.unwrap();
}

fn labelled(
    user: &str,
    target: &str,
    protocol: &str,
    labels: &[(&str, &str)],
) -> RecordingMetadata {
    RecordingMetadata {
        user: user.into(),
        target: target.into(),
        protocol: protocol.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn ls(reeld: &Reeld, args: &[&str]) -> Vec<String> {
    let mut all = vec!["ls", "--json", "--all"];
    all.extend_from_slice(args);
    let out = reeld.reel(&all);
    assert!(
        out.status.success(),
        "reel {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: RecordingList = serde_json::from_slice(&out.stdout).unwrap();
    list.recordings.into_iter().map(|r| r.user).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_filters_sorts_and_pages_and_play_replays() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let made = [
        ("alice", "db-1", "postgres", vec![("ticket", "T-1")], 30),
        ("bob", "web-1", "ssh", vec![("env", "prod")], 10),
        (
            "carol",
            "db-2",
            "ssh",
            vec![("env", "prod"), ("ticket", "T-2")],
            50,
        ),
        ("dave", "web-2", "rdp", vec![], 20),
        ("olga", "web-3", "ssh", vec![], 5),
    ];
    let mut ids = Vec::new();
    for (i, (user, target, protocol, labels, n)) in made.iter().enumerate() {
        let mut rec = Recorder::start(&reeld.grpc, labelled(user, target, protocol, labels))
            .await
            .unwrap();
        append(&mut rec, i, 0..*n).await;
        ids.push(rec.id.clone());
        if *user != "olga" {
            rec.close().await.unwrap();
        } else {
            std::mem::forget(rec); // stays open
        }
    }
    assert_eq!(ls(&reeld, &[]), ["alice", "bob", "carol", "dave", "olga"]);
    assert_eq!(ls(&reeld, &["--user", "carol"]), ["carol"]);
    assert_eq!(ls(&reeld, &["--target", "db-*"]), ["alice", "carol"]);
    assert_eq!(ls(&reeld, &["--protocol", "ssh"]), ["bob", "carol", "olga"]);
    assert_eq!(ls(&reeld, &["--label", "env=prod"]), ["bob", "carol"]);
    assert_eq!(
        ls(&reeld, &["--label", "ticket", "--label", "env"]),
        ["carol"]
    );
    assert_eq!(ls(&reeld, &["--state", "open"]), ["olga"]);
    assert_eq!(
        ls(&reeld, &["--state", "closed", "--protocol", "ssh"]),
        ["bob", "carol"]
    );
    assert_eq!(ls(&reeld, &["--since", "1h"]).len(), 5);
    assert!(ls(&reeld, &["--until", "1h"]).is_empty());
    assert!(ls(&reeld, &["--since", "2999-01-01"]).is_empty());
    // (Sizes and durations in the catalog count sealed events: sorted
    // listings here are of closed recordings.)
    let closed = ["--state", "closed"];
    let by = |extra: &[&'static str]| [&closed[..], extra].concat();
    assert_eq!(
        ls(&reeld, &by(&["--sort", "size", "--desc"])),
        ["carol", "alice", "dave", "bob"]
    );
    assert_eq!(
        ls(&reeld, &by(&["--sort", "user", "--desc"])),
        ["dave", "carol", "bob", "alice"]
    );
    // Pages of one, followed by cursor, give the same order.
    assert_eq!(
        ls(&reeld, &by(&["--sort", "size", "--desc", "--limit", "1"])),
        ["carol", "alice", "dave", "bob"]
    );
    let page: RecordingList = reeld
        .get_json("/api/v1/recordings?state=closed&sort=duration&order=desc&limit=3")
        .await
        .unwrap();
    let cursor = page.next_cursor.expect("a second page");
    let rest: RecordingList = reeld
        .get_json(&format!(
            "/api/v1/recordings?state=closed&sort=duration&order=desc&limit=3&cursor={cursor}"
        ))
        .await
        .unwrap();
    assert_eq!(rest.recordings.len(), 1);
    assert_eq!(rest.recordings[0].user, "bob");
    assert_eq!(rest.next_cursor, None);

    // play: a recording with an hour of idle time plays in moments with
    // --idle-limit, and writes exactly its output.
    let mut rec = Recorder::start(&reeld.grpc, labelled("erin", "db-1", "ssh", &[]))
        .await
        .unwrap();
    let id = rec.id.clone();
    let mut events: Vec<Event> = (0..20).map(|i| terminal_event(9, i)).collect();
    events.extend((20..40).map(|i| Event {
        time_us: 3_600_000_000 + i * 1000,
        ..terminal_event(9, i)
    }));
    rec.append(events.clone()).await.unwrap();
    rec.close().await.unwrap();
    let started = Instant::now();
    let out = reeld.reel(&["play", &id, "--idle-limit", "0.2", "--speed", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the idle hour was not capped"
    );
    assert_eq!(out.stdout, output_bytes(&events));
    let out = reeld.reel(&["play", &id, "--from", "1:00:00", "--idle-limit", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, output_bytes(&events[20..]));
    // export --from/--to through the CLI: a window of the raw output.
    let out = reeld.reel(&[
        "export", &id, "--format", "raw", "--from", "0.005", "--to", "0.010",
    ]);
    assert!(out.status.success());
    assert_eq!(out.stdout, output_bytes(&events[5..10]));
    let _ = ids;
}
