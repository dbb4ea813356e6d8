//! The `/users` handlers: the seed's profile read, and the writes a profile service needs.
//!
//! Checks run in the seed's order: the route (a non-integer id is not found), then the token,
//! then the rule that a user reaches only their own profile unless they are an admin, then the
//! data.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::AppState;
use super::api::ApiError;
use super::auth::Bearer;
use super::store::User;
use crate::token::Claims;

const USERNAME_MAX: usize = 64;
const EMAIL_MAX: usize = 254;

/// `GET /users/{id}`.
pub async fn get_user(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    Bearer(claims): Bearer,
) -> Result<Response, ApiError> {
    let id = user_id(id)?;
    let claims = claims?;
    authorize(&claims, id)?;

    if let Some(body) = state.cache.get(id) {
        return Ok(json_body(body));
    }
    let ticket = state.cache.ticket();
    let user = state.store.user(id).await?.ok_or(ApiError::NotFound)?;
    let body = Bytes::from(serde_json::to_vec(&user).expect("a user serializes"));
    state.cache.put(id, body.clone(), ticket);
    Ok(json_body(body))
}

fn json_body(body: Bytes) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// `POST /users`: admins create a user from `{"username", "email"}`.
pub async fn create_user(
    State(state): State<AppState>,
    Bearer(claims): Bearer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !claims?.is_admin {
        return Err(ApiError::Forbidden);
    }
    let fields = Fields::parse(&body_bytes(body)?)?;
    let username = fields
        .username
        .ok_or_else(|| ApiError::invalid("username", "username is required"))?;
    let email = fields
        .email
        .ok_or_else(|| ApiError::invalid("email", "email is required"))?;

    let user = state.store.create_user(&username, &email).await?;
    state.cache.invalidate(user.id);
    tracing::info!(user.id = user.id, "user created");
    let location =
        HeaderValue::try_from(format!("/users/{}", user.id)).expect("a path of digits is a header value");
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(user)).into_response())
}

/// `PATCH /users/{id}`: a user changes their own `username` or `email`; an admin anyone's.
pub async fn update_user(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    Bearer(claims): Bearer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<User>, ApiError> {
    let id = user_id(id)?;
    let claims = claims?;
    authorize(&claims, id)?;
    let fields = Fields::parse(&body_bytes(body)?)?;

    let user = if fields.username.is_none() && fields.email.is_none() {
        state.store.user(id).await?
    } else {
        let updated = state
            .store
            .update_user(id, fields.username.as_deref(), fields.email.as_deref())
            .await;
        state.cache.invalidate(id);
        updated?
    };
    let user = user.ok_or(ApiError::NotFound)?;
    tracing::info!(user.id = user.id, "user updated");
    Ok(Json(user))
}

/// The path's id as Flask's `<int:>` converter reads it: ASCII digits only, else not found.
fn user_id(id: Result<Path<String>, PathRejection>) -> Result<i64, ApiError> {
    let Ok(Path(id)) = id else {
        return Err(ApiError::NotFound);
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::NotFound);
    }
    id.parse().map_err(|_| ApiError::NotFound)
}

/// A user reaches their own profile; an admin reaches every profile.
fn authorize(claims: &Claims, id: i64) -> Result<(), ApiError> {
    if claims.user_id == id || claims.is_admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::BadRequest("Request body could not be read"),
    })
}

/// The writable fields of a user, each checked.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fields {
    username: Option<String>,
    email: Option<String>,
}

impl Fields {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|_| ApiError::BadRequest("Request body is not valid JSON"))?;
        let Value::Object(members) = value else {
            return Err(ApiError::BadRequest("Request body must be a JSON object"));
        };

        let mut fields = Fields::default();
        for (name, value) in members {
            match name.as_str() {
                "username" => fields.username = Some(username(value)?),
                "email" => fields.email = Some(email(value)?),
                _ => return Err(ApiError::invalid(&name, "Unknown field")),
            }
        }
        Ok(fields)
    }
}

