//! The store contract: the [`SessionStore`] trait and its error type.
//!
//! Every implementation ([`LocalStore`](crate::LocalStore),
//! [`RedisStore`](crate::RedisStore)) follows the per-method contract below;
//! one behavioural test suite checks each of them against it. Backends
//! convert their own errors into [`StoreError`] once, at their edge.

use std::time::Duration;

use async_trait::async_trait;

use crate::session::Session;

/// Largest encoded session both stores accept by default, in bytes (64 KiB).
pub const DEFAULT_MAX_SESSION_SIZE: usize = 64 * 1024;

/// The session limit both stores apply by default: at most
/// [`DEFAULT_MAX_SESSIONS_PER_USER`] sessions of one type per user, the
/// soonest-expiring evicted to make room.
pub const DEFAULT_SESSION_LIMIT: SessionLimit =
    SessionLimit::EvictSoonestExpiring(DEFAULT_MAX_SESSIONS_PER_USER);

/// Most sessions of one type per user by default: room for a person's
/// devices and browsers, and for the sessions of abandoned ones still
/// within their refresh window.
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 100;

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
    /// logged out. The default, with [`DEFAULT_MAX_SESSIONS_PER_USER`].
    EvictSoonestExpiring(usize),
    /// At most this many (at least 1): a new session beyond them is
    /// refused with [`StoreError::TooManySessions`], and nothing is written.
    /// The user must log out somewhere first (or wait for a session to
    /// expire).
    Refuse(usize),
}

impl SessionLimit {
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

/// A cause kept inside a [`StoreError`]: the backend's own error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a store operation can fail with.
///
/// Match on the predicates ([`is_conflict`](Self::is_conflict), …) rather
/// than on variants where you can: the enum is `#[non_exhaustive]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Optimistic locking lost: the stored lock version is not the one the
    /// caller read (another writer got there first, or the session was
    /// deleted or expired meanwhile). Nothing was written. Re-read and retry,
    /// or treat the refresh as lost.
    #[error(
        "optimistic locking conflict: the session changed, was deleted or expired since it was read"
    )]
    Conflict,
    /// An argument breaks a rule (session id, user id, session type, key
    /// prefix, times, size); the message names the field and the rule.
    /// Nothing was sent to the server.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// No pooled connection became free within the checkout timeout.
    #[error("no Redis connection became free within the checkout timeout of {0:?}")]
    PoolTimeout(Duration),
    /// The server could not be reached, the connection broke, it did not
    /// answer in time, or it is temporarily unable to serve (loading its
    /// data, read-only replica after a failover, primary down). Worth
    /// retrying later. For an upsert the outcome is unknown: the write may
    /// have happened, so re-read before retrying (a blind retry of the same
    /// copy gets [`StoreError::Conflict`] if it did).
    #[error("Redis unavailable")]
    Connection(#[source] BoxError),
    /// The server refused the credentials (`WRONGPASS`, `NOAUTH`) or the
    /// user lacks a right the store needs (`NOPERM`). Not worth retrying
    /// until the configuration or the ACL changes.
    #[error("Redis refused the credentials or the user's rights")]
    Auth(#[source] BoxError),
    /// The server answered with another error.
    #[error("Redis server error")]
    Server(#[source] BoxError),
    /// The store's function library is not loaded on the server and the
    /// store may not load it ([`register_functions(false)`](crate::RedisStoreConfig::register_functions)).
    /// Load it with an admin account (`charon-sessions functions load`).
    #[error(
        "the function library {0} is not loaded on the server; load it with `charon-sessions functions load` (register_functions is off)"
    )]
    FunctionLibraryMissing(String),
    /// The upsert was applied on the primary, but fewer replicas than
    /// [`wait_for_replicas`](crate::RedisStoreConfig::wait_for_replicas)
    /// asks for acknowledged it within its timeout (`WAIT`). The session
    /// *is* stored (and the caller's copy carries the new lock version);
    /// what is missing is the promise that it survives a failover. Nothing
    /// to undo; alert if it persists (a replica is down or lagging).
    #[error(
        "upsert applied on the primary, but only {acknowledged} of the {required} required replicas acknowledged it in time"
    )]
    ReplicationTimeout {
        /// Replicas that acknowledged the write (`WAIT`'s reply).
        acknowledged: usize,
        /// Replicas required.
        required: usize,
    },
    /// A new session would take its user past the store's
    /// [`SessionLimit::Refuse`] limit of sessions of that type. Nothing was
    /// written.
    #[error("the user already has the {limit} sessions of this type the store allows")]
    TooManySessions {
        /// The limit.
        limit: usize,
    },
    /// The server is too old or of an unknown kind.
    #[error("unsupported server: found {found}, but charon-sessions requires {required}")]
    UnsupportedServer {
        /// What the server reported, e.g. `"Redis 7.0.15"`.
        found: String,
        /// What is required, e.g. `"Redis >= 8.0 or Valkey >= 9.0"`.
        required: &'static str,
    },
}

