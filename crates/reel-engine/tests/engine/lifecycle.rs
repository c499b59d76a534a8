//! The engine in-process, on real files, a real RocksDB catalog and local
//! directory stores: ingest, sealing, upload, recovery, reading.

use std::time::Duration;

use crate::common::{event, read_all, small_segments, small_segments_aged, wait_for};
use reel_engine::{Engine, EngineError};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, EventKind, Location, RecordingMetadata, RecordingState};

fn meta() -> RecordingMetadata {
    RecordingMetadata {
        user: "alice".into(),
        target: "db-01".into(),
        protocol: "ssh".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_sealed_uploaded_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(small_segments(dir.path())).await.unwrap();
    let mut w = engine.start(meta()).await.unwrap();
    let id = w.id();
    let all: Vec<Event> = (0..500).map(event).collect();
    let mut acks = Vec::new();
    for chunk in all.chunks(7) {
        acks.push(w.append(None, chunk.to_vec()).unwrap());
    }
    let mut last = 0;
    for a in acks {
        let n = a.await.unwrap();
        assert!(n > last, "acks grow");
        last = n;
    }
    assert_eq!(last, 500);
    // Readable while open (segments and journal tail).
    assert_eq!(read_all(&engine, id).await, all);
    let closed = w.close(0).await.unwrap();
    assert_eq!(closed.event_count, 500);
    assert_eq!(closed.duration_us, all[499].time_us);

    wait_for(
        "every segment is on the primary",
        Duration::from_secs(10),
        || async {
            let info = engine.recording(id).await.unwrap();
            info.segments
                .iter()
                .all(|s| s.locations == [Location::Primary as i32])
        },
    )
    .await;
    let info = engine.recording(id).await.unwrap();
    assert_eq!(info.state(), RecordingState::Closed);
    assert!(
        info.segments.len() > 3,
        "size-based seals: {}",
        info.segments.len()
    );
    assert!(info.segments.last().unwrap().r#final);
    assert_eq!(info.placement().to_string(), "primary");
    // Contiguous, chained.
    let mut next = 0;
    for s in &info.segments {
        assert_eq!(s.first_event_index, next);
        next += s.event_count;
    }
    assert_eq!(read_all(&engine, id).await, all);
    // Local bytes released: no spool files, the primary holds the objects.
    wait_for("spool is empty", Duration::from_secs(10), || async {
        engine.local_status().unwrap().spool_segments == 0
    })
    .await;
    let stored = std::fs::read_dir(
        dir.path()
            .join("primary/recordings")
            .join(id.to_string())
            .join("segments"),
    )
    .unwrap()
    .count();
    assert_eq!(stored, info.segments.len());
    engine.shutdown().await;
}

/// An acknowledgement is the recording's durable count, whoever waits on
/// it: each awaited on a task of its own (many waiting on one recording at
/// once), the last first, and a resend's beside the batch it repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_awaited_on_tasks_of_their_own_each_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(small_segments(dir.path())).await.unwrap();
    let mut w = engine.start(meta()).await.unwrap();
    let id = w.id();
    let all: Vec<Event> = (0..300).map(event).collect();
    let mut waits = Vec::new();
    for (i, batch) in all.chunks(3).enumerate() {
        let end = (i as u64 + 1) * 3;
        let ack = w.append(None, batch.to_vec()).unwrap();
        // An append's acknowledgement says how far its own batch goes.
        waits.push((end..=end, tokio::spawn(ack)));
        // Sent again: answered once the first copy is durable, with all
        // that is durable then.
        let again = w.append(Some(end - 3), batch.to_vec()).unwrap();
        waits.push((end..=300, tokio::spawn(again)));
    }
    assert_eq!(w.next_index(), 300, "a resend adds nothing");
    for (want, task) in waits.into_iter().rev() {
        let durable = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the acknowledgement of events ..{} never came",
                    want.start()
                )
            })
            .unwrap()
            .unwrap();
        assert!(
            want.contains(&durable),
            "events ..{} acknowledged as {durable} durable",
            want.start()
        );
    }
    assert_eq!(w.close(0).await.unwrap().event_count, 300);
    assert_eq!(read_all(&engine, id).await, all);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_recordings_are_sealed_by_age_and_journal_files_released() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_segments(dir.path());
    cfg.segment_target_bytes = 1 << 30;
    cfg.journal_file_size = 1 << 20;
    let engine = Engine::open(cfg).await.unwrap();
    let mut w = engine.start(meta()).await.unwrap();
    let id = w.id();
    // Enough to rotate the journal a few times.
    let big: Vec<Event> = (0..40)
        .map(|i| Event {
            time_us: i,
            kind: EventKind::Output as i32,
            data: vec![b'a' + (i % 26) as u8; 100_000],
        })
        .collect();
    for e in &big {
        w.append(None, vec![e.clone()]).unwrap().await.unwrap();
    }
    wait_for(
        "the age seal has put everything in segments",
        Duration::from_secs(10),
        || async {
            let info = engine.recording(id).await.unwrap();
            info.unsealed_events == 0 && info.durable_events == 40
        },
    )
    .await;
    wait_for(
        "old journal files are released",
        Duration::from_secs(10),
        || async { engine.local_status().unwrap().journal_files <= 2 },
    )
    .await;
    assert_eq!(read_all(&engine, id).await, big);
    w.close(0).await.unwrap();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_brings_open_recordings_back_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_segments(dir.path());
    cfg.segment_max_age = Duration::from_secs(3600);
    let all: Vec<Event> = (0..300).map(event).collect();
    let id = {
        let engine = Engine::open(cfg.clone()).await.unwrap();
        let mut w = engine.start(meta()).await.unwrap();
        for chunk in all[..200].chunks(9) {
            w.append(None, chunk.to_vec()).unwrap().await.unwrap();
        }
        let id = w.id();
        // No close: the recorder goes away, then the server stops.
        drop(w);
        engine.shutdown().await;
        id
    };
    let engine = Engine::open(cfg).await.unwrap();
    let info = engine.recording(id).await.unwrap();
    assert_eq!(info.state(), RecordingState::Open);
    assert_eq!(info.durable_events, 200);
    assert!(!info.attached);
    assert_eq!(read_all(&engine, id).await, all[..200]);

    let mut w = engine.resume(id).await.unwrap();
    assert_eq!(w.durable(), 200);
    // A resend of what the server has is skipped; the rest is appended.
    w.append(Some(190), all[190..250].to_vec())
        .unwrap()
        .await
        .unwrap();
    let err = w
        .append(Some(260), all[260..].to_vec())
        .err()
        .expect("a gap is refused");
    assert!(matches!(err, EngineError::InvalidArgument(_)), "{err}");
    w.append(Some(250), all[250..].to_vec())
        .unwrap()
        .await
        .unwrap();
    // A second recorder cannot attach while one is.
    assert!(matches!(
        engine.resume(id).await,
        Err(EngineError::FailedPrecondition(_))
    ));
    assert_eq!(w.close(0).await.unwrap().event_count, 300);
    assert_eq!(read_all(&engine, id).await, all);
    assert!(matches!(
        engine.resume(id).await,
        Err(EngineError::FailedPrecondition(_))
    ));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_segments(dir.path());
    cfg.max_event_bytes = 1000;
    let engine = Engine::open(cfg).await.unwrap();
    let mut w = engine.start(meta()).await.unwrap();
    let id = w.id();
    w.append(None, vec![event(5)]).unwrap().await.unwrap();

    let too_big = Event {
        time_us: 60_000,
        kind: EventKind::Output as i32,
        data: vec![0; 1001],
    };
    let backwards = Event {
        time_us: 10,
        kind: EventKind::Output as i32,
        data: b"x".to_vec(),
    };
    let unknown_kind = Event {
        time_us: 70_000,
        kind: 42,
        data: b"x".to_vec(),
    };
    for (bad, want) in [
        (too_big, "maximum is 1000"),
        (backwards, "back in time"),
        (unknown_kind, "unknown kind"),
    ] {
        let err = w.append(None, vec![event(6), bad]).err().expect("refused");
        assert!(matches!(err, EngineError::InvalidArgument(_)));
        assert!(err.to_string().contains(want), "{err}");
    }
    // Nothing of the refused batches was kept.
    assert_eq!(w.next_index(), 1);
    w.append(None, vec![event(6)]).unwrap().await.unwrap();
    w.close(0).await.unwrap();
    assert_eq!(read_all(&engine, id).await, vec![event(5), event(6)]);
    let unknown = RecordingId::generate();
    assert!(matches!(
        engine.resume(unknown).await,
        Err(EngineError::NotFound(_))
    ));
    assert!(matches!(
        engine.events(unknown).await,
        Err(EngineError::NotFound(_))
    ));
    let mut long = meta();
    long.user = "u".repeat(5000);
    assert!(matches!(
        engine.start(long).await,
        Err(EngineError::InvalidArgument(_))
    ));
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_corruption_is_reported_on_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_segments(dir.path());
    cfg.segment_max_age = Duration::from_secs(3600);
    cfg.segment_target_bytes = 1 << 30;
    let all: Vec<Event> = (0..30).map(event).collect();
    let id = {
        let engine = Engine::open(cfg.clone()).await.unwrap();
        let mut w = engine.start(meta()).await.unwrap();
        for e in &all {
            w.append(None, vec![e.clone()]).unwrap().await.unwrap();
        }
        let id = w.id();
        drop(w);
        engine.shutdown().await;
        id
    };
    // Flip a byte in the 11th record of the journal file.
    let journal = dir.path().join("journal");
    let file = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .find(|p| std::fs::metadata(p).unwrap().len() > 100)
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let mut at = 16usize;
    for _ in 0..10 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    bytes[at + 20] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();

    let engine = Engine::open(cfg).await.unwrap();
    assert_eq!(engine.recovery_report().corrupt.len(), 1);
    let info = engine.recording(id).await.unwrap();
    assert_eq!(info.row.damage.len(), 1, "{:?}", info.row.damage);
    assert!(
        info.row.damage[0].contains("events 10..11 were lost"),
        "{:?}",
        info.row.damage
    );
    let mut expected = all.clone();
    expected.remove(10);
    assert_eq!(read_all(&engine, id).await, expected);
    engine.shutdown().await;
}

