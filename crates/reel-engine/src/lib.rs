//! Reel's behaviour: ingest, sealing, upload and reading.
//!
//! ```text
//! RecordingWriter::append ──▶ journal (group commit) ──▶ ack
//!                                  │ chunks (positions only)
//!                                  ▼
//!                    sealer ──▶ spool/<id>-<seq>.seg + catalog ──▶ uploader ──▶ primary
//! ```
//!
//! - [`Engine::start`] / [`Engine::resume`] give a [`RecordingWriter`], the
//!   one recorder of a recording. Its appends are acknowledged once the
//!   events are in the journal and fsynced.
//! - The sealer cuts each recording's durable events into segments (by size,
//!   by age, and at close), writes them to the spool and records them in the
//!   catalog in one synced batch; only then may the journal drop them.
//! - The uploader stores spooled segments on the primary and, once the
//!   catalog says so, deletes the spool file.
//! - [`Engine::events`] reads a recording from wherever its bytes are.

/// A place where a test may kill the process outright: with
/// `FAILPOINTS=NAME=N*off->panic(crash)` in the environment of a binary built
/// with the `crashpoints` feature (see [`crashpoints_from_env`]), the N+1th
/// pass through `NAME` is a SIGKILL. `$inner` is the engine's [`Inner`]: the
/// points are those of its own registry (`EngineConfig::failpoints`), so
/// engines in one test process do not share them.
macro_rules! crashpoint {
    ($inner:expr, $name:literal) => {
        fail_parallel::fail_point!($inner.config.failpoints.clone(), $name)
    };
}

mod archiver;
mod auditlog;
mod cache;
mod chunks;
mod compactor;
mod config;
mod copies;
mod deleter;
mod error;
mod housekeeping;
mod ingest;
mod key_objects;
mod key_rotation;
mod keyframes;
mod manifest;
mod metrics;
mod mirror;
mod prober;
mod purger;
mod reader;
mod rebuilder;
mod recording;
mod recovery;
mod retention;
mod seal_pool;
mod sealer;
mod spool;
mod uploader;
mod verifier;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use reel_catalog::{Catalog, RecordingId};
use reel_keys::{FileKeys, KeyProvider, PublicKey};
use reel_log::{Journal, RecoveryReport};
use reel_proto::v1::{AuditEntry, LegalHold, Location, RecordingRow, RecordingState, SegmentRow};
use reel_storage::{HealthSnapshot, Role, RouteEvent, Router, Store};
use tokio::sync::{Notify, mpsc, watch};

pub use archiver::Import;
pub use cache::{CacheConfig, CacheStatus};
pub use compactor::{CompactionState, CompactorConfig, CompactorStatus, PlanItem};
pub use config::{EVENT_OVERHEAD_BYTES, EngineConfig, ReleaseAfter, UploadMode};
pub use copies::location_name;
pub use error::{EngineError, ErrorKind, Result};
pub use ingest::{AckFuture, RecordingWriter};
pub use key_rotation::RotationStatus;
pub use keyframes::MAX_KEYFRAME_BYTES;
pub use mirror::MirrorBacklog;
pub use purger::{Actor, PurgeOutcome};
pub use reader::{EventStream, Gap, ReadItem, Window, clock};
pub use rebuilder::RebuildReport;
pub use recording::Closed;
pub use reel_catalog::{
    AuditCheck, Cursor, Filter, InvalidId, Query, Scope, Sort, SortKey, StateFilter,
};
pub use reel_keys::Cipher;
pub use retention::{RetentionConfig, RetentionRule};
pub use verifier::{Problem, ProblemKind, VerifyOptions, VerifyProgress, VerifyReport};

use recording::OpenRecording;
use spool::Spool;

/// Arms the crashpoints named in the `FAILPOINTS` environment variable in
/// `registry` (give it to the engine as [`EngineConfig::failpoints`]), for
/// the kill -9 torture test: a crashpoint whose action is `panic(crash)`
/// kills the process with SIGKILL on the spot (no unwinding, no shutdown
/// code), as a power cut would. Does nothing without the `crashpoints`
/// feature (release builds) or without the variable.
pub fn crashpoints_from_env(registry: &Arc<fail_parallel::FailPointRegistry>) {
    #[cfg(not(feature = "crashpoints"))]
    let _ = registry;
    #[cfg(feature = "crashpoints")]
    if std::env::var_os("FAILPOINTS").is_some() {
        // The scenario lives as long as the process.
        std::mem::forget(fail_parallel::FailScenario::setup(registry.clone()));
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            if message == Some("crash") {
                eprintln!(
                    "reeld: crashpoint reached at {:?}: SIGKILL",
                    info.location()
                );
                // SAFETY: signalling our own process.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
            previous(info);
        }));
    }
}

/// A running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

/// Catalog calls that run at once (each on a blocking thread).
const CATALOG_CALLS: usize = 16;
/// Seals that encode and spool at once (each on a thread of `seal_pool`):
/// 10,000 recordings closing at once took 11 s with 16 (on tokio's
/// blocking threads), 14 s with 8, 17 s with 4.
const SEAL_THREADS: usize = 8;

