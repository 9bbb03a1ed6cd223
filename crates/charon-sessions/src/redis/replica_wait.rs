//! The connections of upserts that wait for replicas
//! ([`wait_for_replicas`](crate::RedisStoreConfig::wait_for_replicas)):
//! each lent to one upsert at a time.
//!
//! `WAIT` blocks the connection it runs on until enough replicas have
//! acknowledged the connection's writes, or its timeout passes; on a shared
//! connection every command queued behind it would wait too (for the whole
//! timeout while a replica is missing). These upserts therefore take a
//! connection of their own from this small pool (deadpool): opened when
//! first needed, kept open, and dropped when its socket closed, when a
//! reply showed it must be replaced, or when it comes back with a command
//! still unanswered (a timeout, or an upsert whose caller gave up): the
//! next upsert would otherwise wait behind that `WAIT`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use redis::aio::ConnectionLike;
use redis::{Cmd, RedisError, RedisFuture, Value};

use super::connections::needs_replacing;
use super::topology::{Connector, Node, OnClosed};
use crate::error::StoreError;

/// Opens the lane's connections.
#[derive(Debug)]
pub(crate) struct Manager {
    connector: Connector,
}

/// A lane connection that remembers whether it must not be used again.
pub(crate) struct Connection {
    inner: Node,
    /// Set by the disconnection notice or by a reply that showed it.
    closed: Arc<AtomicBool>,
    /// A command was sent and its reply has not been read (still set when
    /// the caller gave up, or the command timed out).
    outstanding: bool,
}

impl Connection {
    fn observe(&self, result: &Result<Value, RedisError>) {
        if needs_replacing(result, self.inner.is_cluster()).is_some() {
            self.closed.store(true, Ordering::Relaxed);
        }
    }
}

/// Whether a command's reply may still be on its way: its wait timed out
/// or the socket failed (a server error means the reply was read).
fn unanswered<T>(result: &Result<T, RedisError>) -> bool {
    result
        .as_ref()
        .is_err_and(|e| e.is_timeout() || e.is_io_error())
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            self.outstanding = true;
            let result = self.inner.req_packed_command(cmd).await;
            self.outstanding = unanswered(&result);
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
            self.outstanding = true;
            let result = self.inner.req_packed_commands(cmd, offset, count).await;
            self.outstanding = unanswered(&result);
            match &result {
                Ok(values) => values.iter().for_each(|v| self.observe(&Ok(v.clone()))),
                Err(e) => self.observe(&Err(e.clone())),
            }
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
        Ok(Connection {
            inner,
            closed,
            outstanding: false,
        })
    }

    async fn recycle(&self, conn: &mut Connection, _: &Metrics) -> RecycleResult<RedisError> {
        if conn.closed.load(Ordering::Relaxed) {
            Err(RecycleError::message("the connection closed"))
        } else if conn.outstanding {
            Err(RecycleError::message(
                "the connection still has a command in flight",
            ))
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
                managed::PoolError::Backend(e) => super::error::store_error(e),
                other => StoreError::Connection(Box::new(other)),
            })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.inner.status().size
    }
}
