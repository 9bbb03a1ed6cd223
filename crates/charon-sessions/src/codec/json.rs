//! The JSON object earlier releases stored ([`FORMAT_JSON`](super::FORMAT_JSON)):
//! read, never written, with its own field names, so that no change to
//! [`Session`] changes what it reads.

use serde::Deserialize;
#[cfg(test)]
use serde::Serialize;

use super::compact::UserIdKindName;
use super::format::DecodeError;
use crate::session::{Session, UserIdKind};

/// Decodes a JSON payload (first byte `{`). serde would also accept a
/// positional JSON array for a struct; only the object form was ever
/// written, and only it starts with `{`.
pub(super) fn decode(payload: &[u8]) -> Result<Session, DecodeError> {
    serde_json::from_slice::<JsonRecord>(payload)
        .map(Session::from)
        .map_err(DecodeError::Json)
}

/// A session as the JSON object [`FORMAT_JSON`] of earlier releases, read
/// (never written) with these field names whatever `Session` becomes.
/// Missing fields take `Session`'s defaults; unknown ones are ignored.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
#[serde(default)]
pub(super) struct JsonRecord {
    pub(super) id: String,
    pub(super) user_id: String,
    pub(super) session_type: String,
    pub(super) created_at: i64,
    pub(super) expires_at: Option<i64>,
    pub(super) refresh_expires_at: i64,
    pub(super) refreshed_at: i64,
    pub(super) refresh_token_id: String,
    pub(super) tokens_fresh_from: i64,
    pub(super) prev_tokens_fresh_from: i64,
    pub(super) lock_version: u64,
    pub(super) extra_payload: serde_json::Map<String, serde_json::Value>,
    pub(super) version: u32,
    /// `"integer"`, or left out for a string.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub(super) user_id_kind: Option<UserIdKindName>,
}

impl Default for JsonRecord {
    fn default() -> Self {
        let s = Session::default();
        JsonRecord {
            id: s.id,
            user_id: s.user_id,
            session_type: s.session_type,
            created_at: s.created_at,
            expires_at: s.expires_at,
            refresh_expires_at: s.refresh_expires_at,
            refreshed_at: s.refreshed_at,
            refresh_token_id: s.refresh_token_id,
            tokens_fresh_from: s.tokens_fresh_from,
            prev_tokens_fresh_from: s.prev_tokens_fresh_from,
            lock_version: s.lock_version,
            extra_payload: s.extra_payload,
            version: s.version,
            user_id_kind: None,
        }
    }
}

impl From<JsonRecord> for Session {
    fn from(r: JsonRecord) -> Session {
        Session {
            id: r.id,
            user_id: r.user_id,
            session_type: r.session_type,
            created_at: r.created_at,
            expires_at: r.expires_at,
            refresh_expires_at: r.refresh_expires_at,
            refreshed_at: r.refreshed_at,
            refresh_token_id: r.refresh_token_id,
            tokens_fresh_from: r.tokens_fresh_from,
            prev_tokens_fresh_from: r.prev_tokens_fresh_from,
            lock_version: r.lock_version,
            extra_payload: r.extra_payload,
            version: r.version,
            user_id_kind: r.user_id_kind.map_or(UserIdKind::String, UserIdKind::from),
            ..Session::default()
        }
    }
}
