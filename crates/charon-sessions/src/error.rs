//! [`StoreError`], the one error type of every store operation, and
//! [`BoxError`], the backend error some of its variants carry.

use std::time::Duration;

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
    /// [`SessionLimit::Refuse`](crate::SessionLimit::Refuse) limit of sessions of that type. Nothing was
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
