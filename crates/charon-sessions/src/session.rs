//! The session record: its fields, how a login creates one and a refresh
//! rotates it, and the clock and ids sessions use. It knows nothing of
//! storage: both stores call [`Session::validate`] (the rules of
//! [`validate`](crate::validate)) before they touch any data.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::Arc;

use crate::error::StoreError;
use crate::etf::Term;
use crate::validate::{self, MAX_LOCK_VERSION, MAX_UNIX_TIME};

/// One server-side login session (Charon's session record, version 7).
///
/// All times are **unix seconds**. The store manages
/// [`lock_version`](Self::lock_version); every other field is the
/// application's. The caller keeps `refresh_expires_at <= expires_at` when
/// `expires_at` is finite.
///
/// ```
/// use std::time::Duration;
/// use charon_sessions::Session;
///
/// let session = Session::new_login("user-42", Duration::from_secs(30 * 24 * 3600));
/// assert_eq!(session.session_type, "full");
/// assert_eq!(session.lock_version, 0);
/// assert_eq!(session.refresh_expires_at, session.created_at + 30 * 24 * 3600);
/// ```
///
/// The struct may gain fields in a minor release (`#[non_exhaustive]`):
/// build one with [`new_login`](Self::new_login) (or its variants) or
/// [`Session::default`], then set the fields you need.
///
/// `Debug` output leaves out the refresh token id and the contents of
/// `extra_payload` (it shows their field names only), so a session can be
/// logged with `?session` without leaking a credential.
///
/// Two sessions are equal when their fields are; the Erlang terms a session
/// read in Charon's format keeps (so that writing it back changes nothing
/// the application did not change) are not compared.
#[derive(Clone)]
#[non_exhaustive]
pub struct Session {
    /// Session id: unique, `[A-Za-z0-9_-]`, 1–255 bytes.
    pub id: String,
    /// Owner of the session: any non-empty UTF-8 up to 512 bytes (dots allowed).
    pub user_id: String,
    /// Kind of session, e.g. `"full"` (default) or `"oauth2"`:
    /// `[A-Za-z0-9_-]`, 1–64 bytes.
    pub session_type: String,
    /// When the session was created, unix seconds.
    pub created_at: i64,
    /// Absolute end of the session, unix seconds; `None` means no absolute end.
    pub expires_at: Option<i64>,
    /// End of the refresh window, unix seconds. This is the storage TTL: the
    /// store drops the session at this instant.
    pub refresh_expires_at: i64,
    /// When the session was last refreshed (or created), unix seconds.
    pub refreshed_at: i64,
    /// Id of the currently valid refresh token.
    pub refresh_token_id: String,
    /// Tokens issued before this instant (unix seconds) are stale.
    pub tokens_fresh_from: i64,
    /// The previous `tokens_fresh_from`, kept for a grace window after a
    /// refresh-token rotation (parallel requests of one client).
    pub prev_tokens_fresh_from: i64,
    /// Optimistic-locking counter, managed by the store: 0 for a session
    /// that was never stored; bumped by one on every successful upsert.
    pub lock_version: u64,
    /// Application data stored with the session.
    pub extra_payload: serde_json::Map<String, serde_json::Value>,
    /// Record version, [`Session::VERSION`] (7).
    pub version: u32,
    /// Whether `user_id` is an integer in Charon's payload format (Charon
    /// allows positive integers or binaries). Every format stores it: in
    /// [`PayloadFormat::Charon`](crate::PayloadFormat::Charon) as the type
    /// of the user id, in the compact record as slot 13 (left out when
    /// [`UserIdKind::String`]). A store given `user_id` `"42"`
    /// reads and writes the same key (`<prefix>.42.<type>`) either way.
    pub user_id_kind: UserIdKind,
    /// The Erlang terms of `extra_payload` as Charon stored them, kept when
    /// a session is read in Charon's format so that writing it back keeps
    /// every value the application did not change, exactly (see
    /// [`codec`](crate::codec)). Empty otherwise; never compared, shown or
    /// stored in the compact format.
    pub(crate) charon_terms: CharonTerms,
}

/// How a user id is typed in Charon's payload format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UserIdKind {
    /// A binary (an Elixir string): any user id.
    #[default]
    String,
    /// A positive integer, as Charon's type (`pos_integer`) has it, such as
    /// an Ecto primary key: `user_id` holds its decimal digits (`"42"`; no
    /// sign, no leading zeros, not `"0"`). [`Session::validate`] refuses
    /// others.
    Integer,
}

impl UserIdKind {
    /// Whether this is [`UserIdKind::String`] (the default, which the compact
    /// record leaves out).
    pub fn is_string(&self) -> bool {
        *self == UserIdKind::String
    }
}

