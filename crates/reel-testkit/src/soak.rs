//! The soak: `reeld` under steady load for a long time, sampled every few
//! seconds, judged on whether it stays flat. One driver, used by the 30
//! minute bench (`benches/soak.rs`) and the 2 minute CI test
//! (`tests/soak.rs`).
//!
//! The load: `recorders` recorders, each streaming terminal-like events open
//! loop (on a clock, never waiting for acknowledgements, up to the server's
//! pipelining limit) at `events_per_second`; each recording closes after a
//! random length and the recorder starts the next one. `reeld` runs against
//! two Garage servers with the smallest journal files (1 MiB), small
//! segments sealed every few seconds, the compactor on, and (by default)
//! retention rules that purge recordings a few minutes old, so that the set
//! of recordings kept, and with it the catalog, reaches a steady size. The
//! primary is killed (SIGKILL) every `outage_period` and restarted
//! `outage_length` later.
//!
//! Sampled: reeld's resident memory, open file descriptors and threads
//! (`/proc`), the journal, spool and upload queue (`GET /api/v1/status`), the
//! upload backlog (`GET /api/v1/storage`), the compactor's queue of
//! recordings ready to recombine and the deletion queue (`GET
//! /api/v1/compact`), the catalog as reeld counts it (its files without the
//! audit log, its write-ahead log, the audit log, its memtables) and the bytes under
//! `data_dir/catalog` as seen from outside, and, on the client side, the
//! events acknowledged and their latency.
//!
//! Judged:
//! - refused: every event sent must be acknowledged; any error (a start, a
//!   send, a close) counts, with the events it left unacknowledged.
//! - lost: every closed recording is exported `check_after` after it closed
//!   (before retention may purge it; what is left at the end is checked at
//!   the end) and compared with what was sent: every acknowledged event
//!   present, at its place, byte for byte, and nothing more. An export
//!   refused while the primary is down (503: bytes only it holds) is tried
//!   again once it is back; a recording never exported counts as a failure.
//! - growth: see [`Growth`].

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use reel_api::{CompactStatus, ServerStatus, StorageStatus};
use reel_proto::v1::{Event, EventKind, RecordingMetadata};

use crate::{Garage, Recorder, Reeld, Rng};

/// What the soak runs and how it is judged.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long the load runs.
    pub duration: Duration,
    /// Recorders streaming at once (each always has one recording open).
    pub recorders: usize,
    /// Events a second, per recorder.
    pub events_per_second: f64,
    /// How often each recorder sends what is due (one batch).
    pub batch_interval: Duration,
    /// A recording lasts between these (uniform), then the next one starts.
    pub recording_length: (Duration, Duration),
    /// The primary is killed every this long (the first time half of it
    /// after the start)...
    pub outage_period: Duration,
    /// ...and restarted this long after.
    pub outage_length: Duration,
    /// After the primary returns, samples count as `steady` only after this
    /// long (the failback and the recombination of what was split).
    pub settle: Duration,
    pub sample_interval: Duration,
    /// Growth is judged over the last `window` of the run, which must start
    /// after `warmup`.
    pub warmup: Duration,
    pub window: Duration,
    /// Each judged value is the trimmed mean of this many consecutive
    /// steady samples (a sample is one instant of a quantity that moves in
    /// steps: a journal file, a memtable, a connection).
    pub smooth: usize,
    /// The most growth allowed, as a fraction (0.10 = 10 %)...
    pub growth_limit: f64,
    /// ...unless set here for a quantity (by its name in [`JUDGED`]):
    /// another limit, or `None` for reported but not judged.
    pub limits: Vec<(&'static str, Option<f64>)>,
    /// Segments are sealed at this size or age.
    pub segment_target_bytes: u64,
    pub segment_max_age: Duration,
    /// Journal files rotate at this size (1 MiB is reeld's minimum).
    pub journal_file_bytes: u64,
    /// Retention: purge every recording this old (counted by reeld from
    /// when it received it), checking this often. `None`: keep everything,
    /// and the catalog grows with what it holds.
    pub retention: Option<(Duration, Duration)>,
    /// A closed recording is exported and checked this long after its
    /// close (it must be less than the retention age minus the longest
    /// recording, so that it is checked before it is purged).
    pub check_after: Duration,
    /// Where Garage, reeld's data and logs go (created).
    pub dir: PathBuf,
    /// Print each sample as it is taken (stderr).
    pub verbose: bool,
    pub seed: u64,
}

impl SoakConfig {
    /// The bench's soak (see `benches/soak.rs`): 300 recorders, the primary
    /// down for a minute every 4 minutes, growth judged over the last 20
    /// minutes (or the last two thirds of a shorter run).
    pub fn bench(dir: &Path, duration: Duration, seed: u64) -> SoakConfig {
        let window = Duration::from_secs(20 * 60).min(duration * 2 / 3);
        SoakConfig {
            duration,
            recorders: 300,
            events_per_second: 20.0,
            batch_interval: Duration::from_millis(100),
            recording_length: (Duration::from_secs(30), Duration::from_secs(180)),
            outage_period: Duration::from_secs(240),
            outage_length: Duration::from_secs(60),
            settle: Duration::from_secs(60),
            sample_interval: Duration::from_secs(5),
            warmup: duration - window,
            window,
            smooth: 12,
            growth_limit: 0.10,
            limits: Vec::new(),
            segment_target_bytes: 64 << 10,
            segment_max_age: Duration::from_secs(30),
            journal_file_bytes: 1 << 20,
            retention: Some((Duration::from_secs(360), Duration::from_secs(20))),
            check_after: Duration::from_secs(90),
            dir: dir.to_path_buf(),
            verbose: true,
            seed,
        }
    }
}

/// When a sample was taken, in the primary's outage cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Both stores up, the primary back for at least `settle`.
    Steady,
    /// The primary is down (killed).
    Outage,
    /// The primary is back, for less than `settle`.
    Recovering,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Steady => "steady",
            Phase::Outage => "outage",
            Phase::Recovering => "recovering",
        }
    }
}

