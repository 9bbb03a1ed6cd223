//! The data set a benchmark target runs on: `users` users with
//! `sessions_per_user` sessions each, seeded through the store, and what
//! the benchmark knows of each session (its current lock version, and for
//! the baseline the prepared `FCALL`). The baseline and the store get data
//! sets of their own, on disjoint user ids ([`BASELINE_USERS`],
//! [`STORE_USERS`]), so that their interleaved rounds never touch each
//! other's hashes.
//!
//! Each operation works on one user, held exclusively for the operation, so
//! no two operations touch the same hash at once: every `get` finds its
//! session, every `upsert` holds the current lock version, every `get_all`
//! finds all of the user's sessions. Anything else is an error worth
//! reporting, not a race of the benchmark's own making.

use std::time::Duration;

use anyhow::Context as _;
use charon_sessions::{RedisStore, Session, SessionStore, UpsertCommand};
use futures_util::StreamExt as _;
use serde_json::json;
use tokio::sync::{Mutex, MutexGuard};

/// Session type of every benchmark session.
pub const SESSION_TYPE: &str = "full";

/// Refresh window of the benchmark's sessions.
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Seeding operations in flight at once.
const SEED_CONCURRENCY: usize = 32;

/// User id prefix of the store's data set: `charon-bench-<n>`.
pub const STORE_USERS: &str = "charon-bench-";

/// User id prefix of the baseline's data set: `charon-bench-b-<n>`.
pub const BASELINE_USERS: &str = "charon-bench-b-";

/// The user id of benchmark user `n` under `prefix` ([`STORE_USERS`] or
/// [`BASELINE_USERS`]).
pub fn user_id(prefix: &str, n: usize) -> String {
    format!("{prefix}{n}")
}

/// A new login of `user` with a typical application payload (device,
/// user agent, address, roles: about 200 bytes of `extra_payload`).
pub fn new_session(user: &str, n: usize) -> Session {
    let mut session = Session::new_login(user, REFRESH_TTL);
    let payload = json!({
        "device": format!("bench device {n}"),
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "ip": "203.0.113.42",
        "roles": ["user", "beta"],
    });
    if let serde_json::Value::Object(map) = payload {
        session.extra_payload = map;
    }
    session.session_type = SESSION_TYPE.to_owned();
    session
}

/// One session as the benchmark last wrote it.
pub struct Slot {
    /// The session, with the lock version the store holds now.
    pub session: Session,
    /// The baseline's prepared `FCALL` of this session, and the lock
    /// version stored now (the baseline writes the same value again and
    /// again, raising only the lock version).
    pub prepared: Option<(UpsertCommand, u64)>,
}

/// One benchmark user and its sessions.
pub struct User {
    /// `charon-bench-<n>` or `charon-bench-b-<n>`.
    pub id: String,
    /// The user's sessions.
    pub slots: Vec<Slot>,
}

/// The users of one target, each behind its own lock.
pub struct DataSet {
    users: Vec<Mutex<User>>,
}

impl DataSet {
    /// Seeds `users` users (ids `<prefix><n>`) with `sessions_per_user`
    /// new sessions each through `store`: for each user `delete_all` (left
    /// over from an earlier run), then one `upsert` per session. With
    /// `prepare`, also builds each session's `FCALL` for the baseline.
    pub async fn seed(
        store: &RedisStore,
        prefix: &str,
        users: usize,
        sessions_per_user: usize,
        prepare: bool,
    ) -> anyhow::Result<DataSet> {
        let seeded: Vec<anyhow::Result<User>> = futures_util::stream::iter(0..users)
            .map(|n| seed_user(store, user_id(prefix, n), sessions_per_user, prepare))
            .buffered(SEED_CONCURRENCY)
            .collect()
            .await;
        let users = seeded
            .into_iter()
            .map(|user| user.map(Mutex::new))
            .collect::<anyhow::Result<_>>()?;
        Ok(DataSet { users })
    }

    /// Locks a random user that no other task holds. There must be more
    /// users than tasks (the benchmark checks), so one is always free.
    pub async fn lock_any(&self, rng: &mut fastrand::Rng) -> MutexGuard<'_, User> {
        let n = self.users.len();
        let start = rng.usize(..n);
        for i in 0..n {
            if let Ok(user) = self.users[(start + i) % n].try_lock() {
                return user;
            }
        }
        self.users[start].lock().await
    }
}

async fn seed_user(
    store: &RedisStore,
    id: String,
    sessions_per_user: usize,
    prepare: bool,
) -> anyhow::Result<User> {
    store
        .delete_all(&id, SESSION_TYPE)
        .await
        .with_context(|| format!("seeding: delete_all of {id}"))?;
    let mut slots = Vec::with_capacity(sessions_per_user);
    for s in 0..sessions_per_user {
        let mut session = new_session(&id, s);
        store
            .upsert(&mut session)
            .await
            .with_context(|| format!("seeding: upsert of a session of {id}"))?;
        let prepared = if prepare {
            let cmd = store
                .upsert_command(&session)?
                .context("a new session is never dead")?;
            Some((cmd, session.lock_version))
        } else {
            None
        };
        slots.push(Slot { session, prepared });
    }
    Ok(User { id, slots })
}
