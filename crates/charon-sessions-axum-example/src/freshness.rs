//! The refresh rule: which refresh tokens a session still accepts, and the
//! rotation that goes with it. Pure functions of the session and the clock
//! (unix seconds); the handlers in `routes.rs` load, store and revoke the
//! session.
//!
//! A refresh token carries the session's `refresh_token_id` as its `jti`.
//! Every rotation draws a new id, and the superseded one is kept in the
//! session's `extra_payload` under [`PREV_REFRESH_TOKEN_ID_KEY`] (a
//! string), so the store's `Session` needs no field of its own for it. A
//! presented `jti` is compared in constant time with:
//!
//! * the **current** id: always accepted;
//! * the **previous** id: accepted while the rotation that superseded it is
//!   less than `grace` seconds old (`now - tokens_fresh_from < grace`). Two
//!   tabs of one browser that refresh with the same token a moment apart
//!   both succeed instead of logging the user out.
//!
//! Anything else is a token this service issued and has since superseded
//! (every refresh token is signed by us and names its session), presented
//! again: the refresh-token reuse that the OAuth 2.0 Security Best Current
//! Practice (RFC 9700, section 4.14) says to answer by revoking the session.
//! Whoever holds the newer token is then logged out too, thief or victim,
//! and both have to log in again.
//!
//! A refresh inside the grace window that follows a rotation starts no new
//! generation: it extends the refresh window but keeps the current id (its
//! answer carries the same `jti` as the rotation's) and keeps
//! `tokens_fresh_from`. Every token handed out in a burst of parallel
//! refreshes is therefore current, whichever answer the client keeps, and
//! the window is counted from the rotation itself, so refreshing again and
//! again with the previous token cannot hold it open. Only after a login,
//! when there is no previous id, does a quick refresh rotate at once.

use std::time::Duration;

use charon_sessions::Session;
use subtle::{Choice, ConstantTimeEq as _};

/// Key of the session's `extra_payload` entry holding the refresh token id
/// of the previous generation, as a string: the `jti` the grace window
/// accepts besides the current one.
pub const PREV_REFRESH_TOKEN_ID_KEY: &str = "prev_refresh_token_id";

/// The refresh rule's parameters.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// The refresh window a refresh grants (capped by `expires_at`).
    pub refresh_ttl: Duration,
    /// How long after a rotation the token it superseded is still accepted,
    /// in seconds.
    pub grace_secs: i64,
}

/// What a presented refresh token is to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The current token, or the previous one within the grace window: the
    /// refresh goes ahead.
    Fresh,
    /// A superseded token presented again: the session must be revoked.
    Reused,
}

impl RefreshPolicy {
    /// What a refresh token whose `jti` is `jti` is to `session` at `now`
    /// (unix seconds). Both ids are compared in constant time, so the
    /// answer's timing tells nothing about how much of an id was guessed.
    pub fn check(&self, session: &Session, jti: &str, now: i64) -> Verdict {
        let current = jti.as_bytes().ct_eq(session.refresh_token_id.as_bytes());
        let previous = previous_id(session).map_or(Choice::from(0), |previous| {
            jti.as_bytes().ct_eq(previous.as_bytes())
        });
        if bool::from(
            current | (previous & Choice::from(u8::from(self.within_grace(session, now)))),
        ) {
            Verdict::Fresh
        } else {
            Verdict::Reused
        }
    }

    /// Refreshes `session` at `now` (unix seconds) after [`check`](Self::check)
    /// found its token fresh: the refresh window is extended and, unless
    /// the last rotation's grace window is still open, a new generation
    /// starts (a new refresh token id; the old one is kept as the previous).
    pub fn rotate(&self, session: &mut Session, now: i64) {
        if previous_id(session).is_some() && self.within_grace(session, now) {
            // Part of the burst the last rotation started (see the module docs).
            let id = std::mem::take(&mut session.refresh_token_id);
            let (fresh_from, prev_fresh_from) =
                (session.tokens_fresh_from, session.prev_tokens_fresh_from);
            session.rotate_refresh_token_at(now, self.refresh_ttl);
            session.refresh_token_id = id;
            session.tokens_fresh_from = fresh_from;
            session.prev_tokens_fresh_from = prev_fresh_from;
        } else {
            let superseded = session.refresh_token_id.clone();
            session.rotate_refresh_token_at(now, self.refresh_ttl);
            session.extra_payload.insert(
                PREV_REFRESH_TOKEN_ID_KEY.to_owned(),
                serde_json::Value::String(superseded),
            );
        }
    }

