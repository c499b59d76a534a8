//! Reel's catalog: a RocksDB database that knows every recording, every
//! segment and where its bytes are, and what still waits to be uploaded.
//!
//! Column families and keys:
//!
//! | family         | key                          | value          |
//! |----------------|------------------------------|----------------|
//! | `recordings`   | recording id (16 bytes)      | `RecordingRow` |
//! | `segments`     | recording id + seq (u64 BE)  | `SegmentRow`   |
//! | `upload_queue` | recording id + seq (u64 BE)  | empty          |
//! | `recombine`    | recording id (16 bytes)      | why (`split`, `secondary`, `segmented`) |
//! | `deletions`    | store (1 byte, a `Location`) + object key | why    |
//! | `purging`      | recording id                 | `PurgeMark`    |
//! | `holds`        | recording id                 | `LegalHold`    |
//! | `audit`        | time (u64 BE, µs) + seq (u64 BE); `0xfe` + store: copy mark; `0xff`: head | `AuditEntry`, key, `AuditHead` |
//! | `tokens`       | token name                   | `TokenRow`     |
//! | `keyframes`    | recording id + time (u64 BE, µs) | sealed screen (opaque) |
//!
//! Every change that touches several keys goes through one [`Batch`] and is
//! written with a synced write: when [`Catalog::commit`] returns, the change
//! is durable as a whole or not at all.
//!
//! Memory and disk are bounded for a server that runs for months: the
//! memtables of all families share [`MEMTABLE_BUDGET_BYTES`], RocksDB's write-ahead
//! log is flushed away past [`WAL_BUDGET_BYTES`], and blocks are cached in
//! one [`BLOCK_CACHE_BYTES`] cache. RocksDB's defaults (64 MiB a family's
//! memtable, a log kept until every family has flushed) let a catalog of
//! ten families, most of them rarely written, hold its writes in memory and
//! its log on disk for hours ([`Catalog::sizes`] shows where the bytes are).

mod audit;
mod keyframes;
mod purge;
mod query;
mod tokens;

pub use audit::AuditCheck;

pub use query::{
    Cursor, Filter, Page, Query, Reachable, Scope, Sort, SortKey, StateFilter, glob_match,
    received_at_us,
};

use std::path::Path;
use std::sync::RwLock;

use prost::Message;
use reel_proto::v1::{Location, RecordingRow, RecordingState, SegmentRow};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options,
    WriteBatch, WriteOptions,
};
use thiserror::Error;

pub use reel_proto::{InvalidId, RecordingId};

const CF_RECORDINGS: &str = "recordings";
const CF_SEGMENTS: &str = "segments";
const CF_UPLOAD_QUEUE: &str = "upload_queue";
const CF_RECOMBINE: &str = "recombine";
const CF_DELETIONS: &str = "deletions";
const CF_PURGING: &str = "purging";
const CF_HOLDS: &str = "holds";
const CF_AUDIT: &str = "audit";
const CF_TOKENS: &str = "tokens";
const CF_KEYFRAMES: &str = "keyframes";
const CF_AUDIT_BY_RECORDING: &str = "audit_by_recording";
const FAMILIES: [&str; 11] = [
    CF_RECORDINGS,
    CF_SEGMENTS,
    CF_UPLOAD_QUEUE,
    CF_RECOMBINE,
    CF_DELETIONS,
    CF_PURGING,
    CF_HOLDS,
    CF_AUDIT,
    CF_TOKENS,
    CF_KEYFRAMES,
    CF_AUDIT_BY_RECORDING,
];

