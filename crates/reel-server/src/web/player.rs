//! What the web player plays: a recording in asciinema-player's
//! "segmented" form, so that it opens any moment without downloading what
//! comes before it.
//!
//! - `GET /recordings/{id}/player.json`: the index. The recording cut into
//!   pieces of about [`PIECE_BYTES`] of stored data (longer in a recording
//!   of more than [`MAX_PIECES`] such pieces), planned from the catalog
//!   alone (each segment row lists its blocks with their first
//!   time), so the index reads no store. Gaps the catalog knows of (events
//!   with no copy left) are markers on the timeline.
//! - `GET /recordings/{id}/player/piece?from=US&to=US` (or `&end=US` for
//!   the last piece): the events of one piece, and the screen as it was at
//!   its start, computed here with a terminal emulator
//!   ([`reel_asciicast::screen`]). The browser holds at most three pieces
//!   (the player keeps the previous, current and next), so its memory does
//!   not grow with the recording.
//!
//! Screens are kept in memory ([`Screens`], bounded) and as the recording's
//! keyframes in the catalog (sealed with its data key, by the engine):
//! serving a piece also computes the screen at its end, so playing on needs
//! no reading twice, and a seek replays from the nearest screen kept before
//! it. The [`super::keyframes`] builder computes the keyframes of closed
//! recordings ahead of any view, so that a deep link into a recording
//! never opened reads one piece, not everything before it.
//!
//! Events a read finds lost (a [`reel_engine::Gap`]) are written into the
//! terminal as a notice, at their time, so a gap is never hidden.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use reel_asciicast::screen::{Screen, Snapshot};
use reel_engine::{ReadItem, RecordingInfo, Window, clock};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, EventKind};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::access::Identity;
use crate::http::{AppState, HttpError, audited, invalid, parse_id, within_scope};

/// About this many bytes of stored events make a piece...
pub const PIECE_BYTES: u64 = 256 << 10;
/// ... in an index of at most this many pieces. When it opens a recording
/// the player resolves the URL of every piece its index lists, which costs
/// Chromium tens of microseconds a piece: a 1 GiB recording in 4,096
/// pieces spent more time there than on the piece it showed. A longer
/// recording has longer pieces instead, 2, 4, 8... times [`PIECE_BYTES`],
/// so that an open recording's pieces change only when its size doubles.
pub const MAX_PIECES: usize = 1024;
/// The screens kept in memory, in all.
pub const SCREEN_CACHE_BYTES: usize = 64 << 20;

#[derive(Serialize)]
struct Index {
    version: u8,
    /// Seconds.
    duration: f64,
    term: Term,
    segments: Vec<IndexPiece>,
    markers: Vec<(f64, String)>,
}

#[derive(Serialize)]
struct Term {
    cols: u16,
    rows: u16,
}

#[derive(Serialize)]
struct IndexPiece {
    start: f64,
    url: String,
}

/// Microseconds as the player's seconds. The same number always gives the
/// same float, so a piece's first event and its start in the index agree.
fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The start of each piece (the first is 0), from the catalog's blocks:
/// every 1st, 2nd, 4th... of the [`fine_plan`]'s.
pub fn plan(info: &RecordingInfo) -> Vec<u64> {
    let fine = fine_plan(info);
    let step = fine.len().div_ceil(MAX_PIECES).next_power_of_two();
    fine.into_iter().step_by(step).collect()
}

/// The starts of pieces of about [`PIECE_BYTES`], however many: those of
/// [`plan`] and, in a long recording, those between. A closed recording's
/// keyframes are kept at each, so that a deep link into a long piece
/// replays at most [`PIECE_BYTES`] of events for its screen.
pub fn fine_plan(info: &RecordingInfo) -> Vec<u64> {
    let end = info.durable_time_us;
    let mut starts = vec![0u64];
    let mut bytes = 0u64;
    for seg in &info.segments {
        let blocks: Vec<(u64, u64)> = if seg.blocks.is_empty() {
            vec![(seg.start_time_us, seg.size)]
        } else {
            seg.blocks
                .iter()
                .map(|b| (b.start_time_us, b.len))
                .collect()
        };
        for (time, len) in blocks {
            let last = *starts.last().expect("a first piece");
            // The player needs starts that rise and stay before the end.
            if bytes >= PIECE_BYTES && time > last && time < end {
                starts.push(time);
                bytes = 0;
            }
            bytes += len;
        }
    }
    starts
}

