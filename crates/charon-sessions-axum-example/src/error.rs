//! What the API answers when a request fails: a status and a JSON body
//! `{"error": CODE, "message": TEXT}`. Store failures are logged here, once;
//! the client gets a generic message that never carries a secret.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use charon_sessions::StoreError;
use serde_json::json;

/// Every way a request can fail.
#[derive(Debug)]
pub enum ApiError {
    /// 401 `invalid_token`: missing, malformed, wrongly signed or expired
    /// token, or a token of the wrong kind.
    InvalidToken,
    /// 401 `token_reused`: a refresh token the session has superseded (not
    /// its current one, nor its previous one within the grace window),
    /// presented again: it may have been stolen, so the session was revoked.
    TokenReused,
    /// 401 `session_not_found`: the session was logged out or has expired.
    SessionNotFound,
    /// 409 `conflict`: a concurrent refresh of the same session won the
    /// optimistic-locking race.
    Conflict,
    /// 400 `invalid_input`: an id breaks the store's rules (the message
    /// names the field and the rule).
    InvalidInput(String),
    /// 503 `unavailable`: the store could not be reached in time.
    Unavailable,
    /// 500 `internal`: anything else (details are in the service's log).
    Internal,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &str) {
        match self {
            ApiError::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the token is missing, malformed, expired or not of the right kind",
            ),
            ApiError::TokenReused => (
                StatusCode::UNAUTHORIZED,
                "token_reused",
                "this refresh token was superseded and used again, so it may have been stolen: \
                 the session is logged out; log in again",
            ),
            ApiError::SessionNotFound => (
                StatusCode::UNAUTHORIZED,
                "session_not_found",
                "the session was logged out or has expired; log in again",
            ),
            ApiError::Conflict => (
                StatusCode::CONFLICT,
                "conflict",
                "a concurrent refresh of this session won; use the tokens it returned",
            ),
            ApiError::InvalidInput(message) => {
                (StatusCode::BAD_REQUEST, "invalid_input", message.as_str())
            }
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the session store is unavailable; retry later",
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        (status, Json(json!({ "error": code, "message": message }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Conflict => ApiError::Conflict,
            StoreError::InvalidInput(message) => ApiError::InvalidInput(message),
            // The store's errors never carry a secret; their sources (the
            // Redis client's errors) are logged for the operator only.
            err if err.is_unavailable() => {
                tracing::warn!(error = %chain(&err), "session store unavailable");
                ApiError::Unavailable
            }
            err => {
                tracing::error!(error = %chain(&err), "session store failed");
                ApiError::Internal
            }
        }
    }
}

impl From<jsonwebtoken::errors::Error> for ApiError {
    fn from(err: jsonwebtoken::errors::Error) -> ApiError {
        tracing::error!(error = %err, "cannot sign a token");
        ApiError::Internal
    }
}

/// `err` and its sources, joined by `": "`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
