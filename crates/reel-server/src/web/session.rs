//! Web sessions: a token typed once into the sign-in page becomes a cookie
//! the browser sends with every page, never the token itself.
//!
//! - The session cookie is 256 random bits, `HttpOnly` (no script reads
//!   it), `SameSite=Strict` (no other site's page or form makes the
//!   browser send it), `Secure` when reeld serves TLS. reeld keeps only its
//!   SHA-256, with the hash of the token it stands for: each request is
//!   authenticated against the token as it is now, so revoking or expiring
//!   the token ends its sessions at once.
//! - A session lasts [`IDLE`] without a request and [`MAX_AGE`] in all;
//!   sessions live in memory (a restart of reeld signs everyone out), at
//!   most [`MAX_SESSIONS`], the least recently used going first.
//! - A session authenticates only requests that change nothing (GET, and
//!   the WebSocket a live view opens): what changes state (sign-out) also
//!   needs the session's CSRF token from the page's form, and the API's
//!   POSTs need a bearer token. The sign-in form is a double-submit: a
//!   random value in a cookie scoped to `/signin` and in the form.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header;
use base64::Engine as _;
use cookie::{Cookie, SameSite};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie.
pub const COOKIE: &str = "reel_session";
/// The sign-in form's double-submit cookie.
pub const SIGNIN_COOKIE: &str = "reel_signin";
/// A session ends after this long without a request...
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// ... and after this long in all.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 3600);
pub const MAX_SESSIONS: usize = 10_000;

/// A signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// The SHA-256 of the token it signed in with.
    pub token_hash: [u8; 32],
    /// What its forms must carry.
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// The open sessions, by the SHA-256 of their cookie.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// A new session for the token with hash `token_hash`: the cookie value
    /// to set, and the session.
    pub fn open(&self, token_hash: [u8; 32]) -> (String, Session) {
        let value = random_value();
        let now = Instant::now();
        let session = Session {
            token_hash,
            csrf: random_value(),
            created: now,
            last_seen: now,
        };
        let mut map = self.lock();
        map.retain(|_, s| live(s, now));
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(digest(&value), session.clone());
        (value, session)
    }

    /// The session a cookie value names, if it is still open (and now
    /// seen again).
    pub fn get(&self, value: &str) -> Option<Session> {
        let key = digest(value);
        let now = Instant::now();
        let mut map = self.lock();
        let session = map.get_mut(&key)?;
        if !live(session, now) {
            map.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Ends the session a cookie value names.
    pub fn close(&self, value: &str) -> Option<Session> {
        self.lock().remove(&digest(value))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_seen) < IDLE && now.duration_since(s.created) < MAX_AGE
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// 256 random bits, URL-safe.
pub fn random_value() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in a request's headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Secure under TLS.
/// `max_age: None` removes the cookie.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    tls: bool,
    max_age: Option<Duration>,
) -> String {
    let mut c = Cookie::build((name, value))
        .path(path)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(tls);
    c = match max_age {
        Some(age) => c.max_age(cookie::time::Duration::seconds(age.as_secs() as i64)),
        None => c.max_age(cookie::time::Duration::ZERO),
    };
    c.build().to_string()
}

/// Whether a state-changing request comes from one of our own pages: the
/// browser's `Origin` (or, without it, `Referer`) names the host it was
/// sent to. A request with neither (not a browser's form) is refused.
pub fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    // HTTP/2 names the host in the URI's authority, HTTP/1.1 in `Host`.
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let Some(host) = host else {
        return false;
    };
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    origin.is_some_and(|o| {
        let rest = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"))
            .unwrap_or("");
        rest.split('/').next() == Some(host)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends_when_closed() {
        let sessions = Sessions::default();
        let (cookie, session) = sessions.open([7; 32]);
        assert_eq!(sessions.get(&cookie).unwrap().token_hash, [7; 32]);
        assert_eq!(sessions.get(&cookie).unwrap().csrf, session.csrf);
        assert!(sessions.get("not-a-session").is_none());
        assert!(sessions.close(&cookie).is_some());
        assert!(sessions.get(&cookie).is_none());
    }

    #[test]
    fn idle_and_old_sessions_are_over() {
        let sessions = Sessions::default();
        let (idle, _) = sessions.open([1; 32]);
        let (old, _) = sessions.open([2; 32]);
        {
            let mut map = sessions.lock();
            let past = Instant::now() - IDLE - Duration::from_secs(1);
            map.get_mut(&digest(&idle)).unwrap().last_seen = past;
            let born = Instant::now() - MAX_AGE - Duration::from_secs(1);
            map.get_mut(&digest(&old)).unwrap().created = born;
        }
        assert!(sessions.get(&idle).is_none());
        assert!(sessions.get(&old).is_none());
    }

    #[test]
    fn the_cookie_is_strict_http_only_and_secure_under_tls() {
        let c = set_cookie(COOKIE, "v", "/", true, Some(IDLE));
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!set_cookie(COOKIE, "v", "/", false, Some(IDLE)).contains("Secure"));
        assert!(set_cookie(COOKIE, "", "/", false, None).contains("Max-Age=0"));
    }

    #[test]
    fn only_our_own_origin_may_post() {
        let parts = |headers: &[(header::HeaderName, &str)]| {
            let mut r = axum::http::Request::post("/signin");
            for (k, v) in headers {
                r = r.header(k, *v);
            }
            r.body(()).unwrap().into_parts().0
        };
        let same_origin = |p: axum::http::request::Parts| same_origin(&p.headers, &p.uri);
        let host = (header::HOST, "reel.example:8080");
        assert!(
            !same_origin(parts(std::slice::from_ref(&host))),
            "no Origin, no Referer"
        );
        let evil = (header::ORIGIN, "https://evil.example");
        assert!(!same_origin(parts(&[host.clone(), evil])));
        let ours = (header::ORIGIN, "http://reel.example:8080");
        assert!(same_origin(parts(&[host.clone(), ours])));
        let referer = (header::REFERER, "http://reel.example:8080/signin");
        assert!(same_origin(parts(&[host, referer])));
    }

    #[test]
    fn secrets_compare_equal_only_when_equal_and_not_empty() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("", ""));
        assert!(!same_secret("abc", "ab"));
    }
}