/// The Erlang terms of a session read in Charon's format, kept so that
/// writing it back changes nothing the application did not change (see
/// [`codec`](crate::codec)). Empty for sessions created in Rust or read in
/// another format. Cheap to clone. `Debug` shows only whether terms are
/// kept, never their values.
#[derive(Clone, Default)]
pub(crate) struct CharonTerms {
    /// `extra_payload` as Charon stored it: a map.
    pub(crate) extra_payload: Option<Arc<Term>>,
}

impl CharonTerms {
    /// Whether no terms are kept (the session was not read in Charon's
    /// format).
    pub(crate) fn is_empty(&self) -> bool {
        self.extra_payload.is_none()
    }
}

impl fmt::Debug for CharonTerms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CharonTerms")
            .field("kept", &!self.is_empty())
            .finish()
    }
}

impl PartialEq for Session {
    fn eq(&self, other: &Session) -> bool {
        // Every field but `charon_terms`, whose content `extra_payload`
        // already shows.
        self.id == other.id
            && self.user_id == other.user_id
            && self.session_type == other.session_type
            && self.created_at == other.created_at
            && self.expires_at == other.expires_at
            && self.refresh_expires_at == other.refresh_expires_at
            && self.refreshed_at == other.refreshed_at
            && self.refresh_token_id == other.refresh_token_id
            && self.tokens_fresh_from == other.tokens_fresh_from
            && self.prev_tokens_fresh_from == other.prev_tokens_fresh_from
            && self.lock_version == other.lock_version
            && self.extra_payload == other.extra_payload
            && self.version == other.version
            && self.user_id_kind == other.user_id_kind
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("session_type", &self.session_type)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("refreshed_at", &self.refreshed_at)
            .field("refresh_token_id", &"<redacted>")
            .field("tokens_fresh_from", &self.tokens_fresh_from)
            .field("prev_tokens_fresh_from", &self.prev_tokens_fresh_from)
            .field("lock_version", &self.lock_version)
            .field(
                "extra_payload",
                &self.extra_payload.keys().collect::<Vec<_>>(),
            )
            .field("version", &self.version)
            .field("user_id_kind", &self.user_id_kind)
            .finish()
    }
}

impl Default for Session {
    fn default() -> Self {
        Session {
            id: String::new(),
            user_id: String::new(),
            session_type: Session::DEFAULT_TYPE.to_owned(),
            created_at: 0,
            expires_at: None,
            refresh_expires_at: 0,
            refreshed_at: 0,
            refresh_token_id: String::new(),
            tokens_fresh_from: 0,
            prev_tokens_fresh_from: 0,
            lock_version: 0,
            extra_payload: serde_json::Map::new(),
            version: Session::VERSION,
            user_id_kind: UserIdKind::String,
            charon_terms: CharonTerms::default(),
        }
    }
}

impl Session {
    /// The record version this crate writes (Charon's session version 7).
    pub const VERSION: u32 = 7;

    /// The default [`session_type`](Self::session_type).
    pub const DEFAULT_TYPE: &'static str = "full";