impl StoreError {
    /// Whether this is a lost optimistic-locking race ([`StoreError::Conflict`]).
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict)
    }

    /// Whether the caller passed an invalid argument ([`StoreError::InvalidInput`]).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, StoreError::InvalidInput(_))
    }

    /// Whether the store was unavailable ([`StoreError::PoolTimeout`] or
    /// [`StoreError::Connection`]): the operation may succeed if retried
    /// later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::PoolTimeout(_) | StoreError::Connection(_))
    }

    /// A short, stable name of the error kind, as used in metric labels and
    /// span fields: `conflict`, `invalid_input`, `pool_timeout`,
    /// `connection`, `auth`, `server`, `function_library_missing`,
    /// `replication_timeout`, `unsupported_server`, `too_many_sessions`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Conflict => "conflict",
            StoreError::InvalidInput(_) => "invalid_input",
            StoreError::PoolTimeout(_) => "pool_timeout",
            StoreError::Connection(_) => "connection",
            StoreError::Auth(_) => "auth",
            StoreError::Server(_) => "server",
            StoreError::FunctionLibraryMissing(_) => "function_library_missing",
            StoreError::ReplicationTimeout { .. } => "replication_timeout",
            StoreError::UnsupportedServer { .. } => "unsupported_server",
            StoreError::TooManySessions { .. } => "too_many_sessions",
        }
    }
}

