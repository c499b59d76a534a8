//! The files the pages load, built into the binary: nothing is fetched
//! from another site, ever. asciinema-player is vendored from its npm
//! package at the version `web/package-lock.json` pins (see
//! `scripts/vendor-player`, which also checks that the files here are the
//! package's own bytes).

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The assets behind a session (the sign-in page's style is served apart).
const ASSETS: &[Asset] = &[
    Asset {
        name: "asciinema-player.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/vendor/asciinema-player/asciinema-player.min.js"),
    },
    Asset {
        name: "asciinema-player.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../web/vendor/asciinema-player/asciinema-player.css"),
    },
    Asset {
        name: "reel.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/reel.js"),
    },
];

const STYLE: &[u8] = include_bytes!("../../web/reel.css");

fn serve(content_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /ui/reel.css`.
pub(super) async fn style() -> Response {
    serve("text/css; charset=utf-8", STYLE)
}

/// `GET /ui/assets/{file}`.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => serve(a.content_type, a.bytes),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_player_is_the_whole_bundle() {
        let js = ASSETS[0].bytes;
        assert!(
            js.len() > 100_000,
            "asciinema-player.min.js is {} bytes",
            js.len()
        );
        assert!(std::str::from_utf8(js).is_ok());
    }
}
