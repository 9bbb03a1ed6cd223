//! The connection pool: deadpool over redis-rs multiplexed connections, with
//! a fixed core and an overflow that shrinks again when idle.
//!
//! Semantics (those of Elixir's poolboy, which Charon uses): `pool_size`
//! connections are opened at start and kept; when all are busy, up to
//! `pool_max_overflow` more are opened on demand; an overflow connection
//! unused for `idle_timeout` is closed by a background task, which never
//! closes the core and reopens it when connections were lost. deadpool
//! gives on-demand creation, the wait timeout and LIFO reuse (so the least
//! recently used connections are the idle ones); this module adds the warm
//! core, its upkeep and the overflow reaping.
//!
//! A connection goes back through [`Pool::release`] once its command is
//! answered: when other operations are waiting for one, the caller yields
//! once, so that the next operation sends before the caller verifies and
//! decodes the reply (see there).
//!
//! Connections are not pinged on checkout (that would be a second round
//! trip per operation). Instead a connection is flagged broken, and replaced
//! at its next checkout, when redis-rs reports that its socket closed (a
//! RESP3 disconnection notice, delivered even while the connection sits
//! idle, e.g. after a server restart) or when a command on it failed in a
//! way that leaves it unusable (I/O error, dropped, timed out).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, QueueMode, RecycleError, RecycleResult};
use redis::aio::ConnectionLike;
use redis::{Cmd, RedisError, RedisFuture, Value};

use super::topology::{Connector, Node};
use crate::store::StoreError;

/// Opens connections for the pool.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionManager {
    /// Where to connect: one server, a cluster, or through sentinels.
    connector: Connector,
}

impl ConnectionManager {
    pub(crate) fn new(connector: Connector) -> Self {
        ConnectionManager { connector }
    }

    /// A connection outside the pool (for the server check and `FUNCTION LOAD`).
    pub(crate) async fn open(&self) -> Result<Node, RedisError> {
        self.connector.connect(None).await
    }
}

/// A pooled connection that remembers whether it broke.
///
/// In a cluster, one such connection holds a multiplexed socket to every
/// node and reconnects to a node, and follows slot moves and failovers, by
/// itself; it is only flagged broken for errors redis-rs cannot recover
/// from.
pub(crate) struct Connection {
    inner: Node,
    /// Set by redis-rs's disconnection notice or by a failed command.
    broken: Arc<AtomicBool>,
}

impl Connection {
    fn observe<T>(&mut self, result: &Result<T, RedisError>) {
        // A demoted primary (READONLY) or a primary without its replicas
        // (MASTERDOWN) answers every write that way: reconnect, which after a
        // failover reaches the new primary.
        if let Err(e) = result
            && self.inner.is_cluster()
        {
            if e.is_unrecoverable_error() {
                self.broken.store(true, Ordering::Relaxed);
            }
        } else if let Err(e) = result
            && (e.is_unrecoverable_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || matches!(e.code(), Some("READONLY" | "MASTERDOWN")))
        {
            self.broken.store(true, Ordering::Relaxed);
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

impl managed::Manager for ConnectionManager {
    type Type = Connection;
    type Error = RedisError;

    async fn create(&self) -> Result<Connection, RedisError> {
        let broken = Arc::new(AtomicBool::new(false));
        // Boxed: opening a connection (a cluster's or through the
        // sentinels especially) is a future of several kilobytes, and
        // deadpool holds `create`'s future inside every checkout's. Inline,
        // each operation's future would carry it and be copied whole as it
        // is moved; boxed, only a rare connect pays one allocation.
        let inner = Box::pin(self.connector.connect(Some(Arc::clone(&broken)))).await?;
        Ok(Connection { inner, broken })
    }

    async fn recycle(&self, conn: &mut Connection, _: &Metrics) -> RecycleResult<RedisError> {
        if conn.broken.load(Ordering::Relaxed) {
            Err(RecycleError::message("the connection broke"))
        } else {
            Ok(())
        }
    }
}

/// A connection checked out of the pool; returns to it when dropped (or
/// through [`Pool::release`]).
pub(crate) type PooledConnection = managed::Object<ConnectionManager>;

/// The size settings of a [`Pool`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    /// Connections opened at start and always kept.
    pub(crate) size: usize,
    /// Extra connections allowed under load.
    pub(crate) max_overflow: usize,
    /// Longest wait for a free connection.
    pub(crate) checkout_timeout: Duration,
    /// Idle time after which an overflow connection is closed.
    pub(crate) idle_timeout: Duration,
}

/// The state of a [`RedisStore`](crate::RedisStore)'s connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolState {
    /// Connections open now (checked out or idle).
    pub connections: usize,
    /// Connections open and not checked out.
    pub idle: usize,
    /// Operations waiting for a connection.
    pub waiting: usize,
    /// Most connections the pool may open: `pool_size + pool_max_overflow`.
    pub max_connections: usize,
}

/// The store's pool of connections.
#[derive(Clone)]
pub(crate) struct Pool {
    inner: managed::Pool<ConnectionManager>,
    checkout_timeout: Duration,
}

impl Pool {
    /// Builds the pool, opens the `size` core connections (concurrently)
    /// and starts the task that keeps it in shape (drops broken idle
    /// connections, closes idle overflow, reopens a lost core).
    ///
    /// # Errors
    ///
    /// The first error opening a core connection.
    pub(crate) async fn start(
        manager: ConnectionManager,
        settings: PoolSettings,
    ) -> Result<Pool, StoreError> {
        let inner = managed::Pool::builder(manager)
            .max_size(settings.size + settings.max_overflow)
            .wait_timeout(Some(settings.checkout_timeout))
            .queue_mode(QueueMode::Lifo)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::InvalidInput(format!("connection pool: {e}")))?;
        let pool = Pool {
            inner,
            checkout_timeout: settings.checkout_timeout,
        };
        // Check out `size` connections at once so that `size` distinct ones
        // are opened; they return to the pool when dropped.
        let core = (0..settings.size).map(|_| pool.get());
        let opened: Result<Vec<PooledConnection>, StoreError> =
            futures_util::future::join_all(core)
                .await
                .into_iter()
                .collect();
        drop(opened?);
        tokio::spawn(maintain(pool.inner.weak(), settings));
        Ok(pool)
    }

