//! The server's own state: status, storage, metrics, and the compactor.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use reel_api::{MasterKeys, PublicKeyInfo, RetiredMasterKeys, ServerStatus};
use reel_engine::CompactionState;
use serde::Deserialize;

use super::{AppState, HttpError, audited, parse_id};
use crate::access::Identity;
use crate::exposition;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/status", get(status))
        .route("/api/v1/storage", get(storage))
        .route("/metrics", get(metrics))
        .route("/api/v1/compact", get(compact_status).post(compact))
        .route("/api/v1/keys/public", get(public_key))
        .route("/api/v1/keys", get(master_keys))
        .route("/api/v1/keys/rotate", post(rotate))
        .route("/api/v1/keys/rotate/finish", post(finish_rotation))
}

fn master_keys_of(status: reel_engine::RotationStatus) -> MasterKeys {
    MasterKeys {
        current: status.current,
        held: status.held,
        rewrapping: status.running,
        remaining: status.remaining,
        rewrapped: status.rewrapped,
        waiting: status.waiting,
    }
}

/// `GET /api/v1/keys`: the master keys held (by id) and the rotation's
/// progress.
async fn master_keys(State(app): State<AppState>) -> axum::Json<MasterKeys> {
    axum::Json(master_keys_of(app.engine.rotation_status()))
}

/// `POST /api/v1/keys/rotate`: a new master key, current at once; data
/// keys are wrapped again in the background.
async fn rotate(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
) -> Result<axum::Json<MasterKeys>, HttpError> {
    let before = app.engine.rotation_status().current;
    let status = app.engine.rotate_master_key()?;
    audited(
        &app,
        who.audit(
            "rotate-master-key",
            Vec::new(),
            format!("from {before} to {}", status.current),
        ),
    )
    .await?;
    Ok(axum::Json(master_keys_of(status)))
}

/// `POST /api/v1/keys/rotate/finish`: retires the older master keys once
/// nothing is wrapped by them (409 otherwise).
async fn finish_rotation(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
) -> Result<axum::Json<RetiredMasterKeys>, HttpError> {
    let outcome = app.engine.finish_rotation().await;
    let detail = match &outcome {
        Ok(keys) => format!(
            "retired {}",
            keys.iter()
                .map(|k| k.id.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        Err(e) => format!("refused: {e}"),
    };
    audited(&app, who.audit("retire-master-keys", Vec::new(), detail)).await?;
    let (environment, files): (Vec<_>, Vec<_>) =
        outcome?.into_iter().partition(|k| k.in_environment);
    Ok(axum::Json(RetiredMasterKeys {
        retired: files.iter().map(|k| k.id.to_string()).collect(),
        in_environment: environment.iter().map(|k| k.id.to_string()).collect(),
    }))
}

/// `GET /api/v1/keys/public`: the key recordings are signed with.
async fn public_key(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
) -> Result<axum::Json<PublicKeyInfo>, HttpError> {
    let key = app.engine.public_key();
    audited(
        &app,
        who.audit("public-key", Vec::new(), key.id().to_string()),
    )
    .await?;
    Ok(axum::Json(PublicKeyInfo {
        id: key.id().to_string(),
        algorithm: "ed25519".into(),
        pem: key.to_pem(),
    }))
}

async fn status(State(app): State<AppState>) -> Result<axum::Json<ServerStatus>, HttpError> {
    let local = app.engine.local_status()?;
    let config = app.engine.config();
    Ok(axum::Json(ServerStatus {
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
        catalog_bytes: local.catalog_bytes,
        catalog_log_bytes: local.catalog_log_bytes,
        audit_log_bytes: local.audit_log_bytes,
        catalog_memory_bytes: local.catalog_memory_bytes,
        upload_mode: config.upload_mode.name().into(),
        cache_max_bytes: local.cache.max_bytes,
        cache_bytes: local.cache.bytes,
        cache_segments: local.cache.segments,
        unreadable_recordings: local.unreadable_recordings,
        mirror_backlog: local.mirror_backlog.map(|m| reel_api::MirrorBacklog {
            primary_segments: m.primary_segments,
            secondary_segments: m.secondary_segments,
            scanned: m.scanned,
        }),
    }))
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

/// What the compactor has left (all, or `?recording=ID`) and is doing.
async fn compact_status(
    State(app): State<AppState>,
    Query(q): Query<CompactQuery>,
) -> Result<axum::Json<CompactionState>, HttpError> {
    let only = q.recording.as_deref().map(parse_id).transpose()?;
    Ok(axum::Json(app.engine.compaction_state(only).await?))
}

/// Starts recombining now (unless `dry_run`) and answers with the plan.
async fn compact(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    Query(q): Query<CompactQuery>,
) -> Result<axum::Json<CompactionState>, HttpError> {
    let only = q.recording.as_deref().map(parse_id).transpose()?;
    audited(
        &app,
        who.audit(
            "compact",
            only.iter().map(|i| i.to_string()).collect(),
            format!("dry_run={}", q.dry_run),
        ),
    )
    .await?;
    let state = app.engine.compaction_state(only).await?;
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
