//! `asciinema upload FILE` into Reel: the asciinema server's upload API,
//! `POST /api/v1/recordings` with the cast file in the multipart field
//! `file` (and an optional `title`), HTTP Basic with the install id as the
//! password. With `ASCIINEMA_SERVER_URL` pointing at reeld and a recorder
//! token as the install id, a finished recording is stored like `reel
//! ingest` stores one; the answer's `url` names it in Reel.
//!
//! The whole file is read (bounded by [`MAX_UPLOAD_BYTES`]) and checked
//! before anything is stored: a malformed file is a 400 that stores
//! nothing.

use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use reel_proto::v1::Event;
use serde::Serialize;

use super::{AppState, HttpError, error_response, invalid};
use crate::access::Identity;

/// The largest cast file taken (the asciinema server answers 413 beyond
/// its own limit too).
pub const MAX_UPLOAD_BYTES: usize = 64 << 20;

/// Events per append.
const BATCH: usize = 1000;

/// The body limit of the upload route (the file and the form around it).
pub(super) fn body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_UPLOAD_BYTES + (64 << 10))
}

/// What asciinema prints: `message` if present, else `url`.
#[derive(Serialize)]
struct Uploaded {
    url: String,
    message: String,
    id: String,
}

pub(super) async fn upload(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Result<Response, HttpError> {
    let mut file: Option<Vec<u8>> = None;
    let mut title: Option<String> = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| invalid(format!("a malformed multipart body: {e}")))?
    {
        match field.name() {
            Some("file") => {
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| invalid(format!("the file field: {e}")))?;
                if bytes.len() > MAX_UPLOAD_BYTES {
                    return Ok(too_large());
                }
                file = Some(bytes.to_vec());
            }
            Some("title") => {
                title = Some(
                    field
                        .text()
                        .await
                        .map_err(|e| invalid(format!("the title field: {e}")))?,
                );
            }
            // description, visibility, audio_url: nothing Reel keeps.
            _ => {}
        }
    }
    let file = file.ok_or_else(|| invalid("no `file` field: the cast file goes there".into()))?;
    let text = String::from_utf8(file)
        .map_err(|e| invalid(format!("the cast file is not UTF-8 text: {e}")))?;
    let cast = reel_asciicast::parse(&text).map_err(|e| invalid(format!("the cast file: {e}")))?;

    let mut metadata = cast.metadata;
    // The uploader's login (HTTP Basic's user name, asciinema sends $USER),
    // else the token's name.
    metadata.user = basic_user(&headers)
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| who.name.clone());
    if metadata.target.is_empty() {
        metadata.target = "asciinema".into();
    }
    if metadata.protocol.is_empty() {
        metadata.protocol = "tty".into();
    }
    if let Some(t) = title.filter(|t| !t.is_empty()) {
        metadata.title = t;
    }
    if !who.scopes.admits(&metadata) {
        let denied = crate::access::Denied::Forbidden(format!(
            "{} may not record user {:?} on target {:?}: outside its scopes",
            who.name, metadata.user, metadata.target
        ));
        crate::access::audit_refusal(
            &app.engine,
            Some(&who),
            &who.client,
            "POST /api/v1/recordings",
            &denied,
        )
        .await;
        return Err(denied.into());
    }
    let total = cast.events.len() as u64;
    let mut writer = app.engine.start_owned(metadata, &who.name).await?;
    let mut first = 0u64;
    let mut events: Vec<Event> = cast.events;
    let mut pending = Vec::new();
    while !events.is_empty() {
        let rest = events.split_off(events.len().min(BATCH));
        let n = events.len() as u64;
        pending.push(writer.append(Some(first), std::mem::replace(&mut events, rest))?);
        first += n;
    }
    for done in pending {
        done.await?;
    }
    let closed = writer.close(0).await?;
    debug_assert_eq!(closed.event_count, total);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if app.tls { "https" } else { "http" };
    let id = closed.id.to_string();
    let url = format!("{scheme}://{host}/api/v1/recordings/{id}");
    Ok((
        StatusCode::CREATED,
        axum::Json(Uploaded {
            message: format!("Stored in Reel as recording {id} ({total} events): {url}"),
            url,
            id,
        }),
    )
        .into_response())
}

fn too_large() -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the cast file is larger than this server takes ({MAX_UPLOAD_BYTES} bytes)"),
    )
}

/// The user name of an `Authorization: Basic` header.
fn basic_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (user, _) = crate::access::basic_credentials(value)?;
    Some(user)
}
