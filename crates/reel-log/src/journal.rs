//! The journal: one append-only, group-committed log shared by every
//! recording of a node.
//!
//! Appends go to a single writer thread. Each time it wakes it takes every
//! append waiting at that moment, writes them with one `pwrite`, issues one
//! `fdatasync` for the whole batch and only then completes them, in order. So
//! a thousand recordings waiting together cost one fsync, not a thousand.
//!
//! The journal is split into files of about [`JournalOptions::file_size`]
//! bytes, named `<id as 16 hex digits>.wal`. A file is deleted only when its
//! owner says that nothing in it is needed any more
//! ([`Journal::release_before`]).
//!
//! Files after the first are written with zeros to their full size before
//! they take records (by a helper thread, while the file before them is
//! half full, or has 1 MiB when it is the first of the run, which then
//! gives way as soon as the next is ready; as `<id>.prep` until the writer
//! renames it): an `fdatasync`
//! that only overwrites allocated blocks has no file size or extent to make
//! durable, and takes about half the time of one that grows the file (on
//! this project's machine, 105 against 225 µs). Replay reads a zero tail as
//! the end of a file's records.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::error::JournalError;
use crate::record::{self, FrameError, HEADER_LEN};

const FILE_MAGIC: &[u8; 8] = b"REELWAL\x01";
const FILE_HEADER_LEN: u64 = 16;
/// The size of the zero writes that prepare a file.
const ZERO_CHUNK: usize = 1 << 20;
/// Bytes written to a file that was not prepared (the first of a run)
/// after which the next file is prepared, and used as soon as it is ready:
/// sustained ingest soon runs on prepared files, while a node that takes
/// little (a test, an idle server) never writes a file of zeros.
const PREPARE_AFTER: u64 = 1 << 20;

/// How the journal is laid out and bounded.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// The directory holding the journal files; created if missing.
    pub dir: PathBuf,
    /// A file is rotated once it holds at least this many bytes.
    pub file_size: u64,
    /// The largest payload one record may carry.
    pub max_record_bytes: u32,
    /// The most bytes written by one group commit (one `pwrite`, one fsync).
    pub max_batch_bytes: usize,
}

impl JournalOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalOptions {
            dir: dir.into(),
            file_size: 64 << 20,
            max_record_bytes: 16 << 20,
            max_batch_bytes: 8 << 20,
        }
    }
}

/// Where a record lives: the file, the offset of its header, and the length
/// of its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub file: u64,
    pub offset: u64,
    pub len: u32,
}

impl Position {
    /// Bytes the record occupies in its file, header included.
    pub fn framed_len(&self) -> u64 {
        HEADER_LEN as u64 + self.len as u64
    }
}

/// A region of a journal file that recovery could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub file: u64,
    pub offset: u64,
    pub len: u64,
    pub reason: String,
}

/// What [`Journal::open`] found.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Files scanned.
    pub files: usize,
    /// Valid records replayed.
    pub records: u64,
    /// Payload bytes replayed.
    pub bytes: u64,
    /// An incomplete record at the very end of the last file: the trace of a
    /// crash in the middle of a write that was never acknowledged. It is cut.
    pub torn_tail: Option<Damage>,
    /// Unreadable regions followed by valid records: real corruption, which
    /// may have destroyed acknowledged events. Reported, skipped, never cut.
    pub corrupt: Vec<Damage>,
}

/// Called once per append, on the writer thread, when the record is durable
/// (or failed). Keep it short: the next group commit waits for it.
pub type Completion = Box<dyn FnOnce(Result<Position, JournalError>) + Send>;

/// Counters of the writer, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct JournalStats {
    pub records: AtomicU64,
    pub batches: AtomicU64,
    pub bytes: AtomicU64,
    pub failed_batches: AtomicU64,
}

struct Request {
    payload: Vec<u8>,
    done: CompletionGuard,
}

/// Completes with [`JournalError::Closed`] if dropped unanswered, so no
/// caller waits forever on a journal that shut down under it.
struct CompletionGuard(Option<Completion>);

impl CompletionGuard {
    fn complete(mut self, result: Result<Position, JournalError>) {
        if let Some(done) = self.0.take() {
            done(result);
        }
    }
}

