//! Failover, failback and both stores down, driven by the fault-injecting
//! store around real local-directory stores: errors, hangs, writes that land
//! but report failure, and a store that fails only for writes.

use std::time::{Duration, Instant};

use reel_engine::{Engine, EngineError};
use reel_proto::v1::{Event, Location, RecordingMetadata};
use reel_storage::faults::{Fault, Ops};
use reel_storage::{Role, RouteChange, StoreState, keys};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_primary_fails_over_then_back_without_loss() {
    let rig = rig(|_| {}).await;
    let engine = &rig.engine;
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    write(&mut w, 0..100).await;
    wait_for(
        "first segments on the primary",
        Duration::from_secs(5),
        || all_uploaded(engine, id),
    )
    .await;

    // The primary starts failing every call.
    rig.primary.fail_always(Ops::ALL, Fault::Error);
    let failed_at = Instant::now();
    write(&mut w, 100..300).await;
    wait_for(
        "uploads go to the secondary",
        Duration::from_secs(5),
        || async { engine.storage_status().writing_to == Some(Role::Secondary) },
    )
    .await;
    assert!(failed_at.elapsed() < Duration::from_secs(5));
    wait_for(
        "every segment stored somewhere",
        Duration::from_secs(10),
        || all_uploaded(engine, id),
    )
    .await;
    let info = engine.recording(id).await.unwrap();
    assert_eq!(
        info.placement().to_string(),
        "split",
        "{:?}",
        locations(&info)
    );
    let status = engine.storage_status();
    assert_eq!(status.primary.health.state, StoreState::Down);
    assert_eq!(status.events.last().unwrap().kind, RouteChange::Failover);
    // Readable while the primary is down? Its segments are not; that is the
    // reading issue's work. Here: nothing acknowledged is lost, all is stored.

    // The primary comes back: probes notice, new segments go to it again.
    rig.primary.clear();
    wait_for("failback", Duration::from_secs(5), || async {
        engine.storage_status().writing_to == Some(Role::Primary)
    })
    .await;
    write(&mut w, 300..400).await;
    w.close(0).await.unwrap();
    wait_for("every segment stored", Duration::from_secs(10), || {
        all_uploaded(engine, id)
    })
    .await;
    let info = engine.recording(id).await.unwrap();
    assert!(info.segments.last().unwrap().locations == [Location::Primary as i32]);
    let kinds: Vec<RouteChange> = engine
        .storage_status()
        .events
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, [RouteChange::Failover, RouteChange::Failback]);
    let all: Vec<Event> = (0..400).map(event).collect();
    assert_eq!(
        engine
            .events(id)
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap(),
        all
    );
    assert!(
        engine.metrics().contains("reel_failovers_total 1"),
        "{}",
        engine.metrics()
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_primary_is_abandoned_within_the_bound() {
    let rig = rig(|_| {}).await;
    let engine = &rig.engine;
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    rig.primary.fail_always(Ops::ALL, Fault::Hang);
    let hung_at = Instant::now();
    // Ingest never waits on a store: every append is acknowledged quickly.
    let mut slowest = Duration::ZERO;
    for i in 0..200 {
        let t = Instant::now();
        w.append(None, vec![event(i)]).unwrap().await.unwrap();
        slowest = slowest.max(t.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(200),
        "an append waited {slowest:?}"
    );
    wait_for("failover", Duration::from_secs(5), || async {
        engine.storage_status().writing_to == Some(Role::Secondary)
    })
    .await;
    // Time-out (300 ms) + suspect window (500 ms) + probe and tick slack.
    assert!(
        hung_at.elapsed() < Duration::from_secs(3),
        "switched after {:?}",
        hung_at.elapsed()
    );
    w.close(0).await.unwrap();
    wait_for("all on the secondary", Duration::from_secs(10), || {
        all_uploaded(engine, id)
    })
    .await;
    let info = engine.recording(id).await.unwrap();
    assert_eq!(info.placement().to_string(), "secondary");
    rig.primary.clear();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_puts_are_recorded_and_their_copies_are_identical() {
    let rig = rig(|_| {}).await;
    let engine = &rig.engine;
    // Every write lands on the primary but reports failure.
    rig.primary.fail_always(Ops::PUT, Fault::AfterWrite);
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    write(&mut w, 0..150).await;
    w.close(0).await.unwrap();
    wait_for("all stored", Duration::from_secs(10), || {
        all_uploaded(engine, id)
    })
    .await;
    let info = engine.recording(id).await.unwrap();
    for s in &info.segments {
        let key = keys::segment(id, s.sequence);
        if s.locations == [Location::Secondary as i32] {
            // The primary may hold the same key (a put that landed but was
            // reported failed): if it does, the catalog knows it may, and the
            // bytes are the same.
            if let Ok(got) =
                object_store::ObjectStoreExt::get(rig.primary_store.as_ref(), &key).await
            {
                assert!(
                    s.uncertain.contains(&(Location::Primary as i32)),
                    "untracked copy: {s:?}"
                );
                let bytes = got.bytes().await.unwrap();
                assert_eq!(
                    reel_log::sha256(&bytes).to_vec(),
                    s.sha256,
                    "a duplicate differs"
                );
            }
        } else {
            assert_eq!(s.locations, [Location::Primary as i32]);
        }
    }
    assert!(
        info.segments
            .iter()
            .any(|s| s.uncertain.contains(&(Location::Primary as i32))),
        "no ambiguous put was recorded"
    );
    let all: Vec<Event> = (0..150).map(event).collect();
    assert_eq!(
        engine
            .events(id)
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap(),
        all
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_fails_only_writes_still_serves_reads() {
    let rig = rig(|_| {}).await;
    let engine = &rig.engine;
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    write(&mut w, 0..100).await;
    wait_for("on the primary", Duration::from_secs(5), || {
        all_uploaded(engine, id)
    })
    .await;
    rig.primary.fail_always(Ops::WRITES, Fault::Error);
    write(&mut w, 100..200).await;
    w.close(0).await.unwrap();
    wait_for("failover", Duration::from_secs(5), || async {
        engine.storage_status().writing_to == Some(Role::Secondary)
    })
    .await;
    wait_for("all stored", Duration::from_secs(10), || {
        all_uploaded(engine, id)
    })
    .await;
    // Reads of the primary's segments still work.
    let all: Vec<Event> = (0..200).map(event).collect();
    assert_eq!(
        engine
            .events(id)
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap(),
        all
    );
    assert_eq!(
        engine.recording(id).await.unwrap().placement().to_string(),
        "split"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_down_fill_the_local_log_then_drain() {
    let rig = rig(|c| c.local_capacity_bytes = 64 << 10).await;
    let engine = &rig.engine;
    rig.primary.fail_always(Ops::ALL, Fault::Error);
    rig.secondary.fail_always(Ops::ALL, Fault::Error);
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    let mut acked = 0;
    let err = loop {
        match w.append(None, vec![event(acked)]) {
            Ok(ack) => match ack.await {
                Ok(_) => acked += 1,
                Err(e) => break e,
            },
            Err(e) => break e,
        }
        assert!(acked < 100_000, "the capacity never applied");
    };
    assert!(matches!(err, EngineError::ResourceExhausted(_)), "{err}");
    assert!(err.to_string().contains("local log full"), "{err}");
    // The router hears of the second store's failure from the uploader:
    // the log may fill a moment before the route says so.
    wait_for(
        "the route to say both are down",
        Duration::from_secs(10),
        || async { engine.storage_status().writing_to.is_none() },
    )
    .await;
    let status = engine.storage_status();
    assert_eq!(status.writing_to, None);
    assert!(status.backlog_segments > 0);
    assert_eq!(status.events.last().unwrap().kind, RouteChange::BothDown);

    // The secondary returns: the backlog drains to it, ingest goes on.
    rig.secondary.clear();
    wait_for("backlog drained", Duration::from_secs(10), || async {
        engine.storage_status().backlog_segments == 0
    })
    .await;
    drop(w);
    let mut w = engine.resume(id).await.unwrap();
    assert_eq!(w.durable(), acked);
    write(&mut w, acked..acked + 10).await;
    w.close(0).await.unwrap();
    wait_for("all stored", Duration::from_secs(10), || {
        all_uploaded(engine, id)
    })
    .await;
    assert_eq!(
        engine.recording(id).await.unwrap().placement().to_string(),
        "secondary"
    );
    let all: Vec<Event> = (0..acked + 10).map(event).collect();
    assert_eq!(
        engine
            .events(id)
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap(),
        all
    );
    rig.primary.clear();
    engine.shutdown().await;
}

/// Bytes of the journal files as the filesystem sees them. A file the
/// engine releases between the listing and its `stat` counts as gone.
fn journal_on_disk(engine: &Engine) -> u64 {
    std::fs::read_dir(engine.config().journal_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_many_times_the_local_capacity_never_fills_the_local_log() {
    const CAPACITY: u64 = 64 << 10;
    let rig = rig(|c| {
        c.local_capacity_bytes = CAPACITY;
        c.journal_file_size = 4 << 10;
    })
    .await;
    let engine = &rig.engine;
    let mut w = engine.start(RecordingMetadata::default()).await.unwrap();
    let id = w.id();
    let mut next = 0u64;
    let mut written = 0u64;
    // Ten times the capacity, an eighth of it at a time, each eighth
    // drained to the primary before the next. The margin is wide on
    // purpose: within a round the journal, its prepared next file and the
    // spool's copies of what was just sealed all count, and when uploads
    // lag (a busy machine) a quarter at a time could reach the capacity,
    // which is the backpressure working, not the count drifting.
    for round in 0..80 {
        let target = written + CAPACITY / 8;
        while written < target {
            let batch: Vec<Event> = (next..next + 16).map(event).collect();
            written += batch.iter().map(|e| e.data.len() as u64).sum::<u64>();
            next += 16;
            if let Err(e) = w.append(None, batch).unwrap().await {
                panic!("round {round}: event {next} refused: {e}");
            }
        }
        wait_for(
            "the journal's count equals its files",
            Duration::from_secs(10),
            || async {
                let local = engine.local_status().unwrap();
                engine.storage_status().backlog_segments == 0
                    && local.journal_bytes == journal_on_disk(engine)
                    && local.journal_bytes < CAPACITY / 4
            },
        )
        .await;
    }
    assert!(written > 10 * CAPACITY);
    w.close(0).await.unwrap();
    let read = engine
        .events(id)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(read.len() as u64, next);
    assert!(read.iter().zip(0..).all(|(e, i)| *e == event(i)));
    engine.shutdown().await;
}
