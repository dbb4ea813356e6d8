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
            ApiError::Store(error) => {
                let (status, message) = match error {
                    StoreError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Service unavailable"),
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"),
                };
                let mut response = error_body(status, message);
                response.extensions_mut().insert(ServerFault(describe(&error)));
                response
            }
        }
    }
}

/// Why a request failed on the service's side. Travels on the response to the request log line
/// (which knows the request id) and is removed before the response is sent.
#[derive(Clone, Debug)]
pub struct ServerFault(pub String);

/// An error and its causes, for logs only.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
