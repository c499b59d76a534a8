//! The in-memory state of an open recording.
//!
//! An open recording holds no event bytes: only where its unsealed events
//! sit in the journal (one small [`Chunk`] per journal record), so an idle
//! recording costs a few hundred bytes and a busy one 20 bytes or so an
//! unsealed journal record ([`Chunks`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use reel_catalog::RecordingId;
use reel_keys::{KeyProvider, WrappedKey};
use reel_log::{Hash, RecordingKey};
use reel_proto::v1::RecordingRow;
use tokio::sync::Notify;

/// What a closed recording ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub id: RecordingId,
    pub event_count: u64,
    pub duration_us: u64,
}

pub(crate) use crate::chunks::{Chunk, Chunks};

/// What the ingest path and the sealer share, behind a short-held mutex.
#[derive(Debug)]
pub(crate) struct LiveState {
    /// Events handed to the journal (durable or on their way).
    pub accepted: u64,
    /// Events durable in the journal or in segments: every index below is safe.
    pub durable: u64,
    /// Time of the last durable event.
    pub durable_time_us: u64,
    /// Durable journal records not yet sealed into segments, in order.
    pub chunks: Chunks,
    pub unsealed_bytes: u64,
    /// When the oldest unsealed chunk was appended (for sealing by age).
    pub unsealed_since: Option<Instant>,
    /// A recorder stream is attached.
    pub attached: bool,
    pub detached_since: Option<Instant>,
    /// Set when a journal write for this recording failed: the stream is
    /// broken and the recorder must resume from `durable`.
    pub poisoned: Option<String>,
    /// The recording is being closed; nothing may attach or append.
    pub closing: bool,
    pub seal_requested: bool,
}

/// What only the sealer touches, behind an async mutex that also serializes
/// seals of one recording.
#[derive(Debug)]
pub(crate) struct SealState {
    /// The catalog row as last committed.
    pub row: RecordingRow,
    pub prev_hash: Option<Hash>,
}

#[derive(Debug)]
pub(crate) struct OpenRecording {
    pub id: RecordingId,
    live: Mutex<LiveState>,
    pub seal: tokio::sync::Mutex<SealState>,
    /// Signalled whenever `durable` moves or the recording is poisoned.
    pub durable_changed: Notify,
    /// Its data key, when it is encrypted: what its journal records and
    /// segments are sealed with.
    pub key: Option<RecordingKey>,
}

impl OpenRecording {
    /// A recording opened `now`; one not `attached` counts as detached
    /// since then.
    pub(crate) fn new(
        id: RecordingId,
        row: RecordingRow,
        attached: bool,
        now: Instant,
        key: Option<RecordingKey>,
    ) -> Arc<OpenRecording> {
        let durable = row.next_event_index;
        let prev_hash = row.last_segment_hash.as_slice().try_into().ok();
        Arc::new(OpenRecording {
            id,
            live: Mutex::new(LiveState {
                accepted: durable,
                durable,
                durable_time_us: row.last_time_us,
                chunks: Chunks::default(),
                unsealed_bytes: 0,
                unsealed_since: None,
                attached,
                detached_since: (!attached).then_some(now),
                poisoned: None,
                closing: false,
                seal_requested: false,
            }),
            seal: tokio::sync::Mutex::new(SealState { row, prev_hash }),
            durable_changed: Notify::new(),
            key,
        })
    }

    pub(crate) fn live(&self) -> MutexGuard<'_, LiveState> {
        self.live.lock().expect("recording state lock poisoned")
    }
}

/// Reads the events of `chunks` back from the journal, checking that each
/// record is the one the chunk says.
pub(crate) fn read_chunks(
    journal: &reel_log::Journal,
    id: RecordingId,
    key: Option<&RecordingKey>,
    chunks: &[Chunk],
) -> crate::Result<Vec<reel_proto::v1::Event>> {
    let mut events = Vec::with_capacity(chunks.iter().map(|c| c.count as usize).sum());
    for c in chunks {
        let payload = journal.read(c.position())?;
        let entry = reel_log::validate::decode_journal_entry(&payload).map_err(|e| {
            crate::EngineError::Internal(format!("journal record {:?} of {id}: {e}", c.position()))
        })?;
        if entry.recording_id != id.to_bytes()
            || entry.first_index != c.first_index
            || reel_log::validate::entry_summary(&entry).count != c.count
        {
            return Err(crate::EngineError::Internal(format!(
                "journal record {:?} is not events {}..{} of {id}",
                c.position(),
                c.first_index,
                c.end()
            )));
        }
        let opened = reel_log::validate::open_entry(entry, key).map_err(|e| {
            crate::EngineError::Internal(format!("journal record {:?} of {id}: {e}", c.position()))
        })?;
        events.extend(opened);
    }
    Ok(events)
}

/// The data key of recording `id` whose catalog row is `row`, opened by
/// `keys`; `None` for a recording stored in the clear.
pub(crate) fn recording_key(
    keys: &dyn KeyProvider,
    id: RecordingId,
    row: &RecordingRow,
) -> crate::Result<Option<RecordingKey>> {
    if row.wrapped_key.is_empty() {
        return Ok(None);
    }
    let bytes = id.to_bytes();
    let key = WrappedKey::from_bytes(&row.wrapped_key)
        .and_then(|wrapped| keys.unwrap(&bytes, &wrapped))
        .map_err(|source| crate::EngineError::RecordingKey {
            recording: id,
            source,
        })?;
    Ok(Some(RecordingKey::new(bytes, key)))
}
