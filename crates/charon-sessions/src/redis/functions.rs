//! The Redis function library: its code, its versioned name, loading it,
//! and calling the upsert function.
//!
//! The library name carries a hash of the crate version and the script
//! text, so that different versions never call each other's code and
//! several deployments can share one server. This module is the only place
//! that runs `FUNCTION LOAD` or `FCALL`.

use std::future::Future;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionLike;
use sha2::{Digest, Sha256};

use super::store_error;
use crate::store::{SessionLimit, StoreError};

const TEMPLATE: &str = include_str!("upsert.lua");

/// The library as registered on the server.
#[derive(Debug)]
pub(crate) struct Library {
    /// `charon_sessions_<hash>`: the library name.
    pub(crate) name: String,
    /// `charon_sessions_upsert_<hash>`: the function `FCALL` calls.
    pub(crate) upsert: String,
    /// The Lua source with the names filled in.
    pub(crate) code: String,
}

pub(crate) static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    let mut hasher = Sha256::new();
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update([0]);
    hasher.update(TEMPLATE.as_bytes());
    let hash = hex::encode(&hasher.finalize()[..8]);
    let name = format!("charon_sessions_{hash}");
    let upsert = format!("charon_sessions_upsert_{hash}");
    let code = TEMPLATE
        .replace("__LIBRARY__", &name)
        .replace("__UPSERT__", &upsert);
    Library { name, upsert, code }
});

/// `FUNCTION LOAD REPLACE <library>`. On a cluster connection redis-rs
/// sends it to every primary and succeeds only when all of them did; on a
/// replica-less single server or a sentinel's primary it runs there (the
/// replicas get it through replication).
pub(crate) async fn load(conn: &mut impl ConnectionLike) -> Result<(), StoreError> {
    load_raw(conn).await.map_err(store_error)
}

/// [`load`] with redis-rs's error.
pub(crate) async fn load_raw(conn: &mut impl ConnectionLike) -> Result<(), redis::RedisError> {
    let _: redis::Value = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&LIBRARY.code)
        .query_async(conn)
        .await?;
    Ok(())
}

/// Loads the library again after the server lost it, once for all the
/// upserts that found it missing at the same time.
///
/// Each upsert takes a [`note`](Self::note) right before it sends its
/// `FCALL`. One that then fails with "function not found" calls
/// [`reload`](Self::reload) with that note. The first one in loads the
/// library. The others, queued behind it, see that a load was attempted
/// after their `FCALL` was sent: when it succeeded they only retry, when it
/// failed they return its error instead of each trying again.
#[derive(Debug, Default)]
pub(crate) struct Reloader {
    /// Loads completed so far.
    loaded: AtomicU64,
    /// Loads attempted so far.
    attempts: AtomicU64,
    /// Held while loading: the last attempt's error, if it failed.
    last: tokio::sync::Mutex<Option<redis::RedisError>>,
}

/// What [`Reloader::note`] saw: loads completed and attempted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Note {
    loaded: u64,
    attempts: u64,
}

impl Reloader {
    /// The loads completed and attempted so far; take it right before
    /// sending an `FCALL`.
    pub(crate) fn note(&self) -> Note {
        Note {
            loaded: self.loaded.load(Ordering::Acquire),
            attempts: self.attempts.load(Ordering::Acquire),
        }
    }

