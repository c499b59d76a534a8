//! Recordings: listing, one recording's detail, and export as asciicast.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use reel_api::GAP_MARKER;
use reel_api::{CombinedObject, RecordingDetail, RecordingList, RecordingSummary, SegmentSummary};
use reel_engine::{Cursor, EngineError, Query as ListQuery, ReadItem, RecordingInfo, Window};
use reel_proto::v1::{Event, EventKind, RecordingState};
use serde::Deserialize;

use super::{AppState, HttpError, audited, parse_id, within_scope};
use crate::access::Identity;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        // POST: asciinema's upload API (`upload`).
        .route(
            "/api/v1/recordings",
            get(list)
                .post(super::upload::upload)
                .layer(super::upload::body_limit()),
        )
        .route("/api/v1/recordings/{id}", get(show))
        .route("/api/v1/recordings/{id}/export", get(export))
}

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

fn state_name(row_state: i32) -> &'static str {
    match RecordingState::try_from(row_state) {
        Ok(RecordingState::Open) => "open",
        Ok(RecordingState::Closed) => "closed",
        _ => "unknown",
    }
}

pub fn summary(info: &RecordingInfo) -> RecordingSummary {
    let meta = info.row.metadata.clone().unwrap_or_default();
    RecordingSummary {
        id: info.id.to_string(),
        user: meta.user,
        target: meta.target,
        protocol: meta.protocol,
        labels: meta.labels.into_iter().collect(),
        started_at_us: meta.started_at_us,
        duration_us: if info.row.duration_us > 0 {
            info.row.duration_us
        } else {
            info.row.last_time_us
        },
        state: state_name(info.row.state).into(),
        close_reason: info.row.close_reason.clone(),
        event_count: info.durable_events,
        data_bytes: info.row.data_bytes + info.unsealed_bytes,
        segment_count: info.segments.len() as u64,
        placement: info.placement().to_string(),
        readable: info.readability.readable,
        read_from: info.readability.from.join("+"),
        unreadable: info.readability.hidden.clone(),
        attached: info.attached,
        damage: info.row.damage.clone(),
    }
}

pub(crate) fn detail(info: &RecordingInfo) -> RecordingDetail {
    let meta = info.row.metadata.clone().unwrap_or_default();
    RecordingDetail {
        summary: summary(info),
        title: meta.title,
        terminal: meta.terminal.map(|t| {
            if t.term_type.is_empty() {
                format!("{}x{}", t.cols, t.rows)
            } else {
                format!("{}x{} {}", t.cols, t.rows, t.term_type)
            }
        }),
        created_at_us: info.row.created_at_us,
        closed_at_us: info.row.closed_at_us,
        owner: info.row.owner.clone(),
        segments: info
            .segments
            .iter()
            .map(|s| SegmentSummary {
                sequence: s.sequence,
                first_event_index: s.first_event_index,
                event_count: s.event_count,
                start_time_us: s.start_time_us,
                end_time_us: s.end_time_us,
                data_bytes: s.data_bytes,
                size: s.size,
                sha256: hex::encode(&s.sha256),
                locations: s
                    .locations
                    .iter()
                    .map(|&l| reel_engine::location_name(l).to_string())
                    .collect(),
                uncertain: s
                    .uncertain
                    .iter()
                    .map(|&l| reel_engine::location_name(l).to_string())
                    .collect(),
                is_final: s.r#final,
                combined_offset: s.combined_offset,
            })
            .collect(),
        recombine: info.recombine.clone(),
        object: (info.row.combined_size > 0).then(|| CombinedObject {
            key: reel_storage::keys::recording_object(info.id).to_string(),
            size: info.row.combined_size,
            sha256: hex::encode(&info.row.combined_sha256),
            stores: info
                .combined_stores()
                .into_iter()
                .map(String::from)
                .collect(),
        }),
        legal_hold: info.hold.as_ref().map(|h| reel_api::HoldInfo {
            at_us: h.at_us,
            by: h.by.clone(),
            reason: h.reason.clone(),
        }),
        unsealed_events: info.unsealed_events,
        unsealed_bytes: info.unsealed_bytes,
    }
}

/// `GET /api/v1/recordings`: filters `user`, `target`, `protocol` (`*`
/// matches any run of characters), `label` (repeatable, `key` or
/// `key=value`), `since` and `until` (session start; RFC 3339 or an age
/// such as `7d`), `state` (open, closed, interrupted, damaged, recombined);
/// `sort` (created, started, duration, size, user) and `order` (asc, desc);
/// `limit` and `cursor` (the previous page's `next_cursor`; `after` is the
/// older name).
async fn list(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<RecordingList>, HttpError> {
    let mut query = list_query(raw.as_deref().unwrap_or(""), std::time::SystemTime::now())
        .map_err(|e| HttpError::from(EngineError::InvalidArgument(e)))?;
    query.filter.scope = who.scopes.clone();
    let (infos, next) = app.engine.find(query).await?;
    // Who saw which recordings' metadata, recorded before it is sent.
    let seen = infos.iter().map(|i| i.id.to_string()).collect();
    let detail = format!("GET /api/v1/recordings?{}", raw.unwrap_or_default());
    audited(&app, who.audit("list", seen, detail)).await?;
    Ok(axum::Json(RecordingList {
        recordings: infos.iter().map(summary).collect(),
        next_cursor: next.map(|c| c.to_string()),
    }))
}

/// Parses the query string of `GET /api/v1/recordings`.
pub(crate) fn list_query(raw: &str, now: std::time::SystemTime) -> Result<ListQuery, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw).map_err(|e| format!("bad query string: {e}"))?;
    let mut q = ListQuery {
        limit: DEFAULT_PAGE,
        ..Default::default()
    };
    let mut cursor = None;
    for (key, value) in pairs {
        match key.as_str() {
            "user" => q.filter.user = Some(value),
            "target" => q.filter.target = Some(value),
            "protocol" => q.filter.protocol = Some(value),
            "label" => q.filter.labels.push(match value.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (value, None),
            }),
            "since" => q.filter.started_from_us = Some(reel_api::parse_instant(&value, now)?),
            "until" => q.filter.started_to_us = Some(reel_api::parse_instant(&value, now)?),
            "state" => q.filter.state = Some(value.parse()?),
            "readable" => {
                q.filter.readable = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    other => return Err(format!("readable must be true or false, not {other:?}")),
                })
            }
            "sort" => q.sort.key = value.parse()?,
            "order" => {
                q.sort.descending = match value.as_str() {
                    "asc" => false,
                    "desc" => true,
                    other => return Err(format!("unknown order {other:?}: use asc or desc")),
                }
            }
            "limit" => {
                q.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| format!("limit must be between 1 and {MAX_PAGE}"))?
            }
            "cursor" | "after" => cursor = Some(value),
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    if let Some(c) = cursor {
        q.after = Some(Cursor::parse(&c, q.sort)?);
    }
    Ok(q)
}

