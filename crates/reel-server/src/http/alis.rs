//! asciinema's live stream into Reel: `asciinema stream --remote
//! ws://HOST:PORT/ws/S/TOKEN` (and `asciinema session --stream-remote`)
//! pointed at reeld's HTTP port records the session, as asciinema's own
//! server takes it: a WebSocket under the subprotocol `v1.alis`
//! ([`reel_asciicast::alis`]).
//!
//! The token in the path is a recorder token (the access layer reads it
//! from there for this route, and never writes it to a log or the audit
//! log). A stream that starts afresh (init with last id 0) is a new
//! recording: the query may name its `user`, `target`, `protocol` and
//! `title` (the user defaults to the token's name). A stream that comes
//! back after a broken connection (init with the last id it sent) continues
//! the recording this server holds for it: ALiS has no acknowledgements, so
//! what was sent while the connection was down is gone; the recording gets
//! a marker saying how many events that was, then the screen as the
//! producer's terminal shows it (the init's text), so that playback is
//! right from there on. The end of transmission closes the recording; a
//! connection that breaks before it leaves the recording open for the
//! producer to come back (reeld closes it as interrupted after its
//! `detached_timeout`).
//!
//! A malformed message closes the connection with code 4002 and the reason
//! (asciinema does not retry after a close code below 4100); everything
//! taken before it is kept. A failure of the server (a full disk) closes
//! with 1011, after which asciinema reconnects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use reel_asciicast::alis::{self, Body, Message};
use reel_engine::{AckFuture, RecordingWriter};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, EventKind, RecordingMetadata, Terminal};
use serde::Deserialize;

use super::AppState;
use crate::access::Identity;

/// The producer endpoint, the path shape asciinema's server uses.
pub(crate) const ROUTE: &str = "/ws/S/{token}";
/// The source format of recordings streamed this way.
pub const SOURCE: &str = "alis-v1";

/// Close codes: below 4100 asciinema stops; 1011 makes it reconnect.
const CLOSE_BAD_MESSAGE: u16 = 4002;
const CLOSE_SERVER_ERROR: u16 = 1011;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(ROUTE, get(producer))
}

/// Recordings whose stream broke, waiting for their producer to come
/// back: by owner, with the last event id each received.
#[derive(Clone, Default)]
pub struct Streams(Arc<Mutex<HashMap<String, Vec<Detached>>>>);

#[derive(Clone, Copy)]
struct Detached {
    id: RecordingId,
    last_id: u64,
    size: (u16, u16),
}

impl Streams {
    fn put(&self, owner: &str, d: Detached) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.entry(owner.to_string()).or_default();
        list.retain(|x| x.id != d.id);
        list.push(d);
    }

    /// The detached stream of `owner` a producer that last sent `last_id`
    /// continues: the one that received the most of it.
    fn take(&self, owner: &str, last_id: u64) -> Option<Detached> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let list = map.get_mut(owner)?;
        let best = list
            .iter()
            .enumerate()
            .filter(|(_, d)| d.last_id <= last_id)
            .max_by_key(|(_, d)| d.last_id)
            .map(|(i, _)| i)?;
        Some(list.swap_remove(best))
    }
}

#[derive(Debug, Default, Deserialize)]
struct StreamQuery {
    user: Option<String>,
    target: Option<String>,
    protocol: Option<String>,
    title: Option<String>,
}

async fn producer(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Query(query): Query<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let ws = ws.protocols([alis::SUBPROTOCOL]);
    if ws.selected_protocol().is_none() {
        return super::invalid(format!(
            "an asciinema stream speaks the WebSocket subprotocol {}",
            alis::SUBPROTOCOL
        ))
        .into_response();
    }
    let limit = app.engine.config().max_event_bytes + 64;
    ws.max_message_size(limit)
        .on_upgrade(move |socket| async move {
            let mut socket = socket;
            let (code, reason) = match stream(&app, &who, query, &mut socket).await {
                Ok(()) => (1000, "ended".to_string()),
                Err(Stop::Bad(why)) => (CLOSE_BAD_MESSAGE, why),
                Err(Stop::Server(why)) => (CLOSE_SERVER_ERROR, why),
                Err(Stop::Gone) => return,
            };
            tracing::debug!(code, reason = %reason, "asciinema stream ends");
            let _ = socket
                .send(WsMessage::Close(Some(CloseFrame {
                    code,
                    reason: truncate(&reason).into(),
                })))
                .await;
        })
        .into_response()
}

