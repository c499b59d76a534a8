//! Following an open recording as it happens: `GET /recordings/{id}/live`,
//! a WebSocket that speaks ALiS v1 ([`reel_asciicast::alis`]), the live
//! protocol asciinema-player plays.
//!
//! The stream starts with the screen as it is now (every durable event
//! replayed on the server from the nearest screen cached, see
//! [`super::player::Screens`]), then sends each event once it is durable:
//! reeld looks for new events every [`POLL`], reading them where the
//! reader finds them (the journal, the spool, either store), so a view
//! goes on while the primary store is down (a view opened while the
//! recording's past is only on a store that is down starts from now, with
//! a notice saying so). When the recording is closed
//! and every event sent, the stream ends (ALiS end of transmission).
//!
//! A browser's WebSocket carries the session cookie, so a page of another
//! site could open one: the handshake's `Origin` must be this server.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use reel_asciicast::alis::{self, Body, Message};
use reel_asciicast::screen::{Screen, Snapshot, parse_size};
use reel_engine::{ReadItem, Window};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, EventKind, RecordingState};

use super::player::notice;
use super::session::same_origin;
use crate::access::{Denied, Identity};
use crate::http::{AppState, HttpError, audited, parse_id, within_scope};

/// How often an open recording is looked at for new events.
pub const POLL: Duration = Duration::from_millis(200);

/// `GET /recordings/{id}/live`.
pub(super) async fn live(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, HttpError> {
    if !same_origin(&headers, &uri) {
        let denied = Denied::Forbidden("a live view opens from this server's own pages".into());
        crate::access::audit_refusal(&app.engine, Some(&who), &who.client, "live", &denied).await;
        return Ok(denied.into_response());
    }
    let id = parse_id(&id)?;
    let info = within_scope(&app, &who, id, "follow").await?;
    audited(
        &app,
        who.audit("follow", vec![id.to_string()], String::new()),
    )
    .await?;
    let meta = info.row.metadata.unwrap_or_default();
    let blank = Snapshot::blank(meta.terminal.as_ref());
    Ok(ws
        .protocols([alis::SUBPROTOCOL])
        .on_upgrade(move |mut socket| async move {
            if let Err(e) = follow(&app, id, blank, &mut socket).await {
                tracing::debug!(recording = %id, error = %e.status_and_message().1, "a live view ends");
            }
        }))
}

/// Where a follower is: the time of the last event sent, and how many
/// events at that time were sent (later events may share it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub time_us: u64,
    pub sent_at_time: u64,
}

impl Position {
    /// Whether `event` (read from `self.time_us` on, in order) was already
    /// sent; counts it as sent if not.
    fn take(&mut self, skip: &mut u64, event: &Event) -> bool {
        if event.time_us == self.time_us && *skip > 0 {
            *skip -= 1;
            return false;
        }
        if event.time_us == self.time_us {
            self.sent_at_time += 1;
        } else {
            self.time_us = event.time_us;
            self.sent_at_time = 1;
        }
        true
    }
}