/// One sample.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    pub phase: Phase,
    pub rss_bytes: u64,
    /// The anonymous (heap, stacks) and file-backed (the executable's pages)
    /// parts of `rss_bytes`.
    pub rss_anon_bytes: u64,
    pub rss_file_bytes: u64,
    pub fds: u64,
    pub threads: u64,
    pub journal_bytes: u64,
    pub journal_files: u64,
    pub spool_bytes: u64,
    pub spool_segments: u64,
    pub upload_queue: u64,
    pub backlog_segments: u64,
    pub backlog_bytes: u64,
    /// The catalog's table files, the audit log's not included (`GET
    /// /api/v1/status`).
    pub catalog_bytes: u64,
    /// Its write-ahead log: grows between flushes, bounded by a budget.
    pub catalog_log_bytes: u64,
    /// The audit log's table files: an append-only log, reported, not judged.
    pub audit_log_bytes: u64,
    /// Catalog writes held in memory (part of `rss_bytes`).
    pub catalog_memory_bytes: u64,
    /// Everything under `data_dir/catalog`, as `du` would count it.
    pub catalog_dir_bytes: u64,
    /// Closed recordings marked for recombination and ready for it (their
    /// segments all stored), and old copies waiting in the deletion queue
    /// (`GET /api/v1/compact`): the compactor's backlog.
    pub recombine_ready: u64,
    pub deletions_pending: u64,
    pub open_recordings: u64,
    pub writing_to: String,
    /// Events acknowledged since the start, and recordings closed.
    pub events_acked: u64,
    pub recordings_closed: u64,
    /// Events acknowledged a second since the previous sample.
    pub events_per_second: f64,
    /// Acknowledgement latency of the batches acknowledged since the
    /// previous sample (from the send to the ack), milliseconds.
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
}

/// A quantity judged for growth: its name, how a sample gives it, and the
/// least level its growth is measured against.
#[derive(Clone, Copy)]
pub struct Judged {
    pub name: &'static str,
    pub get: fn(&Sample) -> f64,
    pub floor: fn(&SoakConfig) -> f64,
    /// Reported beside the others but not judged (unless a config's
    /// `limits` names it): a quantity meant to grow.
    pub reported_only: bool,
}

/// Two journal files: the journal's working set at rest (the file being
/// written and the one being sealed from) moves by whole files, and the
/// spool and the upload backlog are about zero between two uploads.
/// Against a smaller level, a second journal file or a few segments
/// waiting a second would read as a large factor; a journal or spool that
/// keeps what it should release still fails by far, every second adding
/// the events' bytes.
fn two_journal_files(c: &SoakConfig) -> f64 {
    2.0 * c.journal_file_bytes as f64
}

/// One recording or one object per recorder: queues that move by the
/// recordings closing and the segments sealed in a second or two.
fn per_recorder(c: &SoakConfig) -> f64 {
    c.recorders as f64
}

fn no_floor(_: &SoakConfig) -> f64 {
    1.0
}

/// The catalog's memtables: each flush adds a table file of up to a
/// memtable, and the files move by that much until a compaction merges
/// them (a catalog that keeps purged rows grows by them for good).
fn catalog_flushes(_: &SoakConfig) -> f64 {
    reel_catalog::MEMTABLE_BUDGET_BYTES as f64
}

/// Everything judged for growth.
pub const JUDGED: &[Judged] = &[
    Judged {
        name: "rss",
        get: |s| s.rss_bytes as f64,
        floor: no_floor,
        reported_only: false,
    },
    Judged {
        name: "fds",
        get: |s| s.fds as f64,
        floor: no_floor,
        reported_only: false,
    },
    Judged {
        name: "journal_bytes",
        get: |s| s.journal_bytes as f64,
        floor: two_journal_files,
        reported_only: false,
    },
    Judged {
        name: "spool_bytes",
        get: |s| s.spool_bytes as f64,
        floor: two_journal_files,
        reported_only: false,
    },
    Judged {
        name: "backlog_bytes",
        get: |s| s.backlog_bytes as f64,
        floor: two_journal_files,
        reported_only: false,
    },
    Judged {
        name: "catalog_bytes",
        get: |s| s.catalog_bytes as f64,
        floor: catalog_flushes,
        reported_only: false,
    },
    Judged {
        name: "catalog_log_bytes",
        get: |s| s.catalog_log_bytes as f64,
        floor: no_floor,
        reported_only: true,
    },
    Judged {
        name: "audit_log_bytes",
        get: |s| s.audit_log_bytes as f64,
        floor: no_floor,
        reported_only: true,
    },
    Judged {
        name: "catalog_memory_bytes",
        get: |s| s.catalog_memory_bytes as f64,
        floor: no_floor,
        reported_only: true,
    },
    Judged {
        name: "recombine_ready",
        get: |s| s.recombine_ready as f64,
        floor: per_recorder,
        reported_only: false,
    },
    Judged {
        name: "deletions_pending",
        get: |s| s.deletions_pending as f64,
        floor: per_recorder,
        reported_only: false,
    },
];

/// The growth of one quantity over the judged window: after warm-up, only
/// samples taken in the same phase (steady: the primary up and settled)
/// are compared, each smoothed as the trimmed mean of `smooth` consecutive
/// ones (without their lowest and highest).
/// `growth` is (the largest smoothed value in the window − the smoothed
/// value at its start) / the value at its start (at least the floor).
/// `trend` is the least-squares slope over the window's steady samples,
/// times the window's length, over the same denominator: what a steady leak
/// would add over the window, reported beside it.
#[derive(Debug, Clone)]
pub struct Growth {
    pub series: &'static str,
    pub start: f64,
    pub peak: f64,
    pub end: f64,
    pub growth: f64,
    pub trend: f64,
    /// The most growth allowed (`None`: reported, not judged).
    pub limit: Option<f64>,
    /// Steady samples the figures come from.
    pub samples: usize,
}