fn username(value: Value) -> Result<String, ApiError> {
    const RULE: &str = "username must be 1 to 64 characters: letters, digits, '_', '.' or '-'";
    let Value::String(name) = value else {
        return Err(ApiError::invalid("username", RULE));
    };
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if name.is_empty() || name.len() > USERNAME_MAX || !name.bytes().all(allowed) {
        return Err(ApiError::invalid("username", RULE));
    }
    Ok(name)
}

fn email(value: Value) -> Result<String, ApiError> {
    const RULE: &str = "email must be an address like name@example.com, at most 254 characters";
    let Value::String(address) = value else {
        return Err(ApiError::invalid("email", RULE));
    };
    let well_formed = address.len() <= EMAIL_MAX
        && !address.chars().any(|c| c.is_whitespace() || c.is_control())
        && address
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if !well_formed {
        return Err(ApiError::invalid("email", RULE));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_field(result: Result<Fields, ApiError>) -> String {
        match result {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn ids_follow_flasks_int_converter() {
        let id = |s: &str| user_id(Ok(Path(s.to_owned()))).ok();
        assert_eq!(id("7"), Some(7));
        assert_eq!(id("007"), Some(7));
        assert_eq!(id("-1"), None);
        assert_eq!(id("+1"), None);
        assert_eq!(id("1.0"), None);
        assert_eq!(id("abc"), None);
        assert_eq!(id(""), None);
        assert_eq!(id("99999999999999999999"), None);
        assert_eq!(id("٣"), None);
    }

    #[test]
    fn a_user_reaches_only_their_own_profile_unless_admin() {
        let claims = |user_id, is_admin| Claims {
            user_id,
            is_admin,
            exp: 0,
            iat: None,
            nbf: None,
            iss: None,
            aud: None,
        };
        assert!(authorize(&claims(7, false), 7).is_ok());
        assert!(matches!(
            authorize(&claims(7, false), 8),
            Err(ApiError::Forbidden)
        ));
        assert!(authorize(&claims(7, true), 8).is_ok());
    }

    #[test]
    fn fields_accept_both_members_or_either() {
        let both = Fields::parse(br#"{"username":"ada","email":"ada@example.com"}"#).unwrap();
        assert_eq!(both.username.as_deref(), Some("ada"));
        assert_eq!(both.email.as_deref(), Some("ada@example.com"));
        assert_eq!(Fields::parse(b"{}").unwrap(), Fields::default());
    }

    #[test]
    fn fields_name_the_member_that_fails() {
        assert_eq!(invalid_field(Fields::parse(br#"{"username":""}"#)), "username");
        assert_eq!(invalid_field(Fields::parse(br#"{"username":"a b"}"#)), "username");
        assert_eq!(invalid_field(Fields::parse(br#"{"username":7}"#)), "username");
        assert_eq!(invalid_field(Fields::parse(br#"{"username":null}"#)), "username");
        let long = format!(r#"{{"username":"{}"}}"#, "a".repeat(65));
        assert_eq!(invalid_field(Fields::parse(long.as_bytes())), "username");
        assert_eq!(
            invalid_field(Fields::parse(br#"{"email":"no-at-sign"}"#)),
            "email"
        );
        assert_eq!(invalid_field(Fields::parse(br#"{"email":"a@b@c"}"#)), "email");
        assert_eq!(
            invalid_field(Fields::parse(br#"{"email":"@example.com"}"#)),
            "email"
        );
        assert_eq!(
            invalid_field(Fields::parse(br#"{"email":"a @example.com"}"#)),
            "email"
        );
        assert_eq!(invalid_field(Fields::parse(br#"{"id":3}"#)), "id");
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_bad_requests() {
        for body in [&b""[..], b"not json", b"[1]", b"\"x\"", b"{"] {
            assert!(
                matches!(Fields::parse(body), Err(ApiError::BadRequest(_))),
                "{body:?}"
            );
        }
    }
}
