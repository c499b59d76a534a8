//! Bad input gets a clear error and changes nothing else: malformed and
//! truncated casts, events before a start or after a close, unknown and
//! invalid ids (path-like ones too), oversized events, time going
//! backwards, an unwritable data directory, a disk that fills up.

use std::io::Write;
use std::time::Duration;

use reel_api::RecordingList;
use reel_proto::v1::record_request::Request as Req;
use reel_proto::v1::{CloseRecording, Event, EventBatch, EventKind, RecordRequest};
use reel_testkit::{Recorder, Reeld, Tmpfs, metadata, terminal_event};
use tonic::Code;

fn events(slot: usize, range: std::ops::Range<u64>) -> Vec<Event> {
    range.map(|i| terminal_event(slot, i)).collect()
}

async fn recordings(reeld: &Reeld) -> RecordingList {
    reeld.get_json("/api/v1/recordings").await.unwrap()
}

/// The status a stream ends with after `messages`.
async fn stream_status(endpoint: &str, messages: Vec<RecordRequest>) -> tonic::Status {
    let mut client = Recorder::client(endpoint, None).await.unwrap();
    let mut responses = match client.record(tokio_stream::iter(messages)).await {
        Ok(r) => r.into_inner(),
        Err(status) => return status,
    };
    loop {
        match responses.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without an error"),
            Err(status) => return status,
        }
    }
}

fn events_message(first: u64, events: Vec<Event>) -> RecordRequest {
    RecordRequest {
        request: Some(Req::Events(EventBatch {
            first_index: Some(first),
            events,
        })),
    }
}

