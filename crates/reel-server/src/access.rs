//! Who may call reeld and what each caller may do: identities (API tokens),
//! roles, scopes, and the one rule of every HTTP route and gRPC method.
//!
//! Every request but `/healthz` (and `/metrics` when the configuration
//! opens it, and the web UI's sign-in) carries `Authorization: Bearer
//! TOKEN` (gRPC: the same in its metadata), or, for a GET from the web UI,
//! a session cookie that stands for the token signed in with
//! ([`crate::web::session`]). No token, or an unknown or expired one: 401
//! (UNAUTHENTICATED; a page of the web UI answers with a redirect to
//! sign-in). A role that does not allow the route, or a recording
//! outside the caller's scopes: 403 (PERMISSION_DENIED) naming the roles
//! that would. A route without a rule in [`RULES`] is refused to everyone.
//! Every refusal is written to the audit log.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use reel_engine::{Engine, Scope};
use reel_proto::v1::{AuditEntry, RecordingMetadata, TokenRow};
use sha2::{Digest, Sha256};

use crate::http::AppState;
pub use crate::web::session::{Session, Sessions};

/// A role: a set of [`Action`]s. A token has one or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Starts recordings; resumes only those it started itself.
    Recorder,
    /// Lists, shows, exports and plays recordings within its scopes.
    Viewer,
    /// A viewer that also reads the audit log, the server's state and
    /// runs `reel verify` without repair.
    Auditor,
    /// Puts legal holds on and releases them (and reads, to find them).
    Custodian,
    /// Everything the other roles may do, but releasing a hold, plus purge,
    /// retention, repair, archives, compaction by hand and tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Recorder,
        Role::Viewer,
        Role::Auditor,
        Role::Custodian,
        Role::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Recorder => "recorder",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Custodian => "custodian",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do `action`.
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Recorder => matches!(action, Record),
            Role::Viewer => matches!(action, Read),
            Role::Auditor => matches!(action, Read | Audit | Verify | Observe),
            Role::Custodian => matches!(action, Read | Hold | Release),
            // Releasing a hold is a custodian's act, never an admin's alone.
            Role::Admin => !matches!(action, Release | Open),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?}: use recorder, viewer, auditor, custodian or admin")
            })
    }
}

/// What a request does. Each route and method has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// No token needed (`/healthz`).
    Open,
    /// Start or resume a recording (gRPC).
    Record,
    /// List, show, export, play.
    Read,
    /// The server's state: status, storage, the compactor's queue, metrics.
    Observe,
    /// Read the audit log.
    Audit,
    /// Compare the catalog with the stores (repair is [`Action::Repair`]).
    Verify,
    Repair,
    Hold,
    Release,
    Purge,
    Retention,
    ArchiveExport,
    ArchiveImport,
    Compact,
    Tokens,
    /// Rotate master keys.
    Keys,
}

impl Action {
    /// The roles that allow it, for refusals.
    pub fn roles(self) -> Vec<Role> {
        Role::ALL.into_iter().filter(|r| r.allows(self)).collect()
    }

    fn needs(self) -> String {
        let names: Vec<&str> = self.roles().into_iter().map(Role::name).collect();
        match names.as_slice() {
            [] => "no role".into(),
            [one] => format!("role {one}"),
            [rest @ .., last] => format!("role {} or {last}", rest.join(", ")),
        }
    }
}