/// `reel rebuild-catalog` and `reel compact` open an engine and may shut it
/// down at once: the background tasks have not run yet when the signal is
/// sent. On a single-threaded runtime none of them has been polled, so each
/// one meets the signal only after it was sent; each must still stop.
#[tokio::test(flavor = "current_thread")]
async fn an_engine_shut_down_right_after_open_stops() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let engine = Engine::open(small_segments(dir.path())).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), engine.shutdown())
            .await
            .unwrap_or_else(|_| panic!("round {round}: shutdown still waits after 30 s"));
    }
}

/// The engine reads the time from its configured clock: with a manual
/// clock, real time passing seals nothing and abandons nothing; moving the
/// clock past the segment age seals the waiting events, and past the
/// detached time-out closes the recording as interrupted, with every
/// acknowledged event kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ages_and_time_outs_follow_the_engines_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = reel_clock::ManualClock::starting_now();
    let mut config = small_segments_aged(dir.path(), Duration::from_secs(60));
    config.segment_target_bytes = 1 << 20;
    config.detached_timeout = Duration::from_secs(600);
    config.clock = clock.clone();
    let engine = Engine::open(config).await.unwrap();
    let mut w = engine.start(meta()).await.unwrap();
    let id = w.id();
    let all: Vec<Event> = (0..10).map(event).collect();
    assert_eq!(w.append(None, all.clone()).unwrap().await.unwrap(), 10);
    drop(w);

    // Several housekeeping passes in real time; none in the clock's.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let info = engine.recording(id).await.unwrap();
    assert_eq!(info.unsealed_events, 10, "nothing sealed before its age");
    assert_eq!(info.row.state, RecordingState::Open as i32);
    assert!(!info.attached);

    clock.advance(Duration::from_secs(61));
    wait_for(
        "the aged events to seal",
        Duration::from_secs(10),
        || async { engine.recording(id).await.unwrap().unsealed_events == 0 },
    )
    .await;
    let info = engine.recording(id).await.unwrap();
    assert_eq!(
        info.row.state,
        RecordingState::Open as i32,
        "not yet abandoned"
    );

    clock.advance(Duration::from_secs(540));
    wait_for("the interrupted close", Duration::from_secs(10), || async {
        engine.recording(id).await.unwrap().row.state == RecordingState::Closed as i32
    })
    .await;
    assert_eq!(
        engine.recording(id).await.unwrap().row.close_reason,
        "interrupted"
    );
    assert_eq!(read_all(&engine, id).await, all);
    engine.shutdown().await;
}

