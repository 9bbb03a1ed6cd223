//! [`LocalStore`]: an in-memory store with the same semantics as Redis.
//!
//! For tests, demos and single-process services. It keeps the layout of the
//! Redis store in spirit (one map per user and session type, a lock version
//! and an absolute expiry per session) and passes the same behavioural test
//! suite. Values are kept as [`Session`]s: they never leave the process, so
//! they are not signed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::error::StoreError;
use crate::limit::SessionLimit;
use crate::session::Session;
use crate::store::SessionStore;
use crate::stored::{self, Encoding};
use crate::telemetry::{self, Observer, Operation};
use crate::validate;

type Owner = (String, String);

/// Writes between two sweeps of expired sessions of all users.
const SWEEP_EVERY: u64 = 4096;
/// Most sessions one create evicts, as the Redis function.
const MAX_EVICTIONS: usize = 100;

/// An in-memory [`SessionStore`](crate::SessionStore).
///
/// Sessions expire at their `refresh_expires_at` exactly as in Redis (they
/// are never returned from that second on, and are dropped lazily and by a
/// periodic sweep). Sessions larger than the size limit are refused as by
/// [`RedisStore`](crate::RedisStore), measured in the same encoding. Wrap it
/// in an `Arc` to share one store.
///
/// ```
/// # tokio_test_block_on(async {
/// use std::time::Duration;
/// use charon_sessions::{LocalStore, Session, SessionStore};
///
/// let store = LocalStore::new();
/// let mut session = Session::new_login("alice", Duration::from_secs(3600));
/// store.upsert(&mut session).await?;
/// assert_eq!(session.lock_version, 1);
///
/// let mut read = store.get(&session.id, "alice", "full").await?.unwrap();
/// read.rotate_refresh_token(Duration::from_secs(3600));
/// store.upsert(&mut read).await?;
///
/// // The first copy is stale now: optimistic locking refuses it.
/// assert!(store.upsert(&mut session).await.unwrap_err().is_conflict());
/// # Ok::<(), charon_sessions::StoreError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct LocalStore {
    /// Per (user id, session type): session id → session as stored (its
    /// `lock_version` is the stored lock version).
    sessions: Mutex<HashMap<Owner, HashMap<String, Session>>>,
    /// Counts writes, to sweep expired sessions every [`SWEEP_EVERY`].
    writes: AtomicU64,
    /// How sessions are measured: the compact format and the size limit.
    encoding: Encoding,
    /// Most sessions per user and type, and what a create beyond does.
    session_limit: SessionLimit,
    /// Spans and metrics of its operations.
    observer: Observer,
}

impl Default for LocalStore {
    fn default() -> Self {
        LocalStore::new()
    }
}

impl LocalStore {
    /// An empty store refusing sessions that encode to more than
    /// [`DEFAULT_MAX_SESSION_SIZE`](crate::limit::DEFAULT_MAX_SESSION_SIZE) bytes.
    pub fn new() -> LocalStore {
        LocalStore::with_max_session_size(Encoding::default().max_size)
    }

    /// An empty store refusing sessions that encode to more than
    /// `max_session_size` bytes (as
    /// [`RedisStoreConfig::max_session_size`](crate::RedisStoreConfig::max_session_size)).
    pub fn with_max_session_size(max_session_size: usize) -> LocalStore {
        LocalStore {
            sessions: Mutex::default(),
            writes: AtomicU64::new(0),
            encoding: Encoding {
                max_size: max_session_size,
                ..Encoding::default()
            },
            session_limit: SessionLimit::DEFAULT,
            observer: Observer::default(),
        }
    }

    /// How many sessions of one type a user may have, and what a new
    /// session beyond does, as
    /// [`RedisStoreConfig::max_sessions_per_user`](crate::RedisStoreConfig::max_sessions_per_user).
    ///
    /// # Panics
    ///
    /// For a limit of 0 (use [`SessionLimit::Unlimited`]).
    #[must_use]
    pub fn max_sessions_per_user(mut self, limit: SessionLimit) -> LocalStore {
        if let Err(e) = limit.check() {
            panic!("{e}");
        }
        self.session_limit = limit;
        self
    }

    /// Whether the `user_id` field of the store's tracing spans is filled
    /// (default `false`: user ids are personal data in most deployments);
    /// see [`telemetry`](crate::telemetry).
    pub fn record_user_ids(mut self, record: bool) -> LocalStore {
        self.observer = Observer::new(record);
        self
    }