/// The rule of every HTTP route: (method, path as routed, action). The
/// router is built from routes that must each appear here; the access test
/// checks every row against a real reeld.
pub const RULES: &[(&str, &str, Action)] = &[
    ("GET", "/healthz", Action::Open),
    ("GET", "/metrics", Action::Observe),
    ("GET", "/api/v1/status", Action::Observe),
    ("GET", "/api/v1/storage", Action::Observe),
    ("GET", "/api/v1/compact", Action::Observe),
    ("POST", "/api/v1/compact", Action::Compact),
    ("GET", "/api/v1/recordings", Action::Read),
    ("GET", "/api/v1/recordings/{id}", Action::Read),
    ("GET", "/api/v1/recordings/{id}/export", Action::Read),
    ("POST", "/api/v1/recordings/{id}/hold", Action::Hold),
    ("DELETE", "/api/v1/recordings/{id}/hold", Action::Release),
    ("POST", "/api/v1/purge", Action::Purge),
    ("POST", "/api/v1/retention", Action::Retention),
    ("GET", "/api/v1/audit", Action::Audit),
    ("GET", "/api/v1/audit/verify", Action::Audit),
    ("POST", "/api/v1/verify", Action::Verify),
    ("GET", "/api/v1/archive", Action::ArchiveExport),
    ("POST", "/api/v1/archive", Action::ArchiveImport),
    ("GET", "/api/v1/tokens", Action::Tokens),
    ("POST", "/api/v1/tokens", Action::Tokens),
    ("DELETE", "/api/v1/tokens/{name}", Action::Tokens),
    ("GET", "/api/v1/keys/public", Action::Read),
    ("GET", "/api/v1/keys", Action::Observe),
    ("POST", "/api/v1/keys/rotate", Action::Keys),
    ("POST", "/api/v1/keys/rotate/finish", Action::Keys),
    // asciinema's live stream: the recorder token is in the path.
    ("GET", crate::http::alis::ROUTE, Action::Record),
    // asciinema's upload API (HTTP Basic, the token as the password).
    ("POST", "/api/v1/recordings", Action::Record),
    // The web UI (`crate::web`): signing in and out, and the style of the
    // sign-in page, are open; everything else reads.
    ("GET", crate::web::SIGNIN, Action::Open),
    ("POST", crate::web::SIGNIN, Action::Open),
    ("POST", "/signout", Action::Open),
    ("GET", crate::web::SIGNIN_CSS, Action::Open),
    ("GET", "/ui/assets/{file}", Action::Read),
    ("GET", "/", Action::Read),
    ("GET", "/recordings", Action::Read),
    ("GET", "/recordings/{id}", Action::Read),
    ("GET", "/recordings/{id}/player.json", Action::Read),
    ("GET", "/recordings/{id}/player/piece", Action::Read),
    ("GET", "/recordings/{id}/live", Action::Read),
];

/// The gRPC methods and their rules.
pub const GRPC_RULES: &[(&str, Action)] = &[("/reel.v1.Ingest/Record", Action::Record)];

fn rule(method: &Method, path: &str) -> Option<Action> {
    RULES
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, a)| *a)
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub roles: Vec<Role>,
    pub scopes: Scope,
    pub client: String,
}

impl Identity {
    pub fn may(&self, action: Action) -> bool {
        self.roles.iter().any(|r| r.allows(action))
    }

    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    /// The refusal of `action` to this identity, if it is refused.
    pub fn check(&self, action: Action) -> Result<(), Denied> {
        if self.may(action) {
            Ok(())
        } else {
            Err(Denied::Forbidden(format!(
                "{} (roles: {}) may not do this: it needs {}",
                self.name,
                self.role_names(),
                action.needs()
            )))
        }
    }

    pub fn role_names(&self) -> String {
        let names: Vec<&str> = self.roles.iter().map(|r| r.name()).collect();
        names.join(", ")
    }

    /// An audit entry by this identity.
    pub fn audit(&self, action: &str, recordings: Vec<String>, detail: String) -> AuditEntry {
        AuditEntry {
            by: self.name.clone(),
            action: action.into(),
            recordings,
            client: self.client.clone(),
            detail,
            ..Default::default()
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone)]
pub enum Denied {
    /// 401 / UNAUTHENTICATED.
    Unauthenticated(String),
    /// 403 / PERMISSION_DENIED.
    Forbidden(String),
}

impl Denied {
    pub fn message(&self) -> &str {
        match self {
            Denied::Unauthenticated(m) | Denied::Forbidden(m) => m,
        }
    }

