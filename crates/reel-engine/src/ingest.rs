//! The ingest path: start, resume, append, close.
//!
//! An append never waits on a store, a catalog write or a thread of its own:
//! it encodes one journal record and hands it to the journal's group commit;
//! the acknowledgement resolves when that record is fsynced.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use reel_catalog::RecordingId;
use reel_keys::DataKey;
use reel_log::{JournalError, RecordingKey};
use reel_proto::v1::{Event, EventKind, RecordingMetadata, RecordingRow, RecordingState};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::config::EVENT_OVERHEAD_BYTES;
use crate::error::{EngineError, Result};
use crate::recording::{Chunk, Closed, OpenRecording};
use crate::{Engine, Inner, sealer};

/// Limits on metadata, so one recorder cannot bloat the catalog.
const MAX_FIELD_CHARS: usize = 1024;
const MAX_LABELS: usize = 64;
const MAX_SOURCE_HEADER: usize = 64 << 10;

/// Resolves to the number of durable events of the recording once the batch
/// it acknowledges is on stable storage.
pub struct AckFuture(oneshot::Receiver<Result<u64>>);

impl Future for AckFuture {
    type Output = Result<u64>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<u64>> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(EngineError::ShuttingDown)))
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
    let rec = OpenRecording::new(id, row, true, inner.instant(), key);
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
async fn settle(rec: &OpenRecording) {
    loop {
        let notified = rec.durable_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let live = rec.live();
            if live.durable >= live.accepted || live.poisoned.is_some() {
                return;
            }
        }
        notified.await;
    }
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

        let (tx, rx) = oneshot::channel();
        let rec = self.rec.clone();
        let seal_tx = self.inner.seal_tx.clone();
        let target = self.inner.config.segment_target_bytes;
        let acknowledged = self.inner.metrics.acknowledged_counter();
        let clock = self.inner.config.clock.clone();
        let done: reel_log::Completion = Box::new(move |result| {
            let outcome = on_durable(
                &rec,
                result,
                clock.instant(),
                first,
                count,
                data_bytes as u32,
                last_time,
                target,
                &seal_tx,
            );
            if outcome.is_ok() {
                acknowledged.inc_by(count as u64);
            }
            rec.durable_changed.notify_waiters();
            let _ = tx.send(outcome);
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
        Ok(AckFuture(rx))
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
        let rec = self.rec.clone();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(wait_durable(&rec, target).await);
        });
        AckFuture(rx)
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

/// Waits until `target` events are durable, or the recording is poisoned.
async fn wait_durable(rec: &OpenRecording, target: u64) -> Result<u64> {
    loop {
        let notified = rec.durable_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let live = rec.live();
            if live.durable >= target {
                return Ok(live.durable);
            }
            if let Some(why) = &live.poisoned {
                return Err(EngineError::ResourceExhausted(format!(
                    "recording {}: a batch failed ({why}); resume the recording to continue",
                    rec.id
                )));
            }
        }
        notified.await;
    }
}

/// Runs on the journal thread when a batch of `rec` is durable or failed.
#[allow(clippy::too_many_arguments)]
fn on_durable(
    rec: &OpenRecording,
    result: std::result::Result<reel_log::Position, JournalError>,
    now: Instant,
    first: u64,
    count: u32,
    data_bytes: u32,
    last_time_us: u64,
    seal_target: u64,
    seal_tx: &tokio::sync::mpsc::UnboundedSender<RecordingId>,
) -> Result<u64> {
    let mut live = rec.live();
    match result {
        Ok(pos) if live.poisoned.is_none() && live.durable == first => {
            live.chunks
                .push_back(Chunk::new(pos, first, count, data_bytes));
            live.durable = first + count as u64;
            live.durable_time_us = last_time_us;
            live.unsealed_bytes += data_bytes as u64;
            live.unsealed_since.get_or_insert(now);
            if live.unsealed_bytes >= seal_target && !live.seal_requested {
                live.seal_requested = true;
                let _ = seal_tx.send(rec.id);
            }
            Ok(live.durable)
        }
        Ok(_) => {
            // Durable, but behind a batch that failed: the recorder will
            // resend it after resuming, and the resent copy supersedes this
            // one in the journal.
            let why = live
                .poisoned
                .clone()
                .unwrap_or_else(|| "an earlier batch failed".into());
            Err(EngineError::ResourceExhausted(format!(
                "recording {}: {why}; resume the recording to continue",
                rec.id
            )))
        }
        Err(e) => {
            let err = journal_failure(rec.id, e);
            warn!(recording = %rec.id, error = %err, "journal append failed");
            live.poisoned = Some(err.to_string());
            Err(err)
        }
    }
}