pub(crate) struct Inner {
    pub config: EngineConfig,
    pub journal: Journal,
    pub catalog: Arc<Catalog>,
    /// Bounds the catalog calls running at once (see [`Inner::catalog`]).
    pub catalog_calls: tokio::sync::Semaphore,
    /// The threads seals encode and spool on: the sealer's own seals and
    /// those of recordings closing, which do not go through the sealer (a
    /// thousand closing together took a blocking thread each).
    pub seal_pool: seal_pool::SealPool,
    pub spool: Spool,
    /// Stored segments kept locally for reads (`[cache]`).
    pub cache: cache::ReadCache,
    /// When the next mirror catch-up copy may start (`mirror::pace`).
    pub catch_up_pace: Mutex<Option<tokio::time::Instant>>,
    /// Mirror mode: this start's scan for copies a store lacks has queued
    /// them all (`mirror::catch_up`); until then the backlog is partial.
    pub mirror_scanned: AtomicBool,
    pub primary: Store,
    pub secondary: Store,
    /// Health of the stores and the choice of where uploads go.
    pub router: Arc<Router>,
    /// Signalled when a store's state may have changed (probes).
    pub route_changed: Notify,
    pub metrics: metrics::Metrics,
    pub open: RwLock<HashMap<RecordingId, Arc<OpenRecording>>>,
    /// What each open recording's journal completions use (see
    /// [`recording::AckContext`]).
    pub(crate) acks: Arc<recording::AckContext>,
    pub upload_tx: mpsc::UnboundedSender<(RecordingId, u64)>,
    /// Why ingest is refused for lack of local disk space, if it is.
    pub low_disk: Mutex<Option<String>>,
    pub low_disk_flag: AtomicBool,
    pub shutdown: watch::Sender<bool>,
    pub recovery: RecoveryReport,
    pub compactor: compactor::Compactor,
    /// Signalled when deletions were queued.
    pub deleter_wake: Notify,
    /// The signing key and the master keys.
    pub keys: Arc<dyn KeyProvider>,
    /// The stores this process put each encrypted recording's key object
    /// on (`key_objects`).
    pub key_objects: Mutex<std::collections::HashSet<(RecordingId, reel_storage::Role)>>,
    /// Recordings purged since the catalog last forgot their rows' earlier
    /// versions (`purger::shred_pass`).
    pub shred_pending: Mutex<Vec<RecordingId>>,
    /// Master key rotation's progress, and its worker's wake-up.
    pub rotation: Mutex<key_rotation::Rotation>,
    pub rotation_wake: Notify,
}

impl Inner {
    /// The locations a read can use right now: the spool, and the stores
    /// that are up (a store that is down may still answer, but nothing
    /// counts on it).
    pub(crate) fn reachable_now(&self) -> Vec<i32> {
        let mut out = vec![Location::Local as i32];
        for role in [Role::Primary, Role::Secondary] {
            if self.store(role).health().state().is_usable() {
                out.push(copies::location_of(role) as i32);
            }
        }
        out
    }

    /// The copy of `seg` a read would use right now ([`copies::candidates`]
    /// order, the read cache first), if one is reachable (`reachable`:
    /// [`Inner::reachable_now`]).
    pub(crate) fn source_now(
        &self,
        id: RecordingId,
        seg: &SegmentRow,
        reachable: &[i32],
    ) -> Option<i32> {
        copies::candidates(self, id, seg)
            .into_iter()
            .find(|l| reachable.contains(l))
    }

    /// [`Inner::source_now`] as the catalog's `readable` filter asks it.
    fn reachable(self: &Arc<Self>) -> reel_catalog::Reachable {
        let inner = self.clone();
        let now = self.reachable_now();
        reel_catalog::Reachable::new(move |id, seg| inner.source_now(id, seg, &now).is_some())
    }

    /// How many recordings an outage hides now (see
    /// [`LocalStatus::unreadable_recordings`]): none while both stores are
    /// up, else a scan of the catalog.
    fn count_unreadable(self: &Arc<Self>) -> Result<u64> {
        if [Role::Primary, Role::Secondary]
            .iter()
            .all(|&r| self.store(r).health().state().is_usable())
        {
            return Ok(0);
        }
        let unreadable = Filter {
            readable: Some(false),
            reachable: self.reachable(),
            ..Default::default()
        };
        Ok(self.catalog.find_all(&unreadable)?.len() as u64)
    }

    /// A segment's spool file once its upload is committed: into the read
    /// cache when the segment is kept (a store holds it), deleted when it
    /// was purged meanwhile.
    pub(crate) fn let_go_of_spooled(&self, id: RecordingId, seq: u64, kept: bool) -> Result<()> {
        if kept {
            self.spool.release(id, seq, &self.cache, self.now_us())
        } else {
            self.spool.remove(id, seq)
        }
    }

    /// Whether segments go to both stores (`[upload] mode = "mirror"`).
    pub(crate) fn mirrored(&self) -> bool {
        matches!(self.config.upload_mode, UploadMode::Mirror { .. })
    }

    /// Resolves once shutdown has begun, including when it began before the
    /// call: a task first polled after `Engine::shutdown` sent the signal
    /// still stops (a `watch::Receiver::changed` subscribed late would wait
    /// for a change that never comes).
    pub(crate) async fn stopped(&self) {
        let mut shutdown = self.shutdown.subscribe();
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    }

    /// Microseconds since the Unix epoch, by the configured clock.
    pub(crate) fn now_us(&self) -> i64 {
        self.config.clock.now_us()
    }

    /// The monotonic time, by the configured clock.
    pub(crate) fn instant(&self) -> std::time::Instant {
        self.config.clock.instant()
    }

