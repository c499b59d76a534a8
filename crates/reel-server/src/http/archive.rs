//! Archives: exporting recordings as one file, and importing one.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt;
use reel_api::Refusal;
use reel_engine::{EngineError, Filter};
use serde::Deserialize;

use super::purge::cutoff;
use super::{AppState, HttpError, audited, invalid, parse_id, within_scope};
use crate::access::Identity;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/archive", get(export_archive).post(import_archive))
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
        let _ = tx.send(Ok(writer.end(engine.keys().as_ref()).into())).await;
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
