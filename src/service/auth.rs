//! Authentication for handlers: the `Authorization` header checked against the live key set.
//!
//! The extractor never rejects by itself, so that each handler decides when the outcome counts
//! (after the route's own checks, as in the seed).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::api::ApiError;
use crate::token::{Claims, TokenError};

/// The verified claims of the request's bearer token, or why there are none.
pub struct Bearer(pub Result<Claims, ApiError>);

impl FromRequestParts<AppState> for Bearer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let mut values = parts.headers.get_all(AUTHORIZATION).iter();
        let first = values.next();
        let verified = if values.next().is_some() {
            Err(TokenError::Malformed("more than one Authorization header"))
        } else {
            state
                .verifier
                .verify_header_now(&state.keys.get(), first.map(|v| v.as_bytes()))
        };

        Ok(Bearer(verified.map_err(|error| {
            state.metrics.verification_failed(&error);
            tracing::debug!(token.reason = error.reason(), error = %error, "bearer token refused");
            ApiError::Unauthorized(error)
        })))
    }
}