    pub(crate) fn open_recording(&self, id: RecordingId) -> Option<Arc<OpenRecording>> {
        self.open.read().expect("open map lock").get(&id).cloned()
    }

    pub(crate) fn open_recordings(&self) -> Vec<Arc<OpenRecording>> {
        self.open
            .read()
            .expect("open map lock")
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn store(&self, role: Role) -> &Store {
        match role {
            Role::Primary => &self.primary,
            Role::Secondary => &self.secondary,
        }
    }

    /// Runs a blocking catalog call off the async threads, at most
    /// [`CATALOG_CALLS`] at once: the others wait here, not on a thread of
    /// their own. Commits take the catalog's write lock one at a time, so a
    /// burst (a thousand recordings closed together) otherwise grew the
    /// blocking pool to its 512 threads, each waiting on that lock.
    pub(crate) async fn catalog<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Catalog) -> reel_catalog::Result<T> + Send + 'static,
    ) -> Result<T> {
        // Never closed; `f` cannot ask for another permit (it is not async).
        let _permit = self
            .catalog_calls
            .acquire()
            .await
            .map_err(|e| EngineError::Internal(format!("catalog calls: {e}")))?;
        let catalog = self.catalog.clone();
        tokio::task::spawn_blocking(move || f(&catalog))
            .await
            .map_err(|e| EngineError::Internal(format!("catalog task failed: {e}")))?
            .map_err(EngineError::from)
    }
}

/// A recording as the catalog and the live state know it.
#[derive(Debug, Clone)]
pub struct RecordingInfo {
    pub id: RecordingId,
    pub row: RecordingRow,
    pub segments: Vec<SegmentRow>,
    /// Durable events not yet sealed, still only in the local journal.
    pub unsealed_events: u64,
    pub unsealed_bytes: u64,
    /// Durable events in all (for an open recording, including unsealed).
    pub durable_events: u64,
    /// The time of the last durable event (from the recording's start):
    /// where a read of the whole recording ends now.
    pub durable_time_us: u64,
    /// A recorder is attached right now.
    pub attached: bool,
    /// Why it waits for recombination (`split`, `secondary`), if it does.
    pub recombine: Option<String>,
    /// The legal hold on it, if any (filled by [`Engine::recording`]).
    pub hold: Option<LegalHold>,
    /// Whether it can be read in full right now, and from where.
    pub readability: Readability,
}

/// Whether a recording can be read in full right now, and from where: what
/// an outage hides, as the stores' health has it at this moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readability {
    /// Every segment has a copy in the spool or on a store that is up (its
    /// events not yet sealed are in the local journal, always readable).
    pub readable: bool,
    /// Where a read takes its bytes from now (`local`, `primary`,
    /// `secondary`), in the order first needed.
    pub from: Vec<&'static str>,
    /// What cannot be read now: how many segments, which events, and the
    /// stores that hold them.
    pub hidden: Option<String>,
}

impl RecordingInfo {
    pub fn state(&self) -> RecordingState {
        RecordingState::try_from(self.row.state).unwrap_or(RecordingState::Unspecified)
    }

    /// The stores whose copy of the recording is its combined object
    /// (`primary`; in mirror mode `secondary` too), by the rule every
    /// reader of copies follows (`copies::stored_copy`).
    pub fn combined_stores(&self) -> Vec<&'static str> {
        [Location::Primary, Location::Secondary]
            .into_iter()
            .filter(|&l| {
                self.segments.iter().any(|s| {
                    s.locations.contains(&(l as i32)) && copies::in_combined(self.id, s, l as i32)
                })
            })
            .map(|l| copies::location_name(l as i32))
            .collect()
    }

    /// Where the recording's bytes are.
    pub fn placement(&self) -> Placement {
        let has = |loc: Location| {
            self.segments
                .iter()
                .any(|s| s.locations.contains(&(loc as i32)))
        };
        Placement {
            local: has(Location::Local) || self.unsealed_events > 0,
            primary: has(Location::Primary),
            secondary: has(Location::Secondary),
        }
    }
}

/// Judges [`Readability`] from the stores' health now: each segment is read
/// from its best reachable copy ([`Inner::source_now`]).
fn readability(inner: &Inner, info: &RecordingInfo) -> Readability {
    let reachable = inner.reachable_now();
    let mut from: Vec<&'static str> = Vec::new();
    let mut hidden: Vec<&SegmentRow> = Vec::new();
    for seg in &info.segments {
        match inner.source_now(info.id, seg, &reachable) {
            Some(l) => {
                let name = copies::location_name(l);
                if !from.contains(&name) {
                    from.push(name);
                }
            }
            None => hidden.push(seg),
        }
    }
    if info.unsealed_events > 0 && !from.contains(&"local") {
        from.push("local");
    }
    let hidden_text = match (hidden.first(), hidden.last()) {
        (Some(first), Some(last)) => {
            let mut stores: Vec<&str> = hidden
                .iter()
                .flat_map(|s| s.locations.iter().map(|&l| copies::location_name(l)))
                .collect();
            stores.sort_unstable();
            stores.dedup();
            Some(format!(
                "{} of {} segments (events from {} to {}) are only on stores that are down: {}",
                hidden.len(),
                info.segments.len(),
                first.first_event_index,
                last.first_event_index.saturating_add(last.event_count),
                if stores.is_empty() {
                    "none".to_string()
                } else {
                    stores.join(", ")
                }
            ))
        }
        _ => None,
    };
    Readability {
        readable: hidden.is_empty(),
        from,
        hidden: hidden_text,
    }
}

