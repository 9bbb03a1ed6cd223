//! Session ⇄ bytes: the payload that gets signed and stored.
//!
//! The encoding is a JSON object with the field names of [`Session`]
//! (serde_json with `float_roundtrip`, so numbers in `extra_payload` come
//! back bit for bit):
//! self-describing, so a record written by a newer version with extra
//! fields still decodes here (unknown fields are ignored, missing ones take
//! their defaults), and the record version travels in its `version` field.
//! The first byte is always `{`, which leaves room to introduce another
//! encoding later, told apart by its first byte.
//!
//! This module neither signs nor logs; it is pure data transformation.

use std::fmt;

use crate::session::Session;
use crate::store::StoreError;

/// Why a payload could not be decoded. Its `Display` never quotes the
/// payload (serde_json's messages do), because it ends up in logs.
#[derive(Debug)]
pub enum DecodeError {
    /// The payload does not start with `{`.
    NotAnObject,
    /// The payload is not valid JSON of session fields.
    Json(serde_json::Error),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotAnObject => f.write_str("session payload is not a JSON object"),
            DecodeError::Json(e) => write!(
                f,
                "session payload does not decode ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Encodes a session for storage.
pub fn encode(session: &Session) -> Vec<u8> {
    // A Session is strings, integers and a JSON map: serialisation cannot fail.
    serde_json::to_vec(session).expect("a Session always serialises to JSON")
}

/// What an upsert of `session` stores, decided the same way by every store:
/// `session` is validated, a dead session gives `None` (nothing is written),
/// else the session with the lock version it gets and its encoding, at most
/// `max_size` bytes long.
///
/// # Errors
///
/// [`StoreError::InvalidInput`] for an invalid session or one too large.
pub fn prepare_upsert(
    session: &Session,
    max_size: usize,
) -> Result<Option<(Session, Vec<u8>)>, StoreError> {
    session.validate()?;
    if session.is_dead() {
        return Ok(None);
    }
    let mut stored = session.clone();
    stored.lock_version += 1;
    let payload = encode_at_most(&stored, max_size)?;
    Ok(Some((stored, payload)))
}

/// Encodes a session, refusing it when the encoding is longer than
/// `max_size` bytes.
///
/// # Errors
///
/// [`StoreError::InvalidInput`] naming the size and the limit.
pub fn encode_at_most(session: &Session, max_size: usize) -> Result<Vec<u8>, StoreError> {
    let payload = encode(session);
    if payload.len() > max_size {
        return Err(StoreError::InvalidInput(format!(
            "session encodes to {} bytes, more than max_session_size ({max_size} bytes)",
            payload.len()
        )));
    }
    Ok(payload)
}

/// Decodes a stored payload.
///
/// # Errors
///
/// [`DecodeError`] when the bytes are not a JSON object of session fields.
pub fn decode(payload: &[u8]) -> Result<Session, DecodeError> {
    // serde would also accept a positional JSON array for a struct; only the
    // object form is ever written, so anything else is refused up front.
    if payload.first() != Some(&b'{') {
        return Err(DecodeError::NotAnObject);
    }
    serde_json::from_slice(payload).map_err(DecodeError::Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample() -> Session {
        let mut s = Session::new_login_at("user.with.dots", 1_700_000_000, Duration::from_secs(60));
        s.expires_at = Some(1_700_000_600);
        s.lock_version = 3;
        s.extra_payload.insert(
            "device".into(),
            serde_json::json!({"name": "phone", "ip": "::1"}),
        );
        s
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let bytes = encode(&s);
        assert_eq!(bytes[0], b'{');
        assert_eq!(decode(&bytes).unwrap(), s);
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_ones_defaulted() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["added_in_version_8"] = serde_json::json!([1, 2, 3]);
        v.as_object_mut().unwrap().remove("prev_tokens_fresh_from");
        let s = decode(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(s.prev_tokens_fresh_from, 0);
        assert_eq!(s.user_id, "user.with.dots");
    }

    #[test]
    fn decode_errors_never_quote_the_payload() {
        let bad = br#"{"id":"x","lock_version":"SECRET-MARKER","extra_payload":"SECRET-2"}"#;
        let shown = decode(bad).unwrap_err().to_string();
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("line 1"), "{shown}");
    }

    #[test]
    fn size_limit() {
        let s = sample();
        let len = encode(&s).len();
        assert_eq!(encode_at_most(&s, len).unwrap().len(), len);
        let err = encode_at_most(&s, len - 1).unwrap_err().to_string();
        assert!(err.contains("max_session_size"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"\xff\xfe",
            b"{\"lock_version\": -1}",
            b"null",
            b" {}",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
