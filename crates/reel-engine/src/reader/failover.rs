//! Reading a segment's blocks from its best copy, and from the next copy,
//! at the block where one failed: the copy-failover state machine.

use std::sync::Arc;

use reel_catalog::RecordingId;
use reel_log::{JournalError, RecordingKey, blocks_for_window, decode_block, decode_segment};
use reel_proto::v1::{Event, Location, SegmentRow};
use reel_storage::Role;
use tokio::sync::mpsc;

use super::range::{Failure, RangeReader, blocks_range};
use super::{Gap, ReadItem, Window, clock};
use crate::Inner;
use crate::copies::{self, location_name, role_of};
use crate::error::{EngineError, Result};
use crate::recording::Chunk;

pub(super) struct Reader<'a> {
    pub inner: &'a Arc<Inner>,
    pub id: RecordingId,
    pub window: Window,
    pub tx: &'a mpsc::Sender<Result<ReadItem>>,
    /// The open range read of the recombined object, shared by consecutive
    /// segments so a window of a recombined recording is one request.
    pub combined: Option<RangeReader>,
    /// The segment rows read when the read was planned, used for the first
    /// pass instead of reading them again.
    pub planned: Option<Vec<SegmentRow>>,
    /// Some events were sent.
    pub emitted: bool,
    /// The recording's data key, when it is encrypted.
    pub key: Option<RecordingKey>,
}

/// Events are sent in batches of about this many bytes.
const EMIT_BYTES: usize = 256 << 10;

