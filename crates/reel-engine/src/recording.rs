//! The in-memory state of an open recording.
//!
//! An open recording holds no event bytes: only where its unsealed events
//! sit in the journal (one small [`Chunk`] per journal record), so an idle
//! recording costs a few hundred bytes and a busy one 20 bytes or so an
//! unsealed journal record ([`Chunks`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use reel_catalog::RecordingId;
use reel_clock::Clock;
use reel_keys::{KeyProvider, WrappedKey};
use reel_log::{Hash, RecordingKey};
use reel_proto::v1::RecordingRow;
use tokio::sync::mpsc::UnboundedSender;

use crate::EngineError;

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
    /// The error that poisoned it, for the first acknowledgement that
    /// reports it (the others say that an earlier batch failed).
    pub failure: Option<EngineError>,
    /// Tasks waiting for `durable` to move or for a failure.
    pub waiters: Waiters,
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
    /// Its data key, when it is encrypted: what its journal records and
    /// segments are sealed with.
    pub key: Option<RecordingKey>,
    pub acks: Arc<AckContext>,
}

/// What the journal's completion of an append needs of the engine besides
/// its recording. Each open recording holds it (cloned once, when it
/// opens) so that an append clones no handle that every recording shares:
/// such a handle's count, raised on a runtime worker and lowered on the
/// journal's thread, moved between the cores at every event.
#[derive(Debug)]
pub(crate) struct AckContext {
    /// The sealer's requests: the engine's only sender of them (see
    /// [`OpenRecording::request_seal`]).
    pub seal_tx: UnboundedSender<RecordingId>,
    pub seal_target: u64,
    /// Events acknowledged, for the metrics.
    pub acknowledged: Counter,
    pub clock: Arc<dyn Clock>,
}

/// The wakers of the tasks waiting on a recording's durable count: nearly
/// always one (its recorder's stream), so the first is kept apart and
/// waking it allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl Waiters {
    pub(crate) fn register(&mut self, waker: &Waker) {
        match &self.first {
            None => self.first = Some(waker.clone()),
            Some(w) if w.will_wake(waker) => {}
            Some(_) => {
                if !self.more.iter().any(|w| w.will_wake(waker)) {
                    self.more.push(waker.clone());
                }
            }
        }
    }

    /// Takes every waker, to be woken once the state's lock is released.
    #[must_use]
    pub(crate) fn take(&mut self) -> Waiters {
        Waiters {
            first: self.first.take(),
            more: std::mem::take(&mut self.more),
        }
    }

    pub(crate) fn wake(self) {
        if let Some(w) = self.first {
            w.wake();
        }
        self.more.into_iter().for_each(Waker::wake);
    }
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
        acks: Arc<AckContext>,
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
                failure: None,
                waiters: Waiters::default(),
                closing: false,
                seal_requested: false,
            }),
            seal: tokio::sync::Mutex::new(SealState { row, prev_hash }),
            key,
            acks,
        })
    }

    pub(crate) fn live(&self) -> MutexGuard<'_, LiveState> {
        self.live.lock().expect("recording state lock poisoned")
    }

    /// Asks the sealer to seal this recording, unless it was asked already
    /// (`seal_requested` stays set until the seal ends).
    pub(crate) fn request_seal(&self, live: &mut LiveState) {
        if !live.seal_requested {
            live.seal_requested = true;
            let _ = self.acks.seal_tx.send(self.id);
        }
    }

    /// Releases `live`, then wakes the tasks waiting on it: to be called
    /// whenever `durable` moves or the recording is poisoned.
    pub(crate) fn changed(&self, mut live: MutexGuard<'_, LiveState>) {
        let waiters = live.waiters.take();
        drop(live);
        waiters.wake();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use super::Waiters;

    struct Counted(AtomicUsize);

    impl Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counted() -> (Arc<Counted>, Waker) {
        let c = Arc::new(Counted(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn every_task_waiting_is_woken_once_however_often_it_registered() {
        let tasks: Vec<_> = (0..3).map(|_| counted()).collect();
        let mut waiters = Waiters::default();
        for _ in 0..2 {
            for (_, waker) in &tasks {
                waiters.register(waker);
            }
        }
        waiters.take().wake();
        for (i, (count, _)) in tasks.iter().enumerate() {
            assert_eq!(count.0.load(Ordering::SeqCst), 1, "task {i}");
        }
        // Taken: a second change wakes no one who did not register again.
        waiters.register(&tasks[1].1);
        waiters.take().wake();
        waiters.take().wake();
        let counts: Vec<usize> = tasks
            .iter()
            .map(|(c, _)| c.0.load(Ordering::SeqCst))
            .collect();
        assert_eq!(counts, [1, 2, 1]);
    }
}