#[derive(Debug, Error)]
pub enum CatalogError {
    /// Another process (a running `reeld`) has the catalog open.
    #[error("catalog {path} is in use by another process (is reeld running?): {message}")]
    Locked { path: String, message: String },
    #[error("catalog error: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("catalog is closed")]
    Closed,
    #[error("catalog entry {key} is corrupt: {what}")]
    Corrupt { key: String, what: String },
    #[error("catalog row under key {key} does not decode: {source}")]
    Decode {
        key: String,
        #[source]
        source: prost::DecodeError,
    },
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// What the memtables of all families may hold together before RocksDB
/// flushes the largest: the catalog's write memory.
pub const MEMTABLE_BUDGET_BYTES: usize = 8 << 20;
/// One family's memtable: flushed to a table file when it is this full.
const MEMTABLE_BYTES: usize = 2 << 20;
/// The write-ahead log's size past which the families that keep its oldest
/// file alive are flushed, so that the file can go.
pub const WAL_BUDGET_BYTES: u64 = 8 << 20;
/// The block cache every family shares.
pub const BLOCK_CACHE_BYTES: usize = 8 << 20;

/// Where the catalog's bytes are ([`Catalog::sizes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatalogSizes {
    /// Table files of every family but `audit`.
    pub table_bytes: u64,
    /// Table files of the `audit` family: the log only grows, by design.
    pub audit_table_bytes: u64,
    /// Writes held in memory, not yet in a table file (all families).
    pub memtable_bytes: u64,
    /// RocksDB's write-ahead log files.
    pub wal_bytes: u64,
}

/// The catalog. Thread-safe; share it behind an `Arc`.
pub struct Catalog {
    /// `None` once closed: RocksDB releases its lock only when the handle is
    /// dropped, and [`Catalog::close`] must not wait for every `Arc` to go.
    db: RwLock<Option<DB>>,
    /// Held by every commit, so that [`Catalog::commit_checked`] can look
    /// and write with nothing committed in between.
    writes: std::sync::Mutex<()>,
    sync: WriteOptions,
}

/// A set of changes committed atomically by [`Catalog::commit`].
#[derive(Default)]
pub struct Batch {
    pending: Vec<Change>,
    /// Audit entries, chained at commit (see the `audit` module).
    audit: Vec<reel_proto::v1::AuditEntry>,
}

