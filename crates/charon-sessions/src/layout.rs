//! Where a session lives in Redis: the user's hash key and the field names.
//!
//! Key `<prefix>.<user_id>.<session_type>`; in it, field `<session_id>` holds
//! the signed session and field `l.<session_id>` its lock version. The
//! prefix and the session type contain no `.`, so the key is unambiguous
//! even when the user id contains dots; session ids contain no `.`, so a
//! session field is never mistaken for a lock field.

/// Prefix of the lock-version fields.
pub const LOCK_FIELD_PREFIX: &str = "l.";

/// The hash holding `user_id`'s sessions of `session_type`.
pub fn hash_key(key_prefix: &str, user_id: &str, session_type: &str) -> String {
    let mut key = String::with_capacity(key_prefix.len() + user_id.len() + session_type.len() + 2);
    key.push_str(key_prefix);
    key.push('.');
    key.push_str(user_id);
    key.push('.');
    key.push_str(session_type);
    key
}

/// The field holding the lock version of `session_id`.
pub fn lock_field(session_id: &str) -> String {
    // Built by hand: `format!` costs several times more on the upsert path.
    let mut field = String::with_capacity(LOCK_FIELD_PREFIX.len() + session_id.len());
    field.push_str(LOCK_FIELD_PREFIX);
    field.push_str(session_id);
    field
}

/// Whether a hash field is a lock-version field (as opposed to a session).
pub fn is_lock_field(field: &[u8]) -> bool {
    field.starts_with(LOCK_FIELD_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_charon() {
        assert_eq!(hash_key("charon_", "42", "full"), "charon_.42.full");
        assert_eq!(hash_key("charon_", "a.b", "oauth2"), "charon_.a.b.oauth2");
        assert_eq!(lock_field("abc"), "l.abc");
        assert!(is_lock_field(b"l.abc"));
        assert!(!is_lock_field(b"abc"));
        assert!(!is_lock_field(b"l-abc"));
    }

    #[test]
    fn dotted_user_ids_do_not_collide() {
        // The prefix and the type have no dots, so the user id is exactly what
        // lies between the first and the last dot: the key can be split back.
        for (user, kind) in [
            ("a.b", "c"),
            ("a", "full"),
            ("a.full", "full"),
            (".", "x"),
            ("l.", "l"),
        ] {
            let key = hash_key("p", user, kind);
            let (rest, parsed_kind) = key.rsplit_once('.').unwrap();
            let (prefix, parsed_user) = rest.split_once('.').unwrap();
            assert_eq!((prefix, parsed_user, parsed_kind), ("p", user, kind));
        }
    }
}