    fn within_grace(&self, session: &Session, now: i64) -> bool {
        now.saturating_sub(session.tokens_fresh_from) < self.grace_secs
    }
}

/// The previous generation's refresh token id, if the session was ever
/// rotated.
fn previous_id(session: &Session) -> Option<&str> {
    session
        .extra_payload
        .get(PREV_REFRESH_TOKEN_ID_KEY)
        .and_then(serde_json::Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RefreshPolicy = RefreshPolicy {
        refresh_ttl: Duration::from_secs(3600),
        grace_secs: 5,
    };

    fn login_at(now: i64) -> Session {
        Session::new_login_at("alice", now, Duration::from_secs(3600))
    }

    #[test]
    fn only_the_current_id_is_fresh_before_any_rotation() {
        let s = login_at(1_000);
        let id = s.refresh_token_id.clone();
        assert_eq!(POLICY.check(&s, &id, 5_000), Verdict::Fresh);
        assert_eq!(POLICY.check(&s, "another id", 1_000), Verdict::Reused);
        assert_eq!(POLICY.check(&s, "", 1_000), Verdict::Reused);
        assert_eq!(
            POLICY.check(&s, &id[..id.len() - 1], 1_000),
            Verdict::Reused
        );
    }

    #[test]
    fn the_previous_id_only_within_grace() {
        let mut s = login_at(1_000);
        let first = s.refresh_token_id.clone();
        POLICY.rotate(&mut s, 1_100);
        let second = s.refresh_token_id.clone();
        assert_ne!(first, second);
        assert_eq!(s.extra_payload[PREV_REFRESH_TOKEN_ID_KEY], first.as_str());
        assert_eq!(POLICY.check(&s, &first, 1_104), Verdict::Fresh, "4 s after");
        assert_eq!(
            POLICY.check(&s, &first, 1_105),
            Verdict::Reused,
            "5 s after"
        );
        assert_eq!(POLICY.check(&s, &second, 9_000), Verdict::Fresh);
    }

    #[test]
    fn a_burst_inside_the_grace_window_is_one_generation() {
        let mut s = login_at(1_000);
        let first = s.refresh_token_id.clone();
        // Three refreshes with the login token, 100 s on, one after the other.
        POLICY.rotate(&mut s, 1_100);
        let second = s.refresh_token_id.clone();
        for now in [1_101, 1_102, 1_104] {
            assert_eq!(POLICY.check(&s, &first, now), Verdict::Fresh, "at {now}");
            POLICY.rotate(&mut s, now);
            assert_eq!(
                s.refresh_token_id, second,
                "the burst's answers share one id"
            );
        }
        assert_eq!((s.tokens_fresh_from, s.refreshed_at), (1_100, 1_104));
        assert_eq!(s.refresh_expires_at, 1_104 + 3600, "the window is extended");
        // The window was not moved by the burst: 5 s after the rotation it is over.
        assert_eq!(POLICY.check(&s, &first, 1_105), Verdict::Reused);
        // The next rotation, outside the window, starts a new generation.
        POLICY.rotate(&mut s, 1_200);
        assert_ne!(s.refresh_token_id, second);
        assert_eq!(s.extra_payload[PREV_REFRESH_TOKEN_ID_KEY], second.as_str());
        assert_eq!(
            (s.prev_tokens_fresh_from, s.tokens_fresh_from),
            (1_100, 1_200)
        );
    }

    #[test]
    fn a_quick_refresh_after_login_rotates() {
        let mut s = login_at(1_000);
        let first = s.refresh_token_id.clone();
        POLICY.rotate(&mut s, 1_001);
        assert_ne!(s.refresh_token_id, first);
        assert_eq!(s.extra_payload[PREV_REFRESH_TOKEN_ID_KEY], first.as_str());
    }

    #[test]
    fn rotation_extends_the_refresh_window() {
        let mut s = login_at(1_000);
        POLICY.rotate(&mut s, 2_000);
        assert_eq!((s.refreshed_at, s.refresh_expires_at), (2_000, 5_600));
    }
}