    /// Checks a connection out, waiting at most the checkout timeout.
    ///
    /// # Errors
    ///
    /// [`StoreError::PoolTimeout`] when none became free in time; the
    /// connection error when a new connection could not be opened.
    pub(crate) async fn get(&self) -> Result<PooledConnection, StoreError> {
        let started = std::time::Instant::now();
        // Boxed: deadpool's checkout future is about 800 bytes. Inline, it
        // would make every operation's future (which the `SessionStore`
        // trait boxes) larger than the allocator's per-thread cache serves
        // (about 1 KiB), and be copied as it moves.
        let checkout = Box::pin(self.inner.get()).await;
        crate::telemetry::pool_waited(started);
        checkout.map_err(|e| match e {
            managed::PoolError::Timeout(_) => StoreError::PoolTimeout(self.checkout_timeout),
            managed::PoolError::Backend(e) => super::store_error(e),
            other => StoreError::Connection(Box::new(other)),
        })
    }

    /// Returns `conn` to the pool once its command has been answered and,
    /// when another operation is waiting for a connection, yields to the
    /// scheduler before the caller goes on.
    ///
    /// Returning the connection wakes the operation waiting for it, but on
    /// Tokio that operation only runs once the current task stops running.
    /// Without the yield it would wait for the caller's own work after the
    /// command (verifying and decoding the value, and whatever the
    /// application does next) while the connection sits idle; with it, the
    /// waiting operation sends its command first, and the caller resumes
    /// after the other tasks ready to run (Tokio's `yield_now`). When
    /// nothing waits, nothing yields. Dropping the returned future at any
    /// point still returns the connection.
    pub(crate) async fn release(&self, conn: PooledConnection) {
        let waiting = self.inner.status().waiting > 0;
        drop(conn);
        if waiting {
            tokio::task::yield_now().await;
        }
    }

    /// Open, idle and waiting connections now.
    pub(crate) fn state(&self) -> PoolState {
        let status = self.inner.status();
        PoolState {
            connections: status.size,
            idle: status.available,
            waiting: status.waiting,
            max_connections: status.max_size,
        }
    }
}

/// Keeps the pool in shape, a few times per idle timeout, until the pool is
/// dropped: drops idle connections known to be broken, closes overflow
/// connections idle for `idle_timeout` (never going below `size`), and opens
/// connections again when fewer than `size` are open (after a restart or a
/// network failure), so that the next burst finds a warm core.
async fn maintain(pool: managed::WeakPool<ConnectionManager>, settings: PoolSettings) {
    let period =
        (settings.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(15));
    loop {
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.retain(|conn, _| !conn.broken.load(Ordering::Relaxed));
        let mut excess = pool.status().size.saturating_sub(settings.size);
        if excess > 0 {
            pool.retain(|_, metrics| {
                let close = excess > 0 && metrics.last_used() >= settings.idle_timeout;
                if close {
                    excess -= 1;
                }
                !close
            });
        }
        let status = pool.status();
        if status.size < settings.size && status.available == status.size && status.waiting == 0 {
            // Only while nobody uses the pool: checking out `size`
            // connections at once reuses the idle ones and opens the missing
            // ones, so the pool holds exactly `size` afterwards. A request
            // arriving meanwhile finds a free slot (fewer than `size` are
            // open) and opens its own connection instead of waiting; the
            // zero wait timeout makes these checkouts give way rather than
            // queue. A failure (server still down) is retried next period.
            let no_wait = managed::Timeouts {
                wait: Some(Duration::ZERO),
                create: None,
                recycle: None,
            };
            let checkouts = (0..settings.size).map(|_| pool.timeout_get(&no_wait));
            let opened = futures_util::future::join_all(checkouts).await;
            if let Some(Err(e)) = opened.iter().find(|c| c.is_err()) {
                tracing::debug!(error = %e, "could not reopen the pool's core connections yet");
            }
        }
    }
}
