//! Raw access to a [`RedisStore`](super::RedisStore)'s connections, for
//! tools such as the
//! benchmark's bare-command baseline (`charon-sessions bench --baseline`)
//! and admin commands: run one command on a shared connection, and build
//! the exact `FCALL` an upsert sends.
//!
//! Nothing here validates, verifies or decodes: these are the Redis
//! commands the store's operations are made of, without the store's work
//! around them. Applications use [`SessionStore`](crate::SessionStore).

use std::fmt;

use super::functions;
use crate::error::StoreError;
use crate::layout::lock_field;
use crate::limit::SessionLimit;
use crate::session::Session;
use crate::stored::Sealed;

/// [`StoreError::InvalidInput`] for a command that may not run on a
/// connection shared with the store's operations (see
/// [`RedisStore::run_command`]).
pub(crate) fn check_shareable(cmd: &::redis::Cmd) -> Result<(), StoreError> {
    match unshareable(cmd) {
        Some(name) => Err(StoreError::InvalidInput(format!(
            "run_command: {name} would change or block the connection shared with the \
             store's operations"
        ))),
        None => Ok(()),
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
/// [`RedisStore::upsert_command`](super::RedisStore::upsert_command).
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
    /// The upsert of `session`, sealed as `sealed`, into hash `key` under
    /// `limit`.
    pub(crate) fn new(
        key: String,
        session: &Session,
        sealed: Sealed,
        limit: SessionLimit,
    ) -> UpsertCommand {
        UpsertCommand {
            key,
            field: session.id.clone(),
            lock_field: lock_field(&session.id),
            value: sealed.value,
            exat: session.refresh_expires_at,
            limit,
        }
    }

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
