//! The ingest path: start, resume, append, close.
//!
//! An append never waits on a store, a catalog write or a thread of its own:
//! it encodes one journal record and hands it to the journal's group commit;
//! the acknowledgement resolves when that record is fsynced.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use reel_catalog::RecordingId;
use reel_keys::DataKey;
use reel_log::{JournalError, RecordingKey};
use reel_proto::v1::{Event, EventKind, RecordingMetadata, RecordingRow, RecordingState};
use tracing::{debug, info, warn};

use crate::config::EVENT_OVERHEAD_BYTES;
use crate::error::{EngineError, Result};
use crate::recording::{Chunk, Closed, OpenRecording};
use crate::{Engine, Inner, sealer};

/// Limits on metadata, so one recorder cannot bloat the catalog.
const MAX_FIELD_CHARS: usize = 1024;
const MAX_LABELS: usize = 64;
const MAX_SOURCE_HEADER: usize = 64 << 10;

/// Resolves once the batch it acknowledges is on stable storage: to the
/// batch's end (the number of events durable through it), or, for a batch
/// the recording already had, to the number durable then; or to the error
/// that kept it, or a batch before it, from being durable.
///
/// It waits on the recording's own state, not on a channel of its own: an
/// append allocates no acknowledgement, and the journal's completion wakes
/// the recorder's task once for all it has completed.
pub struct AckFuture {
    rec: Arc<OpenRecording>,
    target: u64,
    /// Resolve to `target` itself (an append's acknowledgement), not to
    /// every event durable by then.
    exact: bool,
}

impl Future for AckFuture {
    type Output = Result<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<u64>> {
        let mut live = self.rec.live();
        if live.durable >= self.target {
            let durable = if self.exact {
                self.target
            } else {
                live.durable
            };
            return Poll::Ready(Ok(durable));
        }
        if live.poisoned.is_some() {
            // The batch that failed, or one behind it: the failure's own
            // error goes to the first acknowledgement that meets it.
            let err = live.failure.take().unwrap_or_else(|| {
                EngineError::ResourceExhausted(format!(
                    "recording {}: a batch failed ({}); resume the recording to continue",
                    self.rec.id,
                    live.poisoned.as_deref().unwrap_or_default()
                ))
            });
            return Poll::Ready(Err(err));
        }
        live.waiters.register(cx.waker());
        Poll::Pending
    }
}

/// The one recorder of an open recording. Dropping it without
/// [`close`](Self::close) detaches: the recording stays open and can be
/// resumed until the detached timeout closes it as interrupted.
pub struct RecordingWriter {
    inner: Arc<Inner>,
    rec: Arc<OpenRecording>,
    next_index: u64,
    last_time_us: u64,
    finished: bool,
}

pub(crate) async fn start(
    inner: &Arc<Inner>,
    mut metadata: RecordingMetadata,
    owner: &str,
) -> Result<RecordingWriter> {
    check_metadata(&metadata)?;
    refuse_if_full(inner)?;
    let open = inner.open.read().expect("open map lock").len();
    let max_open = inner.config.max_open_recordings;
    if open >= max_open {
        return Err(EngineError::ResourceExhausted(format!(
            "{open} recordings are open, the most this server takes (ingest.max_open_recordings = {max_open}); \
             a new recording can start once others close"
        )));
    }
    let id = RecordingId::generate();
    let now = inner.now_us();
    if metadata.started_at_us == 0 {
        metadata.started_at_us = now;
    }
    // The data key is drawn and wrapped now, and its wrapped form committed
    // with the row, before any event is accepted (RFC 0001).
    let (key, wrapped_key) = if inner.config.encrypt {
        let key = DataKey::generate_for(inner.config.cipher)?;
        let wrapped = inner.keys.wrap(&id.to_bytes(), &key)?.to_bytes();
        (Some(RecordingKey::new(id.to_bytes(), key)), wrapped)
    } else {
        (None, Vec::new())
    };
    let row = RecordingRow {
        id: id.to_bytes().to_vec(),
        metadata: Some(metadata),
        state: RecordingState::Open as i32,
        created_at_us: now,
        owner: owner.to_string(),
        wrapped_key,
        ..Default::default()
    };
    let stored = row.clone();
    inner.catalog(move |c| c.put_recording(&stored)).await?;
    let rec = OpenRecording::new(id, row, true, inner.instant(), key, inner.acks.clone());
    inner
        .open
        .write()
        .expect("open map lock")
        .insert(id, rec.clone());
    info!(recording = %id, "recording started");
    Ok(RecordingWriter {
        inner: inner.clone(),
        rec,
        next_index: 0,
        last_time_us: 0,
        finished: false,
    })
}