/// Events the catalog knows are lost: a segment with events that no copy
/// holds (`locations` names none). The page and the timeline both ask this.
pub fn lost(locations_named: usize, event_count: u64) -> bool {
    locations_named == 0 && event_count > 0
}

/// How the page and the timeline name lost events.
pub fn lost_label(first_event_index: u64, event_count: u64) -> String {
    format!(
        "events {first_event_index}..{} are lost",
        first_event_index.saturating_add(event_count)
    )
}

/// Piece `i` of a plan, as the index names it (relative to the index).
fn piece_url(starts: &[u64], i: usize, end: u64) -> String {
    let from = starts[i];
    match starts.get(i + 1) {
        Some(to) => format!("player/piece?from={from}&to={to}"),
        None => format!("player/piece?from={from}&end={end}"),
    }
}

/// What the player will fetch first to open recording `id` at `at_us`,
/// given its plan (`starts`, from [`plan`]):
/// its index and the piece that holds the moment, for the page to name
/// as preloads, so that both are on their way while the player's script
/// loads.
pub fn first_fetches(info: &RecordingInfo, starts: &[u64], at_us: u64) -> [String; 2] {
    let i = piece_of(starts, at_us);
    let base = format!("/recordings/{}", info.id);
    [
        format!("{base}/player.json"),
        format!("{base}/{}", piece_url(starts, i, info.durable_time_us)),
    ]
}

/// The piece of a plan that holds `at_us`.
pub fn piece_of(starts: &[u64], at_us: u64) -> usize {
    starts.partition_point(|&s| s <= at_us).saturating_sub(1)
}

/// Where the catalog says events are lost, as timeline markers.
fn known_gaps(info: &RecordingInfo) -> Vec<(f64, String)> {
    info.segments
        .iter()
        .filter(|s| lost(s.locations.len(), s.event_count))
        .map(|s| {
            let label = format!(
                "reel: gap: {}",
                lost_label(s.first_event_index, s.event_count)
            );
            (seconds(s.start_time_us.min(info.durable_time_us)), label)
        })
        .collect()
}

/// `GET /recordings/{id}/player.json`.
pub(super) async fn index(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let id = parse_id(&id)?;
    let info = within_scope(&app, &who, id, "play").await?;
    audited(
        &app,
        who.audit("play", vec![id.to_string()], "index".into()),
    )
    .await?;
    let meta = info.row.metadata.clone().unwrap_or_default();
    let blank = Snapshot::blank(meta.terminal.as_ref());
    let starts = plan(&info);
    let end = info.durable_time_us;
    let segments = starts
        .iter()
        .enumerate()
        .map(|(i, &from)| IndexPiece {
            start: seconds(from),
            url: piece_url(&starts, i, end),
        })
        .collect();
    let body = Index {
        version: 1,
        duration: seconds(end),
        term: Term {
            cols: blank.cols,
            rows: blank.rows,
        },
        segments,
        markers: known_gaps(&info),
    };
    Ok(json_response(serde_json::to_vec(&body).map_err(internal)?))
}

/// A piece as the player reads it: the screen at its start, then its
/// events as asciicast v2 event lines, `[seconds, code, data]`.
#[derive(Serialize)]
struct Piece<'a> {
    snapshot: PieceSnapshot<'a>,
    events: Vec<PieceEvent>,
}

#[derive(Serialize)]
struct PieceSnapshot<'a> {
    cols: u16,
    rows: u16,
    init: &'a str,
}

