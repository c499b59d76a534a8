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

impl EngineError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
