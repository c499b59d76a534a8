use thiserror::Error;

use reel_catalog::{CatalogError, InvalidId, RecordingId};
use reel_log::{JournalError, SegmentError};
use reel_storage::StorageError;

/// Errors of the engine. Each variant says what the caller did wrong or what
/// failed underneath; the server maps them to gRPC and HTTP statuses.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    #[error("recording {0} not found")]
    NotFound(RecordingId),
    /// The request itself is bad (oversized event, time going backwards, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The request does not fit the recording's state (events after a close,
    /// a second recorder on one recording, ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Local disk or log capacity is exhausted; nothing of the refused request
    /// was kept, and everything acknowledged before is safe. Retry later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A read wants bytes that only a store which is down (or not
    /// answering) holds; the message names the events and times missing.
    #[error("{0}")]
    Unavailable(String),
    /// A time window outside the recording (it starts after the end).
    #[error("{0}")]
    OutOfRange(String),
    /// Events that no copy holds intact (see [`crate::Gap`]).
    #[error("recording {recording}: {gap}")]
    Gap {
        recording: RecordingId,
        gap: Box<crate::Gap>,
    },
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("keys: {0}")]
    Keys(#[from] reel_keys::KeyError),
    /// The recording is encrypted and its data key does not open here (its
    /// master key is not held, or the wrapped key was altered).
    #[error("recording {recording} cannot be decrypted: {source}")]
    RecordingKey {
        recording: RecordingId,
        #[source]
        source: reel_keys::KeyError,
    },
    #[error("recording {recording}: segment {sequence} is damaged: {source}")]
    Segment {
        recording: RecordingId,
        sequence: u64,
        #[source]
        source: SegmentError,
    },
    #[error("local I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("engine is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What a caller can do about an [`EngineError`]: the one thing the server
/// maps to gRPC codes and HTTP statuses. The error's message says the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong: fix it, do not retry it as it is.
    InvalidArgument,
    /// No such recording.
    NotFound,
    /// The request does not fit the current state (a closed recording, a
    /// legal hold, a second recorder).
    Conflict,
    /// A time window outside the recording.
    OutOfRange,
    /// Local capacity (disk, log, open streams) is used up: retry later.
    Exhausted,
    /// A store (or the engine) cannot answer now: retry later.
    Unavailable,
    /// Stored bytes or rows do not check: some data is lost or altered.
    Corrupt,
    /// A bug or an unexpected local failure.
    Internal,
}

impl EngineError {
    /// The kind of this error. The one place that decides, for instance,
    /// that a store's time-out or failure is [`ErrorKind::Unavailable`]
    /// whatever operation met it.
    pub fn kind(&self) -> ErrorKind {
        use reel_catalog::CatalogError as C;
        match self {
            EngineError::InvalidId(_) | EngineError::InvalidArgument(_) => {
                ErrorKind::InvalidArgument
            }
            EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::FailedPrecondition(_) => ErrorKind::Conflict,
            EngineError::OutOfRange(_) => ErrorKind::OutOfRange,
            EngineError::ResourceExhausted(_) => ErrorKind::Exhausted,
            EngineError::Journal(j) if j.is_disk_full() => ErrorKind::Exhausted,
            EngineError::Io { source, .. } if reel_log::is_disk_full(source) => {
                ErrorKind::Exhausted
            }
            EngineError::Unavailable(_) | EngineError::ShuttingDown => ErrorKind::Unavailable,
            EngineError::Catalog(C::Locked { .. } | C::Closed) => ErrorKind::Unavailable,
            EngineError::Storage(StorageError::Timeout { .. } | StorageError::Backend { .. }) => {
                ErrorKind::Unavailable
            }
            // The catalog names an object the store does not have.
            EngineError::Storage(StorageError::NotFound { .. }) => ErrorKind::Corrupt,
            EngineError::Gap { .. } | EngineError::Segment { .. } => ErrorKind::Corrupt,
            EngineError::Catalog(C::Corrupt { .. } | C::Decode { .. }) => ErrorKind::Corrupt,
            EngineError::Keys(
                reel_keys::KeyError::Inauthentic | reel_keys::KeyError::BadSignature,
            ) => ErrorKind::Corrupt,
            // Rotation asked of keys the operator gives: theirs to change.
            EngineError::Keys(reel_keys::KeyError::RotateInEnvironment) => ErrorKind::Conflict,
            EngineError::Journal(_)
            | EngineError::Keys(_)
            | EngineError::RecordingKey { .. }
            | EngineError::Catalog(_)
            | EngineError::Storage(StorageError::Config { .. })
            | EngineError::Io { .. }
            | EngineError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl EngineError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
