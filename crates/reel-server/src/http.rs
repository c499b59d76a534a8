//! The HTTP read and ops API (`/api/v1/...`), JSON in and out.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use reel_api::GAP_MARKER;
use reel_api::{
    ApiError, CombinedObject, CompactItem, CompactStatus, RecordingDetail, RecordingList,
    RecordingSummary, SegmentSummary, ServerStatus,
};
use reel_engine::{
    Cursor, Engine, EngineError, Query as ListQuery, ReadItem, RecordingInfo, Window,
};
use reel_proto::RecordingId;
use reel_proto::v1::{Event, EventKind, Location, RecordingState};
use serde::Deserialize;

use crate::access::{Access, Denied, Identity};
use crate::exposition;
use crate::status::http_status;

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub grpc_listen: SocketAddr,
    pub access: Access,
}

/// Every route of the API. Each must have a rule in
/// [`crate::access::RULES`]; one without is refused to everyone.
pub fn router(state: AppState) -> Router {
    let guard = axum::middleware::from_fn_with_state(state.clone(), crate::access::authorize);
    assemble(routes().route_layer(guard), state)
}

/// The same API with every caller taken to be `identity`, no token asked:
/// what authentication costs is measured against it (`benches/access.rs`).
/// reeld never serves it.
#[doc(hidden)]
pub fn router_without_access(state: AppState, identity: Identity) -> Router {
    let as_identity = axum::middleware::from_fn(
        move |mut request: axum::extract::Request, next: axum::middleware::Next| {
            request.extensions_mut().insert(identity.clone());
            next.run(request)
        },
    );
    assemble(routes().route_layer(as_identity), state)
}

fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/status", get(status))
        .route("/api/v1/storage", get(storage))
        .route("/metrics", get(metrics))
        .route("/api/v1/compact", get(compact_status).post(compact))
        .route("/api/v1/recordings", get(list))
        .route("/api/v1/recordings/{id}", get(show))
        .route("/api/v1/recordings/{id}/export", get(export))
        .merge(crate::purge::routes())
        .merge(crate::tokens::routes())
}

fn assemble(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(|| async {
            error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such API endpoint".into(),
            )
        })
        .layer(crate::purge::body_limit())
        .with_state(state)
}

fn error_response(status: StatusCode, code: &str, error: String) -> Response {
    (
        status,
        axum::Json(ApiError {
            code: code.into(),
            error,
        }),
    )
        .into_response()
}

/// An engine error or a refusal as an HTTP response.
pub enum HttpError {
    Engine(Box<EngineError>),
    Denied(Denied),
}

impl From<EngineError> for HttpError {
    fn from(e: EngineError) -> Self {
        HttpError::Engine(Box::new(e))
    }
}

impl From<Denied> for HttpError {
    fn from(d: Denied) -> Self {
        HttpError::Denied(d)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        match self {
            HttpError::Engine(e) => {
                let (status, code) = http_status(&e);
                if status.is_server_error() {
                    tracing::error!(error = %e, "request failed");
                }
                error_response(status, code, e.to_string())
            }
            HttpError::Denied(d) => d.into_response(),
        }
    }
}

pub(crate) fn parse_id(text: &str) -> Result<RecordingId, HttpError> {
    text.parse::<RecordingId>()
        .map_err(|e| HttpError::from(EngineError::InvalidId(e)))
}

fn state_name(row_state: i32) -> &'static str {
    match RecordingState::try_from(row_state) {
        Ok(RecordingState::Open) => "open",
        Ok(RecordingState::Closed) => "closed",
        _ => "unknown",
    }
}

fn location_name(loc: &i32) -> String {
    match Location::try_from(*loc) {
        Ok(Location::Local) => "local",
        Ok(Location::Primary) => "primary",
        Ok(Location::Secondary) => "secondary",
        _ => "unknown",
    }
    .into()
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
        placement: info.placement(),
        attached: info.attached,
        damage: info.row.damage.clone(),
    }
}

