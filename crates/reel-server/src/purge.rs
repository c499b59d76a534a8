//! The HTTP API of purge, legal holds, retention and the audit log.

use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
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
