//! The HTTP API: one handler per endpoint, each one store call or a
//! read-check-write cycle.
//!
//! | endpoint | auth | answer |
//! |---|---|---|
//! | `POST /login` `{"user_id"}` | none (demo) | 200 token pair |
//! | `POST /refresh` `{"refresh_token"}` | refresh token | 200 token pair, 401, 409 |
//! | `GET /sessions` | access token | 200 the user's sessions |
//! | `DELETE /sessions/{id}` | access token | 204 |
//! | `POST /logout-all` | access token | 204 |
//! | `GET /metrics` | none | 200 Prometheus text |

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router, middleware};
use charon_sessions::{Session, validate};
use serde::{Deserialize, Serialize};

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::freshness::Verdict;
use crate::state::AppState;
use crate::telemetry::{REFRESH_TOKEN_REUSE_TOTAL, track_requests};
use crate::tokens::{TokenKind, TokenPair};

/// The service's routes, with request metrics on every one.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/refresh", post(refresh))
        .route("/sessions", get(list_sessions))
        .route("/sessions/{id}", delete(delete_session))
        .route("/logout-all", post(logout_all))
        .route("/metrics", get(render_metrics))
        .layer(middleware::from_fn(track_requests))
        .with_state(state)
}

/// Body of `POST /login`.
#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    /// Who logs in. Checking a password (or any credential) is the
    /// application's business and out of scope here: this example trusts it.
    pub user_id: String,
}

/// Body of `POST /refresh`.
#[derive(Deserialize)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

/// One of the user's sessions ("devices") in `GET /sessions`. Times are
/// unix seconds. The refresh token id is never shown.
#[derive(Debug, Serialize)]
pub struct SessionView {
    /// Session id, as `DELETE /sessions/{id}` takes it.
    pub id: String,
    /// When the session was created (the login).
    pub created_at: i64,
    /// When it was last refreshed.
    pub refreshed_at: i64,
    /// When it expires unless refreshed before.
    pub refresh_expires_at: i64,
    /// Its absolute end, if any.
    pub expires_at: Option<i64>,
    /// The store's optimistic-locking counter: one more per login or refresh.
    pub lock_version: u64,
    /// Whether the request's access token belongs to this session.
    pub current: bool,
}

/// Body of `GET /sessions`.
#[derive(Debug, Serialize)]
pub struct SessionList {
    /// The user's sessions of the access token's type, oldest first.
    pub sessions: Vec<SessionView>,
}

/// Creates a session and answers its first token pair.
async fn login(
    State(state): State<AppState>,
    Json(request): Json<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    validate::user_id(&request.user_id)?;
    let now = Session::now();
    let mut session = Session::new_login_at(request.user_id, now, state.policy.refresh_ttl);
    state.store.upsert(&mut session).await?;
    tracing::info!(session_id = %session.id, "login");
    Ok(Json(state.tokens.issue_pair(&session, now)?))
}

/// Verifies the refresh token, checks it against the stored session, rotates
/// and stores the session, and answers a new token pair. A superseded token
/// revokes the session instead (see `freshness.rs`).
async fn refresh(
    State(state): State<AppState>,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let claims = state
        .tokens
        .verify(&request.refresh_token, TokenKind::Refresh)
        .ok_or(ApiError::InvalidToken)?;
    let mut session = state
        .store
        .get(&claims.sid, &claims.sub, &claims.styp)
        .await?
        .ok_or(ApiError::SessionNotFound)?;
    let now = Session::now();
    // `verify` refuses refresh tokens without a jti.
    let jti = claims.jti.as_deref().unwrap_or_default();
    if state.policy.check(&session, jti, now) == Verdict::Reused {
        // Counted and logged before the delete, which may fail: the reuse
        // happened either way. No token or token id in the log.
        metrics::counter!(REFRESH_TOKEN_REUSE_TOTAL).increment(1);
        tracing::warn!(
            session_id = %session.id,
            session_type = %session.session_type,
            "superseded refresh token presented after the grace window \
             (refresh token reuse): revoking the session"
        );
        state
            .store
            .delete(&session.id, &session.user_id, &session.session_type)
            .await?;
        return Err(ApiError::TokenReused);
    }
    state.policy.rotate(&mut session, now);
    if session.is_dead() {
        // Past its absolute end: the store would write nothing.
        return Err(ApiError::SessionNotFound);
    }
    state.store.upsert(&mut session).await?;
    Ok(Json(state.tokens.issue_pair(&session, now)?))
}

/// The user's sessions of the access token's session type.
async fn list_sessions(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<Json<SessionList>, ApiError> {
    let mut sessions: Vec<SessionView> = state
        .store
        .get_all(&claims.sub, &claims.styp)
        .await?
        .into_iter()
        .map(|s| SessionView {
            current: s.id == claims.sid,
            id: s.id,
            created_at: s.created_at,
            refreshed_at: s.refreshed_at,
            refresh_expires_at: s.refresh_expires_at,
            expires_at: s.expires_at,
            lock_version: s.lock_version,
        })
        .collect();
    sessions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(Json(SessionList { sessions }))
}

/// Logs one of the user's sessions out (also one that does not exist).
async fn delete_session(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete(&id, &claims.sub, &claims.styp).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Logs the user out everywhere: all sessions of the access token's type.
async fn logout_all(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<StatusCode, ApiError> {
    state.store.delete_all(&claims.sub, &claims.styp).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every metric of the process, in Prometheus text format.
async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
