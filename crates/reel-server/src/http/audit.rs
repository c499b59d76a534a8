//! The audit log: reading it, and checking its chain and its copies.

use std::time::SystemTime;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use reel_api::AuditRecord;
use serde::Deserialize;

use super::{AppState, HttpError, audited, invalid};
use crate::access::Identity;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/audit/verify", get(verify_audit))
}

#[derive(Deserialize)]
struct AuditQuery {
    since: Option<String>,
    limit: Option<usize>,
    recording: Option<String>,
}

/// `GET /api/v1/audit?since=&limit=`: the first `limit` entries from
/// `since` on, or without `since` the latest `limit` (a log grows for
/// years: what was done lately is what is asked for), oldest first. With
/// `recording=ID`, the latest `limit` entries that name that recording
/// (from `since` on if given).
async fn audit(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Query(q): Query<AuditQuery>,
) -> Result<axum::Json<Vec<AuditRecord>>, HttpError> {
    let since = match &q.since {
        Some(s) => Some(reel_api::parse_instant(s, SystemTime::now()).map_err(invalid)?),
        None => None,
    };
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    // Who read whose trail is itself on record (its own entry is the last
    // one a read of the latest entries returns).
    let mut asked = vec![format!("limit={limit}")];
    asked.extend(q.since.as_ref().map(|s| format!("since={s}")));
    asked.extend(q.recording.as_ref().map(|r| format!("recording={r}")));
    audited(&app, who.audit("audit-read", Vec::new(), asked.join(" "))).await?;
    let entries = match (&q.recording, since) {
        (Some(id), since) => {
            let id = super::parse_id(id)?;
            let mut entries = app.engine.audit_of(id, limit).await?;
            entries.retain(|e| e.at_us >= since.unwrap_or(0));
            entries.reverse();
            entries
        }
        (None, Some(since)) => app.engine.audit(since, limit).await?,
        (None, None) => {
            let mut entries = app.engine.audit_latest(limit).await?;
            entries.reverse();
            entries
        }
    };
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
