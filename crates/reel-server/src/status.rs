//! How engine errors look to clients: gRPC statuses and HTTP responses,
//! decided by the error's kind alone ([`EngineError::kind`]).

use axum::http::StatusCode;
use reel_engine::{EngineError, ErrorKind};
use tonic::Code;

/// The gRPC code for an engine error.
pub fn grpc_code(e: &EngineError) -> Code {
    match e.kind() {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Conflict => Code::FailedPrecondition,
        ErrorKind::OutOfRange => Code::OutOfRange,
        ErrorKind::Exhausted => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Corrupt => Code::DataLoss,
        ErrorKind::Internal => Code::Internal,
    }
}

pub fn to_status(e: EngineError) -> tonic::Status {
    tonic::Status::new(grpc_code(&e), e.to_string())
}

/// The HTTP status and the API error code for an engine error.
pub fn http_status(e: &EngineError) -> (StatusCode, &'static str) {
    match e.kind() {
        ErrorKind::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorKind::Conflict => (StatusCode::CONFLICT, "failed_precondition"),
        ErrorKind::OutOfRange => (StatusCode::RANGE_NOT_SATISFIABLE, "out_of_range"),
        ErrorKind::Exhausted => (StatusCode::SERVICE_UNAVAILABLE, "resource_exhausted"),
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        ErrorKind::Corrupt => (StatusCode::INTERNAL_SERVER_ERROR, "data_loss"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reel_storage::{Role, StorageError};

    #[test]
    fn a_store_time_out_is_unavailable_on_both_apis() {
        let e = EngineError::Storage(StorageError::Timeout {
            role: Role::Primary,
            op: "list",
            key: "recordings/".into(),
            after: std::time::Duration::from_secs(5),
        });
        assert_eq!(grpc_code(&e), Code::Unavailable);
        assert_eq!(
            http_status(&e),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
    }
}
