//! The web UI on reeld's HTTP port: sign in with a token, list recordings,
//! open one, play it from any moment, follow an open one live.
//!
//! | route | what | access |
//! | --- | --- | --- |
//! | `GET /signin`, `POST /signin`, `POST /signout`, `GET /ui/reel.css` | signing in and out, the pages' style | open |
//! | `GET /`, `GET /recordings`, `GET /recordings/{id}` | pages | read; without a session, a redirect to sign-in |
//! | `GET /ui/assets/{file}` | the player and its script | read |
//! | `GET /recordings/{id}/player.json`, `.../player/piece` | what the player plays ([`player`]) | read |
//! | `GET /recordings/{id}/live` | an open recording as it happens ([`live`]) | read |
//!
//! Signing in makes a cookie session ([`session`]); every page, piece and
//! live view is in the audit log under the identity of the token that
//! signed in. Pages are rendered on the server ([`pages`]); the only
//! scripts are the vendored asciinema-player and `reel.js` ([`assets`]),
//! and the pages' Content-Security-Policy allows nothing else.

mod assets;
pub mod keyframes;
mod live;
mod pages;
pub mod player;
pub mod session;

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::Markup;
use reel_asciicast::screen::Snapshot;
use reel_engine::EngineError;
use serde::Deserialize;

use crate::access::{Action, Identity, Session, audit_refusal, token_hash};
use crate::http::{AppState, HttpError, audited, parse_id, within_scope};
use pages::{Chrome, Filters, Playback};
pub use player::Screens;

pub const SIGNIN: &str = "/signin";
/// The style of every page, sign-in's included (so open to all).
pub const SIGNIN_CSS: &str = "/ui/reel.css";
/// The player and the pages' script.
pub const ASSETS: &str = "/ui/assets";
/// The pages: a request for one without a session is sent to sign in.
pub const PAGES: [&str; 3] = ["/", "/recordings", "/recordings/{id}"];

/// How long the sign-in form may be left open.
const SIGNIN_FORM_LIFE: Duration = Duration::from_secs(3600);
/// Who viewed a recording: at most this many of the audit entries naming
/// it, the latest, are looked at.
const VIEWERS_SCAN: usize = 5_000;
const VIEWERS_SHOWN: usize = 200;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/recordings") }))
        .route(SIGNIN, get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route(SIGNIN_CSS, get(assets::style))
        .route("/ui/assets/{file}", get(assets::asset))
        .route("/recordings", get(list))
        .route("/recordings/{id}", get(show))
        .route("/recordings/{id}/player.json", get(player::index))
        .route("/recordings/{id}/player/piece", get(player::piece))
        .route("/recordings/{id}/live", get(live::live))
}

/// Where an unauthenticated request for a page is sent.
pub fn signin_redirect(uri: &Uri) -> Response {
    let next = uri.path_and_query().map_or("/", |p| p.as_str());
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    Redirect::to(&format!("{SIGNIN}?{query}")).into_response()
}

