//! The keyframe builder: computes, ahead of any view, the screen at the
//! start of each piece of a closed recording, and at every
//! [`PIECE_BYTES`](super::player::PIECE_BYTES) within the longer pieces
//! of a long one ([`super::player::fine_plan`]), and keeps each as the
//! recording's keyframe, so that a deep link into a recording nobody has
//! opened yet replays at most that much, not everything before it.
//!
//! Every [`PASS_EVERY`] it looks at the [`RECENT`] most recently created
//! recordings; a closed one with such a start after its latest keyframe
//! is built from that keyframe on, in one read of the recording, one
//! recording at a time. What it kept is in the catalog, so a restart
//! continues where it stopped. Older recordings get their keyframes as
//! they are viewed (each piece served keeps the screen at its end).

use std::time::Duration;

use futures::StreamExt;
use reel_asciicast::screen::{Screen, Snapshot};
use reel_engine::{Filter, Query, ReadItem, Sort, SortKey, StateFilter, Window};
use reel_proto::RecordingId;
use tracing::{debug, info, warn};

use super::player::{fine_plan, notice};
use crate::http::AppState;

/// How often the builder looks for recordings to build.
pub const PASS_EVERY: Duration = Duration::from_secs(5);
/// How many of the newest recordings each pass looks at.
pub const RECENT: usize = 50;

/// Runs the builder until `stop` says stop.
pub fn spawn(app: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = pass(&app) => {}
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(PASS_EVERY) => {}
            }
        }
    });
}

async fn pass(app: &AppState) {
    let query = Query {
        filter: Filter {
            state: Some(StateFilter::Closed),
            ..Default::default()
        },
        sort: Sort {
            key: SortKey::Created,
            descending: true,
        },
        after: None,
        limit: RECENT,
    };
    let infos = match app.engine.find(query).await {
        Ok((infos, _)) => infos,
        Err(e) => {
            debug!(error = %e, "keyframe builder: cannot list recordings");
            return;
        }
    };
    for info in infos {
        match build(app, info.id).await {
            Ok(0) => {}
            Ok(kept) => info!(recording = %info.id, keyframes = kept, "keyframes built"),
            // A store that is down, a recording purged meanwhile: the next
            // pass tries again.
            Err(e) => warn!(recording = %info.id, error = %e, "keyframes not built"),
        }
    }
}

/// Builds recording `id`'s missing keyframes after its latest one; returns
/// how many it kept.
pub async fn build(app: &AppState, id: RecordingId) -> reel_engine::Result<usize> {
    let info = app.engine.recording(id).await?;
    let starts = fine_plan(&info);
    let Some(&last) = starts.last() else {
        return Ok(0);
    };
    if last == 0 {
        return Ok(0);
    }
    let kept = app.engine.keyframe_at_or_before(id, u64::MAX).await?;
    let meta = info.row.metadata.clone().unwrap_or_default();
    let (from, base) = match kept.and_then(|(at, bytes)| Some((at, Snapshot::from_bytes(&bytes)?)))
    {
        Some((at, _)) if at >= last => return Ok(0),
        Some(found) => found,
        None => (0, Snapshot::blank(meta.terminal.as_ref())),
    };
    let mut due = starts.into_iter().filter(|&s| s > from).peekable();
    let mut screen = Screen::restore(&base);
    let mut count = 0;
    let mut reading = app.engine.read(id, Window::new(from, Some(last))?).await?;
    // The screen at a piece's start is the one after every event before it.
    while let Some(item) = reading.next().await {
        match item? {
            ReadItem::Events(batch) => {
                for e in batch {
                    while let Some(at) = due.next_if(|&s| s <= e.time_us) {
                        keep(app, id, at, &screen).await?;
                        count += 1;
                    }
                    screen.apply(&e);
                }
            }
            ReadItem::Gap(gap) => {
                while let Some(at) = due.next_if(|&s| s <= gap.start_time_us) {
                    keep(app, id, at, &screen).await?;
                    count += 1;
                }
                screen.write(&notice(&gap.to_string()));
            }
        }
    }
    for at in due {
        keep(app, id, at, &screen).await?;
        count += 1;
    }
    Ok(count)
}

async fn keep(
    app: &AppState,
    id: RecordingId,
    at: u64,
    screen: &Screen,
) -> reel_engine::Result<()> {
    app.engine
        .put_keyframe(id, at, screen.snapshot().to_bytes())
        .await
}
