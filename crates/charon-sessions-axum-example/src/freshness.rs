//! The refresh rule: which refresh tokens a session still accepts, and the
//! rotation that goes with it. Pure functions of the session and the clock
//! (unix seconds); the handlers in `routes.rs` load and store the session.
//!
//! Tokens are told apart by their issue time (`iat`), not by an id: every
//! rotation starts a new *generation* at `tokens_fresh_from`, and a token
//! issued before the current generation is stale, with two allowances:
//!
//! * **leeway**: `iat` may be up to `leeway` seconds before
//!   `tokens_fresh_from` (clocks of several instances differ a little);
//! * **grace**: while the last rotation is less than `grace` seconds old, a
//!   token of the previous generation (`iat >= prev_tokens_fresh_from -
//!   leeway`) is accepted too. Two tabs of one browser that refresh with the
//!   same token a moment apart both succeed instead of logging the user out.
//!
//! A rotation inside the grace window keeps `prev_tokens_fresh_from`: a burst
//! of refreshes counts as one change of generation, so the third of three
//! parallel refreshes with one token is not refused because the second moved
//! the previous generation on. Outside the window
//! [`Session::rotate_refresh_token_at`] alone decides.

use std::time::Duration;

use charon_sessions::Session;

/// The refresh rule's parameters.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// The refresh window a rotation grants (capped by `expires_at`).
    pub refresh_ttl: Duration,
    /// Clock-skew allowance on `iat`, in seconds.
    pub leeway_secs: i64,
    /// How long after a rotation the previous generation is still accepted,
    /// in seconds.
    pub grace_secs: i64,
}

impl RefreshPolicy {
    /// Whether a refresh token issued at `iat` may refresh `session` at
    /// `now` (unix seconds).
    pub fn is_fresh(&self, session: &Session, iat: i64, now: i64) -> bool {
        if iat >= session.tokens_fresh_from.saturating_sub(self.leeway_secs) {
            return true;
        }
        self.within_grace(session, now)
            && iat
                >= session
                    .prev_tokens_fresh_from
                    .saturating_sub(self.leeway_secs)
    }

    /// Rotates `session`'s refresh token at `now` (unix seconds): a new
    /// generation starts now and the refresh window is extended. Inside the
    /// grace window the previous generation is kept (see the module docs).
    pub fn rotate(&self, session: &mut Session, now: i64) {
        let keep_previous = self
            .within_grace(session, now)
            .then_some(session.prev_tokens_fresh_from);
        session.rotate_refresh_token_at(now, self.refresh_ttl);
        if let Some(previous) = keep_previous {
            session.prev_tokens_fresh_from = previous;
        }
    }

    fn within_grace(&self, session: &Session, now: i64) -> bool {
        now.saturating_sub(session.tokens_fresh_from) < self.grace_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RefreshPolicy = RefreshPolicy {
        refresh_ttl: Duration::from_secs(3600),
        leeway_secs: 2,
        grace_secs: 5,
    };

    fn login_at(now: i64) -> Session {
        Session::new_login_at("alice", now, Duration::from_secs(3600))
    }

    #[test]
    fn current_generation_and_leeway_are_fresh() {
        let s = login_at(1_000);
        assert!(POLICY.is_fresh(&s, 1_000, 5_000));
        assert!(POLICY.is_fresh(&s, 998, 5_000));
        assert!(!POLICY.is_fresh(&s, 997, 5_000));
    }

    #[test]
    fn previous_generation_only_within_grace() {
        let mut s = login_at(1_000);
        POLICY.rotate(&mut s, 1_100);
        assert_eq!(
            (s.prev_tokens_fresh_from, s.tokens_fresh_from),
            (1_000, 1_100)
        );
        assert!(POLICY.is_fresh(&s, 1_000, 1_104), "4 s after the rotation");
        assert!(!POLICY.is_fresh(&s, 1_000, 1_105), "5 s after: grace over");
        assert!(POLICY.is_fresh(&s, 1_100, 1_105), "the new token still is");
        assert!(!POLICY.is_fresh(&s, 997, 1_101), "two generations old");
    }

    #[test]
    fn a_burst_of_rotations_keeps_the_previous_generation() {
        let mut s = login_at(1_000);
        // Three refreshes with the login token, one after the other, 100 s on.
        for now in [1_100, 1_101, 1_102] {
            assert!(POLICY.is_fresh(&s, 1_000, now), "at {now}");
            POLICY.rotate(&mut s, now);
        }
        assert_eq!(
            (s.prev_tokens_fresh_from, s.tokens_fresh_from),
            (1_000, 1_102)
        );
        assert!(!POLICY.is_fresh(&s, 1_000, 1_107), "grace over");
        // The next rotation, outside the window, moves the generation on.
        POLICY.rotate(&mut s, 1_200);
        assert_eq!(
            (s.prev_tokens_fresh_from, s.tokens_fresh_from),
            (1_102, 1_200)
        );
    }

    #[test]
    fn rotation_extends_the_refresh_window() {
        let mut s = login_at(1_000);
        POLICY.rotate(&mut s, 2_000);
        assert_eq!((s.refreshed_at, s.refresh_expires_at), (2_000, 5_600));
    }
}
