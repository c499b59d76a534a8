//! What every handler shares: the server's state, and the two checks an
//! access passes before it happens (the caller's scope, the audit entry).

use std::net::SocketAddr;

use reel_engine::Engine;

use super::HttpError;
use crate::access::{Access, Identity};

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub grpc_listen: SocketAddr,
    pub access: Access,
    /// asciinema streams waiting for their producer to come back.
    pub streams: super::alis::Streams,
    /// Served over TLS (the URLs it gives out say https).
    pub tls: bool,
    /// Screens of recordings the web player computed.
    pub screens: std::sync::Arc<crate::web::Screens>,
}

impl AppState {
    pub fn new(engine: Engine, grpc_listen: SocketAddr, access: Access, tls: bool) -> AppState {
        AppState {
            engine,
            grpc_listen,
            access,
            streams: Default::default(),
            tls,
            screens: Default::default(),
        }
    }
}

/// Refuses (audited) a recording outside the caller's scopes.
pub(crate) async fn within_scope(
    app: &AppState,
    who: &Identity,
    id: reel_proto::RecordingId,
    asked: &str,
) -> Result<reel_engine::RecordingInfo, HttpError> {
    let info = app.engine.recording(id).await?;
    let meta = info.row.metadata.clone().unwrap_or_default();
    if let Err(denied) = who.require_scope(id, &meta) {
        crate::access::audit_refusal(&app.engine, Some(who), &who.client, asked, &denied).await;
        return Err(denied.into());
    }
    Ok(info)
}

/// Writes an access to the audit log before it happens: an act that cannot
/// be recorded is not done.
pub(crate) async fn audited(
    app: &AppState,
    entry: reel_proto::v1::AuditEntry,
) -> Result<(), HttpError> {
    Ok(app.engine.record_audit(entry).await?)
}
