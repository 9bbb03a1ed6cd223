//! The "typical session" of the performance figures, shared by
//! `benches/client_cpu.rs` and `tests/encoding.rs` so both measure the same
//! record.

use std::time::Duration;

use charon_sessions::Session;
use serde_json::json;

/// A 30-day refresh window.
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The `extra_payload` of a typical session: 200 bytes as compact JSON,
/// `{"auth":"password+totp","device":"Firefox 133 on Linux","geo":{"cc":"DE","lat":52.52,"lon":13.404954},"ip":"203.0.113.77","logins":174,"scopes":["profile","orders:read","orders:write"],"trusted":true}`:
/// strings, an integer, two floats, a boolean, an array and a nested object.
pub fn extra_payload() -> serde_json::Map<String, serde_json::Value> {
    let value = json!({
        "auth": "password+totp",
        "device": "Firefox 133 on Linux",
        "geo": {"cc": "DE", "lat": 52.52, "lon": 13.404954},
        "ip": "203.0.113.77",
        "logins": 174,
        "scopes": ["profile", "orders:read", "orders:write"],
        "trusted": true,
    });
    let serde_json::Value::Object(map) = value else {
        unreachable!("a JSON object literal")
    };
    map
}

/// A typical session of `user_id`, as a login at `now` (unix seconds)
/// creates it: random 22-character session and refresh token ids, type
/// `"full"`, a 30-day refresh window, an absolute end 90 days on, and
/// [`extra_payload`]. Its `lock_version` is 0 (never stored).
pub fn session(user_id: &str, now: i64) -> Session {
    let mut s = Session::new_login_at(user_id, now, REFRESH_TTL);
    s.expires_at = Some(now + 90 * 24 * 3600);
    s.extra_payload = extra_payload();
    s
}