fn assert_status(status: &tonic::Status, code: Code, text: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(text),
        "{:?} lacks {text:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("reel.toml");
    std::fs::write(&config, "[ingest]\nmax_event_bytes = 1024\n").unwrap();
    let reeld = Reeld::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();

    // Malformed and truncated cast files: exit code 2, the line, nothing sent.
    let header = "{\"version\": 2, \"width\": 80, \"height\": 24}\n";
    let cases = [
        (
            "not-json.cast",
            "this is not a cast\n".to_string(),
            "line 1",
        ),
        (
            "no-version.cast",
            "{\"width\": 80}\n".to_string(),
            "version",
        ),
        (
            "truncated.cast",
            format!("{header}[0.5, \"o\", \"hello\"]\n[0.7, \"o\", \"wor"),
            "line 3: malformed event",
        ),
        (
            "backwards.cast",
            format!("{header}[2.0, \"o\", \"a\"]\n[1.0, \"o\", \"b\"]\n"),
            "line 3: time goes backwards",
        ),
        (
            "bad-code.cast",
            format!("{header}[2.0, \"z\", \"a\"]\n"),
            "unknown event code",
        ),
        ("empty.cast", String::new(), "empty file"),
    ];
    for (name, text, want) in &cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = reeld.reel(&["ingest", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: {stderr}");
    }
    let missing = reeld.reel(&["ingest", "/no/such/file.cast"]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
    assert!(
        recordings(&reeld).await.recordings.is_empty(),
        "bad files created recordings"
    );

    // Events before a start.
    let status = stream_status(&reeld.grpc, vec![events_message(0, events(0, 0..3))]).await;
    assert_status(&status, Code::FailedPrecondition, "before a start");
    let status = stream_status(
        &reeld.grpc,
        vec![RecordRequest {
            request: Some(Req::Close(CloseRecording { duration_us: 0 })),
        }],
    )
    .await;
    assert_status(&status, Code::FailedPrecondition, "before a start");

    // A recording with ten acknowledged events.
    let mut rec = Recorder::start(&reeld.grpc, metadata("bob", "db"))
        .await
        .unwrap();
    let id = rec.id.clone();
    assert_eq!(rec.append(events(0, 0..10)).await.unwrap(), 10);

    // An oversized event ends the stream; nothing of its batch is kept.
    let mut big = terminal_event(0, 10);
    big.data = vec![b'x'; 1025];
    let err = rec
        .append(vec![terminal_event(0, 10), big])
        .await
        .unwrap_err();
    assert_status(&err, Code::InvalidArgument, "the maximum is 1024");
    assert_eq!(reeld.export_events(&id).await.unwrap(), events(0, 0..10));

    // A message over the gRPC size limit (batch limit plus slack) is refused
    // by the server before it is decoded.
    let mut rec = Recorder::resume(&reeld.grpc, &id).await.unwrap();
    let huge: Vec<Event> = (10..6010)
        .map(|i| Event {
            time_us: i * 1000,
            kind: EventKind::Output as i32,
            data: vec![b'h'; 1000],
        })
        .collect();
    let err = rec.append(huge).await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ) && err.message().contains("too large"),
        "{err:?}"
    );
    assert_eq!(reeld.export_events(&id).await.unwrap(), events(0, 0..10));

    // Time going backwards, after a resume.
    let mut rec = Recorder::resume(&reeld.grpc, &id).await.unwrap();
    assert_eq!(rec.acked, 10);
    let mut back = terminal_event(0, 10);
    back.time_us = 1;
    let err = rec.append(vec![back]).await.unwrap_err();
    assert_status(&err, Code::InvalidArgument, "back in time");
    assert_eq!(reeld.export_events(&id).await.unwrap(), events(0, 0..10));

    // A second recorder on the same recording, a second start on a stream.
    let mut rec = Recorder::resume(&reeld.grpc, &id).await.unwrap();
    let err = Recorder::resume(&reeld.grpc, &id).await.err().unwrap();
    assert_status(&err, Code::FailedPrecondition, "already has a recorder");
    rec.send_raw(RecordRequest {
        request: Some(Req::Start(Default::default())),
    })
    .await
    .unwrap();
    let err = rec.next_ack().await.unwrap_err();
    assert_status(&err, Code::FailedPrecondition, "already carries recording");

    // Events after a close: on the same stream, and by resuming.
    let mut rec = Recorder::resume(&reeld.grpc, &id).await.unwrap();
    rec.append(events(0, 10..12)).await.unwrap();
    let status = stream_status(
        &reeld.grpc,
        vec![
            RecordRequest {
                request: Some(Req::Resume(reel_proto::v1::ResumeRecording {
                    recording_id: id.clone(),
                })),
            },
            RecordRequest {
                request: Some(Req::Close(CloseRecording { duration_us: 0 })),
            },
            events_message(12, events(0, 12..13)),
        ],
    )
    .await;
    // The first stream still holds the recording.
    assert_status(&status, Code::FailedPrecondition, "already has a recorder");
    assert_eq!(rec.close().await.unwrap().0, 12);
    let err = Recorder::resume(&reeld.grpc, &id).await.err().unwrap();
    assert_status(&err, Code::FailedPrecondition, "is closed");
    let mut other = Recorder::start(&reeld.grpc, metadata("carol", "db"))
        .await
        .unwrap();
    other.append(events(1, 0..2)).await.unwrap();
    let other_id = other.id.clone();
    let status = stream_status(
        &reeld.grpc,
        vec![
            RecordRequest {
                request: Some(Req::Start(Default::default())),
            },
            RecordRequest {
                request: Some(Req::Close(CloseRecording { duration_us: 0 })),
            },
            events_message(0, events(2, 0..1)),
        ],
    )
    .await;
    assert_status(&status, Code::FailedPrecondition, "is closed");

    // Unknown and invalid ids, over gRPC, HTTP and the CLI.
    let unknown = reel_proto::RecordingId::generate().to_string();
    let err = Recorder::resume(&reeld.grpc, &unknown).await.err().unwrap();
    assert_status(&err, Code::NotFound, "not found");
    for bad in [
        "../x",
        "../../etc/passwd",
        "abc",
        "",
        "01JDQ8Z6W5G8R0F1T4Y9M2K3X/",
    ] {
        let err = Recorder::resume(&reeld.grpc, bad).await.err().unwrap();
        assert_status(&err, Code::InvalidArgument, "invalid recording id");
    }
    let r = reeld
        .get(&format!("/api/v1/recordings/{unknown}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: reel_api::ApiError = r.json().await.unwrap();
    assert_eq!(body.code, "not_found");
    for bad in ["..%2Fx", "..%2F..%2Fetc%2Fpasswd", "abc", "%00"] {
        for suffix in ["", "/export"] {
            let r = reeld
                .get(&format!("/api/v1/recordings/{bad}{suffix}"))
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "{bad}{suffix}");
            let body: reel_api::ApiError = r.json().await.unwrap();
            assert!(
                body.error.contains("invalid recording id"),
                "{}",
                body.error
            );
        }
    }
    let r = reeld
        .get(&format!("/api/v1/recordings/{id}/export?format=docx"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for args in [["show", "../x"], ["export", "../x"], ["show", "not-an-id"]] {
        let out = reeld.reel(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid recording id"));
    }
    let out = reeld.reel(&["show", &unknown]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    // And nothing else changed.
    let list = recordings(&reeld).await;
    let mut ids: Vec<String> = list.recordings.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    // The start that was closed at once made an empty recording of its own.
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(ids.contains(&id) && ids.contains(&other_id));
    assert_eq!(reeld.export_events(&id).await.unwrap(), events(0, 0..12));
    assert_eq!(
        reeld.export_events(&other_id).await.unwrap(),
        events(1, 0..2)
    );
}

#[test]
fn an_unwritable_data_directory_is_refused_at_start() {
    let ro = Tmpfs::mount(1 << 20, true);
    let err = Reeld::start(&ro.path.join("data"), &[])
        .err()
        .expect("must not start");
    assert!(err.to_string().contains("not writable"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = Reeld::start(&file, &[]).err().expect("must not start");
    assert!(err.to_string().contains("not writable"), "{err}");
}

/// Fills the filesystem of `dir` until at most `leave` bytes are free.
fn fill(dir: &std::path::Path, leave: u64) -> std::path::PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xAAu8; 1 << 20];
    loop {
        let free = free_bytes(dir);
        if free <= leave {
            break;
        }
        let n = ((free - leave) as usize).min(chunk.len());
        if f.write_all(&chunk[..n.max(4096)]).is_err() {
            break;
        }
        f.sync_all().unwrap();
    }
    path
}

fn free_bytes(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_ingest_keeps_what_was_acknowledged_and_recovers() {
    let disk = Tmpfs::mount(48 << 20, false);
    let data = disk.path.join("data");
    let reeld = Reeld::start(
        &data,
        &[
            "--min-free-disk-bytes",
            "0",
            "--segment-max-age",
            "1h",
            "--segment-target-bytes",
            "33554432",
        ],
    )
    .unwrap();
    let mut rec = Recorder::start(&reeld.grpc, metadata("dave", "prod"))
        .await
        .unwrap();
    let id = rec.id.clone();
    rec.append(events(3, 0..16)).await.unwrap();

    let filler = fill(&disk.path, 3 << 20);
    // Big events until the disk is full: the recorder gets RESOURCE_EXHAUSTED.
    let big = |i: u64| Event {
        time_us: 1_000_000 + i,
        kind: EventKind::Output as i32,
        data: vec![b'a' + (i % 26) as u8; 256 << 10],
    };
    let mut sent: Vec<Event> = events(3, 0..16);
    let status = loop {
        let e = big(sent.len() as u64);
        match rec.append(vec![e.clone()]).await {
            Ok(_) => sent.push(e),
            Err(status) => break status,
        }
        assert!(sent.len() < 1000, "the disk never filled");
    };
    assert_status(&status, Code::ResourceExhausted, "disk full");
    let acked = rec.acked as usize;
    assert_eq!(acked, sent.len());
    // Acknowledged events are all there, while the disk is still full.
    assert_eq!(reeld.export_events(&id).await.unwrap(), sent);

    // Space returns: the recorder resumes where the server has it.
    std::fs::remove_file(&filler).unwrap();
    let mut rec = Recorder::resume(&reeld.grpc, &id).await.unwrap();
    assert_eq!(rec.acked as usize, acked);
    let more: Vec<Event> = (0..5).map(|i| big(acked as u64 + i)).collect();
    rec.append(more.clone()).await.unwrap();
    sent.extend(more);
    assert_eq!(rec.close().await.unwrap().0, sent.len() as u64);
    assert_eq!(reeld.export_events(&id).await.unwrap(), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_disk_reserve_ingest_pauses_until_space_returns() {
    let disk = Tmpfs::mount(64 << 20, false);
    let reeld = Reeld::start(
        &disk.path.join("data"),
        &["--min-free-disk-bytes", "16777216"],
    )
    .unwrap();
    let mut rec = Recorder::start(&reeld.grpc, metadata("erin", "prod"))
        .await
        .unwrap();
    let id = rec.id.clone();
    rec.append(events(4, 0..10)).await.unwrap();

    let filler = fill(&disk.path, 8 << 20);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let err = rec.append(events(4, 10..12)).await.unwrap_err();
    assert_status(&err, Code::ResourceExhausted, "local disk almost full");
    let err = Recorder::start(&reeld.grpc, metadata("erin", "prod"))
        .await
        .err()
        .unwrap();
    assert_status(&err, Code::ResourceExhausted, "local disk almost full");
    let status: reel_api::ServerStatus = reeld.get_json("/api/v1/status").await.unwrap();
    assert!(status.low_disk.is_some());

    std::fs::remove_file(&filler).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut rec = Recorder::resume(&reeld.grpc, &id).await.unwrap();
    assert_eq!(rec.acked, 10);
    rec.append(events(4, 10..20)).await.unwrap();
    rec.close().await.unwrap();
    assert_eq!(reeld.export_events(&id).await.unwrap(), events(4, 0..20));
}

/// Status and `code` of a GET on the HTTP API.
async fn http_error(reeld: &Reeld, path: &str) -> (u16, String, String) {
    let response = reeld.get(path).await.unwrap();
    let status = response.status().as_u16();
    let body: reel_api::ApiError = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: HTTP {status} without an error document: {e}"));
    (status, body.code, body.error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reads_and_listings_get_fitting_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let reeld = Reeld::start(&dir.path().join("data"), &[]).unwrap();
    let mut rec = Recorder::start(&reeld.grpc, metadata("frank", "db-1"))
        .await
        .unwrap();
    let id = rec.id.clone();
    rec.append(events(5, 0..100)).await.unwrap();
    rec.close().await.unwrap();
    let unknown = "01JZZZZZZZZZZZZZZZZZZZZZZZ";
    let export = |q: &str| format!("/api/v1/recordings/{id}/export?{q}");
    let cases: Vec<(String, u16, &str)> = vec![
        (export("from=abc"), 400, "invalid time \"abc\""),
        (export("from=1:75:00"), 400, "minutes must be below 60"),
        (export("from=0.050&to=0.050"), 400, "at or before it starts"),
        (export("from=0.09&to=0.01"), 400, "at or before it starts"),
        (export("format=xml"), 400, "unknown export format"),
        (
            export("from=00:10:00"),
            416,
            "after the recording's end at 00:00:00.099",
        ),
        (
            format!("/api/v1/recordings/{unknown}/export"),
            404,
            "not found",
        ),
        (
            "/api/v1/recordings/not-an-id/export".into(),
            400,
            "invalid recording id",
        ),
        (
            "/api/v1/recordings?sort=colour".into(),
            400,
            "unknown sort key",
        ),
        ("/api/v1/recordings?order=up".into(), 400, "unknown order"),
        (
            "/api/v1/recordings?state=sleeping".into(),
            400,
            "unknown state",
        ),
        (
            "/api/v1/recordings?since=yesterday".into(),
            400,
            "invalid time",
        ),
        (
            "/api/v1/recordings?limit=0".into(),
            400,
            "limit must be between",
        ),
        (
            "/api/v1/recordings?cursor=zzz".into(),
            400,
            "invalid cursor",
        ),
        (
            "/api/v1/recordings?sort=size&cursor=".to_string() + unknown,
            400,
            "invalid cursor",
        ),
        (
            "/api/v1/recordings?colour=red".into(),
            400,
            "unknown parameter",
        ),
    ];
    for (path, status, text) in cases {
        let (got, code, error) = http_error(&reeld, &path).await;
        assert_eq!(got, status, "GET {path}: {code} {error}");
        assert!(
            error.to_lowercase().contains(&text.to_lowercase()),
            "GET {path}: {error:?} lacks {text:?}"
        );
    }
    // The same through the CLI: usage errors exit 2, the rest 1.
    for (args, code, text) in [
        (vec!["export", &id, "--from", "abc"], 2, "invalid time"),
        (
            vec!["export", &id, "--from", "5", "--to", "1"],
            2,
            "at or before",
        ),
        (
            vec!["export", &id, "--from", "1:00:00"],
            1,
            "after the recording's end",
        ),
        (vec!["export", unknown], 1, "not found"),
        (vec!["export", "nope"], 2, "invalid recording id"),
        (vec!["play", &id, "--speed", "0"], 2, "--speed"),
        (vec!["ls", "--sort", "colour"], 2, "unknown sort key"),
    ] {
        let out = reeld.reel(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "reel {args:?}: {stderr}");
        assert!(
            stderr.contains(text),
            "reel {args:?}: {stderr:?} lacks {text:?}"
        );
        assert!(out.stdout.is_empty(), "reel {args:?} wrote output");
    }
    // Nothing changed: the recording reads whole.
    assert_eq!(reeld.export_events(&id).await.unwrap(), events(5, 0..100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_recordings_empty_events_and_headers_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("reel.toml");
    std::fs::write(
        &config,
        "[ingest]\nmax_open_recordings = 3\nmax_streams = 4\nmax_batch_bytes = 65536\nmax_event_bytes = 1024\n",
    )
    .unwrap();
    let reeld = Reeld::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();

    // A header that would put lines of its own into every export.
    let mut forged = metadata("mallory", "db");
    forged.source_format = "asciicast-v2".into();
    forged.source_header =
        "{\"version\": 2, \"width\": 80, \"height\": 24}\n[0.1, \"o\", \"typed by nobody\"]".into();
    let err = Recorder::start(&reeld.grpc, forged).await.err().unwrap();
    assert_status(&err, Code::InvalidArgument, "line break at byte 41");

    // Three open recordings are the most; a fourth start is refused.
    let mut open = Vec::new();
    for user in ["u0", "u1", "u2"] {
        let mut rec = Recorder::start(&reeld.grpc, metadata(user, "db"))
            .await
            .unwrap();
        rec.append(events(open.len(), 0..5)).await.unwrap();
        open.push(rec);
    }
    let err = Recorder::start(&reeld.grpc, metadata("u3", "db"))
        .await
        .err()
        .unwrap();
    assert_status(&err, Code::ResourceExhausted, "max_open_recordings = 3");

    // Empty events are not free: 5,000 of them are over a 64 KiB batch.
    let empty: Vec<Event> = (0..5000)
        .map(|i| Event {
            time_us: 10_000_000 + i,
            kind: EventKind::Output as i32,
            data: Vec::new(),
        })
        .collect();
    let err = open[0].append(empty).await.unwrap_err();
    assert_status(&err, Code::InvalidArgument, "16 per event");

    // Streams: two recorders are attached; two more streams fill the four.
    let first = open.remove(0);
    let id0 = first.id.clone();
    drop(first);
    let again = Recorder::resume(&reeld.grpc, &id0).await.unwrap();
    let (_idle_tx, idle_rx) = tokio::sync::mpsc::channel::<RecordRequest>(1);
    let mut client = Recorder::client(&reeld.grpc, None).await.unwrap();
    let _idle = client
        .record(tokio_stream::wrappers::ReceiverStream::new(idle_rx))
        .await
        .unwrap();
    let err = Recorder::resume(&reeld.grpc, &id0).await.err().unwrap();
    assert_status(&err, Code::ResourceExhausted, "ingest streams are open");

    // Closing a recording frees a stream and a place for a new recording.
    let closed = open.remove(0);
    let closed_id = closed.id.clone();
    assert_eq!(closed.close().await.unwrap().0, 5);
    let mut started = None;
    reel_testkit::wait_for(
        "a stream and a recording free",
        Duration::from_secs(10),
        async || {
            started = Recorder::start(&reeld.grpc, metadata("u4", "db"))
                .await
                .ok();
            started.is_some()
        },
    )
    .await;
    // Nothing refused was kept; everything acknowledged is there.
    drop((again, open, started));
    assert_eq!(reeld.export_events(&id0).await.unwrap(), events(0, 0..5));
    assert_eq!(
        reeld.export_events(&closed_id).await.unwrap(),
        events(1, 0..5)
    );
    let users: Vec<String> = recordings(&reeld)
        .await
        .recordings
        .into_iter()
        .map(|r| r.user)
        .collect();
    assert!(!users.contains(&"mallory".to_string()) && !users.contains(&"u3".to_string()));
}