/// What happened in a recording since `pos`: its new events, and notices
/// of gaps not reported before.
async fn since(
    app: &AppState,
    id: RecordingId,
    pos: &mut Position,
    gaps: &mut HashSet<(u64, u64)>,
) -> Result<Vec<Event>, HttpError> {
    let mut skip = pos.sent_at_time;
    let mut reading = match app.engine.read(id, Window::new(pos.time_us, None)?).await {
        Ok(reading) => reading,
        // The events at the last time sent may be in a segment only a store
        // that is down holds: what comes after them is read without it.
        Err(e) if skip > 0 && e.kind() == reel_engine::ErrorKind::Unavailable => {
            skip = 0;
            match app
                .engine
                .read(id, Window::new(pos.time_us + 1, None)?)
                .await
            {
                Ok(reading) => reading,
                // Nothing after it yet.
                Err(e) if e.kind() == reel_engine::ErrorKind::OutOfRange => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    while let Some(item) = reading.next().await {
        match item? {
            ReadItem::Events(batch) => {
                out.extend(batch.into_iter().filter(|e| pos.take(&mut skip, e)));
            }
            ReadItem::Gap(gap) => {
                if gaps.insert((gap.sequence, gap.first_event_index)) {
                    out.push(Event {
                        time_us: gap.start_time_us.max(pos.time_us),
                        kind: EventKind::Output as i32,
                        data: notice(&gap.to_string()).into_bytes(),
                    });
                }
            }
        }
    }
    Ok(out)
}

async fn send(socket: &mut WebSocket, bytes: Vec<u8>) -> Result<(), HttpError> {
    socket
        .send(WsMessage::Binary(bytes.into()))
        .await
        .map_err(|e| HttpError::from(reel_engine::EngineError::Unavailable(e.to_string())))
}

async fn follow(
    app: &AppState,
    id: RecordingId,
    blank: Snapshot,
    socket: &mut WebSocket,
) -> Result<(), HttpError> {
    // The screen now: the latest screen kept, then every durable event.
    let (from, base) = app
        .screens
        .nearest_kept(app, id, u64::MAX)
        .await?
        .unwrap_or((0, blank));
    let mut screen = Screen::restore(&base);
    let mut pos = Position {
        time_us: from,
        sent_at_time: 0,
    };
    let mut gaps = HashSet::new();
    match since(app, id, &mut pos, &mut gaps).await {
        Ok(events) => events.iter().for_each(|e| screen.apply(e)),
        // The past is on a store that is down: follow from now on, saying
        // that the screen before is not shown.
        Err(e) if e.status_and_message().0 == StatusCode::SERVICE_UNAVAILABLE => {
            let end = app.engine.recording(id).await?.durable_time_us;
            pos = Position {
                time_us: end,
                sent_at_time: 0,
            };
            screen = Screen::restore(&Snapshot {
                init: String::new(),
                ..screen.snapshot()
            });
            screen.write(&notice(&format!(
                "the screen before {} is on a store that is down: following from here",
                reel_engine::clock(end)
            )));
        }
        Err(e) => return Err(e),
    }
    let now = screen.snapshot();
    send(socket, alis::MAGIC.to_vec()).await?;
    let init = Message::Init {
        last_id: 0,
        time_us: pos.time_us,
        cols: now.cols,
        rows: now.rows,
        theme: None,
        init: now.init,
    };
    send(socket, alis::encode(&init)).await?;
    let (mut last_id, mut clock) = (0u64, pos.time_us);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return Ok(()),
                Some(Ok(_)) => continue,
            },
        }
        let closed = app.engine.recording(id).await?.state() == RecordingState::Closed;
        let events = match since(app, id, &mut pos, &mut gaps).await {
            Ok(events) => events,
            // A store that does not answer now may later: keep looking.
            Err(e) if !closed => {
                let error = e.status_and_message().1;
                tracing::debug!(recording = %id, %error, "live view: no new events now");
                continue;
            }
            Err(e) => return Err(e),
        };
        if events.is_empty() && closed {
            last_id += 1;
            let eot = Message::EndOfTransmission {
                id: last_id,
                interval_us: 0,
            };
            send(socket, alis::encode(&eot)).await?;
            let _ = socket.send(WsMessage::Close(None)).await;
            return Ok(());
        }
        for e in events {
            let Some(body) = body(&e) else { continue };
            last_id += 1;
            let message = Message::Event {
                id: last_id,
                interval_us: e.time_us.saturating_sub(clock),
                body,
            };
            clock = clock.max(e.time_us);
            send(socket, alis::encode(&message)).await?;
        }
    }
}

/// An event as ALiS carries it; `None` for what it has no message for.
fn body(e: &Event) -> Option<Body> {
    let text = || String::from_utf8_lossy(&e.data).into_owned();
    Some(match EventKind::try_from(e.kind).ok()? {
        EventKind::Output => Body::Output(text()),
        EventKind::Input => Body::Input(text()),
        EventKind::Marker => Body::Marker(text()),
        EventKind::Resize => {
            let (cols, rows) = parse_size(&e.data)?;
            Body::Resize { cols, rows }
        }
        EventKind::Exit => Body::Exit(text().trim().parse().ok()?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time_us: u64) -> Event {
        Event {
            time_us,
            ..Default::default()
        }
    }

    #[test]
    fn events_sharing_a_time_are_sent_once_each() {
        // Sent so far: the events at 5 and the first two at 7.
        let mut pos = Position::default();
        let mut skip = 0;
        let first: Vec<u64> = [5, 7, 7]
            .iter()
            .map(|&t| at(t))
            .filter(|e| pos.take(&mut skip, e))
            .map(|e| e.time_us)
            .collect();
        assert_eq!(first, [5, 7, 7]);
        assert_eq!(
            pos,
            Position {
                time_us: 7,
                sent_at_time: 2
            }
        );
        // The next read starts at 7 and finds a third event at 7, then 9.
        let mut skip = pos.sent_at_time;
        let next: Vec<u64> = [7, 7, 7, 9]
            .iter()
            .map(|&t| at(t))
            .filter(|e| pos.take(&mut skip, e))
            .map(|e| e.time_us)
            .collect();
        assert_eq!(next, [7, 9]);
    }
}
