//! The HTTP API of purge, legal holds, retention, the audit log,
//! verification and archives.

use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures::StreamExt;
use reel_api::{AuditRecord, HoldInfo, HoldRequest, PurgeRequest, PurgeResponse, Refusal};
use reel_engine::{Actor, EngineError, Filter, PurgeOutcome};
use serde::Deserialize;

use crate::access::{Action, Identity};
use crate::http::{AppState, HttpError, parse_id};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/purge", post(purge))
        .route("/api/v1/retention", post(retention))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/audit/verify", get(verify_audit))
        .route("/api/v1/recordings/{id}/hold", post(hold).delete(release))
        .route("/api/v1/verify", post(verify))
        .route("/api/v1/archive", get(export_archive).post(import_archive))
}

/// The largest request body of every route but the archive import (which
/// streams, see [`import_archive`]): JSON requests, the largest being a
/// purge of some 250,000 ids. Beyond it: 413.
pub(crate) const MAX_JSON_BODY_BYTES: usize = 8 << 20;

/// The layer that bounds every route's body by [`MAX_JSON_BODY_BYTES`].
pub(crate) fn body_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(MAX_JSON_BODY_BYTES)
}

fn invalid(message: String) -> HttpError {
    HttpError::from(EngineError::InvalidArgument(message))
}

/// Who acts, for the audit log: always the authenticated identity (a `by`
/// in the request body is ignored).
fn actor(who: &Identity, reason: &str, default_reason: &str) -> Actor {
    Actor {
        by: who.name.clone(),
        reason: if reason.trim().is_empty() {
            default_reason.to_string()
        } else {
            reason.trim().to_string()
        },
    }
}

/// Refuses (audited) a recording outside the caller's scopes.
pub(crate) async fn within_scope(
    app: &AppState,
    who: &Identity,
    id: reel_proto::RecordingId,
    asked: &str,
) -> Result<reel_engine::RecordingInfo, HttpError> {
    let info = app.engine.recording(id).await?;
    let meta = info.row.metadata.clone().unwrap_or_default();
    if let Err(denied) = who.require_scope(id, &meta) {
        crate::access::audit_refusal(&app.engine, Some(who), &who.client, asked, &denied).await;
        return Err(denied.into());
    }
    Ok(info)
}

/// Writes an access to the audit log before it happens: an act that cannot
/// be recorded is not done.
pub(crate) async fn audited(
    app: &AppState,
    entry: reel_proto::v1::AuditEntry,
) -> Result<(), HttpError> {
    Ok(app.engine.record_audit(entry).await?)
}

/// Microseconds since the epoch `age` (e.g. `90d`) ago.
fn cutoff(age: &str) -> Result<i64, HttpError> {
    let age = humantime::parse_duration(age)
        .map_err(|e| invalid(format!("invalid older_than {age:?}: {e} (use e.g. 90d)")))?;
    Ok(SystemTime::now()
        .checked_sub(age)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_micros() as i64))
}

fn response(outcome: PurgeOutcome, dry_run: bool) -> axum::Json<PurgeResponse> {
    axum::Json(PurgeResponse {
        purged: outcome.purged.iter().map(|id| id.to_string()).collect(),
        refused: outcome
            .refused
            .into_iter()
            .map(|(id, reason)| Refusal {
                id: id.to_string(),
                reason,
            })
            .collect(),
        dry_run,
    })
}

/// `POST /api/v1/purge`: ids, or `older_than` (+ `user`).
async fn purge(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    axum::Json(req): axum::Json<PurgeRequest>,
) -> Result<axum::Json<PurgeResponse>, HttpError> {
    let actor = actor(&who, &req.reason, "purged by hand");
    let outcome = match (&req.older_than, req.ids.is_empty()) {
        (None, false) => {
            if req.user.is_some() {
                return Err(invalid(
                    "`user` goes with `older_than`, not with ids".into(),
                ));
            }
            let ids = req
                .ids
                .iter()
                .map(|id| parse_id(id))
                .collect::<Result<Vec<_>, _>>()?;
            for id in &ids {
                let info = within_scope(&app, &who, *id, "purge").await;
                // Unknown ids are the engine's to report (refused, listed).
                match info {
                    Ok(info)
                        if !req.force
                            && info.row.state == reel_proto::v1::RecordingState::Open as i32 =>
                    {
                        return Err(HttpError::from(EngineError::FailedPrecondition(format!(
                            "recording {id} is still open (being recorded); purge it with force to cut it short"
                        ))));
                    }
                    Err(HttpError::Denied(d)) => return Err(d.into()),
                    _ => {}
                }
            }
            app.engine.purge(ids, actor, req.dry_run).await?
        }
        (Some(age), true) => {
            let filter = Filter {
                user: req.user.clone(),
                received_before_us: Some(cutoff(age)?),
                // Open recordings are left alone unless forced.
                state: (!req.force).then_some(reel_engine::StateFilter::Closed),
                scope: who.scopes.clone(),
                ..Default::default()
            };
            app.engine
                .purge_matching(filter, actor, req.dry_run)
                .await?
        }
        _ => {
            return Err(invalid(
                "give either recording ids or older_than, not both or neither".into(),
            ));
        }
    };
    Ok(response(outcome, req.dry_run))
}