/// A close reason fits a control frame (123 bytes).
fn truncate(reason: &str) -> &str {
    let mut end = reason.len().min(120);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

enum Stop {
    /// The producer sent something that is not ALiS v1.
    Bad(String),
    /// The server could not take it.
    Server(String),
    /// The connection went away (nothing to answer).
    Gone,
}

impl From<reel_engine::EngineError> for Stop {
    fn from(e: reel_engine::EngineError) -> Stop {
        Stop::Server(e.to_string())
    }
}

/// The next binary message; `None` when the producer went away.
async fn next(socket: &mut WebSocket) -> Result<Option<Vec<u8>>, Stop> {
    loop {
        match socket.recv().await {
            None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return Ok(None),
            Some(Ok(WsMessage::Binary(b))) => return Ok(Some(b.to_vec())),
            Some(Ok(WsMessage::Text(_))) => {
                return Err(Stop::Bad("ALiS messages are binary; got text".into()));
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
        }
    }
}

fn decode(bytes: &[u8]) -> Result<Message, Stop> {
    alis::decode(bytes).map_err(|e| Stop::Bad(format!("bad ALiS message: {e}")))
}

fn event(time_us: u64, kind: EventKind, data: impl Into<Vec<u8>>) -> Event {
    Event {
        time_us,
        kind: kind as i32,
        data: data.into(),
    }
}

/// How long a producer has to send the magic and the init.
const HELLO_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

async fn hello(socket: &mut WebSocket) -> Result<Option<Vec<u8>>, Stop> {
    tokio::time::timeout(HELLO_WITHIN, next(socket))
        .await
        .map_err(|_| Stop::Bad(format!("no ALiS magic and init within {HELLO_WITHIN:?}")))?
}

async fn stream(
    app: &AppState,
    who: &Identity,
    query: StreamQuery,
    socket: &mut WebSocket,
) -> Result<(), Stop> {
    match hello(socket).await? {
        Some(m) if m == alis::MAGIC => {}
        Some(_) => {
            return Err(Stop::Bad(
                "the first message is not the ALiS v1 magic".into(),
            ));
        }
        None => return Err(Stop::Gone),
    }
    let Some(init) = hello(socket).await? else {
        return Err(Stop::Gone);
    };
    let Message::Init {
        last_id,
        time_us,
        cols,
        rows,
        init,
        ..
    } = decode(&init)?
    else {
        return Err(Stop::Bad("the second message is not an init".into()));
    };
    let owner = who.name.clone();
    let resumed = (last_id > 0)
        .then(|| app.streams.take(&owner, last_id))
        .flatten();
    let (mut writer, mut opening) = match resumed {
        Some(d) => {
            let writer = app.engine.resume(d.id).await?;
            let t = time_us.max(writer.last_time_us());
            let lost = last_id - d.last_id;
            let mut opening = vec![event(
                t,
                EventKind::Marker,
                format!(
                    "asciinema stream reconnected: {lost} events sent while it was disconnected were not received; the screen as the producer shows it follows"
                ),
            )];
            if d.size != (cols, rows) {
                opening.push(event(t, EventKind::Resize, format!("{cols}x{rows}")));
            }
            (writer, opening)
        }
        None => {
            let metadata = RecordingMetadata {
                user: query.user.unwrap_or_else(|| owner.clone()),
                target: query.target.unwrap_or_else(|| "asciinema".into()),
                protocol: query.protocol.unwrap_or_else(|| "tty".into()),
                title: query.title.unwrap_or_default(),
                terminal: Some(Terminal {
                    cols: cols.into(),
                    rows: rows.into(),
                    term_type: String::new(),
                }),
                source_format: SOURCE.into(),
                ..Default::default()
            };
            if !who.scopes.admits(&metadata) {
                let why = format!(
                    "{owner} may not record user {:?} on target {:?}: outside its scopes",
                    metadata.user, metadata.target
                );
                // Audited like every refusal (gRPC's and the upload's).
                let denied = crate::access::Denied::Forbidden(why.clone());
                crate::access::audit_refusal(
                    &app.engine,
                    Some(who),
                    &who.client,
                    &format!("GET {ROUTE}"),
                    &denied,
                )
                .await;
                return Err(Stop::Bad(why));
            }
            let writer = app.engine.start_owned(metadata, &owner).await?;
            let opening = if last_id > 0 {
                vec![event(
                    time_us,
                    EventKind::Marker,
                    format!(
                        "asciinema stream continued after event {last_id}, whose earlier part this server does not hold; the screen as the producer shows it follows"
                    ),
                )]
            } else {
                Vec::new()
            };
            (writer, opening)
        }
    };
    if !init.is_empty() {
        let t = time_us.max(writer.last_time_us());
        opening.push(event(t, EventKind::Output, init));
    }
    let mut session = Session {
        last_id,
        time_us: time_us.max(writer.last_time_us()),
        size: (cols, rows),
        pending: FuturesOrdered::new(),
    };
    if !opening.is_empty() {
        session.append(&mut writer, opening)?;
    }
    let outcome = session.run(&mut writer, socket).await;
    session.drain().await?;
    let stop = match outcome {
        Ok(true) => {
            writer.close(0).await?;
            return Ok(());
        }
        Ok(false) => Stop::Gone,
        Err(stop) => stop,
    };
    // The connection broke, or was refused: what was taken is kept, and
    // the producer may come back to it.
    app.streams.put(
        &owner,
        Detached {
            id: writer.id(),
            last_id: session.last_id,
            size: session.size,
        },
    );
    Err(stop)
}

/// One connection's events into one recording.
struct Session {
    last_id: u64,
    time_us: u64,
    size: (u16, u16),
    /// Appends not yet durable (checked for errors as they complete).
    pending: FuturesOrdered<AckFuture>,
}

impl Session {
    fn append(&mut self, writer: &mut RecordingWriter, events: Vec<Event>) -> Result<(), Stop> {
        self.pending.push_back(writer.append(None, events)?);
        Ok(())
    }

    async fn drain(&mut self) -> Result<(), Stop> {
        while let Some(done) = self.pending.next().await {
            done?;
        }
        Ok(())
    }

    /// Takes events until the end of transmission (`true`) or the
    /// connection's end (`false`).
    async fn run(
        &mut self,
        writer: &mut RecordingWriter,
        socket: &mut WebSocket,
    ) -> Result<bool, Stop> {
        loop {
            let message = tokio::select! {
                biased;
                Some(done) = self.pending.next(), if !self.pending.is_empty() => {
                    done?;
                    continue;
                }
                m = next(socket) => m?,
            };
            let Some(bytes) = message else {
                return Ok(false);
            };
            let (id, interval_us, body) = match decode(&bytes)? {
                Message::Event {
                    id,
                    interval_us,
                    body,
                } => (id, interval_us, Some(body)),
                Message::EndOfTransmission { id, interval_us } => (id, interval_us, None),
                Message::Init { .. } => {
                    return Err(Stop::Bad("a second init on one connection".into()));
                }
            };
            if id <= self.last_id {
                return Err(Stop::Bad(format!(
                    "event id {id} after {}: ids only grow",
                    self.last_id
                )));
            }
            self.time_us = self.time_us.saturating_add(interval_us);
            let t = self.time_us;
            let mut events = Vec::with_capacity(2);
            if id > self.last_id + 1 {
                events.push(event(
                    t,
                    EventKind::Marker,
                    format!(
                        "asciinema stream skipped events {}..={}: they were not received",
                        self.last_id + 1,
                        id - 1
                    ),
                ));
            }
            self.last_id = id;
            let Some(body) = body else {
                if !events.is_empty() {
                    self.append(writer, events)?;
                }
                return Ok(true);
            };
            events.push(match body {
                Body::Output(s) => event(t, EventKind::Output, s),
                Body::Input(s) => event(t, EventKind::Input, s),
                Body::Marker(s) => event(t, EventKind::Marker, s),
                Body::Exit(status) => event(t, EventKind::Exit, status.to_string()),
                Body::Resize { cols, rows } => {
                    self.size = (cols, rows);
                    event(t, EventKind::Resize, format!("{cols}x{rows}"))
                }
            });
            self.append(writer, events)?;
        }
    }
}
