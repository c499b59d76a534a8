use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

/// Errors of the journal. Cloneable (the I/O error is shared): one failed
/// group commit answers every append in it with the same error.
#[derive(Debug, Clone, Error)]
pub enum JournalError {
    /// The disk (or the filesystem quota) is full. Nothing of the failed
    /// append is durable; appends succeed again once space returns.
    #[error("journal disk full at {path}: {source}")]
    DiskFull {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("journal I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("journal record of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge { len: usize, max: u32 },
    #[error("journal record at file {file} offset {offset} is unreadable: {reason}")]
    BadRecord {
        file: u64,
        offset: u64,
        reason: String,
    },
    #[error("journal file {file} was released; its records are gone from the local log")]
    Released { file: u64 },
    #[error("journal directory {path} is not usable: {reason}")]
    BadDirectory { path: PathBuf, reason: String },
    /// The writer thread has stopped (the journal was shut down).
    #[error("journal is shut down")]
    Closed,
}

impl JournalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        let full = is_disk_full(&source);
        let source = Arc::new(source);
        if full {
            JournalError::DiskFull { path, source }
        } else {
            JournalError::Io { path, source }
        }
    }

    /// True when the error means the disk is full, not that it is broken.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, JournalError::DiskFull { .. })
    }
}

/// ENOSPC or EDQUOT: the disk or the quota is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
}

/// Errors of the segment codec: the bytes are not a valid segment object.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SegmentError {
    #[error("not a Reel segment (bad magic)")]
    BadMagic,
    #[error("segment truncated: {0}")]
    Truncated(&'static str),
    #[error("segment header checksum mismatch")]
    HeaderChecksum,
    #[error("segment header does not decode: {0}")]
    HeaderDecode(String),
    #[error("unsupported segment format version {0}")]
    Version(u32),
    #[error("segment content is {actual} bytes, header says {expected}")]
    ContentLength { expected: u64, actual: u64 },
    #[error("segment content does not match its SHA-256 (corrupted or tampered)")]
    ContentHash,
    #[error("the segment header's signature does not check with key {key_id}")]
    BadSignature { key_id: String },
    #[error("the combined object's index signature does not check with key {key_id}")]
    IndexSignature { key_id: String },
    #[error("signed by key {key_id}, which is not one this server trusts")]
    UnknownSigner { key_id: String },
    #[error("content block at offset {offset} does not match its CRC32C (corrupted)")]
    BlockChecksum { offset: u64 },
    #[error(
        "content block at offset {offset} failed its integrity check (its bytes are not the ones sealed; its SHA-256 differs)"
    )]
    BlockIntegrity { offset: u64 },
    #[error(
        "content block at offset {offset} failed its integrity check (it does not open with the recording's data key)"
    )]
    BlockSeal { offset: u64 },
    #[error("the segment is encrypted and its recording's data key was not given")]
    KeyNeeded,
    #[error("segment content does not decode: {0}")]
    ContentDecode(String),
    #[error("segment is inconsistent with its header: {0}")]
    Inconsistent(String),
    /// A field (of a segment header, of a combined object's index) is out
    /// of its bounds or contradicts another.
    #[error("invalid {field}: {problem}")]
    Invalid { field: String, problem: String },
    /// The content does not decode at this byte offset (from the start of
    /// the content).
    #[error("segment content byte {offset}: {reason}")]
    Event { offset: u64, reason: String },
    /// A length the bytes claim is beyond what Reel ever writes.
    #[error("{what} of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
}

/// A field of a decoded message (a catalog row from an archive, a journal
/// entry) that is out of bounds or contradicts another; `field` is its path,
/// e.g. `segments[2].blocks[0].offset`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {problem}")]
pub struct InvalidField {
    pub field: String,
    pub problem: String,
}

impl InvalidField {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        InvalidField {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The same problem, its field named inside `parent`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

impl From<InvalidField> for SegmentError {
    fn from(e: InvalidField) -> Self {
        SegmentError::Invalid {
            field: e.field,
            problem: e.problem,
        }
    }
}