#[derive(Deserialize)]
struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/v1/retention?dry_run=true`: applies the retention rules now.
async fn retention(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Query(q): Query<DryRun>,
) -> Result<axum::Json<PurgeResponse>, HttpError> {
    audited(
        &app,
        who.audit(
            "retention-run",
            Vec::new(),
            format!("dry_run={}", q.dry_run),
        ),
    )
    .await?;
    let ids = app.engine.apply_retention(q.dry_run).await?;
    Ok(response(
        PurgeOutcome {
            purged: ids,
            refused: Vec::new(),
        },
        q.dry_run,
    ))
}

async fn hold(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Path(id): Path<String>,
    axum::Json(req): axum::Json<HoldRequest>,
) -> Result<axum::Json<HoldInfo>, HttpError> {
    let id = parse_id(&id)?;
    if req.reason.trim().is_empty() {
        return Err(invalid("a legal hold needs a reason".into()));
    }
    within_scope(&app, &who, id, "hold").await?;
    let hold = app.engine.hold(id, actor(&who, &req.reason, "")).await?;
    Ok(axum::Json(HoldInfo {
        at_us: hold.at_us,
        by: hold.by,
        reason: hold.reason,
    }))
}

async fn release(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Path(id): Path<String>,
    axum::Json(req): axum::Json<HoldRequest>,
) -> Result<axum::Json<serde_json::Value>, HttpError> {
    let id = parse_id(&id)?;
    within_scope(&app, &who, id, "release").await?;
    app.engine
        .release(id, actor(&who, &req.reason, "released"))
        .await?;
    Ok(axum::Json(
        serde_json::json!({ "released": id.to_string() }),
    ))
}

#[derive(Deserialize)]
struct AuditQuery {
    since: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/audit?since=&limit=`: oldest first.