pub(crate) async fn resume(inner: &Arc<Inner>, id: RecordingId) -> Result<RecordingWriter> {
    let Some(rec) = inner.open_recording(id) else {
        let row = inner.catalog(move |c| c.live_recording(id)).await?;
        return match row {
            Some(_) => Err(EngineError::FailedPrecondition(format!(
                "recording {id} is closed; it takes no more events"
            ))),
            None => Err(EngineError::NotFound(id)),
        };
    };
    {
        let mut live = rec.live();
        if live.closing {
            return Err(EngineError::FailedPrecondition(format!(
                "recording {id} is closed; it takes no more events"
            )));
        }
        if live.attached {
            return Err(EngineError::FailedPrecondition(format!(
                "recording {id} already has a recorder attached"
            )));
        }
        live.attached = true;
        live.detached_since = None;
    }
    // Let appends of an earlier stream settle, then forget a failure: the new
    // stream continues after the last durable event.
    settle(&rec).await;
    let (next_index, last_time_us) = {
        let mut live = rec.live();
        live.failure = None;
        if let Some(why) = live.poisoned.take() {
            debug!(recording = %id, %why, "resumed after a failed append");
        }
        live.accepted = live.durable;
        (live.durable, live.durable_time_us)
    };
    info!(recording = %id, durable = next_index, "recording resumed");
    Ok(RecordingWriter {
        inner: inner.clone(),
        rec,
        next_index,
        last_time_us,
        finished: false,
    })
}

/// Waits until every accepted append has completed or failed.
async fn settle(rec: &Arc<OpenRecording>) {
    let target = rec.live().accepted;
    let _ = wait_durable(rec, target).await;
}

fn check_metadata(m: &RecordingMetadata) -> Result<()> {
    let too_long = |what: &str, s: &str| {
        (s.chars().count() > MAX_FIELD_CHARS).then(|| {
            EngineError::InvalidArgument(format!(
                "{what} is longer than {MAX_FIELD_CHARS} characters"
            ))
        })
    };
    for (what, value) in [
        ("user", &m.user),
        ("target", &m.target),
        ("protocol", &m.protocol),
        ("title", &m.title),
        ("source_format", &m.source_format),
    ] {
        if let Some(e) = too_long(what, value) {
            return Err(e);
        }
    }
    if m.labels.len() > MAX_LABELS {
        return Err(EngineError::InvalidArgument(format!(
            "{} labels; at most {MAX_LABELS} are allowed",
            m.labels.len()
        )));
    }
    for (k, v) in &m.labels {
        if k.is_empty() {
            return Err(EngineError::InvalidArgument(
                "a label has an empty name".into(),
            ));
        }
        if let Some(e) = too_long("a label", k).or_else(|| too_long("a label value", v)) {
            return Err(e);
        }
    }
    if m.source_header.len() > MAX_SOURCE_HEADER {
        return Err(EngineError::InvalidArgument(format!(
            "source header is larger than {MAX_SOURCE_HEADER} bytes"
        )));
    }
    // Exports write it as the first line of a file read line by line.
    if let Some(at) = m.source_header.find(['\n', '\r']) {
        return Err(EngineError::InvalidArgument(format!(
            "source header has a line break at byte {at}; it must be one line"
        )));
    }
    Ok(())
}

