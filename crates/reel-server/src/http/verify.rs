//! `reel verify` over HTTP: the catalog checked against the stores.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::post;
use futures::StreamExt;
use serde::Deserialize;

use super::{AppState, HttpError, audited, invalid};
use crate::access::{Action, Identity};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/verify", post(verify))
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
                kind: p.kind.to_string(),
                store: reel_engine::location_name(p.store as i32).into(),
                key: p.key,
                recording: p.recording,
                sequence: p.sequence,
                detail: p.detail,
                repair: p.repair,
            })
            .collect(),
        damaged: r.damaged,
        unsigned_segments: r.unsigned_segments,
        unsigned_indexes: r.unsigned_indexes,
    }
}