    pub fn to_status(&self) -> tonic::Status {
        match self {
            Denied::Unauthenticated(m) => tonic::Status::unauthenticated(m.clone()),
            Denied::Forbidden(m) => tonic::Status::permission_denied(m.clone()),
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Denied::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Denied::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        };
        let mut response = (
            status,
            axum::Json(reel_api::ApiError {
                code: code.into(),
                error: self.message().to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("header"));
        }
        response
    }
}

/// The SHA-256 a token is known by.
pub fn token_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The tokens reeld accepts, by hash, kept in memory and reloaded from the
/// catalog after every change.
#[derive(Default)]
pub struct Tokens {
    by_hash: RwLock<HashMap<[u8; 32], TokenRow>>,
}

impl Tokens {
    /// Loads every token from the catalog.
    pub async fn reload(&self, engine: &Engine) -> reel_engine::Result<()> {
        let rows = engine.tokens().await?;
        let map = rows
            .into_iter()
            .filter_map(|row| {
                let hash: [u8; 32] = row.sha256.as_slice().try_into().ok()?;
                Some((hash, row))
            })
            .collect();
        *self.by_hash.write().expect("tokens lock") = map;
        Ok(())
    }

    /// The identity a bearer token stands for.
    pub fn authenticate(&self, secret: &str, client: String) -> Result<Identity, Denied> {
        self.authenticate_hash(&token_hash(secret), client)
    }

