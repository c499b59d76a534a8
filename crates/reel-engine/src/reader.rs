//! Reading a recording from wherever its bytes are: sealed segments in the
//! spool or on a store, and, while the recording is open, its unsealed tail
//! in the journal.
//!
//! Sealing and uploading go on while a reader reads, so a segment can move
//! from the spool to a store, and a journal tail can become a segment, under
//! its feet. The reader follows: it re-reads the catalog when a location or
//! a journal file is gone and never emits an event twice or out of order.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use reel_catalog::RecordingId;
use reel_log::{JournalError, decode_segment};
use reel_proto::v1::{Event, Location, SegmentRow};
use reel_storage::{Role, keys};
use tokio::sync::mpsc;

use crate::Inner;
use crate::error::{EngineError, Result};
use crate::recording::{Chunk, read_chunks};

/// The events of a recording, in order, a batch (a segment, or the journal
/// tail) at a time. Ends with an error item if a part cannot be read.
pub struct EventStream {
    rx: mpsc::Receiver<Result<Vec<Event>>>,
}

impl EventStream {
    /// Collects every event (for tests and small recordings).
    pub async fn collect_all(mut self) -> Result<Vec<Event>> {
        let mut all = Vec::new();
        while let Some(batch) = self.rx.recv().await {
            all.extend(batch?);
        }
        Ok(all)
    }
}

impl Stream for EventStream {
    type Item = Result<Vec<Event>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

pub(crate) async fn events(inner: &Arc<Inner>, id: RecordingId) -> Result<EventStream> {
    if inner.catalog(move |c| c.recording(id)).await?.is_none() {
        return Err(EngineError::NotFound(id));
    }
    let (tx, rx) = mpsc::channel(4);
    let inner = inner.clone();
    tokio::spawn(async move {
        if let Err(e) = produce(&inner, id, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(EventStream { rx })
}

async fn produce(
    inner: &Arc<Inner>,
    id: RecordingId,
    tx: &mpsc::Sender<Result<Vec<Event>>>,
) -> Result<()> {
    let mut next_seq = 0u64;
    let mut cursor = 0u64;
    loop {
        let segments = segments_from(inner, id, next_seq).await?;
        for seg in &segments {
            let events = read_segment(inner, id, seg).await?;
            next_seq = seg.sequence + 1;
            cursor = seg.first_event_index + seg.event_count;
            if tx.send(Ok(events)).await.is_err() {
                return Ok(());
            }
        }
        let Some(rec) = inner.open_recording(id) else {
            // Closed, possibly just now: its last segments are committed
            // before it leaves the open set.
            if segments_from(inner, id, next_seq).await?.is_empty() {
                return Ok(());
            }
            continue;
        };
        let tail: Vec<Chunk> = rec
            .live()
            .chunks
            .iter()
            .filter(|c| c.first_index >= cursor)
            .copied()
            .collect();
        let sealed_meanwhile = tail.first().is_none_or(|c| c.first_index != cursor)
            && !segments_from(inner, id, next_seq).await?.is_empty();
        if sealed_meanwhile {
            continue;
        }
        let task = inner.clone();
        let read = tokio::task::spawn_blocking(move || read_chunks(&task.journal, id, &tail))
            .await
            .map_err(|e| EngineError::Internal(format!("journal read task failed: {e}")))?;
        match read {
            Ok(events) => {
                if !events.is_empty() {
                    let _ = tx.send(Ok(events)).await;
                }
                return Ok(());
            }
            // Sealed and released while we looked: read it as segments.
            Err(EngineError::Journal(JournalError::Released { .. })) => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn segments_from(
    inner: &Arc<Inner>,
    id: RecordingId,
    from_seq: u64,
) -> Result<Vec<SegmentRow>> {
    let mut segs = inner.catalog(move |c| c.segments(id)).await?;
    segs.retain(|s| s.sequence >= from_seq);
    Ok(segs)
}

/// Reads one segment from the first location that has a good copy.
async fn read_segment(inner: &Arc<Inner>, id: RecordingId, seg: &SegmentRow) -> Result<Vec<Event>> {
    let mut row = seg.clone();
    let mut last_error = None;
    // Two rounds: the second after re-reading the catalog, for a segment
    // that moved (spool -> store) while we read.
    for round in 0..2 {
        for &loc in &row.locations {
            let fetched = fetch(inner, id, &row, loc).await;
            let bytes = match fetched {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            if reel_log::sha256(&bytes)[..] != row.sha256[..] {
                last_error = Some(EngineError::Segment {
                    recording: id,
                    sequence: row.sequence,
                    source: reel_log::SegmentError::ContentHash,
                });
                continue;
            }
            match decode_segment(&bytes) {
                Ok(decoded) => return Ok(decoded.events),
                Err(source) => {
                    last_error = Some(EngineError::Segment {
                        recording: id,
                        sequence: row.sequence,
                        source,
                    })
                }
            }
        }
        if round == 0 {
            let seq = row.sequence;
            match inner.catalog(move |c| c.segment(id, seq)).await? {
                Some(fresh) if fresh != row => row = fresh,
                _ => break,
            }
        }
    }
    Err(last_error.unwrap_or_else(|| {
        EngineError::Internal(format!(
            "segment {} of {id} is in no readable location ({:?})",
            row.sequence, row.locations
        ))
    }))
}

async fn fetch(
    inner: &Arc<Inner>,
    id: RecordingId,
    seg: &SegmentRow,
    loc: i32,
) -> Result<Option<Bytes>> {
    let role = match Location::try_from(loc) {
        Ok(Location::Local) => return inner.spool.read(id, seg.sequence),
        Ok(Location::Primary) => Role::Primary,
        Ok(Location::Secondary) => Role::Secondary,
        _ => return Ok(None),
    };
    if let (Role::Primary, Some(offset)) = (role, seg.combined_offset) {
        // Recombined: a range of the recording's one object.
        let key = keys::recording_object(id);
        return Ok(Some(
            inner
                .store(role)
                .get_range(&key, offset..offset + seg.size)
                .await?,
        ));
    }
    let key = keys::segment(id, seg.sequence);
    Ok(Some(inner.store(role).get(&key, Some(seg.size)).await?))
}
