//! The local read cache: segments a store holds, kept on local disk after
//! their upload so that recent recordings read without a store, even with
//! both stores down (`[cache] max_bytes`, `max_age`).
//!
//! A segment enters only once the catalog says a store holds it: its spool
//! file is renamed into `cache/` (no copy) instead of being deleted. So the
//! cache only ever holds second copies, and evicting one (oldest first,
//! beyond `max_bytes` or `max_age`, or everything when the disk runs low)
//! never loses a byte. The catalog does not name cached copies: readers ask
//! here first ([`crate::copies::candidates`]) and check every block they
//! read against the catalog's hashes, as for any copy. A purge deletes the
//! recording's cached segments with its spool files.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use reel_catalog::RecordingId;
use tracing::{debug, warn};

use crate::error::{EngineError, Result};
use crate::spool::parse_name;

/// `[cache]`: how much the read cache may keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Bytes of segments kept at most (0: no cache).
    pub max_bytes: u64,
    /// Segments older than this (since they were cached) are evicted.
    pub max_age: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_bytes: 0,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// What the cache holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStatus {
    pub max_bytes: u64,
    pub bytes: u64,
    pub segments: u64,
}

pub(crate) struct ReadCache {
    dir: PathBuf,
    config: CacheConfig,
    index: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    /// (cached at, microseconds since the epoch; segment) oldest first.
    by_age: BTreeMap<(i64, RecordingId, u64), u64>,
    /// Segment to (cached at, size).
    entries: HashMap<(RecordingId, u64), (i64, u64)>,
    bytes: u64,
}

impl Index {
    fn insert(&mut self, key: (RecordingId, u64), at_us: i64, size: u64) {
        self.remove(key);
        self.by_age.insert((at_us, key.0, key.1), size);
        self.entries.insert(key, (at_us, size));
        self.bytes += size;
    }

    fn remove(&mut self, key: (RecordingId, u64)) -> bool {
        let Some((at_us, size)) = self.entries.remove(&key) else {
            return false;
        };
        self.by_age.remove(&(at_us, key.0, key.1));
        self.bytes -= size;
        true
    }
}

impl ReadCache {
    /// Opens `dir` (created when the cache is on), indexing what a previous
    /// run left by the files' modification times.
    pub(crate) fn open(dir: PathBuf, config: CacheConfig) -> Result<ReadCache> {
        let cache = ReadCache {
            dir,
            config,
            index: Mutex::default(),
        };
        if !cache.enabled() {
            // Turned off: what an earlier run cached is only a copy.
            if cache.dir.exists() {
                let _ = fs::remove_dir_all(&cache.dir);
            }
            return Ok(cache);
        }
        fs::create_dir_all(&cache.dir).map_err(|e| EngineError::io(&cache.dir, e))?;
        let mut index = cache.index.lock().expect("cache index");
        for entry in fs::read_dir(&cache.dir).map_err(|e| EngineError::io(&cache.dir, e))? {
            let entry = entry.map_err(|e| EngineError::io(&cache.dir, e))?;
            let Some(key) = parse_name(&entry.path()) else {
                let _ = fs::remove_file(entry.path());
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            let at_us = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_micros() as i64);
            index.insert(key, at_us, meta.len());
        }
        drop(index);
        Ok(cache)
    }

    pub(crate) fn enabled(&self) -> bool {
        self.config.max_bytes > 0
    }

    fn path(&self, id: RecordingId, seq: u64) -> PathBuf {
        self.dir.join(crate::spool::file_name(id, seq))
    }

    /// Takes a stored segment's spool file (`spooled`, `size` bytes) into
    /// the cache by renaming it, at `now_us`; then evicts what no longer
    /// fits. Returns false, leaving the file where it is, when the cache is
    /// off or the rename fails (the caller deletes it then).
    pub(crate) fn admit(
        &self,
        id: RecordingId,
        seq: u64,
        spooled: &Path,
        size: u64,
        now_us: i64,
    ) -> bool {
        if !self.enabled() || size > self.config.max_bytes {
            return false;
        }
        let path = self.path(id, seq);
        if let Err(e) = fs::rename(spooled, &path) {
            warn!(recording = %id, sequence = seq, error = %e, "cannot keep the segment in the read cache");
            return false;
        }
        self.index
            .lock()
            .expect("cache index")
            .insert((id, seq), now_us, size);
        self.evict(now_us);
        true
    }

    /// The cached segment's bytes, if the cache holds it. Not checked: the
    /// reader checks every block against the catalog.
    pub(crate) fn read(&self, id: RecordingId, seq: u64) -> Option<Bytes> {
        if !self.contains(id, seq) {
            return None;
        }
        match fs::read(self.path(id, seq)) {
            Ok(b) => Some(Bytes::from(b)),
            Err(e) => {
                debug!(recording = %id, sequence = seq, error = %e, "cached segment unreadable; dropped");
                self.remove(id, seq);
                None
            }
        }
    }

    pub(crate) fn contains(&self, id: RecordingId, seq: u64) -> bool {
        self.enabled()
            && self
                .index
                .lock()
                .expect("cache index")
                .entries
                .contains_key(&(id, seq))
    }

    fn remove(&self, id: RecordingId, seq: u64) {
        if self.index.lock().expect("cache index").remove((id, seq)) {
            let _ = fs::remove_file(self.path(id, seq));
        }
    }

    /// Drops every cached segment of `id` (a purge).
    pub(crate) fn remove_recording(&self, id: RecordingId) -> Result<()> {
        self.remove_where(|&(r, _)| r == id)
    }

    /// Drops the cached segments `drop` picks: out of the index, then their
    /// files, all of them; fails with the first file that could not be
    /// deleted.
    fn remove_where(&self, drop: impl Fn(&(RecordingId, u64)) -> bool) -> Result<()> {
        let keys: Vec<(RecordingId, u64)> = {
            let mut index = self.index.lock().expect("cache index");
            let keys: Vec<_> = index.entries.keys().copied().filter(&drop).collect();
            for &key in &keys {
                index.remove(key);
            }
            keys
        };
        let mut first_error = None;
        for (id, seq) in keys {
            let path = self.path(id, seq);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    first_error.get_or_insert(EngineError::io(&path, e));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Evicts, oldest first, what is older than `max_age` or beyond
    /// `max_bytes`.
    pub(crate) fn evict(&self, now_us: i64) {
        let max_age_us = self.config.max_age.as_micros() as i64;
        loop {
            let victim = {
                let index = self.index.lock().expect("cache index");
                match index.by_age.keys().next() {
                    Some(&(at_us, id, seq))
                        if index.bytes > self.config.max_bytes
                            || now_us.saturating_sub(at_us) > max_age_us =>
                    {
                        (id, seq)
                    }
                    _ => return,
                }
            };
            self.remove(victim.0, victim.1);
        }
    }

    /// Drops everything (the disk runs low: the cache is only copies). A
    /// file that cannot be deleted is logged; the rest still go.
    pub(crate) fn clear(&self) {
        if let Err(e) = self.remove_where(|_| true) {
            warn!(error = %e, "clearing the read cache: a file could not be deleted");
        }
    }

    pub(crate) fn status(&self) -> CacheStatus {
        let index = self.index.lock().expect("cache index");
        CacheStatus {
            max_bytes: self.config.max_bytes,
            bytes: index.bytes,
            segments: index.entries.len() as u64,
        }
    }
}