    /// The identity of the token whose SHA-256 is `hash` (a web session's).
    pub fn authenticate_hash(&self, hash: &[u8; 32], client: String) -> Result<Identity, Denied> {
        let row = self
            .by_hash
            .read()
            .expect("tokens lock")
            .get(hash)
            .cloned()
            .ok_or_else(|| Denied::Unauthenticated("unknown or revoked token".into()))?;
        if row.expires_at_us > 0 && row.expires_at_us <= now_us() {
            return Err(Denied::Unauthenticated(format!(
                "token {} has expired",
                row.name
            )));
        }
        Ok(Identity {
            roles: row.roles.iter().filter_map(|r| r.parse().ok()).collect(),
            scopes: Scope::parse(&row.scopes).unwrap_or_default(),
            name: row.name,
            client,
        })
    }
}

pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// What access needs from the server's state.
#[derive(Clone)]
pub struct Access {
    pub tokens: Arc<Tokens>,
    /// The web UI's signed-in browsers.
    pub sessions: Arc<Sessions>,
    /// `/metrics` without a token (`[http] open_metrics`).
    pub open_metrics: bool,
}

impl Access {
    /// The access rules of a server on `engine`, its tokens loaded; on a
    /// catalog without tokens the bootstrap admin token is made first and
    /// written to `<data_dir>/admin.token` (see [`crate::tokens::bootstrap`]).
    pub async fn load(
        engine: &Engine,
        data_dir: &std::path::Path,
        open_metrics: bool,
    ) -> anyhow::Result<Access> {
        let tokens = Arc::new(Tokens::default());
        crate::tokens::bootstrap(engine, &tokens, data_dir).await?;
        Ok(Access {
            tokens,
            sessions: Arc::default(),
            open_metrics,
        })
    }
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(value: Option<&str>) -> Result<&str, Denied> {
    let value = value.ok_or_else(|| {
        Denied::Unauthenticated(
            "no token: send Authorization: Bearer TOKEN (reel: --token or REEL_TOKEN)".into(),
        )
    })?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Denied::Unauthenticated("the Authorization header is not Bearer TOKEN".into())
        })
}

/// The token of an `Authorization` header: `Bearer TOKEN`, or `Basic`
/// with the token as the password (asciinema's upload sends its install
/// id that way).
pub fn header_token(value: Option<&str>) -> Result<String, Denied> {
    if let Some((_, password)) = value.and_then(basic_credentials) {
        return Ok(password);
    }
    bearer(value).map(str::to_string)
}

/// The user name and password of an `Authorization: Basic` value.
pub fn basic_credentials(value: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let encoded = value.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    (!password.is_empty()).then(|| (user.to_string(), password.to_string()))
}

/// The HTTP middleware (a route layer, so the matched route is known):
/// finds the route's rule, authenticates, checks the role, and hands the
/// [`Identity`] to the handler. Refusals are audited.
pub async fn authorize(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let client = client_of(request.extensions());
    // A token in the path (asciinema's stream URL) is a secret: the audit
    // log names the route, not the path.
    let in_path = path == crate::http::alis::ROUTE;
    let asked = if in_path {
        format!("{method} {path}")
    } else {
        format!("{method} {}", request.uri().path())
    };
    let Some(action) = rule(&method, &path) else {
        let denied = Denied::Forbidden(format!("{method} {path} has no access rule"));
        audit_refusal(&app.engine, None, &client, &asked, &denied).await;
        return denied.into_response();
    };
    if action == Action::Open || (path == "/metrics" && app.access.open_metrics) {
        return next.run(request).await;
    }
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let path_token = in_path
        .then(|| request.uri().path().rsplit('/').next())
        .flatten();
    // A web session stands for its token on requests that change nothing;
    // a request with a token of its own is taken as that token's.
    let session = (header.is_none() && path_token.is_none() && is_safe(&method))
        .then(|| crate::web::session::cookie_value(request.headers(), crate::web::session::COOKIE))
        .flatten()
        .and_then(|value| app.access.sessions.get(&value));
    let authenticated = match (&session, path_token) {
        (Some(s), _) => app
            .access
            .tokens
            .authenticate_hash(&s.token_hash, client.clone()),
        (None, Some(token)) => app.access.tokens.authenticate(token, client.clone()),
        (None, None) => header_token(header)
            .and_then(|secret| app.access.tokens.authenticate(&secret, client.clone())),
    };
    let identity = match authenticated {
        Ok(identity) => identity,
        Err(denied) => {
            audit_refusal(&app.engine, None, &client, &asked, &denied).await;
            if crate::web::PAGES.contains(&path.as_str()) {
                return crate::web::signin_redirect(request.uri());
            }
            return denied.into_response();
        }
    };
    if let Some(session) = session {
        request.extensions_mut().insert(session);
    }
    if let Err(denied) = identity.check(action) {
        audit_refusal(&app.engine, Some(&identity), &client, &asked, &denied).await;
        return denied.into_response();
    }
    request.extensions_mut().insert(identity);
    next.run(request).await
}

/// GET and HEAD: what a web session may do without a form's CSRF token.
fn is_safe(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The client's address, as the audit log names it.
pub fn client_of(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default()
}

/// Writes a refusal to the audit log; a failure to do so is logged.
pub async fn audit_refusal(
    engine: &Engine,
    identity: Option<&Identity>,
    client: &str,
    asked: &str,
    denied: &Denied,
) {
    let entry = AuditEntry {
        by: identity.map(|i| i.name.clone()).unwrap_or_default(),
        action: match denied {
            Denied::Unauthenticated(_) => "unauthenticated",
            Denied::Forbidden(_) => "forbidden",
        }
        .into(),
        client: client.into(),
        detail: asked.into(),
        reason: denied.message().into(),
        ..Default::default()
    };
    if let Err(e) = engine.record_audit(entry).await {
        tracing::error!(error = %e, "cannot write a refusal to the audit log");
    }
}

impl Identity {
    /// The refusal of a recording outside this identity's scopes (audited
    /// by the caller like every refusal).
    pub fn require_scope(
        &self,
        id: impl fmt::Display,
        meta: &RecordingMetadata,
    ) -> Result<(), Denied> {
        if self.scopes.admits(meta) {
            Ok(())
        } else {
            Err(Denied::Forbidden(format!(
                "recording {id} is outside the scopes of {}",
                self.name
            )))
        }
    }
}