type PieceEvent = (f64, &'static str, String);

#[derive(Deserialize)]
pub(super) struct PieceQuery {
    from: u64,
    /// The next piece's start (the piece stops before it)...
    to: Option<u64>,
    /// ... or, for the last piece, the recording's end (included).
    end: Option<u64>,
}

/// `GET /recordings/{id}/player/piece`.
pub(super) async fn piece(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Path(id): Path<String>,
    Query(q): Query<PieceQuery>,
) -> Result<Response, HttpError> {
    let id = parse_id(&id)?;
    let (stop, last) = match (q.to, q.end) {
        (Some(to), None) if to > q.from => (to, false),
        (None, Some(end)) if end >= q.from => (end.saturating_add(1), true),
        _ => {
            return Err(invalid(
                "a piece is from=US and either to=US (after from) or end=US".into(),
            ));
        }
    };
    let info = within_scope(&app, &who, id, "play").await?;
    // Only the index's pieces: the screens computed for them are kept, and
    // a made-up boundary would make the server replay and keep one more.
    let starts = plan(&info);
    let planned = |t: u64| starts.binary_search(&t).is_ok();
    if !planned(q.from) || (!last && !planned(stop)) {
        return Err(invalid(format!(
            "from={} to={stop} is not a piece of this recording's index (player.json)",
            q.from
        )));
    }
    let detail = format!("from={} to={}", clock(q.from), clock(stop));
    audited(&app, who.audit("play", vec![id.to_string()], detail)).await?;
    let meta = info.row.metadata.clone().unwrap_or_default();
    let blank = Snapshot::blank(meta.terminal.as_ref());
    let start = app.screens.at(&app, &info, &blank, q.from).await?;
    let mut events: Vec<PieceEvent> = Vec::new();
    // The events the screen at the piece's end (the next piece's start) is
    // replayed from, once answered; none when a screen is kept there
    // already, as the keyframes of a closed recording usually are: the
    // replay costs the CPU the browser needs to show this piece.
    let mut played: Option<Vec<Event>> = if last || app.screens.kept_at(&app, id, stop).await? {
        None
    } else {
        Some(Vec::new())
    };
    let push = |events: &mut Vec<PieceEvent>, time_us: u64, code: &'static str, data: String| {
        events.push((seconds(time_us), code, data));
    };
    // The player wants every piece but the first to begin at its start.
    let mut first = true;
    let mut reading = app
        .engine
        .read_info(&info, Window::new(q.from, Some(stop))?)
        .await?;
    while let Some(item) = reading.next().await {
        match item? {
            ReadItem::Events(batch) => {
                for e in batch {
                    let Some(code) = code(&e) else { continue };
                    if first && q.from > 0 && e.time_us != q.from {
                        push(&mut events, q.from, "o", String::new());
                    }
                    first = false;
                    let time_us = e.time_us;
                    let data = match played.as_mut() {
                        Some(played) => {
                            let data = String::from_utf8_lossy(&e.data).into_owned();
                            played.push(e);
                            data
                        }
                        None => String::from_utf8(e.data)
                            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                    };
                    push(&mut events, time_us, code, data);
                }
            }
            ReadItem::Gap(gap) => {
                let at = gap.start_time_us.clamp(q.from, stop - 1);
                if first && q.from > 0 && at != q.from {
                    push(&mut events, q.from, "o", String::new());
                }
                first = false;
                let text = notice(&gap.to_string());
                if let Some(played) = played.as_mut() {
                    played.push(Event {
                        time_us: at,
                        kind: EventKind::Output as i32,
                        data: text.clone().into_bytes(),
                    });
                }
                push(&mut events, at, "o", text);
            }
        }
    }
    if first {
        push(&mut events, q.from, "o", String::new());
    }
    if last {
        // ... and the last to end at the recording's end.
        let end = stop - 1;
        let ends_there = events.last().is_some_and(|e| e.0 == seconds(end));
        if !ends_there {
            push(&mut events, end, "o", String::new());
        }
    }
    let body = Piece {
        snapshot: PieceSnapshot {
            cols: start.cols,
            rows: start.rows,
            init: &start.init,
        },
        events,
    };
    let body = serde_json::to_vec(&body).map_err(internal)?;
    if let Some(played) = played {
        // The screen at the piece's end, for the next piece, computed beside
        // the answer rather than before it: the player needs this one first.
        tokio::task::spawn_blocking(move || {
            let mut screen = Screen::restore(&start);
            played.iter().for_each(|e| screen.apply(e));
            app.screens.keep(&app, id, stop, screen.snapshot());
        });
    }
    Ok(json_response(body))
}

