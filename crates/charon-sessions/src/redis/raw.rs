//! Raw access to a [`RedisStore`]'s connections, for tools such as the
//! benchmark's bare-command baseline (`charon-sessions bench --baseline`)
//! and admin commands: run one command on a shared connection, and build
//! the exact `FCALL` an upsert sends.
//!
//! Nothing here validates, verifies or decodes: these are the Redis
//! commands the store's operations are made of, without the store's work
//! around them. Applications use [`SessionStore`](crate::SessionStore).

use std::fmt;

use super::keys::lock_field;
use super::{RedisStore, functions};
use crate::error::StoreError;
use crate::limit::SessionLimit;
use crate::session::Session;
use crate::signing;

impl RedisStore {
    /// Runs one command on a shared connection (the connections and client
    /// the store's operations use) and converts the reply to `T`.
    ///
    /// For tools such as the benchmark baseline and admin commands: no
    /// validation, no retry, and no re-registration of a lost function
    /// library (an `FCALL` then fails with the server's "function not
    /// found" error, as [`StoreError::Server`]). Takes a place in flight
    /// like any operation. The connection is shared with the store's other
    /// operations, so commands that change the connection's state or block
    /// it are refused (`SELECT`, `MULTI`, `EXEC`, `DISCARD`, `WATCH`,
    /// `UNWATCH`, the `SUBSCRIBE` family, `MONITOR`, `RESET`, `HELLO`,
    /// `AUTH`, `QUIT`, `CLIENT REPLY`/`TRACKING`/`CACHING`, `WAIT`,
    /// `WAITAOF`, the blocking list, sorted-set and stream commands).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a refused command, before anything
    /// is sent;
    /// [`StoreError::PoolTimeout`] when no place in flight became free in time;
    /// otherwise as the operations: [`StoreError::Connection`],
    /// [`StoreError::Auth`] or [`StoreError::Server`] for the command's
    /// failure or error reply, [`StoreError::Server`] when the reply does
    /// not convert to `T`.
    pub async fn run_command<T: ::redis::FromRedisValue>(
        &self,
        cmd: &::redis::Cmd,
    ) -> Result<T, StoreError> {
        if let Some(name) = unshareable(cmd) {
            return Err(StoreError::InvalidInput(format!(
                "run_command: {name} would change or block the connection shared with the \
                 store's operations"
            )));
        }
        self.query(cmd.clone()).await
    }

    /// What [`upsert`](crate::SessionStore::upsert) of `session` would
    /// send, prepared once: the hash key, the fields, the signed value
    /// (encoding `session` with `lock_version + 1` in the configured payload
    /// format, as upsert does) and the
    /// expiry. [`UpsertCommand::cmd`] then builds the `FCALL` for any lock
    /// version, so a tool can replay the same write without encoding or
    /// signing again.
    ///
    /// `None` for a dead session (`refresh_expires_at < refreshed_at`),
    /// for which upsert writes nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for an invalid session or one whose
    /// encoding exceeds `max_session_size`, as upsert.
    pub fn upsert_command(&self, session: &Session) -> Result<Option<UpsertCommand>, StoreError> {
        let Some((_, payload)) = self.prepare_upsert(session)? else {
            return Ok(None);
        };
        Ok(Some(UpsertCommand {
            key: self.key(&session.user_id, &session.session_type),
            field: session.id.clone(),
            lock_field: lock_field(&session.id),
            value: signing::sign(&payload, &self.keys[0]),
            exat: session.refresh_expires_at,
            limit: self.session_limit,
        }))
    }
}

/// The name of `cmd` when it may not run on a shared connection.
fn unshareable(cmd: &::redis::Cmd) -> Option<String> {
    let mut words = cmd.args_iter().filter_map(|arg| match arg {
        ::redis::Arg::Simple(bytes) => Some(String::from_utf8_lossy(bytes).to_ascii_uppercase()),
        _ => None,
    });
    let name = words.next()?;
    let refused = match name.as_str() {
        "SELECT" | "MULTI" | "EXEC" | "DISCARD" | "WATCH" | "UNWATCH" | "SUBSCRIBE"
        | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE"
        | "MONITOR" | "RESET" | "HELLO" | "AUTH" | "QUIT" | "WAIT" | "WAITAOF" | "BLPOP"
        | "BRPOP" | "BLMOVE" | "BRPOPLPUSH" | "BLMPOP" | "BZPOPMIN" | "BZPOPMAX" | "BZMPOP" => true,
        "CLIENT" => matches!(
            words.next().as_deref(),
            Some("REPLY" | "TRACKING" | "CACHING")
        ),
        "XREAD" | "XREADGROUP" => words.any(|word| word == "BLOCK"),
        _ => false,
    };
    refused.then_some(name)
}

/// The `FCALL` an upsert of one session sends, built by
/// [`RedisStore::upsert_command`].
///
/// `Debug` shows the key and session id, never the signed value (it holds
/// the refresh token id).
#[derive(Clone)]
pub struct UpsertCommand {
    /// `<key prefix>.<user_id>.<session_type>`.
    key: String,
    /// The session id.
    field: String,
    /// `l.<session id>`.
    lock_field: String,
    /// The signed, encoded session.
    value: Vec<u8>,
    /// Expiry of both fields, unix seconds (`refresh_expires_at`).
    exat: i64,
    /// The store's session limit, applied to a create.
    limit: SessionLimit,
}

impl UpsertCommand {
    /// `FCALL <upsert function> 1 <key> <session id> l.<session id>
    /// <new_lock> <signed value> <exat>`: the store's upsert with lock
    /// version `new_lock`. The function writes both fields (`HSETEX … EXAT`)
    /// and replies `1` when the stored lock version is `new_lock - 1`
    /// (`new_lock == 1`: when there is none), else `0` and writes nothing.
    pub fn cmd(&self, new_lock: u64) -> ::redis::Cmd {
        self.cmd_expiring_at(new_lock, self.exat)
    }

    /// Like [`cmd`](Self::cmd), with both fields expiring at `exat` (unix
    /// seconds) instead of the prepared session's `refresh_expires_at`: the
    /// command an upsert sends after a refresh moved the expiry, without
    /// encoding or signing the session again. The value keeps the prepared
    /// session's contents.
    pub fn cmd_expiring_at(&self, new_lock: u64, exat: i64) -> ::redis::Cmd {
        functions::upsert_cmd(
            &self.key,
            &self.field,
            &self.lock_field,
            new_lock,
            &self.value,
            exat,
            self.limit,
        )
    }

    /// The hash key, `<key prefix>.<user_id>.<session_type>`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The name of the upsert function `FCALL` calls
    /// (`charon_sessions_upsert_<hash>`).
    pub fn function_name() -> &'static str {
        &functions::LIBRARY.upsert
    }
}

impl fmt::Debug for UpsertCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpsertCommand")
            .field("key", &self.key)
            .field("field", &self.field)
            .field("value", &"<redacted>")
            .field("exat", &self.exat)
            .finish()
    }
}