    /// The current time in unix seconds, as sessions count time.
    pub fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    /// A new random id, as sessions use for their id and refresh token id:
    /// 128 random bits from the operating system as url-safe base64 without
    /// padding (22 characters).
    ///
    /// # Panics
    ///
    /// When the operating system's random source fails.
    pub fn new_id() -> String {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A new session of type `"full"` for a login happening now.
    ///
    /// Fills a random session id and refresh token id (128 bits each,
    /// url-safe base64 without padding), sets `created_at`, `refreshed_at`
    /// and `tokens_fresh_from` to now and `refresh_expires_at` to now plus
    /// `refresh_ttl` (whole seconds, capped at [`MAX_UNIX_TIME`]).
    /// `expires_at` stays `None`; set it (and
    /// `session_type`, `extra_payload`) on the returned value as needed.
    pub fn new_login(user_id: impl Into<String>, refresh_ttl: Duration) -> Session {
        Self::new_login_at(user_id, Session::now(), refresh_ttl)
    }

    /// Like [`new_login`](Self::new_login) for a user whose id is an integer
    /// in Charon ([`UserIdKind::Integer`]), as an Elixir service with
    /// integer primary keys expects it: `user_id` holds its decimal digits.
    /// Charon's user ids are positive: an upsert of a session made with 0
    /// or a negative `user_id` fails with [`StoreError::InvalidInput`]
    /// ([`validate`](Self::validate)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use charon_sessions::{Session, UserIdKind};
    ///
    /// let session = Session::new_login_integer(42, Duration::from_secs(3600));
    /// assert_eq!((session.user_id.as_str(), session.user_id_kind), ("42", UserIdKind::Integer));
    /// ```
    pub fn new_login_integer(user_id: i64, refresh_ttl: Duration) -> Session {
        Session {
            user_id_kind: UserIdKind::Integer,
            ..Self::new_login(user_id.to_string(), refresh_ttl)
        }
    }

    /// Like [`new_login`](Self::new_login) with an explicit `now` (unix seconds).
    pub fn new_login_at(user_id: impl Into<String>, now: i64, refresh_ttl: Duration) -> Session {
        Session {
            id: Session::new_id(),
            user_id: user_id.into(),
            created_at: now,
            refresh_expires_at: until(now, refresh_ttl),
            refreshed_at: now,
            refresh_token_id: Session::new_id(),
            tokens_fresh_from: now,
            prev_tokens_fresh_from: now,
            ..Session::default()
        }
    }

    /// Rotates the refresh token as a refresh does, now.
    ///
    /// Sets a new random `refresh_token_id`, moves `tokens_fresh_from` to
    /// `prev_tokens_fresh_from` and sets it and `refreshed_at` to now, and
    /// extends `refresh_expires_at` to now plus `refresh_ttl`, capped at
    /// `expires_at` (and [`MAX_UNIX_TIME`]). Store the result with
    /// [`SessionStore::upsert`](crate::SessionStore::upsert).
    pub fn rotate_refresh_token(&mut self, refresh_ttl: Duration) {
        self.rotate_refresh_token_at(Session::now(), refresh_ttl)
    }

    /// Like [`rotate_refresh_token`](Self::rotate_refresh_token) with an
    /// explicit `now` (unix seconds).
    pub fn rotate_refresh_token_at(&mut self, now: i64, refresh_ttl: Duration) {
        self.refresh_token_id = Session::new_id();
        self.prev_tokens_fresh_from = self.tokens_fresh_from;
        self.tokens_fresh_from = now;
        self.refreshed_at = now;
        let until = until(now, refresh_ttl);
        self.refresh_expires_at = match self.expires_at {
            Some(end) => until.min(end),
            None => until,
        };
    }

    /// Whether the refresh window ended before the last refresh
    /// (`refresh_expires_at < refreshed_at`): such a session is dead and an
    /// upsert stores nothing.
    pub fn is_dead(&self) -> bool {
        self.refresh_expires_at < self.refreshed_at
    }

    /// Whether the session's refresh window is over at `now` (unix seconds):
    /// `refresh_expires_at <= now`, the instant the store drops it.
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.refresh_expires_at <= now
    }

    /// Checks the fields a store relies on: session id, user id and session
    /// type (see [`validate`](crate::validate)), a user id of
    /// [`UserIdKind::Integer`] that is a positive integer in decimal digits,
    /// a `refresh_expires_at` between 1 and [`MAX_UNIX_TIME`], and a
    /// `lock_version` of at most [`MAX_LOCK_VERSION`].
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] naming the field and the rule.
    pub fn validate(&self) -> Result<(), StoreError> {
        validate::session_id(&self.id)?;
        validate::user_id(&self.user_id)?;
        if self.user_id_kind == UserIdKind::Integer && !validate::is_positive_integer(&self.user_id)
        {
            return Err(StoreError::InvalidInput(
                "user_id must be a positive integer in decimal digits (no sign, no leading zeros; \
                 Charon's pos_integer) when user_id_kind is Integer"
                    .to_owned(),
            ));
        }
        validate::session_type(&self.session_type)?;
        if !(1..=MAX_UNIX_TIME).contains(&self.refresh_expires_at) {
            return Err(StoreError::InvalidInput(format!(
                "refresh_expires_at must be a unix time in seconds from 1 to {MAX_UNIX_TIME}, got {}",
                self.refresh_expires_at
            )));
        }
        if self.lock_version > MAX_LOCK_VERSION {
            return Err(StoreError::InvalidInput(format!(
                "lock_version must be at most {MAX_LOCK_VERSION}, got {}",
                self.lock_version
            )));
        }
        Ok(())
    }
}

