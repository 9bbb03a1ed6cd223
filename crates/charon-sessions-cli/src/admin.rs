//! What the admin commands (`list`, `revoke`, `revoke-all`, `check`,
//! `stats`) share: opening the store and a raw connection on `--redis`,
//! argument parsers built on the library's validation, the hash key, and
//! how times are shown.
//!
//! Session reads and deletes go through [`RedisStore`]; only what the
//! library has no API for (existence checks, `SCAN`, `MEMORY USAGE`,
//! `FUNCTION LIST`, `ACL`, `PING`) uses the raw connection.

use std::time::Duration;

use anyhow::Context as _;
use charon_sessions::signing::SigningKey;
use charon_sessions::{RedisStore, RedisStoreConfig};
use redis::IntoConnectionInfo as _;
use redis::aio::MultiplexedConnection;

use crate::store_args::ConnectionArgs;
use crate::usage::UsageError;

/// Waiting for one reply on the raw connection: `SCAN` and `MEMORY USAGE`
/// on a large database take longer than a session operation.
const RAW_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Opening a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `--redis` URL; a [`UsageError`] without one, since the embedded
/// in-memory store lives inside one process and another process has nothing
/// to administer, or when `--key-prefix` breaks the library's rule.
pub fn redis_url<'a>(connection: &'a ConnectionArgs, command: &str) -> anyhow::Result<&'a str> {
    charon_sessions::validate::key_prefix(&connection.key_prefix)
        .map_err(|e| UsageError(format!("invalid --key-prefix: {e}")))?;
    if connection.redis.is_none()
        && !(connection.cluster.is_empty() && connection.sentinel.is_empty())
    {
        return Err(UsageError(format!(
            "`{command}` works on one server: give --redis URL of a node (run it on each \
             node of a cluster, or on the primary behind Sentinel); --cluster and --sentinel \
             are for demo and bench"
        ))
        .into());
    }
    connection.redis.as_deref().ok_or_else(|| {
        UsageError(format!(
            "`{command}` needs --redis URL (or CHARON_REDIS_URL): the in-memory LocalStore \
             lives inside one process, so there is nothing another process could {command}"
        ))
        .into()
    })
}

/// Opens a [`RedisStore`] on `--redis` with a single connection that never
/// loads the function library (an admin command must not change the
/// server's functions; reads and deletes do not need them). Runs `HELLO`
/// (the version check; see [`charon_sessions::ServerInfo`]).
///
/// `signing_key` is `None` for commands that only delete: a random key is
/// used, since deleting verifies nothing.
pub async fn open_store(
    connection: &ConnectionArgs,
    command: &str,
    signing_key: Option<SigningKey>,
) -> anyhow::Result<RedisStore> {
    let url = redis_url(connection, command)?;
    let key = signing_key.unwrap_or_else(SigningKey::generate);
    let config = RedisStoreConfig::new(url, key)
        .key_prefix(&connection.key_prefix)
        .register_functions(false)
        .pool_size(1);
    RedisStore::connect(config)
        .await
        .context("cannot open the Redis store")
}

/// A raw connection to `--redis` (same URL, same TLS), for the commands the
/// library has no API for. Speaks RESP3, as the store does.
pub async fn raw_connection(
    connection: &ConnectionArgs,
    command: &str,
) -> anyhow::Result<MultiplexedConnection> {
    let url = redis_url(connection, command)?;
    let client = raw_client(url)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RAW_RESPONSE_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .context("cannot connect to Redis")
}

/// The redis-rs client for `url`, in RESP3.
fn raw_client(url: &str) -> anyhow::Result<redis::Client> {
    // The error of a bad URL may quote the URL, password included: not shown.
    let invalid = || anyhow::anyhow!("--redis is not a valid Redis URL");
    let info = url.into_connection_info().map_err(|_| invalid())?;
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let info = info.set_redis_settings(settings);
    if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        // redis-rs builds its TLS configuration from rustls's process-wide
        // crypto provider; the CLI, being the application, picks ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    redis::Client::open(info).map_err(|_| invalid())
}

/// clap parser for `--user`: the library's user id rule.
pub fn parse_user_id(s: &str) -> Result<String, String> {
    charon_sessions::validate::user_id(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// clap parser for `--session`: the library's session id rule.
pub fn parse_session_id(s: &str) -> Result<String, String> {
    charon_sessions::validate::session_id(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// clap parser for `--type`: the library's session type rule.
pub fn parse_session_type(s: &str) -> Result<String, String> {
    charon_sessions::validate::session_type(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A unix time as `1764442489 (2025-11-29T18:54:49Z)`.
pub fn show_time(unix_seconds: i64) -> String {
    format!("{unix_seconds} ({})", utc(unix_seconds))
}

/// A unix time as RFC 3339 in UTC, e.g. `2025-11-29T18:54:49Z`; the bare
/// number when it is out of the calendar's range.
pub fn utc(unix_seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_seconds_and_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            show_time(1_764_442_489),
            "1764442489 (2025-11-29T18:54:49Z)"
        );
        assert_eq!(utc(i64::MAX), i64::MAX.to_string());
    }
}