impl Reader<'_> {
    pub(super) async fn run(&mut self) -> Result<()> {
        let mut next_seq = 0u64;
        let mut cursor = 0u64;
        loop {
            let segments = self.segments_from(next_seq).await?;
            for (i, seg) in segments.iter().enumerate() {
                next_seq = seg.sequence.saturating_add(1);
                cursor = seg.first_event_index.saturating_add(seg.event_count);
                if seg.event_count == 0 || seg.end_time_us < self.window.from_us {
                    continue;
                }
                if seg.start_time_us >= self.window.end() || self.tx.is_closed() {
                    return Ok(());
                }
                self.read_segment(seg, &segments[i..]).await?;
            }
            let Some(rec) = self.inner.open_recording(self.id) else {
                // Closed, possibly just now: its last segments are committed
                // before it leaves the open set.
                if self.segments_from(next_seq).await?.is_empty() {
                    return Ok(());
                }
                continue;
            };
            let tail: Vec<Chunk> = rec
                .live()
                .chunks
                .iter()
                .filter(|c| c.first_index >= cursor)
                .collect();
            let sealed_meanwhile = tail.first().is_none_or(|c| c.first_index != cursor)
                && !self.segments_from(next_seq).await?.is_empty();
            if sealed_meanwhile {
                continue;
            }
            let (inner, id) = (self.inner.clone(), self.id);
            let key = rec.key.clone();
            let read = tokio::task::spawn_blocking(move || {
                crate::recording::read_chunks(&inner.journal, id, key.as_ref(), &tail)
            })
            .await
            .map_err(|e| EngineError::Internal(format!("journal read task failed: {e}")))?;
            match read {
                Ok(events) => {
                    self.emit(events).await;
                    return Ok(());
                }
                // Sealed and released while we looked: read it as segments.
                Err(EngineError::Journal(JournalError::Released { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn segments_from(&mut self, from_seq: u64) -> Result<Vec<SegmentRow>> {
        let id = self.id;
        let mut segs = match self.planned.take() {
            Some(segs) => segs,
            None => self.inner.catalog(move |c| c.segments(id)).await?,
        };
        segs.retain(|s| s.sequence >= from_seq);
        Ok(segs)
    }

    /// Sends the events of `events` inside the window, if any.
    async fn emit(&mut self, mut events: Vec<Event>) {
        events.retain(|e| self.window.contains(e.time_us));
        if !events.is_empty() {
            self.emitted = true;
            let _ = self.tx.send(Ok(ReadItem::Events(events))).await;
        }
    }

    /// Reads the blocks of `seg` that the window needs. `rest` is `seg` and
    /// the segments after it, to size the request on a combined object.
    async fn read_segment(&mut self, seg: &SegmentRow, rest: &[SegmentRow]) -> Result<()> {
        if seg.blocks.is_empty() {
            return self.read_whole_segment(seg).await;
        }
        let wanted = blocks_for_window(&seg.blocks, self.window.from_us, self.window.end());
        let mut row = seg.clone();
        let mut next = wanted.start;
        let mut refreshed = false;
        while next < wanted.end {
            let mut failures = Vec::new();
            let mut advanced = false;
            for location in copies::candidates(self.inner, self.id, &row) {
                let before = next;
                let outcome = self
                    .read_blocks(&row, location, &mut next, wanted.end, rest)
                    .await;
                advanced = next > before;
                match outcome {
                    Ok(()) => return Ok(()),
                    Err(f) => {
                        if let (Failure::Corrupt(_), Some(role)) = (&f, role_of(location)) {
                            self.inner.metrics.bad_copy(role);
                        }
                        failures.push((location, f));
                    }
                }
                if advanced {
                    // Back to the best copy for the blocks after this one.
                    break;
                }
            }
            if advanced {
                continue;
            }
            if !refreshed {
                refreshed = true;
                let (id, seq) = (self.id, row.sequence);
                if let Some(fresh) = self.inner.catalog(move |c| c.segment(id, seq)).await?
                    && fresh != row
                {
                    row = fresh;
                    continue;
                }
            }
            let describe = || {
                failures
                    .iter()
                    .map(|(l, f)| format!("{}: {}", location_name(*l), f.text()))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            if failures
                .iter()
                .any(|(_, f)| matches!(f, Failure::Unavailable(_)))
            {
                let block = row.blocks.get(next).cloned().unwrap_or_default();
                return Err(EngineError::Unavailable(format!(
                    "recording {}: events {}..{} ({} to {}, segment {}) cannot be read now: {}",
                    self.id,
                    block.first_event_index,
                    row.first_event_index.saturating_add(row.event_count),
                    clock(block.start_time_us),
                    clock(row.end_time_us),
                    row.sequence,
                    describe()
                )));
            }
            // Every copy is missing or corrupt: a missing copy loses the rest
            // of the segment, a corrupt block only itself.
            let all_missing = failures
                .iter()
                .all(|(_, f)| matches!(f, Failure::Missing(_)));
            let gap_end = if all_missing { wanted.end } else { next + 1 };
            let reason = if failures.is_empty() {
                "no copy is recorded in the catalog".to_string()
            } else {
                describe()
            };
            self.gap(&row, next, gap_end, reason).await;
            next = gap_end;
        }
        Ok(())
    }

    /// Reads blocks `*next..end` of `row` from one copy, advancing `*next`
    /// past each block delivered.
    async fn read_blocks(
        &mut self,
        row: &SegmentRow,
        location: i32,
        next: &mut usize,
        end: usize,
        rest: &[SegmentRow],
    ) -> std::result::Result<(), Failure> {
        // Checked ranges: a row is checked when it enters the catalog, and
        // its arithmetic is checked here all the same.
        let wanted = blocks_range(row, *next, end)?;
        let range_end = wanted.end;
        let (mut reader, base) = match copies::stored_copy(self.id, row, location) {
            None if location == Location::Local as i32 => {
                let bytes = copies::read_local(self.inner, self.id, row.sequence)
                    .map_err(|e| Failure::Unavailable(e.to_string()))?
                    .ok_or_else(|| Failure::Missing("not in the spool".into()))?;
                (RangeReader::from_bytes(location, bytes), 0)
            }
            None => {
                return Err(Failure::Missing(format!(
                    "location {location} cannot hold this segment"
                )));
            }
            Some(copy) => {
                let base = copy.base();
                let in_object = |at: u64| {
                    base.checked_add(at).ok_or_else(|| {
                        Failure::Corrupt(format!(
                            "segment {}: combined offset {base} + {at} overflows",
                            row.sequence
                        ))
                    })
                };
                let at = in_object(wanted.start)?;
                let stop_here = in_object(range_end)?;
                let reader = if copy.combined_offset.is_none() {
                    self.open(copy.role, &copy.key, location, at..stop_here)
                        .await?
                } else {
                    let len = range_end - wanted.start;
                    match self.combined.take() {
                        Some(r) if r.can_serve(location, at, len) => r,
                        _ => {
                            let stop = self.combined_end(rest).max(stop_here);
                            self.open(copy.role, &copy.key, location, at..stop).await?
                        }
                    }
                };
                (reader, base)
            }
        };
        let mut outcome = Ok(());
        let mut batch = Vec::new();
        while *next < end {
            if self.tx.is_closed() {
                // The reader's consumer is gone: stop fetching.
                *next = end;
                break;
            }
            let (block, at) = match blocks_range(row, *next, *next + 1).and_then(|r| {
                base.checked_add(r.start)
                    .ok_or_else(|| Failure::Corrupt("block offset overflows".into()))
            }) {
                Ok(at) => (&row.blocks[*next], at),
                Err(f) => {
                    outcome = Err(f);
                    break;
                }
            };
            let bytes = match reader.read_at(at, block.len).await {
                Ok(b) => b,
                Err(f) => {
                    outcome = Err(f);
                    break;
                }
            };
            match decode_block(block, &bytes, true, self.key.as_ref()) {
                Ok(events) => {
                    batch.extend(events);
                    *next += 1;
                }
                Err(e) => {
                    outcome = Err(Failure::Corrupt(format!("segment {}: {e}", row.sequence)));
                    break;
                }
            }
            // Small batches, so the first events leave as soon as their
            // block is checked; larger ones later keep the channel cheap.
            let batch_bytes: usize = batch.iter().map(|e| e.data.len() + 16).sum();
            if batch_bytes >= EMIT_BYTES || !self.emitted {
                self.emit(std::mem::take(&mut batch)).await;
            }
        }
        self.emit(batch).await;
        // A stream that failed is dropped; after a corrupt block it is still
        // in step and serves the next segments.
        let in_step = !matches!(outcome, Err(Failure::Missing(_) | Failure::Unavailable(_)));
        if copies::in_combined(self.id, row, location) && in_step {
            self.combined = Some(reader);
        }
        outcome
    }

    /// The end of the bytes the window needs from the combined object: the
    /// last wanted block of the run of recombined segments starting at
    /// `rest[0]`.
    fn combined_end(&self, rest: &[SegmentRow]) -> u64 {
        let mut end = 0;
        for seg in rest {
            let Some(offset) = seg.combined_offset else {
                break;
            };
            if seg.start_time_us >= self.window.end() {
                break;
            }
            let wanted = blocks_for_window(&seg.blocks, self.window.from_us, self.window.end());
            // Saturating: this only sizes a request, each block is checked.
            end = match wanted
                .end
                .checked_sub(1)
                .map(|i| blocks_range(seg, i, i + 1))
            {
                Some(Ok(r)) => offset.saturating_add(r.end),
                _ => end.max(offset.saturating_add(seg.size)),
            };
        }
        end
    }

    async fn open(
        &mut self,
        role: Role,
        key: &object_store::path::Path,
        location: i32,
        range: std::ops::Range<u64>,
    ) -> std::result::Result<RangeReader, Failure> {
        let body = self
            .inner
            .store(role)
            .get_range_stream(key, range.clone())
            .await
            .map_err(Failure::from_storage)?;
        self.inner
            .metrics
            .read_from(role, range.end.saturating_sub(range.start));
        Ok(RangeReader::new(location, range, body))
    }

    async fn gap(&mut self, row: &SegmentRow, from_block: usize, to_block: usize, reason: String) {
        let first = row.blocks.get(from_block).cloned().unwrap_or_default();
        let (end_index, end_time) = match row.blocks.get(to_block) {
            Some(b) => (b.first_event_index, b.start_time_us),
            None => (
                row.first_event_index.saturating_add(row.event_count),
                row.end_time_us,
            ),
        };
        let gap = Gap {
            sequence: row.sequence,
            first_event_index: first.first_event_index,
            event_count: end_index.saturating_sub(first.first_event_index),
            start_time_us: first.start_time_us.max(self.window.from_us),
            end_time_us: end_time.min(self.window.end()),
            reason,
        };
        self.send_gap(gap).await;
    }

    async fn send_gap(&mut self, gap: Gap) {
        tracing::warn!(recording = %self.id, %gap, "read skipped lost events");
        self.inner.metrics.read_gap();
        let _ = self.tx.send(Ok(ReadItem::Gap(gap))).await;
    }

    /// A segment written before content blocks existed: read whole, checked
    /// by its SHA-256.
    async fn read_whole_segment(&mut self, seg: &SegmentRow) -> Result<()> {
        let bytes = copies::read_good_copy(self.inner, self.id, seg).await?;
        let decoded =
            decode_segment(&bytes, self.key.as_ref()).map_err(|source| EngineError::Segment {
                recording: self.id,
                sequence: seg.sequence,
                source,
            })?;
        self.emit(decoded.events).await;
        Ok(())
    }
}
