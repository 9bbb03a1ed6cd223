//! The limits a store puts on what it keeps: how large a session may be
//! ([`DEFAULT_MAX_SESSION_SIZE`]) and how many sessions of one type a user
//! may have ([`SessionLimit`]).

use crate::error::StoreError;

/// Largest encoded session both stores accept by default, in bytes (64 KiB).
pub const DEFAULT_MAX_SESSION_SIZE: usize = 64 * 1024;

/// How many sessions of one type one user may have, and what a new
/// session beyond that does (`max_sessions_per_user` of
/// [`RedisStoreConfig`](crate::RedisStoreConfig) and
/// [`LocalStore`](crate::LocalStore)).
///
/// Without a limit, a million logins of one user id make one hash of
/// hundreds of megabytes, whose `get_all` stalls the server for everyone.
/// The limit is checked when a session is *created* (an upsert with lock
/// version 0), atomically with the write: concurrent logins of one user
/// never take it past the limit. Refreshes are never refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionLimit {
    /// No limit.
    Unlimited,
    /// At most this many (at least 1): a new session evicts the session
    /// whose `refresh_expires_at` comes soonest (ties: the smallest session
    /// id). The user stays able to log in; the device idle longest is
    /// logged out. The default, with 100 ([`SessionLimit::DEFAULT`]).
    EvictSoonestExpiring(usize),
    /// At most this many (at least 1): a new session beyond them is
    /// refused with [`StoreError::TooManySessions`], and nothing is written.
    /// The user must log out somewhere first (or wait for a session to
    /// expire).
    Refuse(usize),
}

impl Default for SessionLimit {
    /// [`SessionLimit::DEFAULT`].
    fn default() -> Self {
        SessionLimit::DEFAULT
    }
}

impl SessionLimit {
    /// Most sessions of one type per user by default: room for a person's
    /// devices and browsers, and for the sessions of abandoned ones still
    /// within their refresh window.
    pub const DEFAULT_MAX: usize = 100;

    /// The limit both stores apply by default: at most
    /// [`DEFAULT_MAX`](Self::DEFAULT_MAX) (100) sessions of one type per
    /// user, the soonest-expiring evicted to make room.
    pub const DEFAULT: SessionLimit = SessionLimit::EvictSoonestExpiring(Self::DEFAULT_MAX);

    /// The most sessions allowed, if any.
    pub fn max(self) -> Option<usize> {
        match self {
            SessionLimit::Unlimited => None,
            SessionLimit::EvictSoonestExpiring(n) | SessionLimit::Refuse(n) => Some(n),
        }
    }

    /// [`StoreError::InvalidInput`] for a limit of 0.
    pub(crate) fn check(self) -> Result<(), StoreError> {
        if self.max() == Some(0) {
            return Err(StoreError::InvalidInput(
                "max_sessions_per_user must be at least 1 (or SessionLimit::Unlimited)".to_owned(),
            ));
        }
        Ok(())
    }
}