/// Refuses new events while the local disk is below its reserve or the
/// local log is at its capacity (the stores are not taking its backlog).
fn refuse_if_full(inner: &Inner) -> Result<()> {
    if Engine::is_low_disk(inner)
        && let Some(why) = inner.low_disk.lock().expect("low disk lock").clone()
    {
        return Err(EngineError::ResourceExhausted(why));
    }
    let used = inner.journal.disk_bytes() + inner.spool.bytes();
    let capacity = inner.config.local_capacity_bytes;
    if used >= capacity {
        return Err(EngineError::ResourceExhausted(format!(
            "local log full: {used} bytes held locally reach the capacity of {capacity} bytes while the stores \
             do not take the backlog (primary {}, secondary {}); new events are refused until uploads drain it, \
             every acknowledged event is safe",
            inner.router.primary.state(),
            inner.router.secondary.state()
        )));
    }
    Ok(())
}

fn journal_failure(id: RecordingId, e: JournalError) -> EngineError {
    if e.is_disk_full() {
        EngineError::ResourceExhausted(format!(
            "local disk full while writing recording {id} to the journal ({e}); this batch was not kept, \
             every acknowledged event is safe; resume the recording when space returns"
        ))
    } else {
        EngineError::Journal(e)
    }
}

impl RecordingWriter {
    pub fn id(&self) -> RecordingId {
        self.rec.id
    }

    /// Events accepted so far; the next event gets this index.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// Events durable so far.
    pub fn durable(&self) -> u64 {
        self.rec.live().durable
    }

    /// Time of the last accepted event.
    pub fn last_time_us(&self) -> u64 {
        self.last_time_us
    }

    /// Appends a batch of events. `first_index`, when given, is the index of
    /// the first event: events the recording already has are skipped (a
    /// resend after a resume) and a gap is an error.
    ///
    /// Validation happens now (nothing is kept of a refused batch); the
    /// returned future resolves once the batch is fsynced in the journal,
    /// to the number of durable events. Appends may be pipelined: their
    /// acknowledgements resolve in order.
    pub fn append(
        &mut self,
        first_index: Option<u64>,
        mut events: Vec<Event>,
    ) -> Result<AckFuture> {
        let id = self.rec.id;
        if self.finished {
            return Err(EngineError::FailedPrecondition(format!(
                "recording {id} is closed"
            )));
        }
        if let Some(first) = first_index {
            if first > self.next_index {
                return Err(EngineError::InvalidArgument(format!(
                    "batch starts at event {first} but recording {id} has {} events: events {}..{first} are missing",
                    self.next_index, self.next_index
                )));
            }
            let already = (self.next_index - first) as usize;
            if already >= events.len() {
                return Ok(self.wait_for(first + events.len() as u64));
            }
            events.drain(..already);
        }
        if events.is_empty() {
            return Ok(self.wait_for(self.next_index));
        }
        self.check_events(&events)?;
        refuse_if_full(&self.inner)?;

        let first = self.next_index;
        let count = events.len() as u32;
        let data_bytes: usize = events.iter().map(|e| e.data.len()).sum();
        let last_time = events.last().expect("non-empty").time_us;
        // Sealed here, on the caller's task: the journal's thread stays free
        // of crypto, its group commit unchanged.
        let payload =
            reel_log::validate::seal_entry(id.to_bytes(), self.rec.key.as_ref(), first, events)?;

        let rec = self.rec.clone();
        let done: reel_log::Completion = Box::new(move |result| {
            on_durable(&rec, result, first, count, data_bytes as u32, last_time);
        });
        {
            // Checking for a failure and queueing under the same lock as the
            // failure callback sets it: no batch is queued behind a failed one.
            let mut live = self.rec.live();
            if let Some(why) = &live.poisoned {
                return Err(EngineError::ResourceExhausted(format!(
                    "recording {id}: an earlier batch failed ({why}); resume the recording to continue"
                )));
            }
            live.accepted = first + count as u64;
            self.inner.journal.append(payload, done);
        }
        self.next_index = first + count as u64;
        self.last_time_us = last_time;
        Ok(AckFuture {
            rec: self.rec.clone(),
            target: self.next_index,
            exact: true,
        })
    }