impl Drop for CompletionGuard {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done(Err(JournalError::Closed));
        }
    }
}

struct Shared {
    dir: PathBuf,
    max_record_bytes: u32,
    /// Every file on disk and its size.
    files: Mutex<BTreeMap<u64, u64>>,
    /// The sum of `files`, readable without the lock on the ingest path.
    disk_bytes: AtomicU64,
    readers: Mutex<BTreeMap<u64, Arc<File>>>,
    /// The file being written.
    current: AtomicU64,
    stats: JournalStats,
}

impl Shared {
    /// Records that file `id` went from `was` to `now` bytes on disk.
    fn resize(&self, id: u64, was: u64, now: u64) {
        self.files.lock().expect("files lock").insert(id, now);
        if now >= was {
            self.disk_bytes.fetch_add(now - was, Ordering::Relaxed);
        } else {
            self.disk_bytes.fetch_sub(was - now, Ordering::Relaxed);
        }
    }

    fn path(&self, file: u64) -> PathBuf {
        file_path(&self.dir, file)
    }

    fn reader(&self, file: u64) -> Result<Arc<File>, JournalError> {
        if let Some(f) = self.readers.lock().expect("readers lock").get(&file) {
            return Ok(f.clone());
        }
        if !self.files.lock().expect("files lock").contains_key(&file) {
            return Err(JournalError::Released { file });
        }
        let path = self.path(file);
        let f = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(JournalError::Released { file });
            }
            Err(e) => return Err(JournalError::io(path, e)),
        };
        self.readers
            .lock()
            .expect("readers lock")
            .insert(file, f.clone());
        Ok(f)
    }
}

