//! Reading a recording, or a time window of it, from wherever its bytes are:
//! sealed segments in the spool, on either store or inside the recording's
//! combined object, and, while the recording is open, its unsealed tail in
//! the journal.
//!
//! A read plans from the catalog alone: each segment row carries its content
//! blocks (first event, first time, CRC32C), so the reader knows which byte
//! ranges hold a window before it touches a store. Consecutive segments of a
//! recombined recording are one range of one object, read with one streamed
//! range request; each block is checked against its CRC32C as it arrives.
//!
//! When a copy fails, the reader tries the next one (spool first, then the
//! stores, healthy ones first) from the block where it stopped, and re-reads
//! the catalog once for a segment that moved (spool -> store, segments ->
//! combined object) under its feet. Events no copy holds intact become a
//! [`Gap`]; events held only by a store that is down make the read fail
//! with [`EngineError::Unavailable`], naming the events and times missing.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use reel_catalog::RecordingId;
use reel_log::{JournalError, blocks_for_window, decode_block, decode_segment};
use reel_proto::v1::{Event, Location, RecordingRow, SegmentRow};
use reel_storage::{Role, StorageError, StoreState, keys};
use tokio::sync::mpsc;

use crate::Inner;
use crate::error::{EngineError, Result};
use crate::recording::Chunk;

/// A time window of a recording: the events with `from_us <= time < to_us`
/// (times from the recording's start). `to_us: None` reads to the end, and
/// for an open recording, to the last durable event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    pub from_us: u64,
    pub to_us: Option<u64>,
}

impl Window {
    /// The whole recording.
    pub const ALL: Window = Window {
        from_us: 0,
        to_us: None,
    };

    /// A window; an empty or reversed one is an invalid argument.
    pub fn new(from_us: u64, to_us: Option<u64>) -> Result<Window> {
        if let Some(to) = to_us
            && to <= from_us
        {
            return Err(EngineError::InvalidArgument(format!(
                "the window ends ({}) at or before it starts ({})",
                clock(to),
                clock(from_us)
            )));
        }
        Ok(Window { from_us, to_us })
    }

    pub fn contains(&self, time_us: u64) -> bool {
        time_us >= self.from_us && time_us < self.end()
    }

    fn end(&self) -> u64 {
        self.to_us.unwrap_or(u64::MAX)
    }
}

/// A run of events a read could not deliver because no copy holds them
/// intact (missing objects, corrupt blocks). The read goes on after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Gap {
    pub sequence: u64,
    pub first_event_index: u64,
    pub event_count: u64,
    pub start_time_us: u64,
    pub end_time_us: u64,
    /// What was wrong with each copy.
    pub reason: String,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "events {}..{} ({} to {}, segment {}) are lost: {}",
            self.first_event_index,
            self.first_event_index.saturating_add(self.event_count),
            clock(self.start_time_us),
            clock(self.end_time_us),
            self.sequence,
            self.reason
        )
    }
}

/// One item of an [`EventStream`].
#[derive(Debug, Clone, PartialEq)]
pub enum ReadItem {
    /// Events in order, all inside the window.
    Events(Vec<Event>),
    Gap(Gap),
}

/// The events of a recording (or of a window of it), in order, a block at a
/// time, with a [`ReadItem::Gap`] where events are lost. Ends with an error
/// item if bytes cannot be read now (a store down or not answering).
pub struct EventStream {
    id: RecordingId,
    row: RecordingRow,
    rx: mpsc::Receiver<Result<ReadItem>>,
}

impl EventStream {
    /// The recording's catalog row as it was when the read started (its
    /// metadata, for a header).
    pub fn recording(&self) -> &RecordingRow {
        &self.row
    }

    /// Collects every event; a gap is an error ([`EngineError::Gap`]).
    pub async fn collect_all(self) -> Result<Vec<Event>> {
        let id = self.id;
        let (events, gaps) = self.collect_with_gaps().await?;
        match gaps.into_iter().next() {
            Some(gap) => Err(EngineError::Gap {
                recording: id,
                gap: Box::new(gap),
            }),
            None => Ok(events),
        }
    }

