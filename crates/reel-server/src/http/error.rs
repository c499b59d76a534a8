//! Errors as HTTP answers: an engine error's kind picks the status, a
//! refusal answers as itself; the body is always the API's JSON error.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use reel_api::ApiError;
use reel_engine::EngineError;
use reel_proto::RecordingId;

use crate::access::Denied;
use crate::status::http_status;

pub(crate) fn error_response(status: StatusCode, code: &str, error: String) -> Response {
    (
        status,
        axum::Json(ApiError {
            code: code.into(),
            error,
        }),
    )
        .into_response()
}

/// An engine error or a refusal as an HTTP response.
pub enum HttpError {
    Engine(Box<EngineError>),
    Denied(Denied),
}

impl From<EngineError> for HttpError {
    fn from(e: EngineError) -> Self {
        HttpError::Engine(Box::new(e))
    }
}

impl From<Denied> for HttpError {
    fn from(d: Denied) -> Self {
        HttpError::Denied(d)
    }
}

impl HttpError {
    /// The status it answers with, and what it says.
    pub fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            HttpError::Engine(e) => (http_status(e).0, e.to_string()),
            HttpError::Denied(d @ Denied::Unauthenticated(_)) => {
                (StatusCode::UNAUTHORIZED, d.message().to_string())
            }
            HttpError::Denied(d) => (StatusCode::FORBIDDEN, d.message().to_string()),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        match self {
            HttpError::Engine(e) => {
                let (status, code) = http_status(&e);
                if status.is_server_error() {
                    tracing::error!(error = %e, "request failed");
                }
                error_response(status, code, e.to_string())
            }
            HttpError::Denied(d) => d.into_response(),
        }
    }
}

pub(crate) fn parse_id(text: &str) -> Result<RecordingId, HttpError> {
    text.parse::<RecordingId>()
        .map_err(|e| HttpError::from(EngineError::InvalidId(e)))
}

pub(crate) fn invalid(message: String) -> HttpError {
    HttpError::from(EngineError::InvalidArgument(message))
}