/// Where a recording's bytes are: which of the local log (journal and
/// spool), the primary and the secondary hold some of them. Displayed as
/// users read it in listings: `local`, `primary`, `local+primary`, `split`
/// (both stores), `local+split`, `none`...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement {
    pub local: bool,
    pub primary: bool,
    pub secondary: bool,
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stores = match (self.primary, self.secondary) {
            (true, true) => Some("split"),
            (true, false) => Some("primary"),
            (false, true) => Some("secondary"),
            (false, false) => None,
        };
        match (self.local, stores) {
            (true, Some(stores)) => write!(f, "local+{stores}"),
            (true, None) => f.write_str("local"),
            (false, Some(stores)) => f.write_str(stores),
            (false, None) => f.write_str("none"),
        }
    }
}

/// One store in [`StorageStatus`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoreStatus {
    pub description: String,
    pub health: HealthSnapshot,
}

/// See [`Engine::storage_status`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct StorageStatus {
    pub primary: StoreStatus,
    pub secondary: StoreStatus,
    /// Where uploads go now; `None` while both stores are down.
    pub writing_to: Option<Role>,
    /// Sealed segments waiting in the spool, and their bytes.
    pub backlog_segments: u64,
    pub backlog_bytes: u64,
    pub journal_bytes: u64,
    pub local_capacity_bytes: u64,
    /// Recent failovers and failbacks, oldest first.
    pub events: Vec<RouteEvent>,
}

/// How much is held locally and waiting.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LocalStatus {
    pub journal_bytes: u64,
    pub journal_files: usize,
    pub spool_bytes: u64,
    pub spool_segments: u64,
    pub upload_queue: usize,
    pub open_recordings: usize,
    pub low_disk: Option<String>,
    pub recovered_torn_tail_bytes: u64,
    pub recovered_corrupt_regions: usize,
    /// The catalog's table files, the audit log's not included.
    pub catalog_bytes: u64,
    /// The catalog's write-ahead log (bounded by
    /// [`reel_catalog::WAL_BUDGET_BYTES`] and a flush).
    pub catalog_log_bytes: u64,
    /// The audit log's table files: they only grow, by design.
    pub audit_log_bytes: u64,
    /// Mirror mode only: queued segments each store still lacks.
    pub mirror_backlog: Option<MirrorBacklog>,
    /// The read cache (`max_bytes` 0: off).
    pub cache: CacheStatus,
    /// Recordings that cannot be read in full now: some bytes are only on
    /// a store that is down (counted only while a store is down).
    pub unreadable_recordings: u64,
    /// Catalog writes held in memory (bounded by
    /// [`reel_catalog::MEMTABLE_BUDGET_BYTES`]).
    pub catalog_memory_bytes: u64,
}

impl Engine {
    /// Opens the data directory, recovers what a previous run left (the
    /// journal is replayed, open recordings come back detached and
    /// resumable, pending uploads are queued again) and starts the
    /// background sealer, uploader and housekeeping.
    pub async fn open(config: EngineConfig) -> Result<Engine> {
        // First, so that an unusable data directory is named as such rather
        // than as the local stores inside it.
        recovery::prepare_data_dir(&config.data_dir)?;
        let router = Arc::new(Router::new(config.health.clone(), config.clock.clone()));
        let primary = Store::build(Role::Primary, &config.primary, router.primary.clone())?;
        let secondary = Store::build(Role::Secondary, &config.secondary, router.secondary.clone())?;
        Self::open_with_stores(config, primary, secondary, router).await
    }

