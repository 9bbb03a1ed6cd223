//! The access-token extractor: a handler that takes an [`Authenticated`]
//! runs only for a request with a valid `Authorization: Bearer <access
//! token>`; otherwise the request is answered 401 `invalid_token`.
//!
//! Access tokens are checked statelessly (signature and expiry, no store
//! read): after a logout they stay valid until they expire, which is why
//! they are short-lived. Refresh tokens are what the store revokes.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tokens::{Claims, TokenKind};

/// The verified claims of the request's access token.
#[derive(Debug)]
pub struct Authenticated(pub Claims);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(ApiError::InvalidToken)?;
        state
            .tokens
            .verify(token.trim(), TokenKind::Access)
            .map(Authenticated)
            .ok_or(ApiError::InvalidToken)
    }
}