/// Threads of this process named `name` (as the kernel shows it).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .count()
}

/// A thousand recordings closed at once (recorders that all end together,
/// a bastion restarting) must not grow the process by a thread each: the
/// catalog calls they make wait for a turn, not on a blocking thread apiece.
#[test]
fn a_thousand_recordings_closed_at_once_do_not_take_a_thread_each() {
    const NAME: &str = "close-burst";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(NAME)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(small_segments_aged(dir.path(), Duration::from_secs(3600)))
            .await
            .unwrap();
        let mut writers = Vec::new();
        for i in 0..1000 {
            let mut w = engine.start(meta()).await.unwrap();
            w.append(None, vec![event(i)]).unwrap().await.unwrap();
            writers.push(w);
        }
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let watching = {
            let most = most.clone();
            tokio::spawn(async move {
                loop {
                    most.fetch_max(threads_named(NAME), std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        let closes = writers.into_iter().map(|w| async move { w.close(0).await });
        for closed in futures::future::join_all(closes).await {
            closed.unwrap();
        }
        watching.abort();
        let most = most.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("{most} threads at most while 1,000 recordings closed");
        // Two workers, the catalog's turns, the sealer's and the journal's
        // helpers; 512 (tokio's limit) when every close had its own.
        assert!(most <= 64, "{most} threads while 1,000 recordings closed");
        let closed = engine
            .find_ids(reel_engine::Filter {
                state: Some(reel_engine::StateFilter::Closed),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(closed.len(), 1000, "every recording closed");
        engine.shutdown().await;
    });
}
