//! The kill -9 torture run: reeld is killed with SIGKILL over and over, at
//! random moments and at named crashpoints in every multi-step change
//! (sealing, uploading, failover, recombination, purge, deletion, and the
//! catalog commits between their steps), while recorders stream, recordings
//! close, purges run and the primary store (a real Garage server) is killed
//! and restarted.
//!
//! Each round picks, from a seed that reproduces the run (printed; set
//! `REEL_TEST_SEED` to repeat it), either a kill after a random time or a
//! crashpoint and how many passes to let through first (reeld's test build
//! SIGKILLs itself there, see `reel_engine::crashpoints_from_env`). After
//! each restart every recording is exported and checked against what its
//! recorder sent: every acknowledged event back, byte for byte, nothing that
//! was not sent; and every acknowledged purge stays purged (no purged
//! recording listed, the newly purged not found). Half the recordings that
//! close are purged in the next round, the rest 30 rounds later, so that
//! what each restart checks stays bounded over 1,000 kills. At the end, with
//! the stores up and the work drained, `reel verify --content` finds no
//! problem: no orphan, no missing or corrupt copy, no broken chain.
//! `REEL_TORTURE_KILLS` sets the number of kills (default 50; the 1,000-kill
//! run of BENCHMARKS.md is `REEL_TORTURE_KILLS=1000`). The histogram of the
//! stages hit and the time taken are printed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reel_proto::v1::Event;
use reel_testkit::{
    Garage, Recorder, Reeld, Rng, garage_config_file, metadata, terminal_event, wait_for,
};
use tokio::sync::Mutex;

/// The crashpoints of reeld, each a step of a multi-step change.
const CRASHPOINTS: &[&str] = &[
    "seal-before-commit",
    "seal-after-commit",
    "upload-before-put",
    "upload-after-put",
    "upload-after-commit",
    "compactor-commit",
    "compactor-after-commit",
    "purge-after-mark",
    "delete-after-delete",
];

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
    /// The round in which it closed.
    closed_in: usize,
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
        // A terminal's pace, not a flood: what is checked after every
        // restart grows with what was sent.
        tokio::time::sleep(Duration::from_millis(rng.range(5..30))).await;
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