    /// Collects every event and every gap.
    pub async fn collect_with_gaps(mut self) -> Result<(Vec<Event>, Vec<Gap>)> {
        let (mut events, mut gaps) = (Vec::new(), Vec::new());
        while let Some(item) = self.rx.recv().await {
            match item? {
                ReadItem::Events(batch) => events.extend(batch),
                ReadItem::Gap(gap) => gaps.push(gap),
            }
        }
        Ok((events, gaps))
    }
}

impl Stream for EventStream {
    type Item = Result<ReadItem>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Starts reading `window` of recording `id`. Fails at once, before any
/// byte, when the recording is unknown, when the window starts after the
/// recording's end, or when some events of the window are only on a store
/// that is down.
pub(crate) async fn read(
    inner: &Arc<Inner>,
    id: RecordingId,
    window: Window,
) -> Result<EventStream> {
    let (row, segments) = inner
        .catalog(move |c| {
            let row = c.live_recording(id)?;
            Ok((row, c.segments(id)?))
        })
        .await?;
    let Some(row) = row else {
        return Err(EngineError::NotFound(id));
    };
    let end = recording_end(inner, id, &row);
    if window.from_us > end {
        return Err(EngineError::OutOfRange(format!(
            "recording {id}: the window starts at {}, after the recording's end at {}",
            clock(window.from_us),
            clock(end)
        )));
    }
    check_reachable(inner, id, &segments, window).await?;
    let (tx, rx) = mpsc::channel(32);
    let inner = inner.clone();
    tokio::spawn(async move {
        let mut reader = Reader {
            inner: &inner,
            id,
            window,
            tx: &tx,
            combined: None,
            planned: Some(segments),
            emitted: false,
        };
        if let Err(e) = reader.run().await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(EventStream { id, row, rx })
}

/// The time of the recording's end as far as it is durable now.
fn recording_end(inner: &Inner, id: RecordingId, row: &RecordingRow) -> u64 {
    let live = inner
        .open_recording(id)
        .map_or(0, |rec| rec.live().durable_time_us);
    row.duration_us.max(row.last_time_us).max(live)
}

/// Fails when some segment of the window has copies only on a store that
/// is down (or being probed after being down) and still does not answer. A store is marked down for failed
/// writes too, and may serve reads, so it gets one request (a HEAD of one
/// such object) before the read is refused; the refusal names the events
/// and times that cannot be read.
async fn check_reachable(
    inner: &Inner,
    id: RecordingId,
    segments: &[SegmentRow],
    window: Window,
) -> Result<()> {
    let mut lost: Vec<(Role, String, object_store::path::Path)> = Vec::new();
    for seg in segments {
        if seg.event_count == 0 || seg.end_time_us < window.from_us {
            continue;
        }
        if seg.start_time_us >= window.end() {
            break;
        }
        let roles: Vec<Option<Role>> = seg.locations.iter().map(|&l| role_of(l)).collect();
        let only_down = match roles.as_slice() {
            [Some(role)] if !inner.store(*role).health().state().is_usable() => *role,
            _ => continue,
        };
        let key = match seg.combined_offset {
            Some(_) => keys::recording_object(id),
            None => keys::segment(id, seg.sequence),
        };
        lost.push((
            only_down,
            format!(
                "events {}..{} ({} to {}) are only on the {only_down} store, which is down",
                seg.first_event_index,
                seg.first_event_index.saturating_add(seg.event_count),
                clock(seg.start_time_us),
                clock(seg.end_time_us),
            ),
            key,
        ));
    }
    let mut refused = Vec::new();
    for role in [Role::Primary, Role::Secondary] {
        let Some((_, _, key)) = lost.iter().find(|(r, _, _)| *r == role) else {
            continue;
        };
        match inner.store(role).head(key).await {
            Ok(_) | Err(StorageError::NotFound { .. }) => {}
            Err(_) => refused.extend(
                lost.iter()
                    .filter(|(r, _, _)| *r == role)
                    .map(|(_, text, _)| text.clone()),
            ),
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(EngineError::Unavailable(format!(
        "recording {id}: {}; retry when the store is back",
        merge_ranges(&refused)
    )))
}

/// Joins messages about consecutive segments into one line.
fn merge_ranges(lost: &[String]) -> String {
    match lost {
        [one] => one.clone(),
        many => format!(
            "{} (and {} more ranges, through {})",
            many[0],
            many.len() - 1,
            many[many.len() - 1]
        ),
    }
}

fn role_of(location: i32) -> Option<Role> {
    match Location::try_from(location) {
        Ok(Location::Primary) => Some(Role::Primary),
        Ok(Location::Secondary) => Some(Role::Secondary),
        _ => None,
    }
}

/// Why one copy could not deliver a block.
#[derive(Debug)]
enum Failure {
    /// The copy is not there (object or spool file gone).
    Missing(String),
    /// The copy is there but its bytes do not check.
    Corrupt(String),
    /// The store did not answer, or is down.
    Unavailable(String),
}

impl Failure {
    fn from_storage(e: StorageError) -> Failure {
        match e {
            StorageError::NotFound { .. } => Failure::Missing(e.to_string()),
            other => Failure::Unavailable(other.to_string()),
        }
    }

    fn text(&self) -> &str {
        match self {
            Failure::Missing(s) | Failure::Corrupt(s) | Failure::Unavailable(s) => s,
        }
    }
}

/// An open streamed range read of one object, consumed front to back.
struct RangeReader {
    location: i32,
    /// Absolute offset in the object of the next byte of `buf`.
    pos: u64,
    end: u64,
    buf: Bytes,
    body: BoxStream<'static, reel_storage::Result<Bytes>>,
}

impl RangeReader {
    fn from_bytes(location: i32, bytes: Bytes) -> RangeReader {
        RangeReader {
            location,
            pos: 0,
            end: bytes.len() as u64,
            buf: bytes,
            body: futures::stream::empty().boxed(),
        }
    }

    fn can_serve(&self, location: i32, at: u64, len: u64) -> bool {
        self.location == location
            && at >= self.pos
            && at.checked_add(len).is_some_and(|end| end <= self.end)
    }

    /// The `len` bytes at `at` (at or after the current position, inside
    /// the range read: nothing is allocated for bytes outside it).
    async fn read_at(&mut self, at: u64, len: u64) -> std::result::Result<Bytes, Failure> {
        let inside = at >= self.pos
            && len <= reel_log::limits::MAX_SEGMENT_BYTES
            && at.checked_add(len).is_some_and(|end| end <= self.end);
        if !inside {
            return Err(Failure::Corrupt(format!(
                "the catalog names {len} bytes at {at}, outside the range read ({}..{})",
                self.pos, self.end
            )));
        }
        while self.pos < at {
            self.fill().await?;
            let n = (at - self.pos).min(self.buf.len() as u64);
            self.buf.advance(n as usize);
            self.pos += n;
        }
        let len = len as usize;
        if self.buf.len() >= len {
            self.pos += len as u64;
            return Ok(self.buf.split_to(len));
        }
        let mut out = BytesMut::with_capacity(len);
        while out.len() < len {
            self.fill().await?;
            let n = (len - out.len()).min(self.buf.len());
            out.extend_from_slice(&self.buf.split_to(n));
            self.pos += n as u64;
        }
        Ok(out.freeze())
    }

    async fn fill(&mut self) -> std::result::Result<(), Failure> {
        while self.buf.is_empty() {
            match self.body.next().await {
                Some(chunk) => self.buf = chunk.map_err(Failure::from_storage)?,
                None => {
                    return Err(Failure::Corrupt(format!(
                        "object ends at {}, before the bytes the catalog names",
                        self.pos
                    )));
                }
            }
        }
        Ok(())
    }
}

struct Reader<'a> {
    inner: &'a Arc<Inner>,
    id: RecordingId,
    window: Window,
    tx: &'a mpsc::Sender<Result<ReadItem>>,
    /// The open range read of the recombined object, shared by consecutive
    /// segments so a window of a recombined recording is one request.
    combined: Option<RangeReader>,
    /// The segment rows read when the read was planned, used for the first
    /// pass instead of reading them again.
    planned: Option<Vec<SegmentRow>>,
    /// Some events were sent.
    emitted: bool,
}

/// Events are sent in batches of about this many bytes.
const EMIT_BYTES: usize = 256 << 10;

impl Reader<'_> {
    async fn run(&mut self) -> Result<()> {
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
                .copied()
                .collect();
            let sealed_meanwhile = tail.first().is_none_or(|c| c.first_index != cursor)
                && !self.segments_from(next_seq).await?.is_empty();
            if sealed_meanwhile {
                continue;
            }
            let (inner, id) = (self.inner.clone(), self.id);
            let read = tokio::task::spawn_blocking(move || {
                crate::recording::read_chunks(&inner.journal, id, &tail)
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
            for location in self.sources(&row) {
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
        let (mut reader, base) = match (location_enum(location), row.combined_offset) {
            (Some(Location::Local), _) => {
                let bytes = self
                    .inner
                    .spool
                    .read(self.id, row.sequence)
                    .map_err(|e| Failure::Unavailable(e.to_string()))?
                    .ok_or_else(|| Failure::Missing("not in the spool".into()))?;
                (RangeReader::from_bytes(location, bytes), 0)
            }
            (Some(Location::Primary), Some(offset)) => {
                let in_object = |at: u64| {
                    offset.checked_add(at).ok_or_else(|| {
                        Failure::Corrupt(format!(
                            "segment {}: combined offset {offset} + {at} overflows",
                            row.sequence
                        ))
                    })
                };
                let at = in_object(wanted.start)?;
                let stop_here = in_object(range_end)?;
                let len = range_end - wanted.start;
                let reader = match self.combined.take() {
                    Some(r) if r.can_serve(location, at, len) => r,
                    _ => {
                        let stop = self.combined_end(rest).max(stop_here);
                        let key = keys::recording_object(self.id);
                        self.open(Role::Primary, &key, location, at..stop).await?
                    }
                };
                (reader, offset)
            }
            (Some(Location::Primary | Location::Secondary), None) => {
                let role = role_of(location).expect("a store location");
                let key = keys::segment(self.id, row.sequence);
                let reader = self.open(role, &key, location, wanted.clone()).await?;
                (reader, 0)
            }
            _ => {
                return Err(Failure::Missing(format!(
                    "location {location} cannot hold this segment"
                )));
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
            match decode_block(block, &bytes, true) {
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
        if row.combined_offset.is_some() && location == Location::Primary as i32 && in_step {
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
        let store = self.inner.store(role);
        let pos = range.start;
        let end = range.end;
        let body = store
            .get_range_stream(key, range)
            .await
            .map_err(Failure::from_storage)?;
        Ok(RangeReader {
            location,
            pos,
            end,
            buf: Bytes::new(),
            body,
        })
    }

    /// Copies to try, best first: the spool, then stores by health; a store
    /// that is down is tried last.
    fn sources(&self, row: &SegmentRow) -> Vec<i32> {
        let rank = |l: i32| match role_of(l) {
            None => 0,
            Some(role) => match self.inner.store(role).health().state() {
                StoreState::Healthy => 1,
                StoreState::Suspect => 2,
                StoreState::Probing => 3,
                StoreState::Down => 4,
            },
        };
        let mut out = row.locations.clone();
        out.sort_by_key(|&l| rank(l));
        out
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
        let bytes = read_segment_object(self.inner, self.id, seg).await?;
        let decoded = decode_segment(&bytes).map_err(|source| EngineError::Segment {
            recording: self.id,
            sequence: seg.sequence,
            source,
        })?;
        self.emit(decoded.events).await;
        Ok(())
    }
}

/// The bytes of blocks `from..to` of `row` within its segment object:
/// checked to exist, to not overflow and to lie inside the object.
fn blocks_range(
    row: &SegmentRow,
    from: usize,
    to: usize,
) -> std::result::Result<std::ops::Range<u64>, Failure> {
    let first = row.blocks.get(from);
    let last = to.checked_sub(1).and_then(|i| row.blocks.get(i));
    let range = match (first, last) {
        (Some(first), Some(last)) if from < to => {
            let start = row.content_offset.checked_add(first.offset);
            let end = row
                .content_offset
                .checked_add(last.offset)
                .and_then(|e| e.checked_add(last.len));
            start.zip(end).filter(|(s, e)| s <= e && *e <= row.size)
        }
        _ => None,
    };
    range.map(|(s, e)| s..e).ok_or_else(|| {
        Failure::Corrupt(format!(
            "segment {}: the catalog's blocks {from}..{to} (of {}) are not inside its {} bytes",
            row.sequence,
            row.blocks.len(),
            row.size
        ))
    })
}

fn location_enum(location: i32) -> Option<Location> {
    Location::try_from(location).ok()
}

fn location_name(location: i32) -> &'static str {
    match location_enum(location) {
        Some(Location::Local) => "spool",
        Some(Location::Primary) => "primary",
        Some(Location::Secondary) => "secondary",
        _ => "unknown location",
    }
}

/// `HH:MM:SS.mmm` of a time from the recording's start.
pub(crate) fn clock(us: u64) -> String {
    let ms = us / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// Reads one copy of `seg`, whole (its range, inside a combined object);
/// `None` when that copy is not there. Not checked.
pub(crate) async fn read_copy(
    inner: &Arc<Inner>,
    id: RecordingId,
    seg: &SegmentRow,
    location: Location,
) -> Result<Option<Bytes>> {
    match (location, seg.combined_offset) {
        (Location::Local, _) => inner.spool.read(id, seg.sequence),
        (Location::Primary, Some(offset)) => {
            let end = offset
                .checked_add(seg.size)
                .ok_or_else(|| EngineError::Segment {
                    recording: id,
                    sequence: seg.sequence,
                    source: reel_log::SegmentError::Invalid {
                        field: "combined_offset".into(),
                        problem: format!("{offset} + size {} overflows", seg.size),
                    },
                })?;
            Ok(Some(
                inner
                    .store(Role::Primary)
                    .get_range(&keys::recording_object(id), offset..end)
                    .await?,
            ))
        }
        (loc, _) => {
            let Some(role) = role_of(loc as i32) else {
                return Ok(None);
            };
            match inner
                .store(role)
                .get(&keys::segment(id, seg.sequence), Some(seg.size))
                .await
            {
                Ok(b) => Ok(Some(b)),
                Err(reel_storage::StorageError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// The segment object of `seg` from the first copy that checks against its
/// SHA-256 (spool first, then the stores, healthy ones first).
pub(crate) async fn read_segment_object(
    inner: &Arc<Inner>,
    id: RecordingId,
    seg: &SegmentRow,
) -> Result<Bytes> {
    let mut failures = Vec::new();
    let mut order = seg.locations.clone();
    order.sort_by_key(|&l| match role_of(l) {
        None => 0,
        Some(role) => 1 + u8::from(!inner.store(role).health().state().is_usable()),
    });
    for l in order {
        let Ok(location) = Location::try_from(l) else {
            continue;
        };
        match read_copy(inner, id, seg, location).await {
            Ok(Some(bytes)) if reel_log::sha256(&bytes)[..] == seg.sha256[..] => return Ok(bytes),
            Ok(Some(_)) => failures.push(format!("{}: SHA-256 mismatch", location_name(l))),
            Ok(None) => failures.push(format!("{}: not there", location_name(l))),
            Err(e) => failures.push(format!("{}: {e}", location_name(l))),
        }
    }
    Err(EngineError::Unavailable(format!(
        "recording {id}: segment {} cannot be read: {}",
        seg.sequence,
        if failures.is_empty() {
            "no copy is recorded".into()
        } else {
            failures.join("; ")
        }
    )))
}
