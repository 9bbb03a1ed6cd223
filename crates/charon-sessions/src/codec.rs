//! Session ⇄ bytes: the payload that gets signed and stored.
//!
//! The encoding is a JSON object with the field names of [`Session`]:
//! self-describing, so a record written by a newer version with extra
//! fields still decodes here (unknown fields are ignored, missing ones take
//! their defaults), and the record version travels in its `version` field.
//! The first byte is always `{`, which leaves room to introduce another
//! encoding later, told apart by its first byte.
//!
//! This module neither signs nor logs; it is pure data transformation.

use crate::session::Session;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload does not start with `{`.
    #[error("session payload is not a JSON object")]
    NotAnObject,
    /// The payload is not valid JSON of session fields.
    #[error("session payload does not decode: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encodes a session for storage.
pub fn encode(session: &Session) -> Vec<u8> {
    // A Session is strings, integers and a JSON map: serialisation cannot fail.
    serde_json::to_vec(session).expect("a Session always serialises to JSON")
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
    Ok(serde_json::from_slice(payload)?)
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