async fn audit(
    State(app): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<axum::Json<Vec<AuditRecord>>, HttpError> {
    let since = match &q.since {
        Some(s) => reel_api::parse_instant(s, SystemTime::now()).map_err(invalid)?,
        None => 0,
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let entries = app.engine.audit(since, limit).await?;
    Ok(axum::Json(
        entries
            .into_iter()
            .map(|e| AuditRecord {
                at_us: e.at_us,
                by: e.by,
                action: e.action,
                recordings: e.recordings,
                reason: e.reason,
                client: e.client,
                detail: e.detail,
            })
            .collect(),
    ))
}

/// `GET /api/v1/audit/verify`: the hash chain checked end to end.
async fn verify_audit(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
) -> Result<axum::Json<reel_api::AuditVerify>, HttpError> {
    audited(&app, who.audit("audit-verify", Vec::new(), String::new())).await?;
    let c = app.engine.check_audit().await?;
    Ok(axum::Json(reel_api::AuditVerify {
        entries: c.entries,
        unchained: c.unchained,
        head_seq: c.head_seq,
        problems: c.problems,
    }))
}

#[derive(Deserialize)]
struct VerifyQuery {
    #[serde(default)]
    content: bool,
    #[serde(default)]
    repair: bool,
    #[serde(default)]
    delete_orphans: bool,
}

/// `POST /api/v1/verify?content=&repair=&delete_orphans=`: newline-delimited
/// JSON, a progress line every 200 ms, then the report (or an error).
async fn verify(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Query(q): Query<VerifyQuery>,
) -> Result<axum::response::Response, HttpError> {
    if q.delete_orphans && !q.repair {
        return Err(invalid("delete_orphans goes with repair".into()));
    }
    if q.repair
        && let Err(denied) = who.check(Action::Repair)
    {
        crate::access::audit_refusal(
            &app.engine,
            Some(&who),
            &who.client,
            "verify --repair",
            &denied,
        )
        .await;
        return Err(denied.into());
    }
    let detail = format!(
        "content={} repair={} delete_orphans={}",
        q.content, q.repair, q.delete_orphans
    );
    audited(
        &app,
        who.audit(
            if q.repair { "repair" } else { "verify" },
            Vec::new(),
            detail,
        ),
    )
    .await?;
    let options = reel_engine::VerifyOptions {
        content: q.content,
        repair: q.repair,
        delete_orphans: q.delete_orphans,
    };
    let progress = std::sync::Arc::new(reel_engine::VerifyProgress::default());
    let (tx, rx) = tokio::sync::mpsc::channel::<reel_api::VerifyLine>(4);
    let engine = app.engine.clone();
    let job = progress.clone();
    let mut run = tokio::spawn(async move { engine.verify(options, &job).await });
    tokio::spawn(async move {
        let line = loop {
            tokio::select! {
                done = &mut run => break match done {
                    Ok(Ok(report)) => reel_api::VerifyLine::Report(convert(report)),
                    Ok(Err(e)) => reel_api::VerifyLine::Error(e.to_string()),
                    Err(e) => reel_api::VerifyLine::Error(format!("verify task failed: {e}")),
                },
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                    let line = reel_api::VerifyLine::Progress {
                        phase: progress.phase.lock().expect("progress lock").clone(),
                        done: progress.done.load(std::sync::atomic::Ordering::Relaxed),
                        total: progress.total.load(std::sync::atomic::Ordering::Relaxed),
                    };
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            }
        };
        let _ = tx.send(line).await;
    });
    let body = tokio_stream::wrappers::ReceiverStream::new(rx).map(|line| {
        let mut text = serde_json::to_vec(&line).expect("serializable");
        text.push(b'\n');
        Ok::<_, std::convert::Infallible>(bytes::Bytes::from(text))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

fn convert(r: reel_engine::VerifyReport) -> reel_api::VerifyReport {
    reel_api::VerifyReport {
        recordings: r.recordings,
        segments: r.segments,
        objects: r.objects,
        bytes_read: r.bytes_read,
        problems: r
            .problems
            .into_iter()
            .map(|p| reel_api::VerifyProblem {
                kind: p.kind,
                store: p.store,
                key: p.key,
                recording: p.recording,
                sequence: p.sequence,
                detail: p.detail,
                repair: p.repair,
            })
            .collect(),
        damaged: r.damaged,
    }
}

#[derive(Deserialize)]
struct ArchiveQuery {
    /// Comma-separated recording ids.
    ids: Option<String>,
    older_than: Option<String>,
    user: Option<String>,
}

/// `GET /api/v1/archive?ids=A,B` or `?older_than=1y[&user=U]`: the archive
/// file of those (closed) recordings, streamed. A failure mid-way cuts the
/// body short, and the file then lacks its end frame.
async fn export_archive(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Query(q): Query<ArchiveQuery>,
) -> Result<axum::response::Response, HttpError> {
    let ids = match (&q.ids, &q.older_than) {
        (Some(ids), None) => ids
            .split(',')
            .filter(|s| !s.is_empty())
            .map(parse_id)
            .collect::<Result<Vec<_>, _>>()?,
        (None, Some(age)) => {
            let filter = Filter {
                user: q.user.clone(),
                received_before_us: Some(cutoff(age)?),
                state: Some(reel_engine::StateFilter::Closed),
                scope: who.scopes.clone(),
                ..Default::default()
            };
            app.engine.find_ids(filter).await?
        }
        _ => return Err(invalid("give either ids or older_than".into())),
    };
    // Every recording's rows first: an unknown or open one is refused
    // before any byte.
    let mut entries = Vec::new();
    for id in &ids {
        within_scope(&app, &who, *id, "archive export").await?;
        entries.push((*id, app.engine.archive_entry(*id).await?));
    }
    audited(
        &app,
        who.audit(
            "archive-export",
            ids.iter().map(|i| i.to_string()).collect(),
            String::new(),
        ),
    )
    .await?;
    let engine = app.engine.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut writer = reel_log::archive::ArchiveWriter::new();
        if tx.send(Ok(writer.head().into())).await.is_err() {
            return;
        }
        for (id, entry) in entries {
            let sequences: Vec<u64> = entry.segments.iter().map(|s| s.sequence).collect();
            if tx.send(Ok(writer.recording(&entry).into())).await.is_err() {
                return;
            }
            for seq in sequences {
                let frame = match engine.segment_object(id, seq).await {
                    Ok(bytes) => writer.segment(&bytes),
                    Err(e) => {
                        tracing::error!(recording = %id, error = %e, "archive export failed");
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                };
                if tx.send(Ok(frame.into())).await.is_err() {
                    return;
                }
            }
        }
        let _ = tx.send(Ok(writer.end().into())).await;
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}

/// 413 with the API's JSON error.
fn too_large(error: String) -> axum::response::Response {
    (
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        axum::Json(reel_api::ApiError {
            code: "payload_too_large".into(),
            error,
        }),
    )
        .into_response()
}

/// `POST /api/v1/archive` with an archive file as the body: imports
/// every recording in it (those already in Reel are skipped and listed).
///
/// The body may hold at most the local log's capacity
/// (`ingest.local_capacity_bytes`), as imported segments wait in the local
/// spool until they are uploaded; each segment frame at most the largest
/// segment this server writes. Beyond either: 413. Every frame, row and
/// segment is checked before it is kept (see `reel_log::archive`).
async fn import_archive(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<reel_api::ImportResponse>, axum::response::Response> {
    let max_body = app.engine.config().local_capacity_bytes;
    let over = |what: String| {
        too_large(format!(
            "{what}: an archive import may take at most {max_body} bytes (ingest.local_capacity_bytes, \
             as imported segments wait in the local spool); split the archive"
        ))
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared
        && len > max_body
    {
        return Err(over(format!("the body is {len} bytes")));
    }
    let by = who.name.clone();
    let mut reader = reel_log::archive::ArchiveReader::with_max_segment_bytes(
        reel_engine::Import::max_segment_bytes(app.engine.config()),
    );
    let mut stream = body.into_data_stream();
    let mut current: Option<reel_engine::Import> = None;
    let mut out = reel_api::ImportResponse {
        imported: Vec::new(),
        refused: Vec::new(),
    };
    let bad = |e: String| invalid(format!("not a valid archive: {e}")).into_response();
    let engine_error = |e: EngineError| HttpError::from(e).into_response();
    let mut received = 0u64;
    loop {
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) if e.is_too_large() => {
                    return Err(too_large(format!("not a valid archive: {e}")));
                }
                Err(e) => return Err(bad(e.to_string())),
            };
            match frame {
                reel_log::archive::Frame::Recording(rec) => {
                    if let Some(done) = current.take() {
                        out.imported
                            .push(done.finish().await.map_err(engine_error)?.to_string());
                    }
                    let id = rec
                        .row
                        .as_ref()
                        .and_then(|r| reel_proto::RecordingId::from_slice(&r.id).ok());
                    match app.engine.import(*rec, by.clone()).await {
                        Ok(import) => current = Some(import),
                        Err(EngineError::FailedPrecondition(reason)) => out.refused.push(Refusal {
                            id: id.map(|i| i.to_string()).unwrap_or_default(),
                            reason,
                        }),
                        Err(e) => return Err(engine_error(e)),
                    }
                }
                reel_log::archive::Frame::Segment(bytes) => {
                    if let Some(import) = current.as_mut() {
                        import.segment(&bytes).map_err(engine_error)?;
                    }
                }
                reel_log::archive::Frame::End(_) => {
                    if let Some(done) = current.take() {
                        out.imported
                            .push(done.finish().await.map_err(engine_error)?.to_string());
                    }
                }
            }
        }
        match stream.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| bad(e.to_string()))?;
                received = received.saturating_add(chunk.len() as u64);
                if received > max_body {
                    return Err(over(format!("the body exceeds {max_body} bytes")));
                }
                reader.push(&chunk);
            }
            None => break,
        }
    }
    if !reader.complete() {
        // `current` (unfinished) is dropped: its spool files go.
        return Err(bad(format!(
            "it ends before its end frame (truncated after its frames up to byte {})",
            reader.consumed()
        )));
    }
    let detail = format!("{} refused", out.refused.len());
    audited(
        &app,
        who.audit("archive-import", out.imported.clone(), detail),
    )
    .await
    .map_err(IntoResponse::into_response)?;
    Ok(axum::Json(out))
}