/// The outcome of a soak.
#[derive(Debug, Clone)]
pub struct SoakReport {
    pub config: SoakConfig,
    pub samples: Vec<Sample>,
    pub events_sent: u64,
    pub events_acked: u64,
    /// Events sent and never acknowledged, and the errors (the first few).
    pub refused_events: u64,
    pub errors: u64,
    pub first_errors: Vec<String>,
    pub recordings_closed: u64,
    pub recordings_checked: u64,
    /// Acknowledged events missing or different in an export.
    pub lost_events: u64,
    /// Recordings with more events than were acknowledged and closed.
    pub extra_events: u64,
    /// Recordings that could not be checked (an export failed; purged
    /// before their check), and why (the first few).
    pub unchecked: u64,
    /// Exports that failed and were tried again (a store was down).
    pub export_retries: u64,
    pub problems: Vec<String>,
    pub outages: u32,
    pub growth: Vec<Growth>,
    /// Growth that could not be judged (too few steady samples).
    pub growth_errors: Vec<String>,
    /// From the end of the load to an empty upload backlog.
    pub final_drain: Option<Duration>,
    pub elapsed: Duration,
}

/// The `index`th event of the recording made from `seed`, `gap_us` after
/// the one before: terminal-like (prompts, coloured listings, UTF-8 box
/// drawing, keystrokes, now and then a resize or a marker), 1 to about 400
/// bytes. A pure function, so that the check rebuilds what was sent.
pub fn soak_event(seed: u64, index: u64, gap_us: u64) -> Event {
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let roll = rng.range(0..100);
    let n = rng.next_u64();
    let (kind, data) = match roll {
        0..20 => (
            EventKind::Input,
            [b"l", b"s", b" ", b"-", b"a", b"\r", b"\x7f", b"\t"][(n % 8) as usize].to_vec(),
        ),
        20 => (
            EventKind::Resize,
            format!("{}x{}", 80 + n % 120, 24 + n % 40).into_bytes(),
        ),
        21 => (EventKind::Marker, format!("step {index}").into_bytes()),
        22..40 => (
            EventKind::Output,
            format!(
                "\x1b[01;32moperator{}@db-{:02}\x1b[00m:\x1b[01;34m~/{}\x1b[00m$ ",
                n % 7,
                n % 13,
                ["src", "etc/nginx", "var/log", "tmp"][(n % 4) as usize]
            )
            .into_bytes(),
        ),
        40..70 => {
            let mut text = String::new();
            for line in 0..1 + n % 4 {
                let _ = write!(
                    text,
                    "-rw-r--r-- 1 root root {:>8} Mar {:>2} 12:{:02} \x1b[01;31mfile-{index}-{line}.log\x1b[0m\r\n",
                    (n >> 8) % 1_000_000,
                    1 + (n >> 16) % 28,
                    (n >> 24) % 60
                );
            }
            (EventKind::Output, text.into_bytes())
        }
        70..85 => (
            EventKind::Output,
            format!(
                "│ {:>8} │ {:<18} │ {:>6.2} % │\r\n├──────────┼────────────────────┼──────────┤\r\n",
                index,
                format!("worker-{}", n % 97),
                (n % 10_000) as f64 / 100.0
            )
            .into_bytes(),
        ),
        _ => {
            let len = 1 + (n % 200) as usize;
            (
                EventKind::Output,
                crate::varied_bytes(n, len)
                    .into_iter()
                    .chain(*b"\r\n")
                    .collect(),
            )
        }
    };
    Event {
        time_us: index * gap_us,
        kind: kind as i32,
        data,
    }
}

/// A recording as its recorder left it.
struct Closed {
    id: String,
    seed: u64,
    acked: u64,
    /// Closed cleanly: the server has exactly `acked` events.
    clean: bool,
    closed_at: Instant,
    /// Export attempts that failed (a store down: reeld answers 503 for
    /// bytes it cannot reach now), the last one's error, and when to try
    /// again.
    failed_attempts: u32,
    last_error: String,
    retry_at: Instant,
}

/// What the recorders, the sampler and the checker share.
struct Shared {
    stop: AtomicBool,
    /// The checker's own stop, after the backlog drained.
    checker_stop: AtomicBool,
    sent: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
    closed: AtomicU64,
    first_errors: Mutex<Vec<String>>,
    /// Acknowledgement latencies (µs) since the last sample.
    latencies: Mutex<Vec<u32>>,
    /// Closed recordings waiting for their check, oldest first.
    to_check: Mutex<VecDeque<Closed>>,
    checked: AtomicU64,
    lost: AtomicU64,
    extra: AtomicU64,
    unchecked: AtomicU64,
    export_failures: AtomicU64,
    problems: Mutex<Vec<String>>,
    /// The primary: up, and since when (in its current state).
    primary: Mutex<(bool, Instant)>,
    outages: AtomicU64,
}

