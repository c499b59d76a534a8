//! The spool: sealed segments kept on local disk until a store holds them.
//!
//! A segment is sealed from the journal into `spool/<recording>-<seq>.seg`
//! (written to a temporary name, fsynced, renamed, directory fsynced), so the
//! journal can let go of those events; the spool file is deleted once the
//! segment is durably stored and the catalog says so.
//!
//! Beside them, `spool/<recording>.key` holds an encrypted recording's
//! wrapped data key while any of its segments waits here (one that could
//! not be uploaded at once), so that a
//! catalog rebuilt from the stores and the spool can read those too.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use reel_catalog::RecordingId;

use crate::error::{EngineError, Result};

pub(crate) struct Spool {
    dir: PathBuf,
    bytes: AtomicU64,
    files: AtomicU64,
}

impl Spool {
    /// Opens the spool directory, removing temporaries left by a crash.
    pub(crate) fn open(dir: PathBuf) -> Result<Spool> {
        fs::create_dir_all(&dir).map_err(|e| EngineError::io(&dir, e))?;
        let spool = Spool {
            dir,
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
        };
        for entry in fs::read_dir(&spool.dir).map_err(|e| EngineError::io(&spool.dir, e))? {
            let entry = entry.map_err(|e| EngineError::io(&spool.dir, e))?;
            let path = entry.path();
            if path
                .extension()
                .is_some_and(|e| e == "tmp" || e == "keytmp")
            {
                let _ = fs::remove_file(&path);
            } else if let Ok(meta) = entry.metadata()
                && meta.is_file()
                && path.extension().is_some_and(|e| e == "seg")
            {
                spool.bytes.fetch_add(meta.len(), Ordering::Relaxed);
                spool.files.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(spool)
    }

    fn path(&self, id: RecordingId, seq: u64) -> PathBuf {
        self.dir.join(file_name(id, seq))
    }

    fn key_path(&self, id: RecordingId) -> PathBuf {
        self.dir.join(format!("{id}.key"))
    }

    /// Keeps recording `id`'s wrapped data key beside its spooled segments
    /// (once: a key file already there is left as it is). `durable`: synced
    /// (file and directory) before this returns; otherwise only written, and
    /// made durable by the next sync of the spool directory (a segment's
    /// [`Spool::write`]) as far as the file system orders it.
    pub(crate) fn write_key(&self, id: RecordingId, wrapped: &[u8], durable: bool) -> Result<()> {
        if self.key_path(id).exists() {
            return Ok(());
        }
        self.put_key_file(id, wrapped, durable)
    }

    /// Replaces recording `id`'s key file, if there is one, with `wrapped`
    /// (the same data key wrapped by another master key), durably: a crash
    /// leaves the old file or the new one.
    pub(crate) fn replace_key(&self, id: RecordingId, wrapped: &[u8]) -> Result<()> {
        if !self.key_path(id).exists() {
            return Ok(());
        }
        self.put_key_file(id, wrapped, true)
    }

    fn put_key_file(&self, id: RecordingId, wrapped: &[u8], durable: bool) -> Result<()> {
        let path = self.key_path(id);
        let tmp = path.with_extension("keytmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(wrapped)?;
            if durable {
                f.sync_all()?;
            }
            fs::rename(&tmp, &path)?;
            if durable {
                File::open(&self.dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            EngineError::io(&path, e)
        })
    }

    /// Recording `id`'s wrapped data key, if the spool keeps it.
    pub(crate) fn read_key(&self, id: RecordingId) -> Option<Vec<u8>> {
        fs::read(self.key_path(id)).ok()
    }

    /// Forgets recording `id`'s wrapped data key (no segment of it is left
    /// here, or it is purged).
    pub(crate) fn remove_key(&self, id: RecordingId) -> Result<()> {
        let path = self.key_path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io(&path, e)),
        }
    }

    /// The recordings whose keys the spool keeps.
    pub(crate) fn keys(&self) -> Vec<RecordingId> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                name.to_str()?.strip_suffix(".key")?.parse().ok()
            })
            .collect()
    }

    /// Writes a sealed segment durably. Replaces a leftover of an earlier try.
    pub(crate) fn write(&self, id: RecordingId, seq: u64, bytes: &[u8]) -> Result<()> {
        let path = self.path(id, seq);
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        let previous = fs::metadata(&path).map(|m| m.len()).ok();
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(EngineError::io(&path, e));
        }
        match previous {
            Some(len) => self.bytes.fetch_sub(len, Ordering::Relaxed),
            None => self.files.fetch_add(1, Ordering::Relaxed),
        };
        self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// The bytes of a spooled segment, or `None` when it is not (or no longer)
    /// in the spool.
    pub(crate) fn read(&self, id: RecordingId, seq: u64) -> Result<Option<Bytes>> {
        let path = self.path(id, seq);
        match fs::read(&path) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EngineError::io(&path, e)),
        }
    }

    pub(crate) fn contains(&self, id: RecordingId, seq: u64) -> bool {
        self.path(id, seq).exists()
    }

    pub(crate) fn remove(&self, id: RecordingId, seq: u64) -> Result<()> {
        let path = self.path(id, seq);
        let len = fs::metadata(&path).map(|m| m.len()).ok();
        match fs::remove_file(&path) {
            Ok(()) => {
                self.bytes.fetch_sub(len.unwrap_or(0), Ordering::Relaxed);
                self.files.fetch_sub(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io(&path, e)),
        }
    }

    /// The segment is stored: its spool file goes, into the read `cache`
    /// when that keeps it (renamed, not copied), else deleted.
    pub(crate) fn release(
        &self,
        id: RecordingId,
        seq: u64,
        cache: &crate::cache::ReadCache,
        now_us: i64,
    ) -> Result<()> {
        let path = self.path(id, seq);
        if cache.enabled()
            && let Ok(meta) = fs::metadata(&path)
            && cache.admit(id, seq, &path, meta.len(), now_us)
        {
            self.bytes.fetch_sub(meta.len(), Ordering::Relaxed);
            self.files.fetch_sub(1, Ordering::Relaxed);
            return Ok(());
        }
        self.remove(id, seq)
    }

    /// Every spooled segment.
    pub(crate) fn list(&self) -> Result<Vec<(RecordingId, u64)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| EngineError::io(&self.dir, e))? {
            let entry = entry.map_err(|e| EngineError::io(&self.dir, e))?;
            if let Some(key) = parse_name(&entry.path()) {
                out.push(key);
            }
        }
        out.sort();
        Ok(out)
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }
}

/// A segment file's name, in the spool and in the read cache.
pub(crate) fn file_name(id: RecordingId, seq: u64) -> String {
    format!("{id}-{seq:010}.seg")
}

/// The segment a file name (see [`file_name`]) stands for.
pub(crate) fn parse_name(path: &Path) -> Option<(RecordingId, u64)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".seg")?;
    let (id, seq) = stem.split_once('-')?;
    Some((id.parse().ok()?, seq.parse().ok()?))
}
