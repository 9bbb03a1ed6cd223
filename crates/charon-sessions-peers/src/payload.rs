//! The application data every store keeps for a session.

use serde_json::{Map, Value, json};

/// The refresh window every store gives a session, in seconds.
pub const REFRESH_TTL_SECONDS: i64 = 600;

/// A ~200-byte application payload (a device description), the same for
/// every session and store: `extra_payload` for charon-sessions, entries of
/// the session data for the peers.
pub fn extra_payload() -> Map<String, Value> {
    let value = json!({
        "device": "Pixel 8 Pro",
        "ip": "203.0.113.42",
        "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
        "roles": ["user"],
        "locale": "en-GB",
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// The fields of a fresh login for `user` at `now` (unix seconds), as the
/// peers store them: those of a charon-sessions `Session` (but its
/// `lock_version` and `version`, which only its store manages) plus the
/// [`extra_payload`] entries.
pub fn login_fields(user: &str, now: i64) -> Map<String, Value> {
    let mut fields = extra_payload();
    fields.insert("user_id".into(), user.into());
    fields.insert("session_type".into(), "full".into());
    fields.insert("created_at".into(), now.into());
    fields.insert("expires_at".into(), Value::Null);
    fields.insert(
        "refresh_expires_at".into(),
        (now + REFRESH_TTL_SECONDS).into(),
    );
    fields.insert("refreshed_at".into(), now.into());
    fields.insert(
        "refresh_token_id".into(),
        charon_sessions::Session::new_id().into(),
    );
    fields.insert("tokens_fresh_from".into(), now.into());
    fields.insert("prev_tokens_fresh_from".into(), now.into());
    fields
}

/// The field updates of a refresh at `now` (unix seconds), as
/// `Session::rotate_refresh_token` makes them, given the session's current
/// `tokens_fresh_from`.
pub fn rotation(tokens_fresh_from: Value, now: i64) -> [(&'static str, Value); 5] {
    [
        ("prev_tokens_fresh_from", tokens_fresh_from),
        ("tokens_fresh_from", now.into()),
        ("refreshed_at", now.into()),
        ("refresh_expires_at", (now + REFRESH_TTL_SECONDS).into()),
        (
            "refresh_token_id",
            charon_sessions::Session::new_id().into(),
        ),
    ]
}