fn detail(info: &RecordingInfo) -> RecordingDetail {
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
                locations: s.locations.iter().map(location_name).collect(),
                uncertain: s.uncertain.iter().map(location_name).collect(),
                is_final: s.r#final,
                combined_offset: s.combined_offset,
            })
            .collect(),
        recombine: info.recombine.clone(),
        object: (info.row.combined_size > 0).then(|| CombinedObject {
            key: reel_storage::keys::recording_object(info.id).to_string(),
            size: info.row.combined_size,
            sha256: hex::encode(&info.row.combined_sha256),
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

async fn status(State(app): State<AppState>) -> axum::Json<ServerStatus> {
    let local = app.engine.local_status();
    let config = app.engine.config();
    axum::Json(ServerStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        grpc_listen: app.grpc_listen.to_string(),
        data_dir: config.data_dir.display().to_string(),
        primary: config.primary.describe(),
        secondary: config.secondary.describe(),
        journal_bytes: local.journal_bytes,
        journal_files: local.journal_files,
        spool_bytes: local.spool_bytes,
        spool_segments: local.spool_segments,
        upload_queue: local.upload_queue,
        open_recordings: local.open_recordings,
        low_disk: local.low_disk,
    })
}

async fn storage(State(app): State<AppState>) -> axum::Json<reel_engine::StorageStatus> {
    axum::Json(app.engine.storage_status())
}

/// `GET /metrics`: OpenMetrics when the scraper accepts it, else the
/// Prometheus text format, each under its own content type.
async fn metrics(State(app): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let body = app.engine.metrics();
    if exposition::wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, exposition::OPENMETRICS)], body).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, exposition::TEXT)],
            exposition::openmetrics_to_text(&body),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct CompactQuery {
    recording: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

/// What the compactor has left (all, or `only`) and is doing, as the API
/// shows it. Also used by `reel compact --data-dir` on an engine of its own.
pub async fn compact_state(
    engine: &Engine,
    only: Option<RecordingId>,
) -> Result<CompactStatus, EngineError> {
    let plan = engine.compaction_plan(only).await?;
    let status = engine.compactor_status();
    Ok(CompactStatus {
        plan: plan
            .into_iter()
            .map(|p| CompactItem {
                id: p.id,
                reason: p.reason,
                segments: p.segments,
                bytes: p.bytes,
                waiting: p.waiting,
            })
            .collect(),
        current: status.current,
        recombined: status.recombined,
        recombined_bytes: status.recombined_bytes,
        failures: status.failures,
        last_error: status.last_error,
        bad_copies: status.bad_copies,
        pending_deletions: engine.pending_deletions().await? as u64,
    })
}

/// What the compactor has left (all, or `?recording=ID`) and is doing.
async fn compact_status(
    State(app): State<AppState>,
    Query(q): Query<CompactQuery>,
) -> Result<axum::Json<CompactStatus>, HttpError> {
    let only = q.recording.as_deref().map(parse_id).transpose()?;
    Ok(axum::Json(compact_state(&app.engine, only).await?))
}

/// Starts recombining now (unless `dry_run`) and answers with the plan.
async fn compact(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Query(q): Query<CompactQuery>,
) -> Result<axum::Json<CompactStatus>, HttpError> {
    let only = q.recording.as_deref().map(parse_id).transpose()?;
    crate::purge::audited(
        &app,
        who.audit(
            "compact",
            only.iter().map(|i| i.to_string()).collect(),
            format!("dry_run={}", q.dry_run),
        ),
    )
    .await?;
    let state = compact_state(&app.engine, only).await?;
    if !q.dry_run {
        let engine = app.engine.clone();
        tokio::spawn(async move {
            if let Err(e) = engine.compact(only).await {
                tracing::warn!(error = %e, "recombination asked for by a client failed");
            }
        });
    }
    Ok(axum::Json(state))
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
    crate::purge::audited(&app, who.audit("list", seen, detail)).await?;
    Ok(axum::Json(RecordingList {
        recordings: infos.iter().map(summary).collect(),
        next_cursor: next.map(|c| c.to_string()),
    }))
}

/// Parses the query string of `GET /api/v1/recordings`.
fn list_query(raw: &str, now: std::time::SystemTime) -> Result<ListQuery, String> {
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
    let info = crate::purge::within_scope(&app, &who, id, "show").await?;
    crate::purge::audited(&app, who.audit("show", vec![id.to_string()], String::new())).await?;
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
    crate::purge::within_scope(&app, &who, id, "export").await?;
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
    crate::purge::audited(&app, who.audit("export", vec![id.to_string()], detail)).await?;
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