impl Shared {
    fn error(&self, refused: u64, what: String) {
        self.refused.fetch_add(refused, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap();
        if first.len() < 20 {
            first.push(what);
        }
    }

    fn problem(&self, what: String) {
        let mut problems = self.problems.lock().unwrap();
        if problems.len() < 20 {
            problems.push(what);
        }
    }
}

fn config_toml(config: &SoakConfig, primary: &Garage, secondary: &Garage) -> String {
    let mut toml = format!(
        "[primary]\n{}\n[secondary]\n{}\n\
         [journal]\nfile_bytes = {}\n\
         [segments]\nmax_age = \"{}ms\"\ntarget_bytes = {}\n\
         [health]\nop_timeout = \"2s\"\nsuspect_window = \"2s\"\nprobe_interval = \"500ms\"\n\
         healthy_probe_interval = \"1s\"\n\
         [compactor]\nenabled = true\ninterval = \"2s\"\n",
        primary.store_toml(),
        secondary.store_toml(),
        config.journal_file_bytes,
        config.segment_max_age.as_millis(),
        config.segment_target_bytes,
    );
    if let Some((older_than, interval)) = config.retention {
        let _ = write!(
            toml,
            "[retention]\ninterval = \"{}ms\"\nmin_age = \"0s\"\n\
             [[retention.rules]]\nolder_than = \"{}ms\"\nlabel = \"soak\"\n",
            interval.as_millis(),
            older_than.as_millis()
        );
    }
    toml
}

/// Runs the soak. Errors are for a soak that could not run (Garage or
/// reeld would not start, reeld stopped answering); what it measured,
/// failures included, is in the report ([`SoakReport::failures`]).
pub async fn run(config: SoakConfig) -> anyhow::Result<SoakReport> {
    if let Some((older_than, _)) = config.retention {
        anyhow::ensure!(
            config.check_after + config.recording_length.1 + Duration::from_secs(5) < older_than,
            "recordings must be checked before retention purges them: \
             check_after + the longest recording must be well under the retention age"
        );
    }
    std::fs::create_dir_all(&config.dir)?;
    let dir = config.dir.clone();
    let (primary, secondary) = tokio::task::spawn_blocking(move || {
        let primary = Garage::start(&dir.join("garage-primary"))?;
        let secondary = Garage::start(&dir.join("garage-secondary"))?;
        anyhow::Ok((primary, secondary))
    })
    .await??;
    let config_path = config.dir.join("reel.toml");
    std::fs::write(&config_path, config_toml(&config, &primary, &secondary))?;
    let reeld = Reeld::start(
        &config.dir.join("data"),
        &["--config", config_path.to_str().context("utf-8 path")?],
    )?;
    let pid = reeld.pid().context("reeld runs")?;
    let reeld = Arc::new(reeld);
    let primary = Arc::new(Mutex::new(primary));
    let started = Instant::now();
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        checker_stop: AtomicBool::new(false),
        sent: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        first_errors: Mutex::new(Vec::new()),
        latencies: Mutex::new(Vec::new()),
        to_check: Mutex::new(VecDeque::new()),
        checked: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        extra: AtomicU64::new(0),
        unchecked: AtomicU64::new(0),
        export_failures: AtomicU64::new(0),
        problems: Mutex::new(Vec::new()),
        primary: Mutex::new((true, started)),
        outages: AtomicU64::new(0),
    });
    if config.verbose {
        eprintln!(
            "soak: {} recorders x {} events/s for {:?}, primary down {:?} every {:?}; \
             data and logs in {} (seed {})",
            config.recorders,
            config.events_per_second,
            config.duration,
            config.outage_length,
            config.outage_period,
            config.dir.display(),
            config.seed
        );
    }

    let mut rng = Rng::new(config.seed);
    let mut recorders = Vec::new();
    for slot in 0..config.recorders {
        let (config, shared, endpoint, seed) = (
            config.clone(),
            shared.clone(),
            reeld.grpc.clone(),
            rng.next_u64(),
        );
        recorders.push(tokio::spawn(async move {
            // Spread the starts over the first seconds.
            let delay = Duration::from_millis(seed % 3000);
            tokio::time::sleep(delay).await;
            recorder(slot, &config, &shared, &endpoint, seed).await
        }));
    }
    let outages = tokio::spawn(outage_cycle(
        config.clone(),
        shared.clone(),
        primary.clone(),
    ));
    let checker = tokio::spawn(check_loop(config.clone(), shared.clone(), reeld.clone()));

    let mut samples = Vec::new();
    let mut next = started + config.sample_interval;
    let mut last_acked = 0u64;
    let mut last_t = 0.0f64;
    while started.elapsed() < config.duration {
        tokio::time::sleep_until(next.into()).await;
        next += config.sample_interval;
        let sample = sample(&config, &shared, &reeld, pid, started, last_acked, last_t).await?;
        last_acked = sample.events_acked;
        last_t = sample.t;
        if config.verbose {
            if samples.is_empty() {
                eprintln!("{}", table_header());
            }
            eprintln!("{}", table_row(&sample));
        }
        samples.push(sample);
    }
    shared.stop.store(true, Ordering::Relaxed);
    let load_end = Instant::now();
    outages.await??;
    for r in recorders {
        r.await?;
    }
    let load_elapsed = started.elapsed();
    // The upload backlog after the load: it must drain (the checker runs
    // meanwhile, as it did during the load).
    let mut final_drain = None;
    while load_end.elapsed() < Duration::from_secs(120) {
        let s: StorageStatus = get_json(&reeld, "/api/v1/storage").await?;
        if s.backlog_segments == 0 {
            final_drain = Some(load_end.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shared.checker_stop.store(true, Ordering::Relaxed);
    let mut rest = checker.await??;
    // Whatever is left is checked now, not `check_after` later; exports
    // that fail are tried again for a while (the primary's last return may
    // be recent), then count as not checked.
    rest.extend(shared.to_check.lock().unwrap().drain(..));
    for _ in 0..15 {
        rest = check_all(&config, &shared, &reeld, rest).await;
        if rest.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for c in rest {
        shared.unchecked.fetch_add(1, Ordering::Relaxed);
        shared.problem(format!(
            "recording {}: no export succeeded ({} attempts); the last: {}",
            c.id, c.failed_attempts, c.last_error
        ));
    }
    if config.verbose {
        eprintln!(
            "soak: load ran {load_elapsed:.1?}; backlog drained {final_drain:.1?} after it; \
             checks done {:.1?} after it",
            load_end.elapsed()
        );
    }

    let (growth, growth_errors) = judge(&config, &samples);
    let first_errors = shared.first_errors.lock().unwrap().clone();
    let problems = shared.problems.lock().unwrap().clone();
    Ok(SoakReport {
        events_sent: shared.sent.load(Ordering::Relaxed),
        events_acked: shared.acked.load(Ordering::Relaxed),
        refused_events: shared.refused.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        first_errors,
        recordings_closed: shared.closed.load(Ordering::Relaxed),
        recordings_checked: shared.checked.load(Ordering::Relaxed),
        lost_events: shared.lost.load(Ordering::Relaxed),
        extra_events: shared.extra.load(Ordering::Relaxed),
        unchecked: shared.unchecked.load(Ordering::Relaxed),
        export_retries: shared.export_failures.load(Ordering::Relaxed),
        problems,
        outages: shared.outages.load(Ordering::Relaxed) as u32,
        growth,
        growth_errors,
        final_drain,
        elapsed: started.elapsed(),
        samples,
        config,
    })
}

/// One recorder: recordings one after the other until told to stop.
async fn recorder(slot: usize, config: &SoakConfig, shared: &Shared, endpoint: &str, seed: u64) {
    let mut rng = Rng::new(seed);
    let gap_us = gap_us(config);
    let (min_len, max_len) = config.recording_length;
    while !shared.stop.load(Ordering::Relaxed) {
        let seed = rng.next_u64();
        let length = Duration::from_millis(
            rng.range(min_len.as_millis() as u64..max_len.as_millis() as u64 + 1),
        );
        let metadata = RecordingMetadata {
            user: format!("operator{}", slot % 7),
            target: format!("db-{slot:03}"),
            protocol: "ssh".into(),
            labels: [("soak".to_string(), format!("{slot}"))]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let mut rec = match Recorder::start(endpoint, metadata).await {
            Ok(rec) => rec,
            Err(e) => {
                shared.error(0, format!("recorder {slot}: start: {e}"));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let began = Instant::now();
        let mut ticker = tokio::time::interval(config.batch_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Batches in flight: (events up to, sent at).
        let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
        // Acknowledged events already counted in `shared.acked`.
        let mut counted = 0u64;
        let mut failed = None;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let elapsed = began.elapsed();
                    if elapsed >= length || shared.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    // Open loop: what the clock says is due, whatever is
                    // acknowledged.
                    let due = (elapsed.as_secs_f64() * config.events_per_second) as u64 + 1;
                    if due > rec.sent {
                        let batch: Vec<Event> =
                            (rec.sent..due).map(|i| soak_event(seed, i, gap_us)).collect();
                        let n = batch.len() as u64;
                        if let Err(e) = rec.send(batch).await {
                            failed = Some(format!("send: {e}"));
                            break;
                        }
                        shared.sent.fetch_add(n, Ordering::Relaxed);
                        in_flight.push_back((due, Instant::now()));
                    }
                }
                ack = rec.next_ack() => match ack {
                    Ok(durable) => {
                        acked(shared, &mut in_flight, durable);
                        shared.acked.fetch_add(durable.saturating_sub(counted), Ordering::Relaxed);
                        counted = counted.max(durable);
                    }
                    Err(e) => {
                        failed = Some(format!("ack: {e}"));
                        break;
                    }
                }
            }
        }
        let id = rec.id.clone();
        let sent = rec.sent;
        let outcome = match failed {
            Some(e) => Err(e),
            None => {
                // Close waits for the acknowledgements still in flight.
                match rec.close().await {
                    Ok((count, _)) if count == sent => {
                        acked(shared, &mut in_flight, sent);
                        shared.acked.fetch_add(sent - counted, Ordering::Relaxed);
                        counted = sent;
                        Ok(())
                    }
                    Ok((count, _)) => Err(format!("closed with {count} events, {sent} sent")),
                    Err(e) => Err(format!("close: {e}")),
                }
            }
        };
        shared.closed.fetch_add(1, Ordering::Relaxed);
        let clean = match outcome {
            Ok(()) => true,
            Err(e) => {
                shared.error(
                    sent - counted,
                    format!("recorder {slot}, recording {id}: {e}"),
                );
                false
            }
        };
        shared.to_check.lock().unwrap().push_back(Closed {
            id,
            seed,
            acked: counted,
            clean,
            closed_at: Instant::now(),
            failed_attempts: 0,
            last_error: String::new(),
            retry_at: Instant::now(),
        });
    }
}

fn gap_us(config: &SoakConfig) -> u64 {
    (1e6 / config.events_per_second) as u64
}

/// The batches up to `durable` are acknowledged: their latencies.
fn acked(shared: &Shared, in_flight: &mut VecDeque<(u64, Instant)>, durable: u64) {
    let mut latencies = shared.latencies.lock().unwrap();
    while let Some(&(upto, at)) = in_flight.front() {
        if upto > durable {
            break;
        }
        latencies.push(at.elapsed().as_micros().min(u32::MAX as u128) as u32);
        in_flight.pop_front();
    }
}

/// Sleeps until `until`; false if the soak is told to stop first.
async fn sleep_unless_stopped(shared: &Shared, until: Instant) -> bool {
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        tokio::time::sleep((until - now).min(Duration::from_millis(100))).await;
    }
}

/// Kills the primary every `outage_period` (from half of it) and restarts
/// it `outage_length` later; at the end it is left running.
async fn outage_cycle(
    config: SoakConfig,
    shared: Arc<Shared>,
    primary: Arc<Mutex<Garage>>,
) -> anyhow::Result<()> {
    if config.outage_period.is_zero() {
        return Ok(());
    }
    let mut next_kill = Instant::now() + config.outage_period / 2;
    loop {
        if !sleep_unless_stopped(&shared, next_kill).await {
            return Ok(());
        }
        let garage = primary.clone();
        tokio::task::spawn_blocking(move || garage.lock().unwrap().kill9()).await?;
        *shared.primary.lock().unwrap() = (false, Instant::now());
        let outage = shared.outages.fetch_add(1, Ordering::Relaxed) + 1;
        if config.verbose {
            eprintln!("soak: primary killed (outage {outage})");
        }
        // Back after the outage, or at once when the soak stops.
        sleep_unless_stopped(&shared, Instant::now() + config.outage_length).await;
        let garage = primary.clone();
        tokio::task::spawn_blocking(move || garage.lock().unwrap().restart())
            .await?
            .context("restarting the primary")?;
        *shared.primary.lock().unwrap() = (true, Instant::now());
        if config.verbose {
            eprintln!("soak: primary back");
        }
        next_kill += config.outage_period;
    }
}

/// Checks the closed recordings as they come due, until told to stop;
/// returns those whose export failed and waits for a retry.
async fn check_loop(
    config: SoakConfig,
    shared: Arc<Shared>,
    reeld: Arc<Reeld>,
) -> anyhow::Result<Vec<Closed>> {
    let mut retry: Vec<Closed> = Vec::new();
    loop {
        let stopping = shared.checker_stop.load(Ordering::Relaxed);
        let mut due: Vec<Closed> = {
            let mut queue = shared.to_check.lock().unwrap();
            let mut due = Vec::new();
            while queue
                .front()
                .is_some_and(|c| c.closed_at.elapsed() >= config.check_after)
            {
                due.extend(queue.pop_front());
            }
            due
        };
        // A failed export is tried again once the primary is up (while it
        // is down, reeld rightly answers 503 for bytes only it holds).
        let now = Instant::now();
        let primary_up = shared.primary.lock().unwrap().0;
        let (again, later): (Vec<Closed>, Vec<Closed>) = retry
            .into_iter()
            .partition(|c| primary_up && c.retry_at <= now);
        due.extend(again);
        retry = later;
        retry.extend(check_all(&config, &shared, &reeld, due).await);
        if stopping {
            return Ok(retry);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Checks `recordings`; returns those whose export failed.
async fn check_all(
    config: &SoakConfig,
    shared: &Shared,
    reeld: &Reeld,
    recordings: Vec<Closed>,
) -> Vec<Closed> {
    futures::stream::iter(recordings)
        .map(|c| check_one(config, shared, reeld, c))
        .buffer_unordered(4)
        .filter_map(|failed| async move { failed })
        .collect()
        .await
}

/// Exports one recording and compares it with what was sent; gives it back
/// if the export failed.
async fn check_one(
    config: &SoakConfig,
    shared: &Shared,
    reeld: &Reeld,
    mut c: Closed,
) -> Option<Closed> {
    let export = tokio::time::timeout(Duration::from_secs(60), reeld.export_events(&c.id)).await;
    let events = match export {
        Ok(Ok(events)) => events,
        failed => {
            c.last_error = match failed {
                Ok(Err(e)) => format!("{e:#}"),
                _ => "no answer in 60 s".into(),
            };
            c.failed_attempts += 1;
            c.retry_at = Instant::now() + Duration::from_secs(2);
            shared.export_failures.fetch_add(1, Ordering::Relaxed);
            return Some(c);
        }
    };
    shared.checked.fetch_add(1, Ordering::Relaxed);
    let gap_us = gap_us(config);
    let lost = (0..c.acked)
        .filter(|&i| events.get(i as usize) != Some(&soak_event(c.seed, i, gap_us)))
        .count() as u64;
    if lost > 0 {
        shared.lost.fetch_add(lost, Ordering::Relaxed);
        shared.problem(format!(
            "recording {}: {lost} of its {} acknowledged events missing or different ({} exported)",
            c.id,
            c.acked,
            events.len()
        ));
    }
    let extra = (events.len() as u64).saturating_sub(c.acked);
    if c.clean && extra > 0 {
        shared.extra.fetch_add(extra, Ordering::Relaxed);
        shared.problem(format!(
            "recording {}: {extra} events beyond the {} acknowledged",
            c.id, c.acked
        ));
    }
    None
}

async fn get_json<T: serde::de::DeserializeOwned>(reeld: &Reeld, path: &str) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(30), reeld.get_json(path))
        .await
        .with_context(|| format!("GET {path}: no answer in 30 s"))?
}

/// From `/proc/PID/status`: `VmRSS`, its anonymous and file-backed parts
/// (`RssAnon`, `RssFile`: the heap, or pages of the executable and mapped
/// files), in bytes, and `Threads`.
fn proc_status(pid: u32) -> anyhow::Result<[u64; 4]> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reeld is gone (/proc/PID/status)")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        Ok(line[name.len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .parse()?)
    };
    Ok([
        field("VmRSS:")? * 1024,
        field("RssAnon:")? * 1024,
        field("RssFile:")? * 1024,
        field("Threads:")?,
    ])
}

/// The apparent size of every file under `path`.
fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            // A file removed between the listing and the stat.
            Err(_) => 0,
        })
        .sum()
}

