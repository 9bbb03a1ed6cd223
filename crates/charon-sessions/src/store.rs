//! The store contract: the [`SessionStore`] trait.
//!
//! Every implementation ([`LocalStore`](crate::LocalStore),
//! [`RedisStore`](crate::RedisStore)) follows the per-method contract below;
//! one behavioural test suite checks each of them against it. Backends
//! convert their own errors into [`StoreError`] once, at their edge.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::session::Session;

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
/// With the `async-trait` crate, as below; then run the behavioural suite
/// of `charon-sessions-testkit` against it (`store_suite!`), which checks
/// this contract on `LocalStore` and every `RedisStore` topology too.
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
    ///   sessions of that type as the store's [`SessionLimit`](crate::SessionLimit) allows either
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
    /// [`SessionLimit::Refuse`](crate::SessionLimit::Refuse) limit (nothing is written);
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