    /// Opens with stores built by the caller (fault-injecting wrappers in
    /// tests); their health must be `router`'s.
    pub async fn open_with_stores(
        config: EngineConfig,
        primary: Store,
        secondary: Store,
        router: Arc<Router>,
    ) -> Result<Engine> {
        recovery::prepare_data_dir(&config.data_dir)?;
        // Before anything is accepted: a key that cannot be loaded (or
        // made, on first start) stops the start with the file it names.
        let keys: Arc<dyn KeyProvider> = Arc::new(FileKeys::open(
            &config.keys_dir(),
            config.master_key.as_ref().map(|k| k.expose()),
        )?);
        let (seal_tx, seal_rx) = mpsc::unbounded_channel();
        let (upload_tx, upload_rx) = mpsc::unbounded_channel();
        let metrics = metrics::Metrics::new();
        let acks = Arc::new(recording::AckContext {
            seal_tx,
            seal_target: config.segment_target_bytes,
            acknowledged: metrics.acknowledged_counter(),
            clock: config.clock.clone(),
        });
        let cfg = config.clone();
        let recovery_keys = keys.clone();
        let recovery_acks = acks.clone();
        let recovered = tokio::task::spawn_blocking(move || {
            recovery::recover(&cfg, recovery_keys.as_ref(), &recovery_acks)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("recovery task failed: {e}")))??;
        let (shutdown, _) = watch::channel(false);
        let cache = cache::ReadCache::open(config.cache_dir(), config.cache.clone())?;
        let inner = Arc::new(Inner {
            config,
            journal: recovered.journal,
            catalog: Arc::new(recovered.catalog),
            catalog_calls: tokio::sync::Semaphore::new(CATALOG_CALLS),
            seal_pool: seal_pool::SealPool::start(SEAL_THREADS)?,
            spool: recovered.spool,
            cache,
            catch_up_pace: Mutex::new(None),
            mirror_scanned: AtomicBool::new(false),
            primary,
            secondary,
            router,
            route_changed: Notify::new(),
            metrics,
            open: RwLock::new(recovered.open),
            acks,
            upload_tx,
            low_disk: Mutex::new(None),
            low_disk_flag: AtomicBool::new(false),
            shutdown,
            recovery: recovered.report,
            compactor: Default::default(),
            deleter_wake: Notify::new(),
            keys,
            key_objects: Default::default(),
            shred_pending: Default::default(),
            rotation: Default::default(),
            rotation_wake: Notify::new(),
        });
        housekeeping::check_disk(&inner);
        for item in recovered.upload_queue {
            let _ = inner.upload_tx.send(item);
        }
        let tasks = vec![
            tokio::spawn(sealer::run(inner.clone(), seal_rx)),
            tokio::spawn(uploader::run(inner.clone(), upload_rx)),
            tokio::spawn(housekeeping::run(inner.clone())),
            tokio::spawn(prober::run(inner.clone())),
            tokio::spawn(compactor::run(inner.clone())),
            tokio::spawn(deleter::run(inner.clone())),
            tokio::spawn(retention::run(inner.clone())),
            tokio::spawn(auditlog::run(inner.clone())),
            tokio::spawn(key_rotation::run(inner.clone())),
        ];
        Ok(Engine {
            inner,
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }

    /// Starts a new recording; the returned writer is its recorder. The
    /// recording exists durably (in the catalog) when this returns.
    pub async fn start(
        &self,
        metadata: reel_proto::v1::RecordingMetadata,
    ) -> Result<RecordingWriter> {
        ingest::start(&self.inner, metadata, "").await
    }

    /// [`Engine::start`], the recording owned by `owner` (the identity that
    /// started it, kept in its row: the server lets only it resume).
    pub async fn start_owned(
        &self,
        metadata: reel_proto::v1::RecordingMetadata,
        owner: &str,
    ) -> Result<RecordingWriter> {
        ingest::start(&self.inner, metadata, owner).await
    }

    /// Re-attaches a recorder to an open recording, after a broken stream or
    /// a restart. The writer continues at [`RecordingWriter::durable`].
    pub async fn resume(&self, id: RecordingId) -> Result<RecordingWriter> {
        ingest::resume(&self.inner, id).await
    }

    /// One recording with its segments and live state.
    pub async fn recording(&self, id: RecordingId) -> Result<RecordingInfo> {
        let (row, segments, recombine, hold) = self
            .inner
            .catalog(move |c| {
                let row = c.live_recording(id)?;
                Ok((row, c.segments(id)?, c.recombine_reason(id)?, c.hold(id)?))
            })
            .await?;
        let row = row.ok_or(EngineError::NotFound(id))?;
        let mut info = self.info(id, row, segments);
        info.recombine = recombine;
        info.hold = hold;
        Ok(info)
    }

    fn info(&self, id: RecordingId, row: RecordingRow, segments: Vec<SegmentRow>) -> RecordingInfo {
        let mut info = RecordingInfo {
            id,
            durable_events: segments.iter().map(|s| s.event_count).sum(),
            durable_time_us: row.duration_us.max(row.last_time_us),
            row,
            segments,
            unsealed_events: 0,
            unsealed_bytes: 0,
            attached: false,
            recombine: None,
            hold: None,
            readability: Readability::default(),
        };
        if let Some(rec) = self.inner.open_recording(id) {
            let live = rec.live();
            let sealed_end = info
                .segments
                .last()
                .map_or(0, |s| s.first_event_index + s.event_count);
            // Chunks sealed after the catalog read are counted once, as segments.
            for c in live.chunks.iter().filter(|c| c.first_index >= sealed_end) {
                info.unsealed_events += c.count as u64;
                info.unsealed_bytes += c.data_bytes as u64;
            }
            info.durable_events += info.unsealed_events;
            info.durable_time_us = info.durable_time_us.max(live.durable_time_us);
            info.attached = live.attached;
        }
        info.readability = readability(&self.inner, &info);
        info
    }

    /// One page of the recordings `query` matches, in its order, with the
    /// cursor of the next page. Answered from the catalog (and the live
    /// state of open recordings) without reading any store; a `readable`
    /// filter is judged by the stores' health now.
    pub async fn find(&self, mut query: Query) -> Result<(Vec<RecordingInfo>, Option<Cursor>)> {
        query.filter.reachable = self.inner.reachable();
        let (rows, next) = self
            .inner
            .catalog(move |c| {
                let page = c.find(&query)?;
                let rows = page
                    .rows
                    .into_iter()
                    .map(|row| {
                        let id =
                            RecordingId::from_slice(&row.id).expect("catalog ids are 16 bytes");
                        let segs = c.segments(id)?;
                        Ok((id, row, segs))
                    })
                    .collect::<reel_catalog::Result<Vec<_>>>()?;
                Ok((rows, page.next))
            })
            .await?;
        let infos = rows
            .into_iter()
            .map(|(id, row, segs)| self.info(id, row, segs))
            .collect();
        Ok((infos, next))
    }

    /// Purges recordings everywhere (see the `purger` module for the steps
    /// and what a crash leaves). Resolves once each is marked and its
    /// objects are queued for deletion: from then on it is gone for
    /// listings and reads; the deleter removes its objects, then its rows.
    /// Recordings under legal hold, and unknown ids, are refused (listed in
    /// the outcome) and the others purged. `dry_run` only says what would be.
    pub async fn purge(
        &self,
        ids: Vec<RecordingId>,
        actor: Actor,
        dry_run: bool,
    ) -> Result<PurgeOutcome> {
        purger::purge(&self.inner, ids, actor, dry_run).await
    }

    /// Purges every closed recording `filter` matches (for `--older-than`).
    pub async fn purge_matching(
        &self,
        mut filter: Filter,
        actor: Actor,
        dry_run: bool,
    ) -> Result<PurgeOutcome> {
        filter.state = Some(StateFilter::Closed);
        let ids = self.find_ids(filter).await?;
        purger::purge(&self.inner, ids, actor, dry_run).await
    }

    /// Every recording `filter` matches, in creation order (all pages).
    pub async fn find_ids(&self, mut filter: Filter) -> Result<Vec<RecordingId>> {
        filter.reachable = self.inner.reachable();
        self.inner
            .catalog(move |c| {
                Ok(c.find_all(&filter)?
                    .iter()
                    .filter_map(|r| RecordingId::from_slice(&r.id).ok())
                    .collect())
            })
            .await
    }

    /// Applies the retention rules now (as the background task does on its
    /// schedule); returns the recordings purged (or, `dry_run`, expired).
    pub async fn apply_retention(&self, dry_run: bool) -> Result<Vec<RecordingId>> {
        retention::apply(&self.inner, dry_run).await
    }

    /// Puts a recording under legal hold: no purge, by hand or by rule,
    /// touches it until [`Engine::release`].
    pub async fn hold(&self, id: RecordingId, actor: Actor) -> Result<LegalHold> {
        purger::hold(&self.inner, id, actor).await
    }

    /// Lifts a legal hold; fails if there is none.
    pub async fn release(&self, id: RecordingId, actor: Actor) -> Result<()> {
        purger::release(&self.inner, id, actor).await
    }

    /// Compares the catalog with both stores (and with `content`, every
    /// copy's bytes), and with `repair` fixes what can be fixed safely; see
    /// the `verifier` module. `progress` is updated as it goes.
    pub async fn verify(
        &self,
        options: VerifyOptions,
        progress: &VerifyProgress,
    ) -> Result<VerifyReport> {
        verifier::verify(&self.inner, options, progress).await
    }

    /// Fills an empty catalog from the stores and the spool alone (see the
    /// `rebuilder` module for what can and cannot come back). Refused when
    /// the catalog already holds recordings. Only segments signed by this
    /// server's key are adopted, and unsigned ones too with
    /// `accept_unsigned`.
    pub async fn rebuild_catalog(
        &self,
        progress: &VerifyProgress,
        accept_unsigned: bool,
    ) -> Result<RebuildReport> {
        rebuilder::rebuild(&self.inner, progress, accept_unsigned).await
    }

    /// A closed recording's catalog rows, for an archive (open recordings
    /// are refused).
    pub async fn archive_entry(&self, id: RecordingId) -> Result<reel_proto::v1::ArchiveRecording> {
        archiver::entry(&self.inner, id).await
    }

    /// Keeps `bytes` as recording `id`'s keyframe at `time_us` (what a
    /// player computed the recording to show then), sealed with the
    /// recording's data key. Durable when the future resolves; a purge
    /// deletes it with the recording. At most [`MAX_KEYFRAME_BYTES`].
    pub async fn put_keyframe(&self, id: RecordingId, time_us: u64, bytes: Vec<u8>) -> Result<()> {
        keyframes::put(&self.inner, id, time_us, bytes).await
    }

    /// Recording `id`'s latest keyframe at or before `time_us`, with its
    /// time. `None` when there is none or it fails to open (it is a cache:
    /// compute it again and put it back).
    pub async fn keyframe_at_or_before(
        &self,
        id: RecordingId,
        time_us: u64,
    ) -> Result<Option<(u64, Vec<u8>)>> {
        keyframes::at_or_before(&self.inner, id, time_us).await
    }

    /// One segment object of a recording, whole, from the first copy that
    /// checks against its SHA-256.
    pub async fn segment_object(&self, id: RecordingId, sequence: u64) -> Result<bytes::Bytes> {
        archiver::segment(&self.inner, id, sequence).await
    }

    /// Starts importing an archived recording (refused if its id is already
    /// in Reel); feed it the segments in order, then `finish` commits it.
    pub async fn import(
        &self,
        rec: reel_proto::v1::ArchiveRecording,
        by: String,
    ) -> Result<Import> {
        archiver::begin(&self.inner, rec, by).await
    }

    /// The audit log (purges, holds, releases, reads, refusals, tokens),
    /// oldest first.
    pub async fn audit(&self, since_us: i64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.inner.catalog(move |c| c.audit(since_us, limit)).await
    }

    /// The latest `limit` audit entries, newest first.
    pub async fn audit_latest(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        self.inner.catalog(move |c| c.audit_latest(limit)).await
    }

    /// The latest `limit` audit entries that name recording `id`, newest
    /// first (read through the log's index by recording: the cost does not
    /// grow with the log).
    pub async fn audit_of(&self, id: RecordingId, limit: usize) -> Result<Vec<AuditEntry>> {
        let id = id.to_string();
        self.inner.catalog(move |c| c.audit_of(&id, limit)).await
    }

    /// Checks the audit log's hash chain from its first entry to its head,
    /// and compares it with the copies in each reachable store.
    pub async fn check_audit(&self) -> Result<reel_catalog::AuditCheck> {
        auditlog::check(&self.inner).await
    }

    /// Copies the audit entries each usable store lacks now (a background
    /// task does it every few seconds); returns the entries copied.
    pub async fn copy_audit(&self) -> Result<u64> {
        auditlog::copy(&self.inner).await
    }

    /// Appends `entry` to the audit log (its time set to now when 0);
    /// durable when the future resolves.
    pub async fn record_audit(&self, mut entry: AuditEntry) -> Result<()> {
        if entry.at_us == 0 {
            entry.at_us = self.inner.now_us();
        }
        self.inner
            .catalog(move |c| {
                let mut batch = reel_catalog::Batch::new();
                batch.append_audit(&entry);
                c.commit(batch)
            })
            .await
    }

    /// Every API token (names, hashes, roles; never a secret).
    pub async fn tokens(&self) -> Result<Vec<reel_proto::v1::TokenRow>> {
        self.inner.catalog(|c| c.tokens()).await
    }

    /// Stores `row` (replacing a token of the same name) with its audit
    /// entry, in one durable commit.
    pub async fn put_token(&self, row: reel_proto::v1::TokenRow, audit: AuditEntry) -> Result<()> {
        self.inner
            .catalog(move |c| {
                let mut batch = reel_catalog::Batch::new();
                batch.put_token(&row).append_audit(&audit);
                c.commit(batch)
            })
            .await
    }

    /// Removes the token `name` with its audit entry; false if there was none.
    pub async fn revoke_token(&self, name: String, audit: AuditEntry) -> Result<bool> {
        self.inner
            .catalog(move |c| {
                c.commit_checked(|c| {
                    let mut batch = reel_catalog::Batch::new();
                    let found = c.token(&name)?.is_some();
                    if found {
                        batch.delete_token(&name).append_audit(&audit);
                    }
                    Ok((found, batch))
                })
            })
            .await
    }

    /// Streams every durable event of a recording, in order, from wherever
    /// its bytes are: spool, stores, and (for an open recording) the journal.
    pub async fn events(&self, id: RecordingId) -> Result<EventStream> {
        self.read(id, Window::ALL).await
    }

    /// Streams the events of `window` of a recording, reading only the
    /// blocks that hold it, from wherever they are. Fails before any event
    /// when the recording is unknown ([`EngineError::NotFound`]), the window
    /// starts after its end ([`EngineError::OutOfRange`]), or some of the
    /// window is only on a store that is down ([`EngineError::Unavailable`],
    /// naming the events and times). Lost events (no intact copy) come as a
    /// [`ReadItem::Gap`] and the read goes on.
    pub async fn read(&self, id: RecordingId, window: Window) -> Result<EventStream> {
        reader::read(&self.inner, id, window).await
    }

    /// [`Engine::read`] of a recording the caller has just looked up with
    /// [`Engine::recording`]: the read starts from `info`'s rows instead of
    /// reading them from the catalog again (a long recording has many).
    /// Rows that changed since are met as in any read whose plan goes stale
    /// while it streams.
    pub async fn read_info(&self, info: &RecordingInfo, window: Window) -> Result<EventStream> {
        reader::read_planned(
            &self.inner,
            info.id,
            info.row.clone(),
            info.segments.clone(),
            window,
        )
        .await
    }

    /// How much is held locally and waiting; fails when the catalog cannot
    /// be read (rather than answer 0 for what it could not count).
    pub fn local_status(&self) -> Result<LocalStatus> {
        let inner = &self.inner;
        let catalog = inner.catalog.sizes()?;
        Ok(LocalStatus {
            journal_bytes: inner.journal.disk_bytes(),
            journal_files: inner.journal.file_count(),
            spool_bytes: inner.spool.bytes(),
            spool_segments: inner.spool.files(),
            upload_queue: inner.catalog.upload_queue()?.len(),
            open_recordings: inner.open.read().expect("open map lock").len(),
            low_disk: inner.low_disk.lock().expect("low disk lock").clone(),
            recovered_torn_tail_bytes: inner.recovery.torn_tail.as_ref().map_or(0, |d| d.len),
            recovered_corrupt_regions: inner.recovery.corrupt.len(),
            catalog_bytes: catalog.table_bytes,
            catalog_log_bytes: catalog.wal_bytes,
            audit_log_bytes: catalog.audit_table_bytes,
            catalog_memory_bytes: catalog.memtable_bytes,
            cache: inner.cache.status(),
            unreadable_recordings: inner.count_unreadable()?,
            mirror_backlog: match inner.mirrored() {
                false => None,
                true => Some(mirror::backlog(inner)?),
            },
        })
    }

    /// The stores' health, where uploads go, the local backlog and the
    /// recent failovers and failbacks.
    pub fn storage_status(&self) -> StorageStatus {
        let inner = &self.inner;
        let store = |role: Role| StoreStatus {
            description: inner.store(role).description().to_string(),
            health: inner.router.health(role).snapshot(),
        };
        StorageStatus {
            primary: store(Role::Primary),
            secondary: store(Role::Secondary),
            writing_to: inner.router.current(),
            backlog_segments: inner.spool.files(),
            backlog_bytes: inner.spool.bytes(),
            journal_bytes: inner.journal.disk_bytes(),
            local_capacity_bytes: inner.config.local_capacity_bytes,
            events: inner.router.history(),
        }
    }

    /// The recordings waiting for recombination (all, or just `only`), and
    /// why any of them cannot be done now. Changes nothing.
    pub async fn compaction_plan(&self, only: Option<RecordingId>) -> Result<Vec<PlanItem>> {
        if let Some(id) = only {
            self.recording(id).await?;
        }
        compactor::plan(&self.inner, only).await
    }

    /// Recombines now what is ready (all, or just `only`), one recording at
    /// a time, and returns how many were recombined. Resolves when they are
    /// recorded in the catalog; their old copies are then deleted in the
    /// background (see [`Engine::drain_deletions`]).
    pub async fn compact(&self, only: Option<RecordingId>) -> Result<u64> {
        compactor::compact_pending(&self.inner, only).await
    }

    /// What the compactor is doing and has done.
    pub fn compactor_status(&self) -> CompactorStatus {
        self.inner.compactor.status()
    }

    /// The plan (all, or just `only`), what the compactor is doing, and the
    /// old copies waiting to be deleted. Changes nothing.
    pub async fn compaction_state(&self, only: Option<RecordingId>) -> Result<CompactionState> {
        Ok(CompactionState {
            plan: self.compaction_plan(only).await?,
            status: self.compactor_status(),
            pending_deletions: self.pending_deletions().await? as u64,
        })
    }

    /// Deletes now what the deletion queue holds (stores that fail are left
    /// for later), then completes the purges whose objects are all deleted;
    /// returns how many objects were deleted.
    pub async fn drain_deletions(&self) -> Result<u64> {
        let deleted = deleter::drain(&self.inner).await?;
        purger::resume(&self.inner).await?;
        Ok(deleted)
    }

    /// Objects waiting in the deletion queue.
    pub async fn pending_deletions(&self) -> Result<usize> {
        Ok(self.inner.catalog(|c| c.deletion_queue()).await?.len())
    }

    /// Prometheus text exposition of the engine's metrics.
    pub fn metrics(&self) -> String {
        let inner = &self.inner;
        inner.metrics.render(
            inner.spool.bytes() + inner.journal.disk_bytes(),
            inner.spool.files(),
            &[
                (Role::Primary, inner.router.primary.state()),
                (Role::Secondary, inner.router.secondary.state()),
            ],
            inner.router.failovers(),
            inner.catalog.sizes().ok(),
            inner
                .mirrored()
                .then(|| mirror::backlog(inner).ok())
                .flatten(),
        )
    }

    /// What journal recovery found at open.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    pub fn journal_stats(&self) -> &reel_log::JournalStats {
        self.inner.journal.stats()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The public part of the key this server signs with: what anyone
    /// checking a recording or an archive needs.
    pub fn public_key(&self) -> PublicKey {
        self.inner.keys.public_key()
    }

    /// Makes a new master key current and wraps every data key with it in
    /// the background; recordings are not rewritten. The new key is durable
    /// when this returns; [`Engine::rotation_status`] tells the progress.
    pub fn rotate_master_key(&self) -> Result<RotationStatus> {
        key_rotation::rotate(&self.inner)?;
        Ok(self.rotation_status())
    }

    /// The master keys held and how far their rotation is.
    pub fn rotation_status(&self) -> RotationStatus {
        key_rotation::status(&self.inner)
    }

    /// Retires every master key but the current one (destroying those kept
    /// in files), once no catalog row, spool key file or key object on
    /// either store is wrapped by one of them; refused otherwise, or when a
    /// store cannot be checked.
    pub async fn finish_rotation(&self) -> Result<Vec<reel_keys::RetiredKey>> {
        key_rotation::finish(&self.inner).await
    }

    /// The keys this server signs with (for what the server itself writes:
    /// archives).
    pub fn keys(&self) -> Arc<dyn KeyProvider> {
        self.inner.keys.clone()
    }

    /// Stops the background work (a seal or upload cut short is redone at
    /// the next open) and the journal. Open recordings stay open in the
    /// catalog and can be resumed after the next open. The catalog closes
    /// when the last clone of the engine, and the last writer, is dropped.
    pub async fn shutdown(&self) {
        // `send` would drop the value while no task has subscribed yet
        // (none polled so far); `send_replace` always stores it.
        self.inner.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for task in tasks {
            let _ = task.await;
        }
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            inner.journal.shutdown();
            inner.catalog.close();
        })
        .await;
    }

    pub(crate) fn is_low_disk(inner: &Inner) -> bool {
        inner.low_disk_flag.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::Placement;

    #[test]
    fn a_placement_reads_as_listings_show_it() {
        let p = |local, primary, secondary| {
            Placement {
                local,
                primary,
                secondary,
            }
            .to_string()
        };
        assert_eq!(p(false, false, false), "none");
        assert_eq!(p(true, false, false), "local");
        assert_eq!(p(false, true, false), "primary");
        assert_eq!(p(true, false, true), "local+secondary");
        assert_eq!(p(false, true, true), "split");
        assert_eq!(p(true, true, true), "local+split");
    }
}