/// The shared write-ahead journal. Cheap to share behind an `Arc`.
pub struct Journal {
    tx: Mutex<Option<Sender<Request>>>,
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Journal {
    /// Opens (or creates) the journal in `options.dir`, replaying every valid
    /// record in order through `on_record` before returning.
    ///
    /// A torn record at the end of the last file (a write cut by a crash,
    /// never acknowledged) is truncated away. A corrupted region followed by
    /// valid records is skipped and listed in the report. New appends go to a
    /// fresh file.
    pub fn open(
        options: JournalOptions,
        mut on_record: impl FnMut(Position, Bytes),
    ) -> Result<(Journal, RecoveryReport), JournalError> {
        let dir = options.dir.clone();
        prepare_dir(&dir)?;
        let mut report = RecoveryReport::default();
        let mut files = BTreeMap::new();
        remove_unadopted(&dir)?;
        let ids = list_files(&dir)?;
        for (i, &id) in ids.iter().enumerate() {
            let last = i + 1 == ids.len();
            if let Some(size) = replay_file(
                &dir,
                id,
                last,
                options.max_record_bytes,
                &mut report,
                &mut on_record,
            )? {
                files.insert(id, size);
            }
        }
        report.files = ids.len();
        let next = ids.last().map_or(1, |id| id + 1);
        let active = ActiveFile::create(&dir, next)?;
        files.insert(next, FILE_HEADER_LEN);
        let disk_bytes = AtomicU64::new(files.values().sum());
        let shared = Arc::new(Shared {
            dir,
            max_record_bytes: options.max_record_bytes,
            files: Mutex::new(files),
            disk_bytes,
            readers: Mutex::new(BTreeMap::new()),
            current: AtomicU64::new(next),
            stats: JournalStats::default(),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            shared: shared.clone(),
            options,
            file: Some(active),
            next_id: next + 1,
            buf: Vec::new(),
            next: None,
        };
        let handle = std::thread::Builder::new()
            .name("reel-journal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| JournalError::io(&shared.dir, e))?;
        Ok((
            Journal {
                tx: Mutex::new(Some(tx)),
                shared,
                writer: Mutex::new(Some(handle)),
            },
            report,
        ))
    }

    /// Queues `payload` as one record. `done` runs on the writer thread once
    /// the record is on stable storage (`fdatasync` returned) with its
    /// position, or with the error that kept it from being durable.
    ///
    /// Records are written, and completions called, in the order of the
    /// calls to `append`. When a group commit fails, every append already
    /// queued behind it fails too, so a failure never leaves a hole between
    /// durable records of one caller.
    pub fn append(&self, payload: Vec<u8>, done: Completion) {
        let done = CompletionGuard(Some(done));
        if payload.is_empty() || payload.len() > self.shared.max_record_bytes as usize {
            done.complete(Err(JournalError::RecordTooLarge {
                len: payload.len(),
                max: self.shared.max_record_bytes,
            }));
            return;
        }
        let tx = self.tx.lock().expect("journal sender lock");
        match tx.as_ref() {
            // A failed send drops the request, whose guard answers Closed.
            Some(tx) => drop(tx.send(Request { payload, done })),
            None => done.complete(Err(JournalError::Closed)),
        }
    }

    /// Appends and waits until the record is durable.
    pub async fn append_durable(&self, payload: Vec<u8>) -> Result<Position, JournalError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.append(
            payload,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.unwrap_or(Err(JournalError::Closed))
    }

    /// Reads back the payload of a durable record, checking its checksum.
    pub fn read(&self, pos: Position) -> Result<Bytes, JournalError> {
        let file = self.shared.reader(pos.file)?;
        let mut buf = vec![0u8; pos.framed_len() as usize];
        file.read_exact_at(&mut buf, pos.offset)
            .map_err(|e| JournalError::io(self.shared.path(pos.file), e))?;
        match record::decode(&buf, self.shared.max_record_bytes) {
            Ok((payload, _)) if payload.len() == pos.len as usize => {
                let mut buf = Bytes::from(buf);
                Ok(buf.split_off(HEADER_LEN))
            }
            Ok(_) => Err(JournalError::BadRecord {
                file: pos.file,
                offset: pos.offset,
                reason: "length differs from the position".into(),
            }),
            Err(e) => Err(JournalError::BadRecord {
                file: pos.file,
                offset: pos.offset,
                reason: e.to_string(),
            }),
        }
    }

    /// Deletes every file older than `file` (never the one being written).
    /// Returns the bytes freed. The caller guarantees that nothing in those
    /// files is still needed: their records are sealed into segments that are
    /// durable elsewhere and recorded in the catalog.
    pub fn release_before(&self, file: u64) -> Result<u64, JournalError> {
        let limit = file.min(self.shared.current.load(Ordering::Acquire));
        let doomed: Vec<u64> = {
            let files = self.shared.files.lock().expect("files lock");
            files.range(..limit).map(|(k, _)| *k).collect()
        };
        let mut freed = 0;
        for id in doomed {
            let path = self.shared.path(id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(JournalError::io(path, e)),
            }
            // Only what this call took out of the map is subtracted, so a
            // concurrent release of the same file never counts it twice.
            let removed = self.shared.files.lock().expect("files lock").remove(&id);
            if let Some(size) = removed {
                self.shared.disk_bytes.fetch_sub(size, Ordering::Relaxed);
                freed += size;
            }
            self.shared
                .readers
                .lock()
                .expect("readers lock")
                .remove(&id);
            tracing::debug!(file = id, "released journal file");
        }
        Ok(freed)
    }

    /// The id of the file being written; records appended from now on land
    /// in it or a later one.
    pub fn current_file(&self) -> u64 {
        self.shared.current.load(Ordering::Acquire)
    }

    /// Bytes of all journal files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.shared.disk_bytes.load(Ordering::Relaxed)
    }

    /// Number of journal files on disk.
    pub fn file_count(&self) -> usize {
        self.shared.files.lock().expect("files lock").len()
    }

    pub fn stats(&self) -> &JournalStats {
        &self.shared.stats
    }

    /// Stops accepting appends, lets the writer finish what is queued and
    /// waits for it. Later appends fail with [`JournalError::Closed`].
    pub fn shutdown(&self) {
        drop(self.tx.lock().expect("journal sender lock").take());
        if let Some(handle) = self.writer.lock().expect("writer lock").take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct ActiveFile {
    id: u64,
    file: File,
    /// Where the next record goes.
    len: u64,
    /// The file's size on disk: `len`, or more when it was prepared.
    allocated: u64,
    /// Written with zeros to its full size before it took records.
    prepared: bool,
}

impl ActiveFile {
    /// Creates a new journal file and makes its existence durable.
    fn create(dir: &Path, id: u64) -> Result<ActiveFile, JournalError> {
        let path = file_path(dir, id);
        Self::write_new(&path, id, FILE_HEADER_LEN)
            .and_then(|file| {
                sync_dir(dir)?;
                Ok(file)
            })
            .map_err(|e| {
                let _ = std::fs::remove_file(&path);
                JournalError::io(&path, e)
            })
    }

    /// Writes file `id` at `path`: its header, then zeros up to `size`,
    /// all of it synced (not its directory entry).
    fn write_new(path: &Path, id: u64, size: u64) -> std::io::Result<ActiveFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let mut header = [0u8; FILE_HEADER_LEN as usize];
        header[..8].copy_from_slice(FILE_MAGIC);
        header[8..].copy_from_slice(&id.to_le_bytes());
        file.write_all_at(&header, 0)?;
        let zeros = vec![0u8; ZERO_CHUNK];
        let mut at = FILE_HEADER_LEN;
        while at < size {
            let n = (size - at).min(ZERO_CHUNK as u64) as usize;
            file.write_all_at(&zeros[..n], at)?;
            // Synced chunk by chunk: one large writeback at the end would
            // sit in the disk's queue ahead of the group commits' fsyncs.
            file.sync_data()?;
            at += n as u64;
        }
        file.sync_all()?;
        Ok(ActiveFile {
            id,
            file,
            len: FILE_HEADER_LEN,
            allocated: size.max(FILE_HEADER_LEN),
            prepared: size > FILE_HEADER_LEN,
        })
    }

    /// Prepares file `id` on a helper thread: written with zeros to `size`
    /// as `<id>.prep`, which [`Self::adopt`] renames.
    fn prepare(dir: &Path, id: u64, size: u64) -> Option<JoinHandle<std::io::Result<ActiveFile>>> {
        let path = prep_path(dir, id);
        std::thread::Builder::new()
            .name("reel-journal-prep".into())
            .spawn(move || {
                Self::write_new(&path, id, size).inspect_err(|_| {
                    let _ = std::fs::remove_file(&path);
                })
            })
            .ok()
    }

    /// Makes a prepared file the journal file it was prepared as, durably.
    fn adopt(self, dir: &Path) -> std::io::Result<ActiveFile> {
        let from = prep_path(dir, self.id);
        let renamed = std::fs::rename(&from, file_path(dir, self.id)).and_then(|_| sync_dir(dir));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&from);
        }
        renamed.map(|_| self)
    }
}

struct Writer {
    shared: Arc<Shared>,
    options: JournalOptions,
    file: Option<ActiveFile>,
    /// Ids only grow, so a file left behind by a failed write is never reused.
    next_id: u64,
    buf: Vec<u8>,
    /// File `next_id`, being prepared.
    next: Option<JoinHandle<std::io::Result<ActiveFile>>>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>) {
        let mut batch = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut bytes = first.payload.len();
            batch.push(first);
            while bytes < self.options.max_batch_bytes {
                match rx.try_recv() {
                    Ok(r) => {
                        bytes += r.payload.len();
                        batch.push(r);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            if let Err(e) = self.commit(&mut batch) {
                self.shared
                    .stats
                    .failed_batches
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "journal group commit failed");
                for r in batch.drain(..) {
                    r.done.complete(Err(e.clone()));
                }
                // Whatever was queued behind the failed batch fails too, so
                // no caller ends up with a durable record after a lost one.
                while let Ok(r) = rx.try_recv() {
                    r.done.complete(Err(e.clone()));
                }
            }
        }
        // Closed: a file being prepared will not be used.
        if let Some(Ok(Ok(f))) = self.next.take().map(|h| h.join()) {
            let _ = std::fs::remove_file(prep_path(&self.shared.dir, f.id));
        }
    }

    fn commit(&mut self, batch: &mut Vec<Request>) -> Result<(), JournalError> {
        let batch_bytes: u64 = batch
            .iter()
            .map(|r| (r.payload.len() + HEADER_LEN) as u64)
            .sum();
        let next_ready = self.next.as_ref().is_some_and(|h| h.is_finished());
        let rotate = match &self.file {
            None => true,
            Some(f) => {
                (f.len > FILE_HEADER_LEN && f.len + batch_bytes > self.options.file_size)
                    || (!f.prepared && next_ready)
            }
        };
        if rotate {
            self.rotate()?;
        }
        let active = self.file.as_mut().expect("active journal file");
        self.buf.clear();
        let mut positions = Vec::with_capacity(batch.len());
        for r in batch.iter() {
            positions.push(Position {
                file: active.id,
                offset: active.len + self.buf.len() as u64,
                len: r.payload.len() as u32,
            });
            record::encode_into(&r.payload, &mut self.buf);
        }
        let written = active
            .file
            .write_all_at(&self.buf, active.len)
            .and_then(|_| active.file.sync_data());
        if let Err(e) = written {
            // Cut what may have reached the file so that a later batch never
            // lands after records nobody was told about; then start a new
            // file, since after a failed fsync the kernel's view of this one
            // can no longer be trusted.
            if active.file.set_len(active.len).is_ok() {
                let (id, was, len) = (active.id, active.allocated, active.len);
                self.shared.resize(id, was, len);
            }
            let err = JournalError::io(self.shared.path(active.id), e);
            self.file = None;
            return Err(err);
        }
        active.len += self.buf.len() as u64;
        let allocated = active.allocated.max(active.len);
        let (id, was) = (active.id, active.allocated);
        active.allocated = allocated;
        let due = if active.prepared {
            active.len > self.options.file_size / 2
        } else {
            active.len > (self.options.file_size / 2).min(PREPARE_AFTER)
        };
        let size = self.options.file_size.max(FILE_HEADER_LEN);
        if due
            && self.next.is_none()
            && room_to_prepare(crate::disk::free_bytes(&self.shared.dir), size)
        {
            self.next = ActiveFile::prepare(&self.shared.dir, self.next_id, size);
        }
        self.shared.resize(id, was, allocated);
        let stats = &self.shared.stats;
        stats
            .records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        for (r, pos) in batch.drain(..).zip(positions) {
            r.done.complete(Ok(pos));
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        let id = self.next_id;
        // The prepared file when it is ready (waiting for it is shorter than
        // growing a file record by record); else a file made now.
        let prepared = self
            .next
            .take()
            .and_then(|h| h.join().ok())
            .and_then(|r| {
                r.inspect_err(|e| tracing::warn!(file = id, error = %e, "preparing a journal file failed; one is made as it goes"))
                    .ok()
            })
            .filter(|f| f.id == id)
            .and_then(|f| f.adopt(&self.shared.dir).ok());
        let active = match prepared {
            Some(f) => f,
            None => ActiveFile::create(&self.shared.dir, id)?,
        };
        self.next_id += 1;
        self.shared.resize(id, 0, active.allocated);
        self.shared.current.store(id, Ordering::Release);
        self.file = Some(active);
        Ok(())
    }
}

/// Whether a file of `size` may be prepared with `free` bytes left on the
/// disk: only with room for it twice. Its zeros take the space at once, so
/// on a nearly full disk a preparation would take the last of it from the
/// spool and the catalog (and then give it back on failing); there the
/// next file grows as it is written instead.
fn room_to_prepare(free: Option<u64>, size: u64) -> bool {
    free.is_some_and(|free| free / 2 >= size)
}

fn file_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.wal"))
}

fn prep_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.prep"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the directory if needed and checks that it can be written, so that
/// a read-only data directory is reported at start, not at the first append.
fn prepare_dir(dir: &Path) -> Result<(), JournalError> {
    let bad = |reason: String| JournalError::BadDirectory {
        path: dir.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create it: {e}")))?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"probe")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| bad(format!("cannot write in it: {e}")))?;
    Ok(())
}

/// Deletes files prepared and never adopted (the process stopped first):
/// they hold no record.
fn remove_unadopted(dir: &Path) -> Result<(), JournalError> {
    for entry in std::fs::read_dir(dir).map_err(|e| JournalError::io(dir, e))? {
        let path = entry.map_err(|e| JournalError::io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "prep") {
            std::fs::remove_file(&path).map_err(|e| JournalError::io(&path, e))?;
        }
    }
    Ok(())
}

fn list_files(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| JournalError::io(dir, e))? {
        let entry = entry.map_err(|e| JournalError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(hex) = name.strip_suffix(".wal")
            && hex.len() == 16
            && let Ok(id) = u64::from_str_radix(hex, 16)
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Replays one file; returns the size it keeps on disk, or `None` when the
/// file was an empty leftover and is gone.
fn replay_file(
    dir: &Path,
    id: u64,
    last: bool,
    max_len: u32,
    report: &mut RecoveryReport,
    on_record: &mut impl FnMut(Position, Bytes),
) -> Result<Option<u64>, JournalError> {
    let path = file_path(dir, id);
    let data = Bytes::from(std::fs::read(&path).map_err(|e| JournalError::io(&path, e))?);
    let header_ok = data.len() >= FILE_HEADER_LEN as usize
        && &data[..8] == FILE_MAGIC
        && data[8..16] == id.to_le_bytes();
    if !header_ok {
        if last && data.len() <= FILE_HEADER_LEN as usize {
            // A rotation cut by a crash before its header was durable: no
            // record can be in it.
            std::fs::remove_file(&path).map_err(|e| JournalError::io(&path, e))?;
            return Ok(None);
        }
        report.corrupt.push(Damage {
            file: id,
            offset: 0,
            len: data.len() as u64,
            reason: "bad journal file header".into(),
        });
        return Ok(Some(data.len() as u64));
    }
    let mut at = FILE_HEADER_LEN as usize;
    while at < data.len() {
        match record::decode(&data[at..], max_len) {
            Ok((payload, n)) => {
                let pos = Position {
                    file: id,
                    offset: at as u64,
                    len: payload.len() as u32,
                };
                report.records += 1;
                report.bytes += payload.len() as u64;
                on_record(pos, data.slice(at + HEADER_LEN..at + n));
                at += n;
            }
            Err(FrameError::Zero | FrameError::ShortHeader(_))
                if data[at..].iter().all(|&b| b == 0) =>
            {
                break;
            }
            Err(e) => match record::resync(&data, at + 1, max_len) {
                Some(next) => {
                    tracing::error!(file = id, offset = at, len = next - at, reason = %e, "corrupted journal region skipped");
                    report.corrupt.push(Damage {
                        file: id,
                        offset: at as u64,
                        len: (next - at) as u64,
                        reason: e.to_string(),
                    });
                    at = next;
                }
                None if last => {
                    tracing::warn!(file = id, offset = at, len = data.len() - at, reason = %e, "torn journal tail cut");
                    report.torn_tail = Some(Damage {
                        file: id,
                        offset: at as u64,
                        len: (data.len() - at) as u64,
                        reason: e.to_string(),
                    });
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| JournalError::io(&path, e))?;
                    f.set_len(at as u64)
                        .and_then(|_| f.sync_all())
                        .map_err(|e| JournalError::io(&path, e))?;
                    return Ok(Some(at as u64));
                }
                None => {
                    tracing::error!(file = id, offset = at, len = data.len() - at, reason = %e, "unreadable end of a journal file");
                    report.corrupt.push(Damage {
                        file: id,
                        offset: at as u64,
                        len: (data.len() - at) as u64,
                        reason: e.to_string(),
                    });
                    break;
                }
            },
        }
    }
    Ok(Some(data.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_prepared_only_where_it_fits_twice() {
        let mib = 1u64 << 20;
        assert!(room_to_prepare(Some(128 * mib), 64 * mib));
        // The full-disk test's 48 MiB disk, 64 MiB files: never prepared.
        assert!(!room_to_prepare(Some(48 * mib), 64 * mib));
        assert!(!room_to_prepare(Some(127 * mib), 64 * mib));
        assert!(!room_to_prepare(None, 64 * mib), "free space unknown");
        // And on this machine's temporary directory, as the journal asks.
        let dir = tempfile::tempdir().unwrap();
        let free = crate::disk::free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        assert!(room_to_prepare(Some(free), free / 2));
        assert!(!room_to_prepare(Some(free), free / 2 + 1));
    }
}
