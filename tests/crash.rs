//! SIGKILL at random points while many recordings stream: every
//! acknowledged event survives, intact, and nothing unacknowledged shows up
//! as garbage.
//!
//! Each round: recorders stream (pipelined batches) into a real reeld,
//! which is killed with SIGKILL at a random moment (while it appends,
//! seals, uploads, closes). After the restart every recording is exported
//! and checked against what its recorder sent: a prefix of it, at least as
//! long as what was acknowledged. Then the recorders resume where the
//! server says it has them, and the next round starts. `REEL_CRASH_ROUNDS`
//! sets the number of kills (default 20); `REEL_TEST_SEED` repeats a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reel::{Recorder, Reeld, Rng, metadata, terminal_event};
use reel_proto::v1::Event;
use tokio::sync::Mutex;

/// What one recorder knows about its recording.
#[derive(Debug, Clone)]
struct Track {
    slot: usize,
    id: String,
    /// Events the server acknowledged.
    acked: u64,
    /// Events sent (acknowledged or not).
    sent: u64,
    closed: bool,
}

fn expected(slot: usize, n: u64) -> Vec<Event> {
    (0..n).map(|i| terminal_event(slot, i)).collect()
}

/// Streams until `stop`, with a few batches in flight; returns the track.
async fn stream(
    endpoint: String,
    mut track: Track,
    seed: u64,
    stop: Arc<AtomicBool>,
    close_at_end: bool,
) -> Track {
    let mut rng = Rng::new(seed);
    let mut recorder = if track.id.is_empty() {
        match Recorder::start(
            &endpoint,
            metadata("crash", &format!("host-{}", track.slot)),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => return track,
        }
    } else {
        match Recorder::resume(&endpoint, &track.id).await {
            Ok(r) => r,
            // A close whose answer the kill swallowed: the server finished it.
            Err(s)
                if s.code() == tonic::Code::FailedPrecondition
                    && s.message().contains("is closed") =>
            {
                track.closed = true;
                return track;
            }
            Err(_) => return track,
        }
    };
    track.id = recorder.id.clone();
    assert!(
        recorder.acked >= track.acked,
        "server holds {} events of {}, {} were acknowledged",
        recorder.acked,
        track.id,
        track.acked
    );
    track.acked = recorder.acked;
    track.sent = recorder.acked;
    while !stop.load(Ordering::Relaxed) {
        let n = rng.range(1..8);
        let batch: Vec<Event> = (track.sent..track.sent + n)
            .map(|i| terminal_event(track.slot, i))
            .collect();
        if recorder.send(batch).await.is_err() {
            return track;
        }
        track.sent += n;
        if recorder.sent - recorder.acked > 4 * 8 || rng.range(0..3) == 0 {
            match recorder.next_ack().await {
                Ok(a) => track.acked = a,
                Err(_) => return track,
            }
        }
        if rng.range(0..50) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.range(1..20))).await;
        }
    }
    while recorder.acked < recorder.sent {
        match recorder.next_ack().await {
            Ok(a) => track.acked = a,
            Err(_) => return track,
        }
    }
    if close_at_end && let Ok((count, _)) = recorder.close().await {
        assert_eq!(count, track.acked);
        track.closed = true;
    }
    track
}

async fn verify(reeld: &Reeld, tracks: &[Track]) {
    for t in tracks.iter().filter(|t| !t.id.is_empty()) {
        let events = reeld
            .export_events(&t.id)
            .await
            .unwrap_or_else(|e| panic!("export of {} failed: {e}", t.id));
        let n = events.len() as u64;
        assert!(
            n >= t.acked,
            "recording {} lost acknowledged events: {n} < {}",
            t.id,
            t.acked
        );
        assert!(
            n <= t.sent,
            "recording {} has {n} events, only {} were sent",
            t.id,
            t.sent
        );
        assert!(
            events == expected(t.slot, n),
            "recording {} holds events that were not sent (first difference at {:?})",
            t.id,
            events
                .iter()
                .zip(expected(t.slot, n))
                .position(|(a, b)| *a != b)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_no_acknowledged_event() {
    let rounds: usize = std::env::var("REEL_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    const RECORDERS: usize = 24;
    let mut rng = Rng::from_env("crash");
    let dir = tempfile::tempdir().unwrap();
    let mut reeld = Reeld::start(
        &dir.path().join("data"),
        &[
            "--segment-max-age",
            "300ms",
            "--segment-target-bytes",
            "8192",
        ],
    )
    .unwrap();
    let mut tracks: Vec<Track> = (0..RECORDERS)
        .map(|slot| Track {
            slot,
            id: String::new(),
            acked: 0,
            sent: 0,
            closed: false,
        })
        .collect();
    let mut finished: Vec<Track> = Vec::new();
    let mut next_slot = RECORDERS;

    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let results = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for (k, track) in tracks.drain(..).enumerate() {
            // Some recordings close during the round, so kills land in
            // closes and final seals too.
            let close = (k + round) % 6 == 0;
            let endpoint = reeld.grpc.clone();
            let stop = stop.clone();
            let results = results.clone();
            let seed = rng.next_u64();
            handles.push(tokio::spawn(async move {
                let t = stream(endpoint, track, seed, stop, close).await;
                results.lock().await.push(t);
            }));
        }
        // Stop some recorders cleanly before the kill, let the others run
        // into it.
        tokio::time::sleep(Duration::from_millis(rng.range(100..700))).await;
        if rng.range(0..2) == 0 {
            stop.store(true, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(rng.range(0..50))).await;
        }
        reeld.kill9();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.await.unwrap();
        }
        let mut round_tracks = std::mem::take(&mut *results.lock().await);
        round_tracks.sort_by_key(|t| t.slot);

        reeld.restart().unwrap();
        verify(&reeld, &round_tracks).await;
        verify(&reeld, &finished).await;
        for t in round_tracks {
            if t.closed {
                finished.push(t);
                tracks.push(Track {
                    slot: next_slot,
                    id: String::new(),
                    acked: 0,
                    sent: 0,
                    closed: false,
                });
                next_slot += 1;
            } else {
                tracks.push(t);
            }
        }
        eprintln!(
            "round {round}: {} open, {} closed, {} events acknowledged in all",
            tracks.len(),
            finished.len(),
            tracks.iter().chain(&finished).map(|t| t.acked).sum::<u64>()
        );
    }

    // Finally every recorder resumes and closes; everything is there.
    for t in tracks.iter_mut() {
        let stop = Arc::new(AtomicBool::new(true));
        *t = stream(reeld.grpc.clone(), t.clone(), 0, stop, true).await;
        assert!(
            t.closed || t.id.is_empty(),
            "recording {} did not close",
            t.id
        );
    }
    verify(&reeld, &tracks).await;
    verify(&reeld, &finished).await;
    let total: u64 = tracks.iter().chain(&finished).map(|t| t.acked).sum();
    assert!(total > 0);
}
