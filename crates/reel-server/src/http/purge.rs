//! Purge, retention and legal holds.

use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::post;
use reel_api::{HoldInfo, HoldRequest, PurgeRequest, PurgeResponse, Refusal};
use reel_engine::{Actor, EngineError, Filter, PurgeOutcome};
use serde::Deserialize;

use super::{AppState, HttpError, audited, invalid, parse_id, within_scope};
use crate::access::Identity;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/purge", post(purge))
        .route("/api/v1/retention", post(retention))
        .route("/api/v1/recordings/{id}/hold", post(hold).delete(release))
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

/// Microseconds since the epoch `age` (e.g. `90d`) ago.
pub(super) fn cutoff(age: &str) -> Result<i64, HttpError> {
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