/// A store of server-side sessions, indexed per user and session type.
///
/// The trait is dyn-compatible: `Box<dyn SessionStore>` and
/// `Arc<dyn SessionStore>` work. All times are unix seconds.
///
/// # The contract every implementation keeps
///
/// * A session is addressed by `(session_id, user_id, session_type)`; all of a
///   user's sessions of one type live together.
/// * Arguments are validated before any I/O (see
///   [`Session::validate`]); a bad one is [`StoreError::InvalidInput`].
/// * A session is dropped at its `refresh_expires_at`; from that instant on it
///   is never returned and cannot be updated.
/// * Reads never return a value that fails signature verification, cannot be
///   decoded, has expired, or whose id, user id or type differ from where it
///   was read; such a value is logged (a warning with the key, never the
///   value) and treated as absent.
/// * [`upsert`](Self::upsert) is optimistic locking: exactly one writer wins
///   per lock version, and a stale update never resurrects a deleted or
///   expired session.
///
/// # Implementing a store
///
/// ```
/// use async_trait::async_trait;
/// use charon_sessions::{Session, SessionStore, StoreError};
///
/// /// A store that forgets everything (for illustration only).
/// struct NullStore;
///
/// #[async_trait]
/// impl SessionStore for NullStore {
///     async fn get(&self, _: &str, _: &str, _: &str) -> Result<Option<Session>, StoreError> {
///         Ok(None)
///     }
///     async fn upsert(&self, _: &mut Session) -> Result<(), StoreError> {
///         Err(StoreError::Conflict)
///     }
///     async fn delete(&self, _: &str, _: &str, _: &str) -> Result<(), StoreError> {
///         Ok(())
///     }
///     async fn get_all(&self, _: &str, _: &str) -> Result<Vec<Session>, StoreError> {
///         Ok(Vec::new())
///     }
///     async fn delete_all(&self, _: &str, _: &str) -> Result<(), StoreError> {
///         Ok(())
///     }
/// }
///
/// let store: Box<dyn SessionStore> = Box::new(NullStore);
/// # let _ = store;
/// ```
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The session `session_id` of `user_id`'s sessions of `session_type`.
    ///
    /// `Ok(None)` when it does not exist, has expired (its
    /// `refresh_expires_at` is not in the future), or the stored value is
    /// invalid (bad signature, undecodable, or naming another
    /// id/user/type). The returned session carries the stored `lock_version`,
    /// ready to be passed to [`upsert`](Self::upsert).
    ///
    /// Redis: one `HGET key session_id`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use charon_sessions::{LocalStore, Session, SessionStore};
    ///
    /// let store = LocalStore::new();
    /// let mut session = Session::new_login("alice", Duration::from_secs(3600));
    /// store.upsert(&mut session).await?;
    ///
    /// let read = store.get(&session.id, "alice", "full").await?.expect("stored");
    /// assert_eq!(read.lock_version, 1);
    /// assert!(store.get(&session.id, "bob", "full").await?.is_none());
    /// assert!(store.get("no.dots", "alice", "full").await.unwrap_err().is_invalid_input());
    /// # Ok::<(), charon_sessions::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a bad id, user id or type; connection,
    /// pool and server errors.
    async fn get(
        &self,
        session_id: &str,
        user_id: &str,
        session_type: &str,
    ) -> Result<Option<Session>, StoreError>;

    /// Creates or updates `session`, with optimistic locking.
    ///
    /// * `session.lock_version == 0` creates: it succeeds only if no session
    ///   with this id exists for this user and type.
    /// * Otherwise it updates: it succeeds only if the stored lock version
    ///   equals `session.lock_version`. A session that was deleted or has
    ///   expired is a conflict: a stale update never resurrects it.
    /// * On success the session is stored with `lock_version + 1`, expiring at
    ///   `refresh_expires_at`, and `session.lock_version` is incremented in
    ///   place.
    /// * A dead session (`refresh_expires_at < refreshed_at`) is not stored:
    ///   the call returns `Ok(())` and changes nothing, the lock version
    ///   included.
    /// * A new session (lock version 0) of a user who already has as many
    ///   sessions of that type as the store's [`SessionLimit`] allows either
    ///   evicts the soonest-expiring ones or is refused
    ///   ([`StoreError::TooManySessions`]), atomically with the write.
    ///
    /// Redis: one `FCALL` of the store's function, which checks the lock
    /// (and, for a new session near the limit, counts and evicts with
    /// `HKEYS`, `HEXPIRETIME` and `HDEL`) and runs `HSETEX key EXAT
    /// refresh_expires_at FIELDS 2 session_id value l.session_id lock`
    /// atomically.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use charon_sessions::{LocalStore, Session, SessionStore};
    ///
    /// let store = LocalStore::new();
    /// let ttl = Duration::from_secs(3600);
    /// let mut session = Session::new_login("alice", ttl);
    /// store.upsert(&mut session).await?; // created: lock version 0 -> 1
    ///
    /// let mut tab_a = store.get(&session.id, "alice", "full").await?.unwrap();
    /// let mut tab_b = tab_a.clone();
    /// tab_a.rotate_refresh_token(ttl);
    /// store.upsert(&mut tab_a).await?; // lock version 1 -> 2
    /// tab_b.rotate_refresh_token(ttl);
    /// assert!(store.upsert(&mut tab_b).await.unwrap_err().is_conflict());
    /// assert_eq!(tab_a.lock_version, 2);
    /// # Ok::<(), charon_sessions::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the lock check fails (nothing is
    /// written); [`StoreError::TooManySessions`] for a new session beyond a
    /// [`SessionLimit::Refuse`] limit (nothing is written);
    /// [`StoreError::InvalidInput`] for a bad id, user id, type,
    /// time, lock version or an oversized session (nothing is sent);
    /// connection, pool and server errors. After a
    /// [`StoreError::Connection`] the outcome is unknown (the write may have
    /// happened, the caller's lock version was not bumped): re-read the
    /// session before retrying.
    async fn upsert(&self, session: &mut Session) -> Result<(), StoreError>;

    /// Deletes one session. Deleting a session that does not exist succeeds.
    /// When the last session of a user and type goes, nothing of that user
    /// and type remains.
    ///
    /// Redis: one `HDEL key session_id l.session_id`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use charon_sessions::{LocalStore, Session, SessionStore};
    ///
    /// let store = LocalStore::new();
    /// let mut session = Session::new_login("alice", Duration::from_secs(3600));
    /// store.upsert(&mut session).await?;
    ///
    /// store.delete(&session.id, "alice", "full").await?;
    /// store.delete(&session.id, "alice", "full").await?; // already gone: still Ok
    /// assert!(store.get(&session.id, "alice", "full").await?.is_none());
    /// // A copy read before the delete cannot bring it back.
    /// assert!(store.upsert(&mut session).await.unwrap_err().is_conflict());
    /// # Ok::<(), charon_sessions::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a bad id, user id or type; connection,
    /// pool and server errors.
    async fn delete(
        &self,
        session_id: &str,
        user_id: &str,
        session_type: &str,
    ) -> Result<(), StoreError>;

    /// All valid, unexpired sessions of `user_id` of `session_type`, in no
    /// particular order ("my signed-in devices"). Invalid stored values are
    /// skipped as in [`get`](Self::get), never failing the whole call.
    ///
    /// Redis: one `HGETALL key`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use charon_sessions::{LocalStore, Session, SessionStore};
    ///
    /// let store = LocalStore::new();
    /// for _ in 0..3 {
    ///     store.upsert(&mut Session::new_login("alice", Duration::from_secs(3600))).await?;
    /// }
    /// store.upsert(&mut Session::new_login("bob", Duration::from_secs(3600))).await?;
    ///
    /// assert_eq!(store.get_all("alice", "full").await?.len(), 3);
    /// assert!(store.get_all("alice", "oauth2").await?.is_empty());
    /// # Ok::<(), charon_sessions::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a bad user id or type; connection,
    /// pool and server errors.
    async fn get_all(&self, user_id: &str, session_type: &str) -> Result<Vec<Session>, StoreError>;

    /// Deletes all sessions of `user_id` of `session_type` ("log out
    /// everywhere"); other users and other types are untouched.
    ///
    /// Redis: one `DEL key`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use charon_sessions::{LocalStore, Session, SessionStore};
    ///
    /// let store = LocalStore::new();
    /// for user in ["alice", "alice", "bob"] {
    ///     store.upsert(&mut Session::new_login(user, Duration::from_secs(3600))).await?;
    /// }
    ///
    /// store.delete_all("alice", "full").await?;
    /// assert!(store.get_all("alice", "full").await?.is_empty());
    /// assert_eq!(store.get_all("bob", "full").await?.len(), 1);
    /// # Ok::<(), charon_sessions::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a bad user id or type; connection,
    /// pool and server errors.
    async fn delete_all(&self, user_id: &str, session_type: &str) -> Result<(), StoreError>;
}
