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
//!
//! The parts: [`reachable`] refuses a read at once when a window's bytes
//! are only on a store that is down; [`failover`] reads each segment's
//! blocks from the best copy and moves to the next copy where one fails;
//! [`range`] buffers one streamed range request. Which copies there are and
//! which comes first is [`crate::copies`]'s.

mod failover;
mod range;
mod reachable;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use reel_catalog::RecordingId;
use reel_proto::v1::{Event, RecordingRow, SegmentRow};
use tokio::sync::mpsc;

use crate::Inner;
use crate::error::{EngineError, Result};

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
    read_planned(inner, id, row, segments, window).await
}

/// [`read`] from rows the caller has just read from the catalog. Rows that
/// change meanwhile (a recombination, an upload, a seal) are met as in any
/// read whose plan goes stale while it streams.
pub(crate) async fn read_planned(
    inner: &Arc<Inner>,
    id: RecordingId,
    row: RecordingRow,
    segments: Vec<SegmentRow>,
    window: Window,
) -> Result<EventStream> {
    let end = recording_end(inner, id, &row);
    if window.from_us > end {
        return Err(EngineError::OutOfRange(format!(
            "recording {id}: the window starts at {}, after the recording's end at {}",
            clock(window.from_us),
            clock(end)
        )));
    }
    reachable::check_reachable(inner, id, &segments, window).await?;
    let key = crate::recording::recording_key(inner.keys.as_ref(), id, &row)?;
    let (tx, rx) = mpsc::channel(32);
    let inner = inner.clone();
    tokio::spawn(async move {
        let mut reader = failover::Reader {
            inner: &inner,
            id,
            window,
            tx: &tx,
            combined: None,
            planned: Some(segments),
            emitted: false,
            key,
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

/// `HH:MM:SS.mmm` of a time from the recording's start.
pub fn clock(us: u64) -> String {
    let ms = us / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}
