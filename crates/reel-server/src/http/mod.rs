//! The HTTP read and ops API (`/api/v1/...`), JSON in and out: every route,
//! merged here, one file per area. What the areas share (the state handed
//! to every handler, the audit and scope checks) is in `state`, the error
//! answers in `error`.

pub mod alis;
mod archive;
mod audit;
mod error;
mod purge;
mod recordings;
mod server;
mod state;
mod upload;
mod verify;

use axum::Router;
use axum::http::StatusCode;

use crate::access::Identity;

pub use error::HttpError;
pub(crate) use error::{error_response, invalid, parse_id};
pub use recordings::summary;
pub(crate) use recordings::{detail, list_query};
pub use state::AppState;
pub(crate) use state::{audited, within_scope};

/// Every route of the API. Each must have a rule in
/// [`crate::access::RULES`]; one without is refused to everyone.
pub fn router(state: AppState) -> Router {
    let guard = axum::middleware::from_fn_with_state(state.clone(), crate::access::authorize);
    assemble(routes().route_layer(guard), state)
}

/// The same API with every caller taken to be `identity`, no token asked:
/// what authentication costs is measured against it (`benches/access.rs`).
/// reeld never serves it.
#[doc(hidden)]
pub fn router_without_access(state: AppState, identity: Identity) -> Router {
    let as_identity = axum::middleware::from_fn(
        move |mut request: axum::extract::Request, next: axum::middleware::Next| {
            request.extensions_mut().insert(identity.clone());
            next.run(request)
        },
    );
    assemble(routes().route_layer(as_identity), state)
}

fn routes() -> Router<AppState> {
    Router::new()
        .merge(server::routes())
        .merge(recordings::routes())
        .merge(purge::routes())
        .merge(audit::routes())
        .merge(verify::routes())
        .merge(archive::routes())
        .merge(alis::routes())
        .merge(crate::tokens::routes())
        .merge(crate::web::routes())
}

fn assemble(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(|| async {
            error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such page or API endpoint".into(),
            )
        })
        .layer(body_limit())
        .with_state(state)
}

/// The largest request body of every route but the archive import (which
/// streams, see [`import_archive`]): JSON requests, the largest being a
/// purge of some 250,000 ids. Beyond it: 413.
pub(crate) const MAX_JSON_BODY_BYTES: usize = 8 << 20;

/// The layer that bounds every route's body by [`MAX_JSON_BODY_BYTES`].
pub(crate) fn body_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(MAX_JSON_BODY_BYTES)
}