/// `now` plus `ttl` in whole seconds, capped at [`MAX_UNIX_TIME`].
fn until(now: i64, ttl: Duration) -> i64 {
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    now.saturating_add(ttl).min(MAX_UNIX_TIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_version_7_full_unlocked() {
        let s = Session::default();
        assert_eq!(s.session_type, "full");
        assert_eq!(s.version, 7);
        assert_eq!(s.lock_version, 0);
        assert_eq!(s.expires_at, None);
        assert!(s.id.is_empty() && s.user_id.is_empty() && s.extra_payload.is_empty());
    }

    #[test]
    fn new_login_fills_ids_and_times() {
        let s = Session::new_login_at("u", 1_000, Duration::from_secs(60));
        assert_eq!(s.id.len(), 22);
        assert_eq!(s.refresh_token_id.len(), 22);
        assert_ne!(s.id, s.refresh_token_id);
        validate::session_id(&s.id).unwrap();
        assert_eq!(
            (s.created_at, s.refreshed_at, s.refresh_expires_at),
            (1_000, 1_000, 1_060)
        );
        s.validate().unwrap();
    }

    #[test]
    fn rotation_moves_freshness_and_caps_at_expires_at() {
        let mut s = Session::new_login_at("u", 1_000, Duration::from_secs(60));
        s.expires_at = Some(1_100);
        let old_token = s.refresh_token_id.clone();
        s.rotate_refresh_token_at(1_050, Duration::from_secs(60));
        assert_ne!(s.refresh_token_id, old_token);
        assert_eq!(s.prev_tokens_fresh_from, 1_000);
        assert_eq!(s.tokens_fresh_from, 1_050);
        assert_eq!(s.refreshed_at, 1_050);
        assert_eq!(s.refresh_expires_at, 1_100);
    }

    #[test]
    fn session_validation_checks_times_and_lock() {
        let mut s = Session::new_login_at("u", 1_000, Duration::from_secs(60));
        s.refresh_expires_at = 0;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("refresh_expires_at")
        );
        s.refresh_expires_at = MAX_UNIX_TIME + 1;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("refresh_expires_at")
        );
        s.refresh_expires_at = MAX_UNIX_TIME;
        s.validate().unwrap();
        s.lock_version = MAX_LOCK_VERSION + 1;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("lock_version")
        );
    }

    #[test]
    fn huge_ttls_are_capped() {
        let mut s = Session::new_login_at("u", 1_000, Duration::MAX);
        assert_eq!(s.refresh_expires_at, MAX_UNIX_TIME);
        s.validate().unwrap();
        s.rotate_refresh_token_at(2_000, Duration::MAX);
        assert_eq!(s.refresh_expires_at, MAX_UNIX_TIME);
    }

    #[test]
    fn debug_hides_refresh_token_and_payload_values() {
        let mut s = Session::new_login_at("u", 1_000, Duration::from_secs(60));
        s.extra_payload
            .insert("ip".into(), serde_json::json!("SECRET-VALUE"));
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains(&s.refresh_token_id), "{shown}");
        assert!(!shown.contains("SECRET-VALUE"), "{shown}");
        assert!(shown.contains(&s.id) && shown.contains("\"ip\""), "{shown}");
    }

    #[test]
    fn integer_user_ids_are_positive_decimal_integers() {
        for good in ["1", "42", "123456789012345678901234567890"] {
            assert!(validate::is_positive_integer(good), "{good}");
        }
        for bad in ["", "0", "-7", "-", "+1", "01", "-0", "1.0", "4 2", "x", "١"] {
            assert!(!validate::is_positive_integer(bad), "{bad}");
        }
        let mut s = Session::new_login_integer(42, Duration::from_secs(60));
        s.validate().unwrap();
        s.user_id = "alice".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("user_id") && err.contains("Integer"), "{err}");
        s.user_id_kind = UserIdKind::String;
        s.validate().unwrap();
        for not_positive in [0, -7] {
            let err = Session::new_login_integer(not_positive, Duration::from_secs(60))
                .validate()
                .unwrap_err();
            assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
            assert!(err.to_string().contains("positive"), "{err}");
        }
    }

    /// Equality compares every field but the kept Erlang terms: a session
    /// read in Charon's format (terms kept) equals the same fields without
    /// them; the user id kind is compared.
    #[test]
    fn equality_ignores_kept_charon_terms_but_not_the_user_id_kind() {
        let mut s = Session::new_login_at("42", 1_000, Duration::from_secs(60));
        s.extra_payload
            .insert("role".into(), serde_json::json!("admin"));
        let payload =
            crate::codec::encode_as(&s, crate::PayloadFormat::Charon, crate::MapKeys::Atoms)
                .unwrap();
        let read = crate::codec::decode(&payload).unwrap();
        assert!(!read.charon_terms.is_empty() && s.charon_terms.is_empty());
        assert_eq!(read, s);
        let mut integer = s.clone();
        integer.user_id_kind = UserIdKind::Integer;
        assert_ne!(s, integer);
    }

    #[test]
    fn dead_and_expired() {
        let mut s = Session::new_login_at("u", 1_000, Duration::from_secs(60));
        assert!(!s.is_dead());
        assert!(!s.is_expired_at(1_059));
        assert!(s.is_expired_at(1_060));
        s.refresh_expires_at = 999;
        assert!(s.is_dead());
    }
}
