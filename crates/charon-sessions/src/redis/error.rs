//! redis-rs errors sorted into the store's error kinds: the one place
//! where that happens, used by every module that talks to Redis.

use crate::error::StoreError;

/// Sorts a redis-rs error into the store's error kinds; the one place where
/// that happens.
pub(crate) fn store_error(e: redis::RedisError) -> StoreError {
    use redis::{ErrorKind, RetryMethod, ServerErrorKind};
    // A right missing for a command the function runs is reported as
    // "ERR ACL failure in script", not NOPERM.
    let auth = matches!(
        e.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::Server(ServerErrorKind::NoPerm)
    ) || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
        || e.detail()
            .is_some_and(|d| d.starts_with("ACL failure in script"));
    if auth {
        return StoreError::Auth(Box::new(e));
    }
    // A replica after a failover (READONLY), a primary without its
    // replicas (MASTERDOWN) or a server loading its data (LOADING): retry
    // later, on the connection that replaces this one.
    let unavailable = matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
        || e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.retry_method(),
            RetryMethod::Reconnect
                | RetryMethod::ReconnectFromInitialConnections
                | RetryMethod::WaitAndRetry
                | RetryMethod::RefreshSlotsAndRetry
        );
    if unavailable {
        StoreError::Connection(Box::new(e))
    } else {
        StoreError::Server(Box::new(e))
    }
}