/// The asciicast code the player shows an event as; `None` for what it
/// does not play (markers come from the index, the exit status is shown on
/// the page).
fn code(e: &Event) -> Option<&'static str> {
    match EventKind::try_from(e.kind) {
        Ok(EventKind::Output) => Some("o"),
        Ok(EventKind::Input) => Some("i"),
        Ok(EventKind::Resize) => Some("r"),
        _ => None,
    }
}

/// A gap as the terminal shows it: on a line of its own, in reverse video.
pub fn notice(text: &str) -> String {
    format!("\r\n\x1b[7m reel: {text} \x1b[0m\r\n")
}

fn internal(e: serde_json::Error) -> HttpError {
    HttpError::from(reel_engine::EngineError::Internal(e.to_string()))
}

fn json_response(body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The screen at `to` of a recording whose screen at `from` is `base`: the
/// events between replayed, a gap written as its notice.
async fn replay(
    app: &AppState,
    info: &RecordingInfo,
    from: u64,
    base: &Snapshot,
    to: u64,
) -> Result<Snapshot, HttpError> {
    let mut screen = Screen::restore(base);
    let mut reading = app
        .engine
        .read_info(info, Window::new(from, Some(to))?)
        .await?;
    while let Some(item) = reading.next().await {
        match item? {
            ReadItem::Events(batch) => batch.iter().for_each(|e| screen.apply(e)),
            ReadItem::Gap(gap) => screen.write(&notice(&gap.to_string())),
        }
    }
    Ok(screen.snapshot())
}

/// Screens of recordings at moments already computed, bounded by
/// [`SCREEN_CACHE_BYTES`], the least recently used going first.
#[derive(Default)]
pub struct Screens {
    inner: Mutex<ScreenCache>,
}

#[derive(Default)]
struct ScreenCache {
    map: BTreeMap<(RecordingId, u64), (Snapshot, u64)>,
    bytes: usize,
    tick: u64,
}

impl Screens {
    /// The screen of recording `id` after every event before `time_us`:
    /// from the nearest screen in memory or kept as the recording's
    /// keyframe, replaying only the events between. A screen computed here
    /// is kept ([`Screens::keep`]): `time_us` is a piece's start.
    pub async fn at(
        &self,
        app: &AppState,
        info: &RecordingInfo,
        blank: &Snapshot,
        time_us: u64,
    ) -> Result<Snapshot, HttpError> {
        let (from, base) = self
            .nearest_kept(app, info.id, time_us)
            .await?
            .unwrap_or((0, blank.clone()));
        if from == time_us {
            return Ok(base);
        }
        let snapshot = replay(app, info, from, &base, time_us).await?;
        self.keep(app, info.id, time_us, snapshot.clone());
        Ok(snapshot)
    }

    /// The screen at any moment (a deep link's), in piece `piece_start`:
    /// from the nearest screen kept in the piece, or else the piece's start
    /// (computed and kept by [`Screens::at`], as the player will ask for
    /// it), so that it never costs more than reading one piece. The screen
    /// at the moment itself is not kept: links to made-up moments add no
    /// keyframes.
    pub async fn passing(
        &self,
        app: &AppState,
        info: &RecordingInfo,
        blank: &Snapshot,
        piece_start: u64,
        time_us: u64,
    ) -> Result<Snapshot, HttpError> {
        let (from, base) = match self.nearest_kept(app, info.id, time_us).await? {
            Some((at, kept)) if at >= piece_start => (at, kept),
            _ => (piece_start, self.at(app, info, blank, piece_start).await?),
        };
        if from == time_us {
            return Ok(base);
        }
        replay(app, info, from, &base, time_us).await
    }

    /// Whether a screen of recording `id` at exactly `time_us` is kept, in
    /// memory or as a keyframe.
    pub async fn kept_at(
        &self,
        app: &AppState,
        id: RecordingId,
        time_us: u64,
    ) -> Result<bool, HttpError> {
        Ok(self
            .nearest_kept(app, id, time_us)
            .await?
            .is_some_and(|(at, _)| at == time_us))
    }

    /// The latest screen at or before `time_us` in memory or among the
    /// recording's keyframes, whichever is later.
    pub async fn nearest_kept(
        &self,
        app: &AppState,
        id: RecordingId,
        time_us: u64,
    ) -> Result<Option<(u64, Snapshot)>, HttpError> {
        let memory = self.nearest(id, time_us);
        if memory.as_ref().is_some_and(|(at, _)| *at == time_us) {
            return Ok(memory);
        }
        let kept = app
            .engine
            .keyframe_at_or_before(id, time_us)
            .await?
            .and_then(|(at, bytes)| Some((at, Snapshot::from_bytes(&bytes)?)));
        Ok(match (memory, kept) {
            (Some(m), Some(k)) => Some(if k.0 > m.0 { k } else { m }),
            (m, k) => m.or(k),
        })
    }

    /// Keeps a screen computed at `time_us` (a piece's start): in memory,
    /// and as the recording's keyframe, written in the background unless
    /// this process or the catalog has it already, so that the next view,
    /// after a restart too, starts there.
    pub fn keep(&self, app: &AppState, id: RecordingId, time_us: u64, snapshot: Snapshot) {
        if self.put(id, time_us, snapshot.clone()) {
            return;
        }
        let engine = app.engine.clone();
        tokio::spawn(async move {
            if let Ok(Some((at, _))) = engine.keyframe_at_or_before(id, time_us).await
                && at == time_us
            {
                return;
            }
            if let Err(e) = engine.put_keyframe(id, time_us, snapshot.to_bytes()).await {
                debug!(recording = %id, error = %e, "keyframe not kept");
            }
        });
    }

    /// The latest screen cached at or before `time_us`.
    pub fn nearest(&self, id: RecordingId, time_us: u64) -> Option<(u64, Snapshot)> {
        let mut cache = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        cache.tick += 1;
        let now = cache.tick;
        let (&(_, at), entry) = cache.map.range_mut((id, 0)..=(id, time_us)).next_back()?;
        entry.1 = now;
        Some((at, entry.0.clone()))
    }

    /// Puts a screen in memory; true if one was there at that time.
    pub fn put(&self, id: RecordingId, time_us: u64, snapshot: Snapshot) -> bool {
        let mut cache = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        cache.tick += 1;
        let now = cache.tick;
        cache.bytes += snapshot.weight();
        let was = cache.map.insert((id, time_us), (snapshot, now));
        if let Some((old, _)) = &was {
            cache.bytes -= old.weight();
        }
        while cache.bytes > SCREEN_CACHE_BYTES {
            let Some(oldest) = cache.map.iter().min_by_key(|(_, v)| v.1).map(|(k, _)| *k) else {
                break;
            };
            if let Some((gone, _)) = cache.map.remove(&oldest) {
                cache.bytes -= gone.weight();
            }
        }
        was.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reel_proto::v1::{ContentBlock, RecordingRow, SegmentRow};

    fn info(blocks: &[(u64, u64)], end: u64) -> RecordingInfo {
        RecordingInfo {
            id: RecordingId::generate(),
            row: RecordingRow::default(),
            segments: vec![SegmentRow {
                blocks: blocks
                    .iter()
                    .map(|&(t, len)| ContentBlock {
                        start_time_us: t,
                        len,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            unsealed_events: 0,
            unsealed_bytes: 0,
            durable_events: 0,
            durable_time_us: end,
            attached: false,
            recombine: None,
            hold: None,
            readability: Default::default(),
        }
    }

    #[test]
    fn pieces_hold_about_piece_bytes_and_their_starts_rise_before_the_end() {
        let blocks: Vec<(u64, u64)> = (0..100).map(|i| (i * 1_000_000, 64 << 10)).collect();
        let starts = plan(&info(&blocks, 100_000_000));
        assert_eq!(starts[0], 0);
        assert_eq!(starts.len(), 25, "{starts:?}");
        assert!(starts.windows(2).all(|w| w[0] < w[1]));
        assert!(starts.iter().all(|&s| s < 100_000_000));
    }

    #[test]
    fn a_long_recording_has_longer_pieces_not_more_and_they_move_only_when_it_doubles() {
        let blocks =
            |n: u64| -> Vec<(u64, u64)> { (0..n).map(|i| (i * 10, PIECE_BYTES)).collect() };
        // Between 4 and 8 times MAX_PIECES pieces of PIECE_BYTES: pieces of 8.
        let n = 4 * MAX_PIECES as u64 + 100;
        let fine = fine_plan(&info(&blocks(n), n * 10));
        assert_eq!(fine.len() as u64, n);
        let starts = plan(&info(&blocks(n), n * 10));
        assert!(starts.len() <= MAX_PIECES, "{} pieces", starts.len());
        assert_eq!(starts.len(), fine.len().div_ceil(8), "every 8th start");
        assert_eq!(starts[0], 0);
        assert!(starts.iter().all(|s| fine.binary_search(s).is_ok()));
        assert!(
            starts.windows(2).all(|w| w[1] - w[0] == 80),
            "pieces of 8 blocks"
        );
        // A recording that grows keeps its pieces until its size doubles...
        let grown = plan(&info(&blocks(n + 1000), (n + 1000) * 10));
        assert_eq!(&grown[..starts.len()], &starts[..]);
        // ... and up to MAX_PIECES pieces of PIECE_BYTES, nothing changes.
        let small = info(&blocks(MAX_PIECES as u64), 100_000);
        assert_eq!(plan(&small), fine_plan(&small));
    }

    #[test]
    fn blocks_at_one_time_do_not_make_two_pieces_start_there() {
        let blocks: Vec<(u64, u64)> = (0..20).map(|_| (5, PIECE_BYTES)).collect();
        assert_eq!(plan(&info(&blocks, 10)), vec![0, 5]);
        // Nothing can start at or after the end.
        assert_eq!(plan(&info(&blocks, 5)), vec![0]);
        assert_eq!(plan(&info(&[], 0)), vec![0]);
    }

    #[test]
    fn the_screen_cache_finds_the_nearest_earlier_screen_and_stays_bounded() {
        let screens = Screens::default();
        let id = RecordingId::generate();
        let snap = |text: &str| Snapshot {
            cols: 80,
            rows: 24,
            init: text.into(),
        };
        screens.put(id, 10, snap("a"));
        screens.put(id, 20, snap("b"));
        assert_eq!(screens.nearest(id, 15).unwrap(), (10, snap("a")));
        assert_eq!(screens.nearest(id, 20).unwrap().0, 20);
        assert!(screens.nearest(id, 5).is_none());
        assert!(screens.nearest(RecordingId::generate(), 50).is_none());
        let big = "x".repeat(SCREEN_CACHE_BYTES / 4);
        for t in 100..110 {
            screens.put(id, t, snap(&big));
        }
        let cache = screens.inner.lock().unwrap();
        assert!(cache.bytes <= SCREEN_CACHE_BYTES);
        assert!(cache.map.contains_key(&(id, 109)), "the newest stays");
    }
}
