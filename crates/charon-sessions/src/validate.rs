//! The rules of the identifiers and numbers a store accepts: session ids,
//! user ids, session types, key prefixes, times and lock versions.
//!
//! Both stores check them before any I/O ([`Session::validate`](crate::Session::validate)
//! and these functions); an application may check input with them early.
//! A broken rule is [`StoreError::InvalidInput`] naming the field and the
//! rule.

use crate::error::StoreError;

/// Longest session id, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 255;
/// Longest user id, in bytes.
pub const MAX_USER_ID_LEN: usize = 512;
/// Longest session type, in bytes.
pub const MAX_SESSION_TYPE_LEN: usize = 64;
/// Longest key prefix, in bytes.
pub const MAX_KEY_PREFIX_LEN: usize = 64;

/// Latest `refresh_expires_at` a store accepts, in unix seconds (year
/// 4199): Redis keeps expiry times in milliseconds below 2^46 and refuses
/// later ones, so every store refuses them too. New sessions and rotations
/// cap their refresh window here.
pub const MAX_UNIX_TIME: i64 = (1 << 46) / 1000;

/// Largest lock version a store accepts: lock versions are compared inside a
/// Lua function, whose numbers are exact only up to 2^53.
pub const MAX_LOCK_VERSION: u64 = (1 << 53) - 2;

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn validate_token(field: &str, value: &str, max: usize) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > max {
        return Err(StoreError::InvalidInput(format!(
            "{field} must be 1 to {max} bytes long, got {} bytes",
            value.len()
        )));
    }
    if !value.bytes().all(is_token_char) {
        return Err(StoreError::InvalidInput(format!(
            "{field} may contain only A-Z, a-z, 0-9, '_' and '-'"
        )));
    }
    Ok(())
}

/// Checks a session id: `[A-Za-z0-9_-]`, 1–255 bytes.
///
/// # Errors
///
/// [`StoreError::InvalidInput`] naming `session_id` and the rule.
pub fn session_id(session_id: &str) -> Result<(), StoreError> {
    validate_token("session_id", session_id, MAX_SESSION_ID_LEN)
}

/// Checks a session type: `[A-Za-z0-9_-]`, 1–64 bytes.
///
/// # Errors
///
/// [`StoreError::InvalidInput`] naming `session_type` and the rule.
pub fn session_type(session_type: &str) -> Result<(), StoreError> {
    validate_token("session_type", session_type, MAX_SESSION_TYPE_LEN)
}

/// Checks a key prefix: `[A-Za-z0-9_-]` or `:`, 1–64 bytes. It may not
/// contain `.` (which separates the parts of a key) nor `{`/`}` (which would
/// pin every user to one Redis Cluster slot).
///
/// # Errors
///
/// [`StoreError::InvalidInput`] naming `key_prefix` and the rule.
pub fn key_prefix(key_prefix: &str) -> Result<(), StoreError> {
    if key_prefix.is_empty() || key_prefix.len() > MAX_KEY_PREFIX_LEN {
        return Err(StoreError::InvalidInput(format!(
            "key_prefix must be 1 to {MAX_KEY_PREFIX_LEN} bytes long, got {} bytes",
            key_prefix.len()
        )));
    }
    if !key_prefix.bytes().all(|b| is_token_char(b) || b == b':') {
        return Err(StoreError::InvalidInput(
            "key_prefix may contain only A-Z, a-z, 0-9, '_', '-' and ':'".to_owned(),
        ));
    }
    Ok(())
}

/// Checks a user id: non-empty UTF-8, at most 512 bytes. Any character is
/// allowed, dots included: the key stays unambiguous because neither the
/// key prefix nor the session type may contain a dot.
///
/// # Errors
///
/// [`StoreError::InvalidInput`] naming `user_id` and the rule.
pub fn user_id(user_id: &str) -> Result<(), StoreError> {
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN {
        return Err(StoreError::InvalidInput(format!(
            "user_id must be 1 to {MAX_USER_ID_LEN} bytes long, got {} bytes",
            user_id.len()
        )));
    }
    Ok(())
}

/// Validates the three parts that address one session.
pub(crate) fn address(id: &str, user: &str, kind: &str) -> Result<(), StoreError> {
    session_id(id)?;
    user_id(user)?;
    session_type(kind)
}

/// Validates the two parts that address one user's sessions of one type.
pub(crate) fn owner(user: &str, kind: &str) -> Result<(), StoreError> {
    user_id(user)?;
    session_type(kind)
}

/// Whether `text` is a positive integer as Erlang prints one: digits, the
/// first not a zero.
pub(crate) fn is_positive_integer(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_field_and_rule() {
        let err = session_id("a.b").unwrap_err().to_string();
        assert!(err.contains("session_id") && err.contains("A-Z"), "{err}");
        let err = session_id(&"a".repeat(256)).unwrap_err().to_string();
        assert!(err.contains("session_id") && err.contains("255"), "{err}");
        assert!(session_id(&"a".repeat(255)).is_ok());
        let err = user_id("").unwrap_err().to_string();
        assert!(err.contains("user_id"), "{err}");
        assert!(user_id("a.b.c l.x {x} * \n é").is_ok());
        assert!(user_id(&"é".repeat(257)).is_err());
        let err = session_type("full.x").unwrap_err().to_string();
        assert!(err.contains("session_type"), "{err}");
        assert!(session_type(&"t".repeat(65)).is_err());
        assert!(key_prefix("charon_").is_ok());
        assert!(key_prefix("app:sessions").is_ok());
        for bad in ["", "a.b", "{a}", "a b"] {
            let err = key_prefix(bad).unwrap_err().to_string();
            assert!(err.contains("key_prefix"), "{err}");
        }
    }
}