async fn sample(
    config: &SoakConfig,
    shared: &Shared,
    reeld: &Reeld,
    pid: u32,
    started: Instant,
    last_acked: u64,
    last_t: f64,
) -> anyhow::Result<Sample> {
    let phase = {
        let (up, since) = *shared.primary.lock().unwrap();
        if !up {
            Phase::Outage
        } else if shared.outages.load(Ordering::Relaxed) > 0 && since.elapsed() < config.settle {
            Phase::Recovering
        } else {
            Phase::Steady
        }
    };
    let t = started.elapsed().as_secs_f64();
    let [rss_bytes, rss_anon_bytes, rss_file_bytes, threads] = proc_status(pid)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let catalog_dir_bytes = dir_bytes(&reeld.data_dir.join("catalog"));
    let status: ServerStatus = get_json(reeld, "/api/v1/status").await?;
    let storage: StorageStatus = get_json(reeld, "/api/v1/storage").await?;
    let compact: CompactStatus = get_json(reeld, "/api/v1/compact").await?;
    let events_acked = shared.acked.load(Ordering::Relaxed);
    let mut latencies = std::mem::take(&mut *shared.latencies.lock().unwrap());
    latencies.sort_unstable();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    Ok(Sample {
        t,
        phase,
        rss_bytes,
        rss_anon_bytes,
        rss_file_bytes,
        fds,
        threads,
        journal_bytes: status.journal_bytes,
        journal_files: status.journal_files as u64,
        spool_bytes: status.spool_bytes,
        spool_segments: status.spool_segments,
        upload_queue: status.upload_queue as u64,
        backlog_segments: storage.backlog_segments,
        backlog_bytes: storage.backlog_bytes,
        catalog_bytes: status.catalog_bytes,
        catalog_log_bytes: status.catalog_log_bytes,
        audit_log_bytes: status.audit_log_bytes,
        catalog_memory_bytes: status.catalog_memory_bytes,
        catalog_dir_bytes,
        recombine_ready: compact.plan.iter().filter(|i| i.waiting.is_none()).count() as u64,
        deletions_pending: compact.pending_deletions,
        open_recordings: status.open_recordings as u64,
        writing_to: storage.writing_to.unwrap_or_else(|| "none".into()),
        events_acked,
        recordings_closed: shared.closed.load(Ordering::Relaxed),
        events_per_second: (events_acked - last_acked) as f64 / (t - last_t).max(1e-3),
        ack_p99_ms: quantile(0.99),
        ack_max_ms: latencies.last().map_or(0.0, |&us| us as f64 / 1000.0),
    })
}