    fn check_events(&self, events: &[Event]) -> Result<()> {
        let max = self.inner.config.max_event_bytes;
        let total: usize = events
            .iter()
            .map(|e| e.data.len() + EVENT_OVERHEAD_BYTES)
            .sum();
        if total > self.inner.config.max_batch_bytes {
            return Err(EngineError::InvalidArgument(format!(
                "batch of {} events costs {total} bytes ({EVENT_OVERHEAD_BYTES} per event beyond its data), \
                 more than the maximum of {} bytes",
                events.len(),
                self.inner.config.max_batch_bytes
            )));
        }
        let mut previous = self.last_time_us;
        for (i, e) in events.iter().enumerate() {
            let index = self.next_index + i as u64;
            if e.data.len() > max {
                return Err(EngineError::InvalidArgument(format!(
                    "event {index} has {} bytes; the maximum is {max}",
                    e.data.len()
                )));
            }
            if !matches!(EventKind::try_from(e.kind), Ok(k) if k != EventKind::Unspecified) {
                return Err(EngineError::InvalidArgument(format!(
                    "event {index} has an unknown kind {}",
                    e.kind
                )));
            }
            if e.time_us < previous {
                return Err(EngineError::InvalidArgument(format!(
                    "event {index} goes back in time: {} µs after {previous} µs",
                    e.time_us
                )));
            }
            previous = e.time_us;
        }
        Ok(())
    }

    /// An acknowledgement for events already accepted.
    fn wait_for(&self, target: u64) -> AckFuture {
        wait_durable(&self.rec, target)
    }

    /// Closes the recording: waits for every accepted event to be durable,
    /// seals the rest as the final segment and marks the recording closed in
    /// the catalog. `duration_us` of zero means "the last event's time".
    pub async fn close(mut self, duration_us: u64) -> Result<Closed> {
        wait_durable(&self.rec, self.next_index).await?;
        self.rec.live().closing = true;
        let closed = sealer::finish(&self.inner, &self.rec, duration_us, "closed").await;
        if closed.is_err() {
            self.rec.live().closing = false;
        } else {
            self.finished = true;
        }
        closed
    }
}

impl Drop for RecordingWriter {
    fn drop(&mut self) {
        if !self.finished {
            let mut live = self.rec.live();
            live.attached = false;
            live.detached_since = Some(self.inner.instant());
            debug!(recording = %self.rec.id, "recorder detached");
        }
    }
}

/// Waits until `target` events are durable, or the recording is poisoned;
/// resolves to the number durable then.
fn wait_durable(rec: &Arc<OpenRecording>, target: u64) -> AckFuture {
    AckFuture {
        rec: rec.clone(),
        target,
        exact: false,
    }
}

/// Runs on the journal thread when a batch of `rec` is durable or failed.
fn on_durable(
    rec: &OpenRecording,
    result: std::result::Result<reel_log::Position, JournalError>,
    first: u64,
    count: u32,
    data_bytes: u32,
    last_time_us: u64,
) {
    let acks = &rec.acks;
    let mut live = rec.live();
    let acknowledged = match result {
        Ok(pos) if live.poisoned.is_none() && live.durable == first => {
            live.chunks
                .push_back(Chunk::new(pos, first, count, data_bytes));
            live.durable = first + count as u64;
            live.durable_time_us = last_time_us;
            live.unsealed_bytes += data_bytes as u64;
            if live.unsealed_since.is_none() {
                live.unsealed_since = Some(acks.clock.instant());
            }
            if live.unsealed_bytes >= acks.seal_target {
                rec.request_seal(&mut live);
            }
            true
        }
        Ok(_) => {
            // Durable, but behind a batch that failed (or of the stream
            // before a resume): the recorder resends it after resuming, and
            // the resent copy supersedes this one in the journal.
            false
        }
        Err(e) => {
            let err = journal_failure(rec.id, e);
            warn!(recording = %rec.id, error = %err, "journal append failed");
            if live.poisoned.is_none() {
                live.poisoned = Some(err.to_string());
                live.failure = Some(err);
            }
            false
        }
    };
    rec.changed(live);
    if acknowledged {
        acks.acknowledged.inc_by(count as u64);
    }
}