async fn show(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Path(id): Path<String>,
) -> Result<axum::Json<RecordingDetail>, HttpError> {
    let id = parse_id(&id)?;
    let info = within_scope(&app, &who, id, "show").await?;
    audited(&app, who.audit("show", vec![id.to_string()], String::new())).await?;
    Ok(axum::Json(detail(&info)))
}

#[derive(Deserialize)]
struct ExportQuery {
    format: Option<String>,
    /// Window start and end, `[[HH:]MM:]SS[.fraction]` from the recording's start.
    from: Option<String>,
    to: Option<String>,
}

/// Streams a recording, or the window `from..to` of it, as asciicast v2
/// (event times count from the window's start; lost events appear as
/// `"m"` marker events starting with `reel: gap`) or as the raw output
/// bytes. Errors found before the first byte get their own status: 400 bad
/// id or window, 404 unknown id, 416 window past the end, 503 bytes only on
/// a store that is down. A failure after that aborts the body.
async fn export(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, HttpError> {
    let id = parse_id(&id)?;
    within_scope(&app, &who, id, "export").await?;
    let cast = match q.format.as_deref().unwrap_or("cast") {
        "cast" => true,
        "raw" => false,
        other => {
            return Err(HttpError::from(EngineError::InvalidArgument(format!(
                "unknown export format {other:?}: use cast or raw"
            ))));
        }
    };
    let offset = |v: &Option<String>| {
        v.as_deref()
            .map(reel_api::parse_offset)
            .transpose()
            .map_err(|e| HttpError::from(EngineError::InvalidArgument(e)))
    };
    let window = Window::new(offset(&q.from)?.unwrap_or(0), offset(&q.to)?)?;
    // Every read is in the audit log, written before the first byte.
    let detail = format!(
        "format={} from={} to={}",
        if cast { "cast" } else { "raw" },
        q.from.as_deref().unwrap_or("start"),
        q.to.as_deref().unwrap_or("end")
    );
    audited(&app, who.audit("export", vec![id.to_string()], detail)).await?;
    let mut events = app.engine.read(id, window).await?;
    let header = cast.then(|| {
        let meta = events.recording().metadata.clone().unwrap_or_default();
        Bytes::from(reel_asciicast::v2_header(&meta) + "\n")
    });
    // The first item before the status line: a read that cannot start
    // gets an error status, not a broken body.
    let first = events.next().await.transpose()?;
    let from = window.from_us;
    let render = move |item: reel_engine::Result<ReadItem>| {
        let chunks = match item {
            Ok(item) => render_item(item, from, cast).into_iter().map(Ok).collect(),
            Err(e) => {
                tracing::error!(recording = %id, error = %e, "export failed mid-stream");
                vec![Err(std::io::Error::other(e.to_string()))]
            }
        };
        futures::stream::iter(chunks)
    };
    let body = futures::stream::iter(header.map(Ok))
        .chain(futures::stream::iter(first.map(Ok)).flat_map(render))
        .chain(events.flat_map(render));
    let (content_type, ext) = if cast {
        ("application/x-asciicast", "cast")
    } else {
        ("application/octet-stream", "raw")
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.{ext}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// One read item as export bytes; times count from `from_us`. Raw output
/// hands each event's bytes on without copying them.
fn render_item(item: ReadItem, from_us: u64, cast: bool) -> Vec<Bytes> {
    match item {
        ReadItem::Events(batch) if cast => {
            let mut out = Vec::new();
            for mut e in batch {
                e.time_us -= from_us;
                out.extend_from_slice(reel_asciicast::v2_event_line(&e).as_bytes());
                out.push(b'\n');
            }
            vec![Bytes::from(out)]
        }
        ReadItem::Events(batch) => batch
            .into_iter()
            .filter(|e| e.kind == EventKind::Output as i32)
            .map(|e| Bytes::from(e.data))
            .collect(),
        ReadItem::Gap(gap) if cast => {
            let marker = Event {
                time_us: gap.start_time_us.saturating_sub(from_us),
                kind: EventKind::Marker as i32,
                data: format!("{GAP_MARKER}{gap}").into_bytes(),
            };
            let line = reel_asciicast::v2_event_line(&marker) + "\n";
            vec![Bytes::from(line)]
        }
        // Raw output has no room for a marker; the gap is in the log and
        // the `read_gaps` metric.
        ReadItem::Gap(_) => Vec::new(),
    }
}
