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

use super::error::store_error;
use super::reply::{field, text};
use crate::error::StoreError;
use crate::limit::SessionLimit;

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

/// Prefix of every library name of this store, whatever its version.
const NAME_PREFIX: &str = "charon_sessions_";

/// The version hash of `name` when it is a library name of this store
/// (`charon_sessions_` and 16 lowercase hex digits), of any version.
/// Charon's own `charon_redis_store_<hash>` and the functions'
/// `charon_sessions_upsert_<hash>` are not.
pub(crate) fn library_hash(name: &str) -> Option<&str> {
    let hash = name.strip_prefix(NAME_PREFIX)?;
    (hash.len() == 16
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hash)
}

/// Whether a library on the server, given its name and its functions'
/// names, is this store's library of another version: named like this
/// store's, not the current one, and every function it registers named
/// `charon_sessions_<…>_<its hash>` as this store's are (so another
/// application's library that merely looks alike is left alone).
pub(crate) fn is_other_version(name: &str, functions: &[String]) -> bool {
    let Some(hash) = library_hash(name) else {
        return false;
    };
    name != LIBRARY.name
        && !functions.is_empty()
        && functions.iter().all(|f| {
            f.strip_prefix(NAME_PREFIX)
                .and_then(|rest| rest.strip_suffix(hash))
                .is_some_and(|middle| middle.len() > 1 && middle.ends_with('_'))
        })
}

/// `FUNCTION LIST`: each library's name and its functions' names, in the
/// server's order. Reads the RESP2 (flat key-value arrays) and the RESP3
/// (maps) shapes of the reply.
pub(crate) async fn list(
    conn: &mut impl ConnectionLike,
) -> Result<Vec<(String, Vec<String>)>, redis::RedisError> {
    let reply: redis::Value = redis::cmd("FUNCTION").arg("LIST").query_async(conn).await?;
    let unexpected =
        || redis::RedisError::from((redis::ErrorKind::Parse, "unexpected FUNCTION LIST reply"));
    let redis::Value::Array(entries) = reply else {
        return Err(unexpected());
    };
    let mut libraries = Vec::with_capacity(entries.len());
    for entry in &entries {
        let name = field(entry, "library_name")
            .and_then(text)
            .ok_or_else(unexpected)?;
        let functions = match field(entry, "functions") {
            Some(redis::Value::Array(functions)) => functions
                .iter()
                .map(|f| field(f, "name").and_then(text).ok_or_else(unexpected))
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(unexpected()),
        };
        libraries.push((name, functions));
    }
    Ok(libraries)
}

/// `FUNCTION DELETE <name>`; `Ok(false)` when the server no longer has it
/// (deleted meanwhile by someone else).
pub(crate) async fn delete(
    conn: &mut impl ConnectionLike,
    name: &str,
) -> Result<bool, redis::RedisError> {
    let reply: Result<redis::Value, _> = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg(name)
        .query_async(conn)
        .await;
    match reply {
        Ok(_) => Ok(true),
        Err(e)
            if e.detail()
                .is_some_and(|d| d.to_ascii_lowercase().contains("library not found")) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
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

    #[test]
    fn other_versions_are_recognised_by_name_and_functions() {
        let own = |hash: &str| {
            (
                format!("charon_sessions_{hash}"),
                vec![format!("charon_sessions_upsert_{hash}")],
            )
        };
        let (name, functions) = own("0123456789abcdef");
        assert!(is_other_version(&name, &functions));
        assert_eq!(library_hash(&name), Some("0123456789abcdef"));
        // The current version's library is never another version.
        assert!(!is_other_version(
            &LIBRARY.name,
            std::slice::from_ref(&LIBRARY.upsert)
        ));
        for (name, functions) in [
            // Charon's own, and unrelated libraries.
            "charon_redis_store_abc".to_owned(),
            "charon_sessions_upsert_0123456789abcdef".to_owned(),
            "charon_sessions_0123456789ABCDEF".to_owned(),
            "charon_sessions_0123456789abcde".to_owned(),
            "charon_sessions_0123456789abcdef0".to_owned(),
            "mylib".to_owned(),
        ]
        .map(|name| {
            (
                name,
                vec!["charon_sessions_upsert_0123456789abcdef".to_owned()],
            )
        }) {
            assert!(!is_other_version(&name, &functions), "{name}");
        }
        // Named like ours but registering another application's functions,
        // or none, or another version's.
        let name = "charon_sessions_0123456789abcdef";
        for functions in [
            vec![],
            vec!["myfunc".to_owned()],
            vec![
                "charon_sessions_upsert_0123456789abcdef".to_owned(),
                "f".to_owned(),
            ],
            vec!["charon_sessions_upsert_1123456789abcdef".to_owned()],
            vec!["charon_sessions_0123456789abcdef".to_owned()],
        ] {
            assert!(!is_other_version(name, &functions), "{functions:?}");
        }
    }
}