    /// Runs `load` unless a load was attempted since `seen` (the caller's
    /// note from before its `FCALL`); `Ok(true)` when this call loaded it,
    /// `Ok(false)` when another load succeeded since. Waits at most `wait`
    /// for a load under way.
    ///
    /// # Errors
    ///
    /// `load`'s error, or that of the attempt made since `seen`;
    /// [`StoreError::PoolTimeout`] (reporting `wait`) when a load under way
    /// took longer than `wait`.
    pub(crate) async fn reload<F>(
        &self,
        seen: Note,
        load: F,
        wait: Duration,
    ) -> Result<bool, StoreError>
    where
        F: Future<Output = Result<(), redis::RedisError>>,
    {
        let mut last = tokio::time::timeout(wait, self.last.lock())
            .await
            .map_err(|_| StoreError::PoolTimeout(wait))?;
        if self.loaded.load(Ordering::Acquire) != seen.loaded {
            return Ok(false);
        }
        if self.attempts.load(Ordering::Acquire) != seen.attempts
            && let Some(e) = &*last
        {
            return Err(store_error(e.clone()));
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match load.await {
            Ok(()) => {
                self.loaded.fetch_add(1, Ordering::AcqRel);
                *last = None;
                Ok(true)
            }
            Err(e) => {
                *last = Some(e.clone());
                Err(store_error(e))
            }
        }
    }
}

/// `FCALL <upsert> 1 key field lock_field new_lock value exat max policy`
/// (`max` 0: no limit; `policy` `evict` or `refuse`).
pub(crate) fn upsert_cmd(
    key: &str,
    field: &str,
    lock_field: &str,
    new_lock: u64,
    value: &[u8],
    exat: i64,
    limit: SessionLimit,
) -> redis::Cmd {
    let (max, policy) = match limit {
        SessionLimit::EvictSoonestExpiring(max) => (max, "evict"),
        SessionLimit::Refuse(max) => (max, "refuse"),
        SessionLimit::Unlimited => (0, "evict"),
    };
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(&LIBRARY.upsert)
        .arg(1)
        .arg(key)
        .arg(field)
        .arg(lock_field)
        .arg(new_lock)
        .arg(value)
        .arg(exat)
        .arg(max)
        .arg(policy);
    cmd
}

/// What the upsert function's reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upserted {
    /// Written, after evicting this many sessions to make room.
    Written { evicted: u64 },
    /// The stored lock version was not the expected one.
    Conflict,
    /// A create beyond a `refuse` limit.
    Refused,
}

impl Upserted {
    /// Reads the function's integer reply.
    pub(crate) fn from_reply(reply: i64) -> Upserted {
        match reply {
            0 => Upserted::Conflict,
            n if n < 0 => Upserted::Refused,
            n => Upserted::Written {
                evicted: n.unsigned_abs() - 1,
            },
        }
    }
}

/// Runs `cmd` (an [`upsert_cmd`]) and returns its reply; with
/// `wait = Some((replicas, timeout))` sends `WAIT replicas timeout_ms` in the
/// same pipeline, hence the same round trip, to the same node (a cluster
/// connection routes a pipeline by its first keyed command; `WAIT` has no
/// key), and also returns how many replicas acknowledged.
pub(crate) async fn call_upsert(
    conn: &mut impl ConnectionLike,
    cmd: &redis::Cmd,
    wait: Option<(usize, std::time::Duration)>,
) -> Result<(i64, Option<usize>), redis::RedisError> {
    let Some((replicas, timeout)) = wait else {
        return Ok((cmd.query_async(conn).await?, None));
    };
    let mut pipe = redis::pipe();
    pipe.add_command(cmd.clone());
    pipe.cmd("WAIT")
        .arg(replicas)
        .arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
    let (written, acknowledged): (i64, usize) = pipe.query_async(conn).await?;
    Ok((written, Some(acknowledged)))
}

/// Whether the server does not know the function (restart without
/// persistence, `FUNCTION FLUSH`, failover to a fresh replica).
///
/// A failed `FCALL` inside the `WAIT` pipeline comes back as a pipeline
/// error, which has no `detail()` of its own but lists the server errors in
/// its text, so the text is checked too.
pub(crate) fn is_function_not_found(err: &redis::RedisError) -> bool {
    let names = |text: &str| text.to_ascii_lowercase().contains("function not found");
    err.detail().is_some_and(names) || names(&err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_versioned_and_filled_in() {
        assert!(LIBRARY.name.starts_with("charon_sessions_"));
        assert_eq!(LIBRARY.name.len(), "charon_sessions_".len() + 16);
        assert!(
            LIBRARY
                .upsert
                .ends_with(&LIBRARY.name["charon_sessions_".len()..])
        );
        assert!(
            LIBRARY
                .code
                .starts_with(&format!("#!lua name={}\n", LIBRARY.name))
        );
        assert!(
            LIBRARY
                .code
                .contains(&format!("function_name = '{}'", LIBRARY.upsert))
        );
        assert!(!LIBRARY.code.contains("__"));
    }
}
