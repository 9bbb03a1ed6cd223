//! The connections of upserts that wait for replicas
//! ([`wait_for_replicas`](crate::RedisStoreConfig::wait_for_replicas)):
//! each lent to one upsert at a time.
//!
//! `WAIT` blocks the connection it runs on until enough replicas have
//! acknowledged the connection's writes, or its timeout passes; on a shared
//! connection every command queued behind it would wait too (for the whole
//! timeout while a replica is missing). These upserts therefore take a
//! connection of their own from this small pool (deadpool): opened when
//! first needed, kept open, and dropped when its socket closed or a command
//! on it showed it dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::aio::ConnectionLike;
use redis::{Cmd, RedisError, RedisFuture, Value};

use super::connections::closes_connection;
use super::topology::{Connector, Node, OnClosed};
use crate::store::StoreError;

/// Opens the lane's connections.
#[derive(Debug)]
pub(crate) struct Manager {
    connector: Connector,
}

/// A lane connection that remembers whether it dropped.
pub(crate) struct Connection {
    inner: Node,
    /// Set by the disconnection notice or by a command that failed so.
    closed: Arc<AtomicBool>,
}

impl Connection {
    fn observe<T>(&self, result: &Result<T, RedisError>) {
        if let Err(e) = result
            && closes_connection(e, self.inner.is_cluster())
        {
            self.closed.store(true, Ordering::Relaxed);
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

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = RedisError;

    async fn create(&self) -> Result<Connection, RedisError> {
        let closed = Arc::new(AtomicBool::new(false));
        let on_closed: OnClosed = {
            let closed = Arc::clone(&closed);
            Arc::new(move || closed.store(true, Ordering::Relaxed))
        };
        let inner = Box::pin(self.connector.connect(Some(on_closed))).await?;
        Ok(Connection { inner, closed })
    }

    async fn recycle(&self, conn: &mut Connection, _: &Metrics) -> RecycleResult<RedisError> {
        if conn.closed.load(Ordering::Relaxed) {
            Err(RecycleError::message("the connection closed"))
        } else {
            Ok(())
        }
    }
}

/// A lane connection checked out; returns to the lane when dropped.
pub(crate) type LaneConnection = managed::Object<Manager>;

/// The lane: at most `size` connections, each lent to one upsert at a time.
#[derive(Clone)]
pub(crate) struct ReplicaWaitLane {
    inner: managed::Pool<Manager>,
}

impl std::fmt::Debug for ReplicaWaitLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaWaitLane")
            .field("status", &self.inner.status())
            .finish()
    }
}

impl ReplicaWaitLane {
    /// A lane of at most `size` connections; none is opened yet.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] when deadpool refuses the settings.
    pub(crate) fn new(connector: Connector, size: usize) -> Result<Self, StoreError> {
        let inner = managed::Pool::builder(Manager { connector })
            .max_size(size)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::InvalidInput(format!("replica-wait connections: {e}")))?;
        Ok(ReplicaWaitLane { inner })
    }

    /// Checks a connection out, opening one when none is free and the lane
    /// has room, waiting at most `wait` for one otherwise.
    ///
    /// # Errors
    ///
    /// [`StoreError::PoolTimeout`] (reporting `checkout_timeout`) when none
    /// became free in time; the connection error when a new one could not
    /// be opened.
    pub(crate) async fn get(
        &self,
        wait: Duration,
        checkout_timeout: Duration,
    ) -> Result<LaneConnection, StoreError> {
        let timeouts = managed::Timeouts {
            wait: Some(wait),
            create: None,
            recycle: None,
        };
        Box::pin(self.inner.timeout_get(&timeouts))
            .await
            .map_err(|e| match e {
                managed::PoolError::Timeout(_) => StoreError::PoolTimeout(checkout_timeout),
                managed::PoolError::Backend(e) => super::store_error(e),
                other => StoreError::Connection(Box::new(other)),
            })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.inner.status().size
    }
}