/// The mean of `values` without their lowest and highest (from five on): a
/// quantity that moves in steps (journal files filling, a connection being
/// replaced) averages out, a single outlying sample does not count.
fn trimmed_mean(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let kept = if v.len() >= 5 {
        &v[1..v.len() - 1]
    } else {
        &v[..]
    };
    kept.iter().sum::<f64>() / kept.len().max(1) as f64
}

/// The growth of each judged quantity (see [`Growth`]).
fn judge(config: &SoakConfig, samples: &[Sample]) -> (Vec<Growth>, Vec<String>) {
    let Some(last) = samples.last() else {
        return (Vec::new(), vec!["no samples".into()]);
    };
    let from = (last.t - config.window.as_secs_f64()).max(config.warmup.as_secs_f64());
    let steady: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t >= from && s.phase == Phase::Steady)
        .collect();
    let k = config.smooth.max(1);
    if steady.len() < 2 * k {
        return (
            Vec::new(),
            vec![format!(
                "only {} steady samples from {from:.0} s to the end ({} needed): growth cannot be judged",
                steady.len(),
                2 * k
            )],
        );
    }
    let span = last.t - from;
    let growth = JUDGED
        .iter()
        .map(|j| {
            let points: Vec<(f64, f64)> = steady.iter().map(|s| (s.t, (j.get)(s))).collect();
            let values: Vec<f64> = points.iter().map(|p| p.1).collect();
            let smoothed: Vec<f64> = (k - 1..values.len())
                .map(|i| trimmed_mean(&values[i + 1 - k..=i]))
                .collect();
            let start = smoothed[0];
            let peak = smoothed.iter().copied().fold(f64::MIN, f64::max);
            let end = *smoothed.last().expect("at least k values");
            let base = start.max((j.floor)(config)).max(1.0);
            let n = points.len() as f64;
            let (mt, mv) = (
                points.iter().map(|p| p.0).sum::<f64>() / n,
                points.iter().map(|p| p.1).sum::<f64>() / n,
            );
            let (cov, var) = points.iter().fold((0.0, 0.0), |(c, v), p| {
                (c + (p.0 - mt) * (p.1 - mv), v + (p.0 - mt) * (p.0 - mt))
            });
            let slope = if var > 0.0 { cov / var } else { 0.0 };
            Growth {
                series: j.name,
                start,
                peak,
                end,
                growth: (peak - start) / base,
                trend: slope * span / base,
                limit: config
                    .limits
                    .iter()
                    .find(|(name, _)| *name == j.name)
                    .map_or((!j.reported_only).then_some(config.growth_limit), |l| l.1),
                samples: points.len(),
            }
        })
        .collect();
    (growth, Vec::new())
}

