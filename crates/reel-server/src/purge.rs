//! The HTTP API of purge, legal holds, retention, the audit log and
//! verification.

use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures::StreamExt;
use reel_api::{AuditRecord, HoldInfo, HoldRequest, PurgeRequest, PurgeResponse, Refusal};
use reel_engine::{Actor, EngineError, Filter, PurgeOutcome};
use serde::Deserialize;

use crate::http::{AppState, HttpError, parse_id};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/purge", post(purge))
        .route("/api/v1/retention", post(retention))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/recordings/{id}/hold", post(hold).delete(release))
        .route("/api/v1/verify", post(verify))
}

fn invalid(message: String) -> HttpError {
    HttpError::from(EngineError::InvalidArgument(message))
}

fn actor(by: &str, reason: &str, default_reason: &str) -> Result<Actor, HttpError> {
    if by.trim().is_empty() {
        return Err(invalid(
            "`by` (who asks) is required for the audit log".into(),
        ));
    }
    Ok(Actor {
        by: by.trim().to_string(),
        reason: if reason.trim().is_empty() {
            default_reason.to_string()
        } else {
            reason.trim().to_string()
        },
    })
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
    axum::Json(req): axum::Json<PurgeRequest>,
) -> Result<axum::Json<PurgeResponse>, HttpError> {
    let actor = actor(&req.by, &req.reason, "purged by hand")?;
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
            app.engine.purge(ids, actor, req.dry_run).await?
        }
        (Some(age), true) => {
            let age = humantime::parse_duration(age)
                .map_err(|e| invalid(format!("invalid older_than {age:?}: {e} (use e.g. 90d)")))?;
            let cutoff = SystemTime::now()
                .checked_sub(age)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_micros() as i64);
            let filter = Filter {
                user: req.user.clone(),
                started_to_us: Some(cutoff),
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
    Query(q): Query<DryRun>,
) -> Result<axum::Json<PurgeResponse>, HttpError> {
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
    Path(id): Path<String>,
    axum::Json(req): axum::Json<HoldRequest>,
) -> Result<axum::Json<HoldInfo>, HttpError> {
    let id = parse_id(&id)?;
    if req.reason.trim().is_empty() {
        return Err(invalid("a legal hold needs a reason".into()));
    }
    let hold = app
        .engine
        .hold(id, actor(&req.by, &req.reason, "")?)
        .await?;
    Ok(axum::Json(HoldInfo {
        at_us: hold.at_us,
        by: hold.by,
        reason: hold.reason,
    }))
}

async fn release(
    State(app): State<AppState>,
    Path(id): Path<String>,
    axum::Json(req): axum::Json<HoldRequest>,
) -> Result<axum::Json<serde_json::Value>, HttpError> {
    let id = parse_id(&id)?;
    app.engine
        .release(id, actor(&req.by, &req.reason, "released")?)
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
            })
            .collect(),
    ))
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
    Query(q): Query<VerifyQuery>,
) -> Result<axum::response::Response, HttpError> {
    if q.delete_orphans && !q.repair {
        return Err(invalid("delete_orphans goes with repair".into()));
    }
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
