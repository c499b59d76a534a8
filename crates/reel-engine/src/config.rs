use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fail_parallel::FailPointRegistry;
use reel_clock::Clock;

use reel_storage::{HealthConfig, Secret, StoreConfig};

/// What each event costs in a batch's budget beyond its data: about what its
/// time, kind and framing take in the journal and in memory.
pub const EVENT_OVERHEAD_BYTES: usize = 16;

/// How an [`Engine`](crate::Engine) runs. `reeld` fills it from its TOML
/// file and flags; [`EngineConfig::new`] gives the embedded default.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Holds `journal/`, `spool/` and `catalog/`.
    pub data_dir: PathBuf,
    pub primary: StoreConfig,
    pub secondary: StoreConfig,
    /// Journal files rotate at about this size.
    pub journal_file_size: u64,
    /// The largest event (bytes of data) a recorder may send.
    pub max_event_bytes: usize,
    /// The largest batch of events in one message: the bytes of its events'
    /// data plus [`EVENT_OVERHEAD_BYTES`] for each event, so that a batch of
    /// empty events is bounded too.
    pub max_batch_bytes: usize,
    /// Recordings open at once (attached or waiting for their recorder to
    /// resume); a start beyond it is refused (RESOURCE_EXHAUSTED).
    pub max_open_recordings: usize,
    /// A segment is sealed once its events reach this many bytes...
    pub segment_target_bytes: u64,
    /// ...or once its oldest event has waited this long.
    pub segment_max_age: Duration,
    /// Ingest is refused (RESOURCE_EXHAUSTED) while the data directory's
    /// filesystem has less free space than this, so that the catalog and the
    /// sealer always have room to finish what was acknowledged.
    pub min_free_disk_bytes: u64,
    /// An open recording whose recorder went away (and did not resume) is
    /// closed as "interrupted" after this long.
    pub detached_timeout: Duration,
    /// The most the local log (journal and spool) may hold while the stores
    /// cannot take it; beyond it new events are refused (RESOURCE_EXHAUSTED)
    /// until uploads drain it.
    pub local_capacity_bytes: u64,
    /// Time-outs, thresholds and probes that judge the stores.
    pub health: HealthConfig,
    /// Uploads running at once.
    pub upload_concurrency: usize,
    /// Whether a segment goes to one store (the primary while it is usable)
    /// or to both.
    pub upload_mode: UploadMode,
    /// Mirror mode: copies made from one store's copy to the other (a
    /// store caught up after an outage, mirror mode turned on over older
    /// recordings) go at most this fast, in bytes a second (0: no limit),
    /// so that a catch-up leaves the stores' bandwidth to new uploads.
    pub catch_up_bytes_per_second: u64,
    /// The local read cache of stored segments (off by default).
    pub cache: crate::cache::CacheConfig,
    /// Seals running at once.
    pub seal_concurrency: usize,
    /// Recombination of split and segmented recordings.
    pub compactor: crate::compactor::CompactorConfig,
    /// Retention rules, applied by a background task.
    pub retention: crate::retention::RetentionConfig,
    /// Where the engine (and its stores' health) reads the time: the
    /// system's clock, or a manual one in tests.
    pub clock: Arc<dyn Clock>,
    /// The engine's named failure points (the `fail-parallel` crate): empty,
    /// so inert, unless a test configures them (or `reeld` arms crashpoints,
    /// see [`crate::crashpoints_from_env`]). Each engine has its own, so
    /// tests with failpoints run in parallel with the rest.
    pub failpoints: Arc<FailPointRegistry>,
    /// The master key that wraps recordings' data keys (64 hex digits, from
    /// `REEL_MASTER_KEY`), instead of one kept in `keys/` (see
    /// `reel_keys::FileKeys`).
    pub master_key: Option<Secret>,
    /// Recordings started from now on are encrypted at rest (each with its
    /// own data key, wrapped by the master key). Off only to measure what
    /// encryption costs (`[keys] encrypt = false`); recordings already
    /// stored keep the form they were written in.
    pub encrypt: bool,
    /// The AEAD of the data keys of recordings started from now on
    /// (`[keys] cipher`): XAES-256-GCM, or XChaCha20-Poly1305 for a CPU
    /// without AES instructions. Recordings keep the one they were started
    /// with.
    pub cipher: reel_keys::Cipher,
}

impl EngineConfig {
    /// The embedded default: everything under `data_dir`, the primary and
    /// secondary stores as the local directories `primary/` and `secondary/`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        EngineConfig {
            primary: StoreConfig::Local {
                path: data_dir.join("primary"),
            },
            secondary: StoreConfig::Local {
                path: data_dir.join("secondary"),
            },
            data_dir,
            journal_file_size: 64 << 20,
            max_event_bytes: 1 << 20,
            max_batch_bytes: 4 << 20,
            max_open_recordings: 50_000,
            segment_target_bytes: 8 << 20,
            segment_max_age: Duration::from_secs(60),
            min_free_disk_bytes: 64 << 20,
            detached_timeout: Duration::from_secs(600),
            local_capacity_bytes: 10 << 30,
            health: HealthConfig::default(),
            upload_concurrency: 4,
            upload_mode: UploadMode::Failover,
            catch_up_bytes_per_second: 0,
            cache: Default::default(),
            seal_concurrency: 2,
            compactor: Default::default(),
            retention: Default::default(),
            clock: reel_clock::system(),
            failpoints: Default::default(),
            master_key: None,
            encrypt: true,
            cipher: reel_keys::Cipher::Xaes256Gcm,
        }
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.data_dir.join("journal")
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }

    /// The signing key and master keys (`reel_keys::FileKeys`).
    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    /// The read cache's segments (`crate::cache`).
    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("cache")
    }

    pub fn catalog_dir(&self) -> PathBuf {
        self.data_dir.join("catalog")
    }
}

/// Where sealed segments are stored; see the README's `[upload] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadMode {
    /// Each segment on one store: the primary while it is usable, else the
    /// secondary; split recordings are recombined onto the primary.
    #[default]
    Failover,
    /// Each segment on both stores, so that either one alone can serve
    /// every recording; a store that was down is caught up when it returns.
    Mirror {
        /// When a segment's spool file may go.
        release_after: ReleaseAfter,
    },
}

impl UploadMode {
    /// `failover` or `mirror`, as the configuration names it.
    pub fn name(self) -> &'static str {
        match self {
            UploadMode::Failover => "failover",
            UploadMode::Mirror { .. } => "mirror",
        }
    }
}

/// In mirror mode, how many stores must hold a segment before its spool
/// file is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReleaseAfter {
    /// One store holds it and the other copy is queued in the catalog (it
    /// is then made from the first store's copy): the local disk drains
    /// while a store is down.
    #[default]
    One,
    /// Both stores hold it: the local disk keeps the third copy meanwhile.
    Both,
}
