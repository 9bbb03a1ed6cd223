//! The connection pool: bb8 over redis-rs multiplexed connections.
//!
//! The pool keeps `pool_size` connections and opens up to
//! `pool_max_overflow` more under load, closing those after the idle
//! timeout. Connections are not pinged on checkout (that would be a second
//! round trip per operation); instead a connection whose command failed in a
//! way that leaves it unusable (I/O error, dropped, timed out) is flagged
//! broken and bb8 replaces it.

use std::ops::{Deref, DerefMut};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Cmd, RedisError, RedisFuture, Value};

/// Opens connections for bb8.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionManager {
    /// The parsed server address and credentials.
    client: Client,
    /// Connect and response timeouts.
    config: AsyncConnectionConfig,
}

impl ConnectionManager {
    pub(crate) fn new(client: Client, config: AsyncConnectionConfig) -> Self {
        ConnectionManager { client, config }
    }

    /// A connection outside the pool (for the server check and `FUNCTION LOAD`).
    pub(crate) async fn open(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }
}

/// A pooled connection that remembers whether it broke.
pub(crate) struct Connection {
    inner: MultiplexedConnection,
    broken: bool,
}

impl Connection {
    fn observe<T>(&mut self, result: &Result<T, RedisError>) {
        if let Err(e) = result
            && (e.is_unrecoverable_error() || e.is_timeout() || e.is_connection_dropped())
        {
            self.broken = true;
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.inner.req_packed_command(cmd).await;
            self.observe(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self.inner.req_packed_commands(cmd, offset, count).await;
            self.observe(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

impl Deref for Connection {
    type Target = MultiplexedConnection;
    fn deref(&self) -> &MultiplexedConnection {
        &self.inner
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        &mut self.inner
    }
}

impl bb8::ManageConnection for ConnectionManager {
    type Connection = Connection;
    type Error = RedisError;

    async fn connect(&self) -> Result<Connection, RedisError> {
        Ok(Connection {
            inner: self.open().await?,
            broken: false,
        })
    }

    async fn is_valid(&self, conn: &mut Connection) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<()>(conn).await
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.broken
    }
}
