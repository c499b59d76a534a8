//! How engine errors look to clients: gRPC statuses and HTTP responses.

use axum::http::StatusCode;
use reel_engine::EngineError;
use tonic::Code;

/// The gRPC code for an engine error.
pub fn grpc_code(e: &EngineError) -> Code {
    match e {
        EngineError::InvalidId(_) | EngineError::InvalidArgument(_) => Code::InvalidArgument,
        EngineError::NotFound(_) => Code::NotFound,
        EngineError::FailedPrecondition(_) => Code::FailedPrecondition,
        EngineError::ResourceExhausted(_) => Code::ResourceExhausted,
        EngineError::ShuttingDown | EngineError::Unavailable(_) => Code::Unavailable,
        EngineError::OutOfRange(_) => Code::OutOfRange,
        EngineError::Journal(j) if j.is_disk_full() => Code::ResourceExhausted,
        _ => Code::Internal,
    }
}

pub fn to_status(e: EngineError) -> tonic::Status {
    tonic::Status::new(grpc_code(&e), e.to_string())
}

/// The HTTP status and the API error code for an engine error.
pub fn http_status(e: &EngineError) -> (StatusCode, &'static str) {
    match grpc_code(e) {
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
        Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Code::FailedPrecondition => (StatusCode::CONFLICT, "failed_precondition"),
        Code::ResourceExhausted => (StatusCode::SERVICE_UNAVAILABLE, "resource_exhausted"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Code::OutOfRange => (StatusCode::RANGE_NOT_SATISFIABLE, "out_of_range"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}