fn mib(bytes: f64) -> f64 {
    bytes / (1 << 20) as f64
}

fn table_header() -> String {
    "| t (s) | phase | RSS MiB (anon) | fds | threads | journal MiB (files) | spool KiB (segments) | upload queue | backlog KiB | catalog MiB (log, audit log, memory) | to recombine | to delete | open | writing to | events/s | ack p99 ms | ack max ms |\n\
     |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
        .into()
}

fn table_row(s: &Sample) -> String {
    format!(
        "| {:.0} | {} | {:.1} ({:.1}) | {} | {} | {:.1} ({}) | {:.0} ({}) | {} | {:.0} | {:.1} ({:.1}, {:.1}, {:.1}) | {} | {} | {} | {} | {:.0} | {:.1} | {:.1} |",
        s.t,
        s.phase.name(),
        mib(s.rss_bytes as f64),
        mib(s.rss_anon_bytes as f64),
        s.fds,
        s.threads,
        mib(s.journal_bytes as f64),
        s.journal_files,
        s.spool_bytes as f64 / 1024.0,
        s.spool_segments,
        s.upload_queue,
        s.backlog_bytes as f64 / 1024.0,
        mib(s.catalog_bytes as f64),
        mib(s.catalog_log_bytes as f64),
        mib(s.audit_log_bytes as f64),
        mib(s.catalog_memory_bytes as f64),
        s.recombine_ready,
        s.deletions_pending,
        s.open_recordings,
        s.writing_to,
        s.events_per_second,
        s.ack_p99_ms,
        s.ack_max_ms,
    )
}