/// How one round's kill came.
enum Kill {
    /// After a random time.
    Random(Duration),
    /// At the `skip`+1th pass through a crashpoint (or after `limit` if it
    /// is never reached).
    At { point: &'static str, skip: u64 },
}

/// Every acknowledged purge stays purged: no purged recording is listed,
/// and those purged since the last check are not found either. One listing
/// instead of a request per recording: thousands are purged in a long run.
async fn assert_purged(reeld: &Reeld, purges: &mut Purges) -> Result<(), String> {
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/recordings?limit=1000".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: reel_api::RecordingList =
            reeld.get_json(&path).await.map_err(|e| e.to_string())?;
        for r in &page.recordings {
            assert!(
                !purges.done.contains(&r.id),
                "purged recording {} came back: listed",
                r.id
            );
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    for id in &purges.unchecked {
        let r = reeld
            .get(&format!("/api/v1/recordings/{id}"))
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != 404 {
            panic!("purged recording {id} came back: {}", r.status());
        }
    }
    purges.unchecked.clear();
    Ok(())
}

/// What the test purged: acknowledged, and asked for (a kill may have
/// swallowed the answer, so those may be gone or still there).
#[derive(Default)]
struct Purges {
    done: BTreeSet<String>,
    asked: BTreeSet<String>,
    /// Done since the last check, not yet looked up one by one.
    unchecked: BTreeSet<String>,
}

/// True when reeld ended by itself (within a second: a process that
/// SIGKILLs itself drops its connections a moment before it can be reaped).
async fn died(reeld: &mut Reeld) -> bool {
    for _ in 0..20 {
        if reeld.exited() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Exports every recording and checks it (a recording whose purge was asked
/// for may be gone); `Err` when reeld went away while it was being read (a
/// crashpoint hit during recovery).
///
/// While the primary store is down, bytes only on it cannot be read (reeld
/// answers 503, naming them): the exports wait for a round with the primary
/// up, and only the purges are checked.
async fn check_all(
    reeld: &mut Reeld,
    tracks: &[&[Track]],
    purges: &mut Purges,
    primary_up: bool,
) -> Result<(), String> {
    let live = tracks
        .iter()
        .flat_map(|t| t.iter())
        .filter(|t| primary_up && !t.id.is_empty() && !purges.done.contains(&t.id));
    // Several exports at once: each is a few dozen reads of stored objects,
    // and every restart of a long run checks some 60 recordings (one at a
    // time, the checks took most of a round).
    let server: &Reeld = reeld;
    let exports: Vec<_> = futures::stream::iter(live)
        .map(|t| async move { (t, server.export_events(&t.id).await) })
        .buffered(8)
        .collect()
        .await;
    for (t, export) in exports {
        match export {
            Ok(events) => check(t, &events),
            Err(e) if died(reeld).await => return Err(e.to_string()),
            Err(e) if purges.asked.contains(&t.id) && e.to_string().contains("404") => {}
            Err(e) => panic!("export of {} failed: {e}", t.id),
        }
    }
    match assert_purged(reeld, purges).await {
        Err(e) if died(reeld).await => Err(e),
        Err(e) => panic!("listing purged recordings failed: {e}"),
        Ok(()) => Ok(()),
    }
}

fn check(t: &Track, events: &[Event]) {
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

/// Purges what was asked for and is not done; what the server
/// acknowledges is done.
async fn purge(reeld: &Reeld, purges: &mut Purges) {
    let ids: Vec<String> = purges.asked.difference(&purges.done).cloned().collect();
    if ids.is_empty() {
        return;
    }
    let request = reel_api::PurgeRequest {
        ids,
        older_than: None,
        user: None,
        dry_run: false,
        force: true,
        by: String::new(),
        reason: "torture run".into(),
    };
    let answer = reeld
        .request(reqwest::Method::POST, "/api/v1/purge")
        .json(&request)
        .send()
        .await;
    if let Ok(r) = answer
        && r.status().is_success()
        && let Ok(out) = r.json::<reel_api::PurgeResponse>().await
    {
        // A recording already gone was purged by an earlier request whose
        // answer a kill swallowed.
        let gone = out
            .refused
            .into_iter()
            .filter(|r| r.reason.contains("no such recording"))
            .map(|r| r.id);
        for id in out.purged.into_iter().chain(gone) {
            purges.unchecked.insert(id.clone());
            purges.done.insert(id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_every_stage_loses_nothing_and_leaves_nothing_behind() {
    let kills: usize = std::env::var("REEL_TORTURE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    const RECORDERS: usize = 12;
    const KEEP_ROUNDS: usize = 30;
    let started = Instant::now();
    let mut rng = Rng::from_env("torture");
    let dir = tempfile::tempdir().unwrap();
    let mut primary = Garage::start(&dir.path().join("garage-primary")).unwrap();
    let secondary = Garage::start(&dir.path().join("garage-secondary")).unwrap();
    let config = garage_config_file(
        dir.path(),
        &primary,
        &secondary,
        "[compactor]\ninterval = \"200ms\"\n",
    );
    let mut reeld = Reeld::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    )
    .unwrap();
    let mut tracks: Vec<Track> = (0..RECORDERS)
        .map(|slot| Track {
            slot,
            id: String::new(),
            acked: 0,
            sent: 0,
            closed: false,
            closed_in: 0,
        })
        .collect();
    let mut finished: Vec<Track> = Vec::new();
    let mut purges = Purges::default();
    let mut next_slot = RECORDERS;
    let mut hits: BTreeMap<String, usize> = BTreeMap::new();
    let mut primary_down_until = None;
    // Events acknowledged in recordings since purged (and no longer checked).
    let mut acked_purged = 0u64;

    for round in 0..kills {
        let round_started = Instant::now();
        // The primary store fails now and then and returns a few rounds
        // later: kills land in failovers and failbacks too.
        match primary_down_until {
            Some(r) if r == round => {
                tokio::task::block_in_place(|| primary.restart()).unwrap();
                primary_down_until = None;
            }
            None if rng.range(0..12) == 0 => {
                primary.kill9();
                primary_down_until = Some(round + rng.range(1..4) as usize);
            }
            _ => {}
        }
        let kill = if rng.range(0..3) == 0 {
            Kill::Random(Duration::from_millis(rng.range(50..1500)))
        } else {
            Kill::At {
                point: CRASHPOINTS[rng.range(0..CRASHPOINTS.len() as u64) as usize],
                skip: rng.range(0..4),
            }
        };
        reeld.env = match &kill {
            Kill::Random(_) => Vec::new(),
            Kill::At { point, skip } => {
                vec![(
                    "FAILPOINTS".into(),
                    format!("{point}={skip}*off->panic(crash)"),
                )]
            }
        };
        // Restart, and check everything; a crashpoint may fire in recovery
        // already, then that was this round's kill.
        let stage = match &kill {
            Kill::At { point, .. } => format!("crashpoint {point}"),
            Kill::Random(_) => "random moment".into(),
        };
        let primary_up = primary_down_until.is_none();
        let mut recovered = tokio::task::block_in_place(|| reeld.restart()).is_ok()
            && check_all(&mut reeld, &[&tracks, &finished], &mut purges, primary_up)
                .await
                .is_ok();
        if !recovered {
            *hits.entry(format!("{stage} (in recovery)")).or_default() += 1;
            reeld.env.clear();
            tokio::task::block_in_place(|| reeld.restart()).unwrap();
            check_all(&mut reeld, &[&tracks, &finished], &mut purges, primary_up)
                .await
                .unwrap();
            recovered = true;
        }
        assert!(recovered);

        // The round's work: recorders stream (some close), finished
        // recordings are purged, the compactor recombines.
        let results = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for (k, track) in tracks.drain(..).enumerate() {
            // Some recorders stop and close during the round, so that kills
            // land in closes, final seals, recombinations and purges too.
            let close = (k + round) % 4 == 0;
            let stop = Arc::new(AtomicBool::new(false));
            stops.push(stop.clone());
            if close {
                let (stop, after) = (stop.clone(), Duration::from_millis(rng.range(20..800)));
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    stop.store(true, Ordering::Relaxed);
                });
            }
            let (endpoint, results, seed) = (reeld.grpc.clone(), results.clone(), rng.next_u64());
            handles.push(tokio::spawn(async move {
                let t = stream(endpoint, track, seed, stop, close).await;
                results.lock().await.push(t);
            }));
        }
        purge(&reeld, &mut purges).await;
        let limit = match kill {
            Kill::Random(after) => after,
            Kill::At { .. } => Duration::from_secs(4),
        };
        let deadline = Instant::now() + limit;
        let mut self_killed = false;
        while Instant::now() < deadline {
            if reeld.exited() {
                self_killed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let hit = match (&kill, self_killed) {
            (Kill::At { point, .. }, true) => format!("crashpoint {point}"),
            (Kill::At { .. }, false) => "random moment (crashpoint not reached)".into(),
            (Kill::Random(_), _) => "random moment".into(),
        };
        *hits.entry(hit).or_default() += 1;
        reeld.kill9();
        for stop in &stops {
            stop.store(true, Ordering::Relaxed);
        }
        for h in handles {
            h.await.unwrap();
        }
        let mut round_tracks = std::mem::take(&mut *results.lock().await);
        round_tracks.sort_by_key(|t| t.slot);
        for t in round_tracks {
            if t.closed {
                // Every other closed recording is purged in the next round,
                // the others after KEEP_ROUNDS: some live long enough for
                // kills to land in their recombination and deletions, and
                // what every restart exports stays bounded in a long run.
                if t.slot % 2 == 0 {
                    purges.asked.insert(t.id.clone());
                }
                finished.push(Track {
                    closed_in: round,
                    ..t
                });
                tracks.push(Track {
                    slot: next_slot,
                    id: String::new(),
                    acked: 0,
                    sent: 0,
                    closed: false,
                    closed_in: 0,
                });
                next_slot += 1;
            } else {
                tracks.push(t);
            }
        }
        for t in &finished {
            if round >= t.closed_in + KEEP_ROUNDS {
                purges.asked.insert(t.id.clone());
            }
        }
        finished.retain(|t| {
            let purged = purges.done.contains(&t.id);
            if purged {
                acked_purged += t.acked;
            }
            !purged
        });
        eprintln!(
            "kill {round}: {stage}; {} open, {} closed, {} purged; round {:.1} s",
            tracks.len(),
            finished.len(),
            purges.done.len(),
            round_started.elapsed().as_secs_f64()
        );
    }

    // The stores up, no crashpoints: everything closes, the purges finish,
    // the compactor and the deleter drain, and nothing is left that the
    // catalog does not account for.
    if primary_down_until.take().is_some() {
        tokio::task::block_in_place(|| primary.restart()).unwrap();
    }
    reeld.env.clear();
    tokio::task::block_in_place(|| reeld.restart()).unwrap();
    for t in tracks.iter_mut() {
        let stop = Arc::new(AtomicBool::new(true));
        *t = stream(reeld.grpc.clone(), t.clone(), 0, stop, true).await;
    }
    // Recordings whose close a kill swallowed come back closed by the
    // server; the ones still unclosed here would be a bug.
    for t in &tracks {
        assert!(
            t.closed || t.id.is_empty(),
            "recording {} did not close",
            t.id
        );
    }
    let primary_up = primary_down_until.is_none();
    check_all(&mut reeld, &[&tracks, &finished], &mut purges, primary_up)
        .await
        .unwrap();
    purge(&reeld, &mut purges).await;
    assert_eq!(purges.asked, purges.done, "purges refused");
    wait_for(
        "uploads, recombination and deletions done",
        Duration::from_secs(120),
        async || {
            let s: reel_api::CompactStatus = reeld.get_json("/api/v1/compact").await.unwrap();
            reel_testkit::drained(&reeld).await && s.plan.is_empty() && s.pending_deletions == 0
        },
    )
    .await;
    assert_purged(&reeld, &mut purges).await.unwrap();
    let out = reeld.reel(&["verify", "--content"]);
    assert!(
        out.status.success(),
        "verify found problems after the torture run:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let total: u64 = acked_purged + tracks.iter().chain(&finished).map(|t| t.acked).sum::<u64>();
    assert!(total > 0);
    eprintln!(
        "torture: {kills} kills in {:.0} s (seed printed above), {total} events acknowledged, \
         {} recordings purged; stages hit:",
        started.elapsed().as_secs_f64(),
        purges.done.len()
    );
    for (stage, n) in &hits {
        eprintln!("  {n:5}  {stage}");
    }
}