/// One put (`Some`) or delete (`None`) of a batch.
struct Change {
    family: &'static str,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put_recording(&mut self, row: &RecordingRow) -> &mut Self {
        self.pending.push(Change {
            family: CF_RECORDINGS,
            key: row.id.clone(),
            value: Some(row.encode_to_vec()),
        });
        self
    }

    pub fn put_segment(&mut self, id: RecordingId, row: &SegmentRow) -> &mut Self {
        self.pending.push(Change {
            family: CF_SEGMENTS,
            key: segment_key(id, row.sequence).to_vec(),
            value: Some(row.encode_to_vec()),
        });
        self
    }

    /// Queues segment `seq` of `id` for upload.
    pub fn enqueue_upload(&mut self, id: RecordingId, seq: u64) -> &mut Self {
        self.pending.push(Change {
            family: CF_UPLOAD_QUEUE,
            key: segment_key(id, seq).to_vec(),
            value: Some(Vec::new()),
        });
        self
    }

    pub fn dequeue_upload(&mut self, id: RecordingId, seq: u64) -> &mut Self {
        self.pending.push(Change {
            family: CF_UPLOAD_QUEUE,
            key: segment_key(id, seq).to_vec(),
            value: None,
        });
        self
    }

    /// Marks a recording as needing recombination onto the primary:
    /// `reason` is `split` (segments on both stores) or `secondary`
    /// (segments only on the secondary).
    pub fn mark_recombine(&mut self, id: RecordingId, reason: &str) -> &mut Self {
        self.pending.push(Change {
            family: CF_RECOMBINE,
            key: id.to_bytes().to_vec(),
            value: Some(reason.as_bytes().to_vec()),
        });
        self
    }

    pub fn unmark_recombine(&mut self, id: RecordingId) -> &mut Self {
        self.pending.push(Change {
            family: CF_RECOMBINE,
            key: id.to_bytes().to_vec(),
            value: None,
        });
        self
    }

    /// Queues the deletion of object `key` from the store at `store`
    /// (`Location::Primary` or `Location::Secondary`). The queue outlives a
    /// crash: whatever is in it gets deleted, at least once.
    pub fn enqueue_deletion(&mut self, store: Location, key: &str, why: &str) -> &mut Self {
        self.pending.push(Change {
            family: CF_DELETIONS,
            key: deletion_key(store, key),
            value: Some(why.as_bytes().to_vec()),
        });
        self
    }

    pub fn dequeue_deletion(&mut self, store: Location, key: &str) -> &mut Self {
        self.pending.push(Change {
            family: CF_DELETIONS,
            key: deletion_key(store, key),
            value: None,
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        if !self.audit.is_empty() {
            return false;
        }
        self.pending.is_empty()
    }
}

impl Catalog {
    /// Opens (or creates) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Catalog> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(4);
        opts.set_db_write_buffer_size(MEMTABLE_BUDGET_BYTES);
        opts.set_max_total_wal_size(WAL_BUDGET_BYTES);
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let family_options = || {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            let mut family = Options::default();
            family.set_write_buffer_size(MEMTABLE_BYTES);
            // Two flushed files, not four, start a compaction: flushes here
            // are small and rare per family, and deleted rows (purges) leave
            // the files only when a compaction merges them.
            family.set_level_zero_file_num_compaction_trigger(2);
            family.set_block_based_table_factory(&table);
            family
        };
        let families = FAMILIES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, family_options()));
        let db = DB::open_cf_descriptors(&opts, path, families).map_err(|e| {
            let message = e.to_string();
            if message.contains("lock") || message.contains("Resource temporarily unavailable") {
                CatalogError::Locked {
                    path: path.display().to_string(),
                    message,
                }
            } else {
                CatalogError::Db(e)
            }
        })?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        let catalog = Catalog {
            db: RwLock::new(Some(db)),
            writes: std::sync::Mutex::new(()),
            sync,
        };
        catalog.build_audit_index()?;
        Ok(catalog)
    }

    /// Runs `f` on the open database; [`CatalogError::Closed`] after close.
    fn with_db<T>(&self, f: impl FnOnce(&DB) -> Result<T>) -> Result<T> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(CatalogError::Closed),
        }
    }

    /// Makes RocksDB forget the earlier versions of the rows of recordings
    /// `ids`: the memtables flushed (so the write-ahead log files holding
    /// them go) and the table files holding those rows rewritten, so that
    /// what a later version dropped (a data key destroyed by a purge) is
    /// gone from the disk, not only superseded. Costs one flush of every
    /// family and a compaction of the few files that hold the keys: callers
    /// batch it.
    pub fn forget_old_versions(&self, ids: &[RecordingId]) -> Result<()> {
        self.with_db(|db| {
            for name in FAMILIES {
                db.flush_cf(cf_handle(db, name))?;
            }
            let cf = cf_handle(db, CF_RECORDINGS);
            for id in ids {
                let key = id.to_bytes();
                db.compact_range_cf(cf, Some(&key[..]), Some(&key[..]));
            }
            Ok(())
        })
    }

    /// Where the catalog's bytes are: table files (the audit log's apart),
    /// memtables and write-ahead log, as RocksDB counts them now.
    pub fn sizes(&self) -> Result<CatalogSizes> {
        self.with_db(|db| {
            let mut sizes = CatalogSizes::default();
            for name in FAMILIES {
                let cf = cf_handle(db, name);
                let int = |property: &str| -> Result<u64> {
                    Ok(db.property_int_value_cf(cf, property)?.unwrap_or(0))
                };
                let tables = int("rocksdb.total-sst-files-size")?;
                if name == CF_AUDIT {
                    sizes.audit_table_bytes += tables;
                } else {
                    sizes.table_bytes += tables;
                }
                sizes.memtable_bytes += int("rocksdb.cur-size-all-mem-tables")?;
            }
            // A log file that vanishes while listed was just recycled.
            sizes.wal_bytes = std::fs::read_dir(db.path())
                .map(|dir| {
                    dir.flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            Ok(sizes)
        })
    }

    /// Closes the database once the calls in progress are done: its files
    /// and lock are released, so another process may open it. Later calls
    /// fail with [`CatalogError::Closed`].
    pub fn close(&self) {
        drop(self.db.write().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// Writes `batch` atomically and durably (synced).
    pub fn commit(&self, batch: Batch) -> Result<()> {
        let _writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        self.write(batch)
    }

    /// Looks at the catalog and writes what `decide` returns (if anything)
    /// with no other commit in between: a read-modify-write that cannot
    /// undo a concurrent change (a purge mark, a moved segment).
    pub fn commit_checked<T>(
        &self,
        decide: impl FnOnce(&Catalog) -> Result<(T, Batch)>,
    ) -> Result<T> {
        let _writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        let (out, batch) = decide(self)?;
        if !batch.is_empty() {
            self.write(batch)?;
        }
        Ok(out)
    }

    fn write(&self, batch: Batch) -> Result<()> {
        self.with_db(|db| {
            let mut wb = WriteBatch::default();
            for change in batch.pending {
                let cf = cf_handle(db, change.family);
                match change.value {
                    Some(v) => wb.put_cf(cf, change.key, v),
                    None => wb.delete_cf(cf, change.key),
                }
            }
            if !batch.audit.is_empty() {
                audit::chain(db, &mut wb, batch.audit)?;
            }
            Ok(db.write_opt(wb, &self.sync)?)
        })
    }

    /// Writes one recording row durably.
    pub fn put_recording(&self, row: &RecordingRow) -> Result<()> {
        let mut b = Batch::new();
        b.put_recording(row);
        self.commit(b)
    }

    pub fn recording(&self, id: RecordingId) -> Result<Option<RecordingRow>> {
        let key = id.to_bytes();
        self.with_db(|db| {
            db.get_pinned_cf(cf_handle(db, CF_RECORDINGS), key)?
                .map(|v| decode(&key, &v))
                .transpose()
        })
    }

    /// Recordings in id order (creation order), starting after `after`.
    pub fn recordings(
        &self,
        after: Option<RecordingId>,
        limit: usize,
    ) -> Result<Vec<RecordingRow>> {
        let start = after.map(|a| a.to_bytes());
        self.with_db(|db| {
            let mode = match &start {
                Some(k) => IteratorMode::From(k, Direction::Forward),
                None => IteratorMode::Start,
            };
            let mut out = Vec::new();
            for item in db.iterator_cf(cf_handle(db, CF_RECORDINGS), mode) {
                let (k, v) = item?;
                if start.as_ref().is_some_and(|s| &k[..] == s) {
                    continue;
                }
                out.push(decode(&k, &v)?);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Every recording in `state`.
    pub fn recordings_in_state(&self, state: RecordingState) -> Result<Vec<RecordingRow>> {
        self.with_db(|db| {
            let mut out = Vec::new();
            for item in db.iterator_cf(cf_handle(db, CF_RECORDINGS), IteratorMode::Start) {
                let (k, v) = item?;
                let row: RecordingRow = decode(&k, &v)?;
                if row.state == state as i32 {
                    out.push(row);
                }
            }
            Ok(out)
        })
    }

    /// The segments of a recording, in sequence order.
    pub fn segments(&self, id: RecordingId) -> Result<Vec<SegmentRow>> {
        let prefix = id.to_bytes();
        self.with_db(|db| {
            let mut out = Vec::new();
            let mode = IteratorMode::From(&prefix, Direction::Forward);
            for item in db.iterator_cf(cf_handle(db, CF_SEGMENTS), mode) {
                let (k, v) = item?;
                if !k.starts_with(&prefix) {
                    break;
                }
                out.push(decode(&k, &v)?);
            }
            Ok(out)
        })
    }

    pub fn segment(&self, id: RecordingId, seq: u64) -> Result<Option<SegmentRow>> {
        let key = segment_key(id, seq);
        self.with_db(|db| {
            db.get_pinned_cf(cf_handle(db, CF_SEGMENTS), key)?
                .map(|v| decode(&key, &v))
                .transpose()
        })
    }

    /// Whether the segment is in the upload queue.
    pub fn upload_queued(&self, id: RecordingId, seq: u64) -> Result<bool> {
        let key = segment_key(id, seq);
        self.with_db(|db| {
            Ok(db
                .get_pinned_cf(cf_handle(db, CF_UPLOAD_QUEUE), key)?
                .is_some())
        })
    }

    /// Every segment waiting for upload, in (recording, sequence) order.
    pub fn upload_queue(&self) -> Result<Vec<(RecordingId, u64)>> {
        self.with_db(|db| {
            let mut out = Vec::new();
            for item in db.iterator_cf(cf_handle(db, CF_UPLOAD_QUEUE), IteratorMode::Start) {
                let (k, _) = item?;
                out.push(split_segment_key(&k));
            }
            Ok(out)
        })
    }
}

impl Catalog {
    /// Recordings waiting for recombination, with the reason each was marked.
    pub fn recombine_queue(&self) -> Result<Vec<(RecordingId, String)>> {
        self.with_db(|db| {
            let mut out = Vec::new();
            for item in db.iterator_cf(cf_handle(db, CF_RECOMBINE), IteratorMode::Start) {
                let (k, v) = item?;
                let id = RecordingId::from_slice(&k).map_err(|_| CatalogError::Corrupt {
                    key: hex_key(&k),
                    what: "recombine key is not a recording id".into(),
                })?;
                out.push((id, String::from_utf8_lossy(&v).into_owned()));
            }
            Ok(out)
        })
    }

    /// Objects waiting to be deleted: (store, key, why).
    pub fn deletion_queue(&self) -> Result<Vec<(Location, String, String)>> {
        self.with_db(|db| {
            let mut out = Vec::new();
            for item in db.iterator_cf(cf_handle(db, CF_DELETIONS), IteratorMode::Start) {
                let (k, v) = item?;
                let corrupt = || CatalogError::Corrupt {
                    key: hex_key(&k),
                    what: "deletion key is not a store and an object key".into(),
                };
                let (&store, key) = k.split_first().ok_or_else(corrupt)?;
                let store = Location::try_from(store as i32).map_err(|_| corrupt())?;
                let key = String::from_utf8(key.to_vec()).map_err(|_| corrupt())?;
                out.push((store, key, String::from_utf8_lossy(&v).into_owned()));
            }
            Ok(out)
        })
    }

    /// Why a recording waits for recombination, if it does.
    pub fn recombine_reason(&self, id: RecordingId) -> Result<Option<String>> {
        let key = id.to_bytes();
        self.with_db(|db| {
            Ok(db
                .get_pinned_cf(cf_handle(db, CF_RECOMBINE), key)?
                .map(|v| String::from_utf8_lossy(&v).into_owned()))
        })
    }
}

fn cf_handle<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name).expect("column family created at open")
}

fn decode<M: Message + Default>(key: &[u8], value: &[u8]) -> Result<M> {
    M::decode(value).map_err(|source| CatalogError::Decode {
        key: hex_key(key),
        source,
    })
}

fn hex_key(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn deletion_key(store: Location, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(store as i32 as u8);
    k.extend_from_slice(key.as_bytes());
    k
}

fn segment_key(id: RecordingId, seq: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&id.to_bytes());
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn split_segment_key(key: &[u8]) -> (RecordingId, u64) {
    let id = RecordingId::from_bytes(key[..16].try_into().expect("16-byte id"));
    let seq = u64::from_be_bytes(key[16..24].try_into().expect("8-byte sequence"));
    (id, seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording(id: RecordingId, state: RecordingState) -> RecordingRow {
        RecordingRow {
            id: id.to_bytes().to_vec(),
            state: state as i32,
            ..Default::default()
        }
    }

    /// A catalog that runs for months: a rarely written family (tokens) must
    /// not keep the write-ahead log alive, and the memtables must not hold
    /// every write since the start. Fails on RocksDB's defaults, which keep
    /// all 48 MiB written here in memory and in the log.
    #[test]
    fn memory_and_log_stay_within_their_budgets() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(dir.path()).unwrap();
        let mut batch = Batch::new();
        batch.put_token(&reel_proto::v1::TokenRow {
            name: "once".into(),
            ..Default::default()
        });
        cat.commit(batch).unwrap();
        let row_bytes = 1024;
        let written = 48 << 20;
        for _ in 0..written / row_bytes / 1000 {
            let mut batch = Batch::new();
            for _ in 0..1000 {
                let mut row = recording(RecordingId::generate(), RecordingState::Closed);
                row.close_reason = "x".repeat(row_bytes);
                batch.put_recording(&row);
            }
            cat.commit(batch).unwrap();
        }
        let within = |s: &CatalogSizes| {
            s.memtable_bytes <= MEMTABLE_BUDGET_BYTES as u64
                && s.wal_bytes <= WAL_BUDGET_BYTES + MEMTABLE_BUDGET_BYTES as u64
        };
        // Flushes run in the background: give them time, not forever.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut sizes = cat.sizes().unwrap();
        while !within(&sizes) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            sizes = cat.sizes().unwrap();
        }
        assert!(
            within(&sizes),
            "over budget after {written} bytes: {sizes:?}"
        );
        assert!(
            sizes.table_bytes > 0,
            "flushed rows are in table files: {sizes:?}"
        );
        assert_eq!(
            cat.recordings_in_state(RecordingState::Closed)
                .unwrap()
                .len(),
            written / row_bytes / 1000 * 1000
        );
    }

    #[test]
    fn batches_are_atomic_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = RecordingId::generate();
        let b = RecordingId::generate();
        {
            let cat = Catalog::open(dir.path()).unwrap();
            cat.put_recording(&recording(a, RecordingState::Open))
                .unwrap();
            let mut batch = Batch::new();
            batch
                .put_recording(&recording(b, RecordingState::Closed))
                .put_segment(
                    b,
                    &SegmentRow {
                        sequence: 0,
                        event_count: 3,
                        ..Default::default()
                    },
                )
                .put_segment(
                    b,
                    &SegmentRow {
                        sequence: 1,
                        event_count: 4,
                        ..Default::default()
                    },
                )
                .enqueue_upload(b, 0)
                .enqueue_upload(b, 1);
            cat.commit(batch).unwrap();
            let mut done = Batch::new();
            done.dequeue_upload(b, 0);
            cat.commit(done).unwrap();
        }
        let cat = Catalog::open(dir.path()).unwrap();
        assert_eq!(cat.recordings(None, 10).unwrap().len(), 2);
        assert_eq!(
            cat.recordings_in_state(RecordingState::Open).unwrap(),
            vec![recording(a, RecordingState::Open)]
        );
        let segs = cat.segments(b).unwrap();
        assert_eq!(
            segs.iter().map(|s| s.event_count).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert!(cat.segments(a).unwrap().is_empty());
        assert_eq!(cat.upload_queue().unwrap(), vec![(b, 1)]);
        assert_eq!(
            cat.recordings(Some(a), 10).unwrap(),
            vec![recording(b, RecordingState::Closed)]
        );
    }

    #[test]
    fn the_deletion_queue_survives_reopen_and_drains() {
        let dir = tempfile::tempdir().unwrap();
        let key = "recordings/x/segments/0000000001.seg";
        {
            let cat = Catalog::open(dir.path()).unwrap();
            let mut batch = Batch::new();
            batch
                .enqueue_deletion(Location::Primary, key, "recombined")
                .enqueue_deletion(Location::Secondary, key, "recombined");
            cat.commit(batch).unwrap();
        }
        let cat = Catalog::open(dir.path()).unwrap();
        let queue = cat.deletion_queue().unwrap();
        assert_eq!(
            queue,
            vec![
                (Location::Primary, key.to_string(), "recombined".to_string()),
                (
                    Location::Secondary,
                    key.to_string(),
                    "recombined".to_string()
                ),
            ]
        );
        let mut batch = Batch::new();
        batch.dequeue_deletion(Location::Primary, key);
        cat.commit(batch).unwrap();
        assert_eq!(cat.deletion_queue().unwrap().len(), 1);
    }

    #[test]
    fn a_second_opener_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Catalog::open(dir.path()).unwrap();
        let err = Catalog::open(dir.path())
            .err()
            .expect("second open must fail");
        assert!(matches!(err, CatalogError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("in use"));
    }
}