impl SoakReport {
    /// Why the soak failed; empty when it passed.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.refused_events > 0 || self.errors > 0 {
            failures.push(format!(
                "{} events refused (never acknowledged), {} errors: {:?}",
                self.refused_events, self.errors, self.first_errors
            ));
        }
        if self.lost_events > 0 || self.extra_events > 0 || self.unchecked > 0 {
            failures.push(format!(
                "{} acknowledged events lost, {} extra, {} recordings not checked: {:?}",
                self.lost_events, self.extra_events, self.unchecked, self.problems
            ));
        }
        if self.recordings_checked + self.unchecked != self.recordings_closed {
            failures.push(format!(
                "{} recordings closed, {} checked",
                self.recordings_closed, self.recordings_checked
            ));
        }
        if self.recordings_checked == 0 {
            failures.push("no recording was checked".into());
        }
        let expected_outages = if self.config.outage_period.is_zero() {
            0
        } else {
            ((self.config.duration.as_secs_f64() / self.config.outage_period.as_secs_f64()) + 0.5)
                as u32
        };
        if self.outages < expected_outages {
            failures.push(format!(
                "the primary failed {} times, {} planned",
                self.outages, expected_outages
            ));
        }
        failures.extend(self.growth_errors.iter().cloned());
        for g in &self.growth {
            if let Some(limit) = g.limit.filter(|l| g.growth > *l) {
                failures.push(format!(
                    "{} grew {:.1} % over the judged window (from {:.0} to a peak of {:.0}; limit {:.0} %)",
                    g.series,
                    g.growth * 100.0,
                    g.start,
                    g.peak,
                    limit * 100.0
                ));
            }
        }
        if self.final_drain.is_none() {
            failures.push("the upload backlog did not drain within 120 s of the end".into());
        }
        failures
    }

    /// The samples as a Markdown table: the first sample at or after each
    /// multiple of `every`, and the last one.
    pub fn table(&self, every: Duration) -> String {
        let mut out = table_header();
        let mut next = 0.0;
        for (i, s) in self.samples.iter().enumerate() {
            if s.t >= next || i + 1 == self.samples.len() {
                out.push('\n');
                out.push_str(&table_row(s));
                while next <= s.t {
                    next += every.as_secs_f64().max(1e-3);
                }
            }
        }
        out
    }

    /// Every sample, one CSV line each (the input of `scripts/plot-soak`).
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "t_s,phase,rss_bytes,rss_anon_bytes,rss_file_bytes,fds,threads,journal_bytes,journal_files,spool_bytes,spool_segments,\
             upload_queue,backlog_segments,backlog_bytes,catalog_bytes,recombine_ready,deletions_pending,\
             open_recordings,writing_to,\
             events_acked,recordings_closed,events_per_second,ack_p99_ms,ack_max_ms,\
             audit_log_bytes,catalog_memory_bytes,catalog_dir_bytes,catalog_log_bytes\n",
        );
        for s in &self.samples {
            let _ = writeln!(
                out,
                "{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.1},{:.2},{:.2},{},{},{},{}",
                s.t,
                s.phase.name(),
                s.rss_bytes,
                s.rss_anon_bytes,
                s.rss_file_bytes,
                s.fds,
                s.threads,
                s.journal_bytes,
                s.journal_files,
                s.spool_bytes,
                s.spool_segments,
                s.upload_queue,
                s.backlog_segments,
                s.backlog_bytes,
                s.catalog_bytes,
                s.recombine_ready,
                s.deletions_pending,
                s.open_recordings,
                s.writing_to,
                s.events_acked,
                s.recordings_closed,
                s.events_per_second,
                s.ack_p99_ms,
                s.ack_max_ms,
                s.audit_log_bytes,
                s.catalog_memory_bytes,
                s.catalog_dir_bytes,
                s.catalog_log_bytes
            );
        }
        out
    }

    /// The growth figures as a Markdown table.
    pub fn growth_table(&self) -> String {
        let mut out = String::from(
            "| quantity | start | peak | end | growth (peak/start) | trend (slope x window) | limit | |\n\
             |---|---:|---:|---:|---:|---:|---:|---|",
        );
        for g in &self.growth {
            let value = |v: f64| {
                if g.series.ends_with("bytes") || g.series == "rss" {
                    format!("{:.2} MiB", mib(v))
                } else {
                    format!("{v:.0}")
                }
            };
            let _ = write!(
                out,
                "\n| {} | {} | {} | {} | {:+.1} % | {:+.1} % | {} | {} |",
                g.series,
                value(g.start),
                value(g.peak),
                value(g.end),
                g.growth * 100.0,
                g.trend * 100.0,
                g.limit
                    .map_or("-".to_string(), |l| format!("{:.0} %", l * 100.0)),
                match g.limit {
                    None => "reported",
                    Some(l) if g.growth > l => "FAIL",
                    Some(_) => "ok",
                }
            );
        }
        out
    }

    /// Totals: load, refusals, checks, outages.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let from = (self.samples.last().map_or(0.0, |s| s.t) - c.window.as_secs_f64())
            .max(c.warmup.as_secs_f64());
        format!(
            "soak: {:.0} s, {} recorders at {} events/s each, recordings of {:?} to {:?}, \
             primary down {:?} every {:?} ({} outages)\n\
             events: {} sent, {} acknowledged, {} refused ({} errors)\n\
             recordings: {} closed, {} checked byte for byte, {} acknowledged events lost, {} extra, \
             {} not checked ({} exports failed while a store was down and were tried again)\n\
             growth judged from {from:.0} s on steady samples (primary up for {:?}), trimmed means of {}, limit {:.0} %\n\
             backlog drained {} after the load",
            self.elapsed.as_secs_f64(),
            c.recorders,
            c.events_per_second,
            c.recording_length.0,
            c.recording_length.1,
            c.outage_length,
            c.outage_period,
            self.outages,
            self.events_sent,
            self.events_acked,
            self.refused_events,
            self.errors,
            self.recordings_closed,
            self.recordings_checked,
            self.lost_events,
            self.extra_events,
            self.unchecked,
            self.export_retries,
            c.settle,
            c.smooth,
            c.growth_limit * 100.0,
            self.final_drain
                .map_or("never (120 s)".to_string(), |d| format!(
                    "{:.1} s",
                    d.as_secs_f64()
                )),
        )
    }
}
