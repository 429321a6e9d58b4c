//! The one place where failures become HTTP responses: every layer's error carries an
//! [`ErrorKind`]; this module maps the kind to a status and renders Docker's
//! `{"message": "..."}` (bollard's `ErrorResponse`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_engine::EngineError;
use berth_state::ErrorKind;
use bollard_stubs::models::ErrorResponse;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            status: status_of(kind),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::NotFound, message)
    }
}

/// The status for each class of failure.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotModified => StatusCode::NOT_MODIFIED,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

impl From<berth_volumes::VolumeError> for ApiError {
    fn from(e: berth_volumes::VolumeError) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

impl From<berth_networks::NetworkError> for ApiError {
    fn from(e: berth_networks::NetworkError) -> Self {
        ApiError::new(e.kind(), e.to_string())
    }
}

impl From<berth_state::NameError> for ApiError {
    fn from(e: berth_state::NameError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, message = %self.message, "request refused");
        }
        if self.status == StatusCode::NOT_MODIFIED {
            // 304 carries no body.
            return self.status.into_response();
        }
        (
            self.status,
            Json(ErrorResponse {
                message: self.message,
            }),
        )
            .into_response()
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
