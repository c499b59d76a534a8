//! API tokens over HTTP (`/api/v1/tokens`, admin only) and the bootstrap
//! admin token of a new data directory.
//!
//! A token is `reel_` and 64 hex digits (256 random bits). The catalog keeps
//! its SHA-256 only; the secret is in the answer that creates it, once.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::{delete, get};
use axum::{Extension, Json};
use reel_api::{NewToken, TokenInfo, TokenRequest};
use reel_engine::{Engine, EngineError, Scope};
use reel_proto::v1::TokenRow;
use tracing::info;

use crate::access::{Identity, Role, Tokens, now_us, token_hash};
use crate::http::{AppState, HttpError};

/// The name of the bootstrap token, and of its file in the data directory.
pub const BOOTSTRAP_NAME: &str = "admin";
pub const BOOTSTRAP_FILE: &str = "admin.token";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tokens", get(list).post(create))
        .route("/api/v1/tokens/{name}", delete(revoke))
}

/// A new random secret.
fn secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("reel_{}", hex::encode(bytes))
}

fn info(row: &TokenRow) -> TokenInfo {
    TokenInfo {
        name: row.name.clone(),
        roles: row.roles.clone(),
        scopes: row.scopes.clone(),
        created_at_us: row.created_at_us,
        expires_at_us: (row.expires_at_us > 0).then_some(row.expires_at_us),
        created_by: row.created_by.clone(),
    }
}

fn invalid(message: String) -> HttpError {
    HttpError::from(EngineError::InvalidArgument(message))
}

/// Checks a request and makes the row (and the secret) it asks for.
fn new_token(req: &TokenRequest, by: &str) -> Result<(TokenRow, String), String> {
    let name = req.name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return Err(format!(
            "token name {:?}: 1 to 64 of A-Z a-z 0-9 - _ . @",
            req.name
        ));
    }
    if req.roles.is_empty() {
        return Err("a token needs at least one role".into());
    }
    let mut roles = req
        .roles
        .iter()
        .map(|r| r.parse::<Role>())
        .collect::<Result<Vec<_>, _>>()?;
    roles.sort();
    roles.dedup();
    Scope::parse(&req.scopes)?;
    let expires_at_us = match &req.expires {
        None => 0,
        Some(text) => {
            let d = humantime::parse_duration(text)
                .map_err(|e| format!("expires {text:?}: {e} (use e.g. 30d)"))?;
            now_us().saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        }
    };
    let secret = secret();
    let row = TokenRow {
        name: name.to_string(),
        sha256: token_hash(&secret).to_vec(),
        roles: roles.iter().map(|r| r.name().to_string()).collect(),
        scopes: req.scopes.clone(),
        created_at_us: now_us(),
        expires_at_us,
        created_by: by.to_string(),
    };
    Ok((row, secret))
}

async fn list(State(app): State<AppState>) -> Result<Json<Vec<TokenInfo>>, HttpError> {
    Ok(Json(app.engine.tokens().await?.iter().map(info).collect()))
}

/// `POST /api/v1/tokens`: a name already taken is a conflict (revoke first).
async fn create(
    State(app): State<AppState>,
    Extension(who): Extension<Identity>,
    Json(req): Json<TokenRequest>,
) -> Result<Json<NewToken>, HttpError> {
    let (row, secret) = new_token(&req, &who.name).map_err(invalid)?;
    if app
        .engine
        .tokens()
        .await?
        .iter()
        .any(|t| t.name == row.name)
    {
        return Err(HttpError::from(EngineError::FailedPrecondition(format!(
            "a token named {} exists; revoke it first",
            row.name
        ))));
    }
    let detail = format!(
        "token {} roles {} scopes [{}]",
        row.name,
        row.roles.join(","),
        row.scopes.join(" ")
    );
    app.engine
        .put_token(row.clone(), who.audit("token-create", Vec::new(), detail))
        .await?;
    app.access.tokens.reload(&app.engine).await?;
    Ok(Json(NewToken {
        info: info(&row),
        token: secret,
    }))
}

async fn revoke(
    State(app): State<AppState>,
    Extension(who): Extension<Identity>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let audit = who.audit("token-revoke", Vec::new(), format!("token {name}"));
    if !app.engine.revoke_token(name.clone(), audit).await? {
        return Err(HttpError::from(EngineError::InvalidArgument(format!(
            "no token named {name}"
        ))));
    }
    app.access.tokens.reload(&app.engine).await?;
    Ok(Json(serde_json::json!({ "revoked": name })))
}

/// On a catalog without tokens (a new data directory, or a rebuilt
/// catalog): makes the admin token and writes it to `<data_dir>/admin.token`
/// (mode 0600). Returns the file's path when it made one.
pub async fn bootstrap(
    engine: &Engine,
    tokens: &Tokens,
    data_dir: &Path,
) -> anyhow::Result<Option<PathBuf>> {
    let made = if engine.tokens().await?.is_empty() {
        let req = TokenRequest {
            name: BOOTSTRAP_NAME.into(),
            roles: vec![Role::Admin.name().into()],
            scopes: Vec::new(),
            expires: None,
        };
        let (row, secret) = new_token(&req, "reeld").map_err(anyhow::Error::msg)?;
        let path = data_dir.join(BOOTSTRAP_FILE);
        write_secret_file(&path, &secret)?;
        let audit = reel_proto::v1::AuditEntry {
            by: "reeld".into(),
            action: "token-create".into(),
            detail: format!("bootstrap token {} roles admin", row.name),
            ..Default::default()
        };
        engine.put_token(row, audit).await?;
        info!(path = %path.display(), "made the bootstrap admin token (first start); reel reads it from there");
        Some(path)
    } else {
        None
    };
    tokens.reload(engine).await?;
    Ok(made)
}

/// Writes `secret` to a new file only its owner can read.
fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("token.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