    /// Drops every expired session now. Runs by itself every few thousand
    /// writes; call it to reclaim memory at a time of your choosing.
    pub fn purge_expired(&self) {
        let now = Session::now();
        let mut all = self.lock();
        all.retain(|_, sessions| {
            sessions.retain(|_, s| !s.is_expired_at(now));
            !sessions.is_empty()
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Owner, HashMap<String, Session>>> {
        // No code panics while holding the lock, but a poisoned map is still
        // consistent (every mutation is a single insert or remove).
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn owner(user_id: &str, session_type: &str) -> Owner {
    (user_id.to_owned(), session_type.to_owned())
}

/// The operations themselves; the trait impl wraps them in telemetry.
impl LocalStore {
    async fn get_inner(
        &self,
        session_id: &str,
        user_id: &str,
        session_type: &str,
    ) -> Result<Option<Session>, StoreError> {
        validate::address(session_id, user_id, session_type)?;
        let now = Session::now();
        let all = self.lock();
        Ok(all
            .get(&owner(user_id, session_type))
            .and_then(|sessions| sessions.get(session_id))
            .filter(|s| !s.is_expired_at(now))
            .cloned())
    }

    async fn upsert_inner(&self, session: &mut Session) -> Result<(), StoreError> {
        // Validated, and its size measured, exactly as RedisStore does.
        let Some(encoded) = stored::encode(session, &self.encoding)? else {
            return Ok(());
        };
        let stored = Session {
            lock_version: encoded.lock_version,
            ..session.clone()
        };
        let now = Session::now();
        {
            let mut all = self.lock();
            let sessions = all
                .entry(owner(&session.user_id, &session.session_type))
                .or_default();
            let stored_lock = sessions
                .get(&session.id)
                .filter(|s| !s.is_expired_at(now))
                .map(|s| s.lock_version);
            let lock_ok = match stored_lock {
                None => session.lock_version == 0,
                Some(stored) => session.lock_version != 0 && stored == session.lock_version,
            };
            if !lock_ok {
                if sessions.is_empty() {
                    all.remove(&owner(&session.user_id, &session.session_type));
                }
                return Err(StoreError::Conflict);
            }
            if session.lock_version == 0
                && let Some(max) = self.session_limit.max()
            {
                // Expired sessions do not count, as in Redis.
                sessions.retain(|_, s| !s.is_expired_at(now));
                let excess = (sessions.len() + 1).saturating_sub(max);
                if excess > 0 {
                    if matches!(self.session_limit, SessionLimit::Refuse(_)) {
                        if sessions.is_empty() {
                            all.remove(&owner(&session.user_id, &session.session_type));
                        }
                        return Err(StoreError::TooManySessions { limit: max });
                    }
                    let mut soonest: Vec<(i64, String)> = sessions
                        .iter()
                        .map(|(id, s)| (s.refresh_expires_at, id.clone()))
                        .collect();
                    soonest.sort();
                    // As the Redis function: at most this many per create.
                    let excess = excess.min(MAX_EVICTIONS);
                    for (_, id) in soonest.into_iter().take(excess) {
                        sessions.remove(&id);
                    }
                    telemetry::sessions_evicted(excess as u64);
                }
            }
            if stored.is_expired_at(now) {
                // Like a hash field written with an expiry in the past.
                sessions.remove(&session.id);
                if sessions.is_empty() {
                    all.remove(&owner(&session.user_id, &session.session_type));
                }
            } else {
                sessions.insert(session.id.clone(), stored);
            }
        }
        session.lock_version += 1;
        if self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.purge_expired();
        }
        Ok(())
    }

    async fn delete_inner(
        &self,
        session_id: &str,
        user_id: &str,
        session_type: &str,
    ) -> Result<(), StoreError> {
        validate::address(session_id, user_id, session_type)?;
        let key = owner(user_id, session_type);
        let mut all = self.lock();
        if let Some(sessions) = all.get_mut(&key) {
            sessions.remove(session_id);
            if sessions.is_empty() {
                all.remove(&key);
            }
        }
        Ok(())
    }

    async fn get_all_inner(
        &self,
        user_id: &str,
        session_type: &str,
    ) -> Result<Vec<Session>, StoreError> {
        validate::owner(user_id, session_type)?;
        let now = Session::now();
        let all = self.lock();
        Ok(all
            .get(&owner(user_id, session_type))
            .map(|sessions| {
                sessions
                    .values()
                    .filter(|s| !s.is_expired_at(now))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn delete_all_inner(&self, user_id: &str, session_type: &str) -> Result<(), StoreError> {
        validate::owner(user_id, session_type)?;
        self.lock().remove(&owner(user_id, session_type));
        Ok(())
    }
}

#[async_trait]
impl SessionStore for LocalStore {
    async fn get(
        &self,
        id: &str,
        user_id: &str,
        kind: &str,
    ) -> Result<Option<Session>, StoreError> {
        let work = || self.get_inner(id, user_id, kind);
        self.observer
            .observe(Operation::Get, kind, user_id, work)
            .await
    }

    async fn upsert(&self, session: &mut Session) -> Result<(), StoreError> {
        // Not `observe`: the operation borrows `session` mutably while its
        // type and user id label the span.
        let observation =
            self.observer
                .start(Operation::Upsert, &session.session_type, &session.user_id);
        let result = observation.run(self.upsert_inner(session)).await;
        self.observer
            .finish(observation, result, &session.session_type)
    }

    async fn delete(&self, id: &str, user_id: &str, kind: &str) -> Result<(), StoreError> {
        let work = || self.delete_inner(id, user_id, kind);
        self.observer
            .observe(Operation::Delete, kind, user_id, work)
            .await
    }

    async fn get_all(&self, user_id: &str, kind: &str) -> Result<Vec<Session>, StoreError> {
        let work = || self.get_all_inner(user_id, kind);
        self.observer
            .observe(Operation::GetAll, kind, user_id, work)
            .await
    }

    async fn delete_all(&self, user_id: &str, kind: &str) -> Result<(), StoreError> {
        let work = || self.delete_all_inner(user_id, kind);
        self.observer
            .observe(Operation::DeleteAll, kind, user_id, work)
            .await
    }
}