/// An HTML page with the headers every page has: no caching (they show
/// evidence), no framing, no script but ours, no referrer to other sites
/// (`same-origin`, not `no-referrer`: with that, a browser sends its form
/// posts with `Origin: null`, and the sign-in could not tell our own form).
fn html(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
             style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn with_cookie(mut response: Response, cookie: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Only a path of this server: never another site (`//host`, `\`).
fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.starts_with(SIGNIN);
    if local { next } else { "/recordings" }
}

#[derive(Deserialize, Default)]
struct SigninQuery {
    next: Option<String>,
}

/// The sign-in page, with a fresh form token in a cookie and in the form.
fn signin_form(app: &AppState, next: &str, error: Option<&str>, status: StatusCode) -> Response {
    let csrf = session::random_value();
    let markup = pages::signin(safe_next(next), &csrf, error);
    let cookie = session::set_cookie(
        session::SIGNIN_COOKIE,
        &csrf,
        SIGNIN,
        app.tls,
        Some(SIGNIN_FORM_LIFE),
    );
    with_cookie(html(status, markup), cookie)
}

async fn signin_page(State(app): State<AppState>, Query(q): Query<SigninQuery>) -> Response {
    signin_form(
        &app,
        q.next.as_deref().unwrap_or("/recordings"),
        None,
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
struct SigninForm {
    token: String,
    csrf: String,
    #[serde(default)]
    next: String,
}

/// `POST /signin`: a token that may read becomes a session.
async fn signin(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    extensions: axum::http::Extensions,
    axum::Form(form): axum::Form<SigninForm>,
) -> Response {
    let client = crate::access::client_of(&extensions);
    let asked = "POST /signin";
    let form_cookie = session::cookie_value(&headers, session::SIGNIN_COOKIE).unwrap_or_default();
    if !session::same_secret(&form.csrf, &form_cookie) || !session::same_origin(&headers, &uri) {
        let denied = crate::access::Denied::Forbidden(
            "the sign-in form did not come from this server's sign-in page".into(),
        );
        audit_refusal(&app.engine, None, &client, asked, &denied).await;
        let message = "This sign-in form has expired or did not come from this server. Try again.";
        return signin_form(&app, &form.next, Some(message), StatusCode::FORBIDDEN);
    }
    let identity = match app
        .access
        .tokens
        .authenticate(form.token.trim(), client.clone())
    {
        Ok(identity) => identity,
        Err(denied) => {
            audit_refusal(&app.engine, None, &client, asked, &denied).await;
            let message = "Unknown, revoked or expired token.";
            return signin_form(&app, &form.next, Some(message), StatusCode::UNAUTHORIZED);
        }
    };
    if let Err(denied) = identity.check(Action::Read) {
        audit_refusal(&app.engine, Some(&identity), &client, asked, &denied).await;
        let message = format!(
            "The token {} (roles: {}) may not view recordings.",
            identity.name,
            identity.role_names()
        );
        return signin_form(&app, &form.next, Some(&message), StatusCode::FORBIDDEN);
    }
    if let Err(e) = audited(&app, identity.audit("sign-in", Vec::new(), String::new())).await {
        let (status, message) = e.status_and_message();
        return html(status, pages::problem(None, "Cannot sign in", &message));
    }
    let (value, _) = app.access.sessions.open(token_hash(form.token.trim()));
    let session_cookie = session::set_cookie(
        session::COOKIE,
        &value,
        "/",
        app.tls,
        Some(session::MAX_AGE),
    );
    let clear_form = session::set_cookie(session::SIGNIN_COOKIE, "", SIGNIN, app.tls, None);
    let response = Redirect::to(safe_next(&form.next)).into_response();
    with_cookie(with_cookie(response, session_cookie), clear_form)
}

#[derive(Deserialize)]
struct SignoutForm {
    csrf: String,
}

/// `POST /signout`: ends the session (its form carries the session's CSRF
/// token).
async fn signout(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    extensions: axum::http::Extensions,
    axum::Form(form): axum::Form<SignoutForm>,
) -> Response {
    let client = crate::access::client_of(&extensions);
    let value = session::cookie_value(&headers, session::COOKIE).unwrap_or_default();
    let Some(open) = app.access.sessions.get(&value) else {
        return Redirect::to(SIGNIN).into_response();
    };
    if !session::same_secret(&form.csrf, &open.csrf) || !session::same_origin(&headers, &uri) {
        let denied =
            crate::access::Denied::Forbidden("a sign-out that did not come from our page".into());
        audit_refusal(&app.engine, None, &client, "POST /signout", &denied).await;
        return html(
            StatusCode::FORBIDDEN,
            pages::problem(None, "Not signed out", denied.message()),
        );
    }
    app.access.sessions.close(&value);
    if let Ok(who) = app
        .access
        .tokens
        .authenticate_hash(&open.token_hash, client)
    {
        let _ = audited(&app, who.audit("sign-out", Vec::new(), String::new())).await;
    }
    let clear = session::set_cookie(session::COOKIE, "", "/", app.tls, None);
    with_cookie(Redirect::to(SIGNIN).into_response(), clear)
}

fn chrome<'a>(who: &'a Identity, roles: &'a str, session: Option<&'a Session>) -> Chrome<'a> {
    Chrome {
        name: &who.name,
        roles,
        csrf: session.map(|s| s.csrf.as_str()),
    }
}

fn problem_page(chrome: &Chrome, e: HttpError) -> Response {
    let (status, message) = e.status_and_message();
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::SERVICE_UNAVAILABLE => "Not available now",
        s if s.is_client_error() => "Cannot show this",
        _ => "Server error",
    };
    html(status, pages::problem(Some(chrome), title, &message))
}

/// `GET /recordings`: the list page, with the query of
/// `GET /api/v1/recordings`.
async fn list(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    session: Option<axum::Extension<Session>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let roles = who.role_names();
    let chrome = chrome(&who, &roles, session.as_ref().map(|s| &s.0));
    // The filter form sends its empty fields too: they filter nothing.
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or_default()).unwrap_or_default();
    let filters = Filters {
        pairs: pairs.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
    };
    let raw = serde_urlencoded::to_string(&filters.pairs).unwrap_or_default();
    let query = match crate::http::list_query(&raw, std::time::SystemTime::now()) {
        Ok(q) => q,
        Err(e) => {
            let markup = pages::list(&chrome, &filters, &[], None, Some(&e));
            return html(StatusCode::BAD_REQUEST, markup);
        }
    };
    let mut query = query;
    query.filter.scope = who.scopes.clone();
    let found = async {
        let (infos, next) = app.engine.find(query).await?;
        let seen = infos.iter().map(|i| i.id.to_string()).collect();
        audited(
            &app,
            who.audit("list", seen, format!("GET /recordings?{raw}")),
        )
        .await?;
        Ok::<_, HttpError>((infos, next))
    }
    .await;
    match found {
        Ok((infos, next)) => {
            let summaries: Vec<_> = infos.iter().map(crate::http::summary).collect();
            let next = next.map(|c| c.to_string());
            let markup = pages::list(&chrome, &filters, &summaries, next.as_deref(), None);
            html(StatusCode::OK, markup)
        }
        Err(e) => problem_page(&chrome, e),
    }
}

#[derive(Deserialize, Default)]
struct ShowQuery {
    /// A moment to open, `[[HH:]MM:]SS[.fraction]` from the start.
    t: Option<String>,
}

/// `GET /recordings/{id}`: a recording's page and player.
async fn show(
    State(app): State<AppState>,
    axum::Extension(who): axum::Extension<Identity>,
    session: Option<axum::Extension<Session>>,
    Path(id): Path<String>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let roles = who.role_names();
    let chrome = chrome(&who, &roles, session.as_ref().map(|s| &s.0));
    let shown = async {
        let id = parse_id(&id)?;
        let at =
            q.t.as_deref()
                .map(reel_api::parse_offset)
                .transpose()
                .map_err(|e| HttpError::from(EngineError::InvalidArgument(e)))?;
        let info = within_scope(&app, &who, id, "show").await?;
        // A deep link's page shows the screen at its moment: what was seen.
        let detail = at.map(|us| format!("screen at {}", reel_engine::clock(us)));
        let audit = audited(
            &app,
            who.audit("show", vec![id.to_string()], detail.unwrap_or_default()),
        );
        let viewers = async {
            if !who.may(Action::Audit) {
                return Ok(None);
            }
            let entries = app.engine.audit_of(id, VIEWERS_SCAN).await?;
            let mut seen: Vec<_> = entries
                .into_iter()
                .filter(|e| matches!(e.action.as_str(), "show" | "play" | "follow" | "export"))
                .collect();
            seen.truncate(VIEWERS_SHOWN);
            Ok::<_, HttpError>(Some(seen))
        };
        // The index's pieces, planned once for the screen and the preloads.
        let starts = player::plan(&info);
        // The screen after every event at or before the moment, as the
        // player shows a moment.
        let screen = async {
            let Some(us) = at else { return Ok(None) };
            let blank =
                Snapshot::blank(info.row.metadata.as_ref().and_then(|m| m.terminal.as_ref()));
            let piece_start = starts[player::piece_of(&starts, us)];
            // A screen that cannot be computed leaves the page without
            // it: the player then shows what it finds.
            match app
                .screens
                .passing(&app, &info, &blank, piece_start, us.saturating_add(1))
                .await
            {
                Ok(screen) => Ok::<_, HttpError>(Some(screen)),
                Err(e) => {
                    let (_, error) = e.status_and_message();
                    tracing::warn!(recording = %id, %error, "no screen drawn for a deep link");
                    Ok(None)
                }
            }
        };
        // Read together; nothing is answered before the audit entry is
        // written (or if it cannot be).
        let ((), viewers, screen) = tokio::try_join!(audit, viewers, screen)?;
        let playback = match at {
            Some(us) => Playback::Recording {
                at: Some(us as f64 / 1e6),
                preload: player::first_fetches(&info, &starts, us).to_vec(),
                screen,
            },
            None if info.state() == reel_proto::v1::RecordingState::Open => Playback::Live,
            None => Playback::Recording {
                at: None,
                preload: player::first_fetches(&info, &starts, 0).to_vec(),
                screen: None,
            },
        };
        let detail = crate::http::detail(&info);
        Ok::<_, HttpError>(pages::recording(
            &chrome,
            &detail,
            &playback,
            viewers.as_deref(),
        ))
    }
    .await;
    match shown {
        Ok(markup) => html(StatusCode::OK, markup),
        Err(e) => problem_page(&chrome, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next("/recordings/01H?t=5"), "/recordings/01H?t=5");
        for bad in [
            "//evil.example/x",
            "https://evil.example",
            "/\\evil.example",
            "",
            "/signin",
        ] {
            assert_eq!(safe_next(bad), "/recordings", "{bad}");
        }
    }
}
