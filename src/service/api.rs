//! The user-service's error responses: each failure a handler can meet, as one status and one JSON
//! body. Internal error text is logged here and never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::store::StoreError;
use crate::token::TokenError;

/// A request that cannot be served as asked.
#[derive(Debug)]
pub enum ApiError {
    /// No acceptable bearer token.
    Unauthorized(TokenError),
    /// The token is valid but does not allow this.
    Forbidden,
    /// No such route or no such user.
    NotFound,
    /// The route exists, the method does not.
    MethodNotAllowed,
    /// The body is not a JSON object.
    BadRequest(&'static str),
    /// The body is larger than the service accepts.
    PayloadTooLarge,
    /// A field of the body is missing, mistyped or out of bounds.
    Invalid { field: String, message: &'static str },
    /// The body conflicts with stored data.
    Conflict {
        field: &'static str,
        message: &'static str,
    },
    /// Storage failed.
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UsernameTaken => ApiError::Conflict {
                field: "username",
                message: "Username already taken",
            },
            other => ApiError::Store(other),
        }
    }
}

impl ApiError {
    pub fn invalid(field: &str, message: &'static str) -> Self {
        ApiError::Invalid {
            field: field.to_owned(),
            message,
        }
    }
}

fn error_body(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Unauthorized(error) => {
                let mut response = error_body(StatusCode::UNAUTHORIZED, error.public_message());
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            ApiError::Forbidden => error_body(StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::NotFound => error_body(StatusCode::NOT_FOUND, "Not found"),
            ApiError::MethodNotAllowed => error_body(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
            ApiError::BadRequest(message) => error_body(StatusCode::BAD_REQUEST, message),
            ApiError::PayloadTooLarge => error_body(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
            ApiError::Invalid { field, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": message, "field": field })),
            )
                .into_response(),
            ApiError::Conflict { field, message } => (
                StatusCode::CONFLICT,
                Json(json!({ "error": message, "field": field })),
            )
                .into_response(),
            ApiError::Store(error @ StoreError::Unavailable(_)) => {
                tracing::warn!(error = %error, cause = %source_text(&error), "request failed");
                error_body(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable")
            }
            ApiError::Store(error) => {
                tracing::error!(error = %error, cause = %source_text(&error), "request failed");
                error_body(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            }
        }
    }
}

/// The underlying cause of an error, for logs only.
fn source_text(error: &dyn std::error::Error) -> String {
    error.source().map(ToString::to_string).unwrap_or_default()
}
