//! The shared connections: `pool_size` multiplexed connections that every
//! operation uses at once, and the limit on operations in flight.
//!
//! Operations do not check a connection out. Each takes a place among
//! `max_in_flight` (waiting at most `checkout_timeout` for one, then
//! [`StoreError::PoolTimeout`]), picks the next open connection in turn and
//! sends its command on it; redis-rs writes whatever commands are queued on
//! a connection in one go and matches the replies in order, so concurrent
//! operations share a few sockets and the server reads and answers them in
//! batches.
//!
//! A connection is replaced by one background task, whoever noticed first,
//! when its socket closed (the RESP3 disconnection notice, which redis-rs
//! delivers even while the connection sits idle, or a command that failed
//! because the connection dropped), when the server answered `READONLY` or
//! `MASTERDOWN` (a demoted primary: the new connection reaches the current
//! one), or when the kernel gave up on it (its host vanished: see
//! `topology::tcp_settings`). A command that timed out leaves its
//! connection alone (the server may only be busy): the other commands on it
//! are unaffected, and redis-rs discards the late reply. While a connection is
//! replaced, operations use the other connections; with none open they wait
//! for the first attempt, and while the server stays unreachable they fail
//! at once with [`StoreError::Connection`] and the task tries again with a
//! growing delay (`RECONNECT_DELAY_MIN` doubling to `RECONNECT_DELAY_MAX`):
//! one attempt per connection at a time, never one per operation.
//!
//! This module never re-sends a command.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use super::batch::Batcher;
use super::topology::{Connector, Node, OnClosed};
use crate::error::StoreError;
use crate::telemetry;

/// First delay before a connection is opened again after a failed attempt,
/// or after a connection that closed soon after it was opened.
const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(50);
/// Longest delay between two attempts to open a connection.
const RECONNECT_DELAY_MAX: Duration = Duration::from_millis(400);
/// A connection that stayed open this long resets the delay.
const STABLE_AFTER: Duration = Duration::from_secs(1);

/// The size and timing settings of [`Connections`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Shared connections (per node).
    pub(crate) pool_size: usize,
    /// Most operations in flight.
    pub(crate) max_in_flight: usize,
    /// Longest wait for a place, or for a connection being opened.
    pub(crate) checkout_timeout: Duration,
}

/// The store's shared connections. Cheap to clone: clones share them.
#[derive(Clone)]
pub(crate) struct Connections {
    shared: Arc<Shared>,
}

struct Shared {
    /// Opens connections, for the initial ones and replacements.
    connector: Connector,
    /// One per connection; never empty.
    slots: Box<[Slot]>,
    /// Round-robin position.
    next: AtomicUsize,
    /// Places in flight.
    places: Semaphore,
    /// `max_in_flight`.
    max_in_flight: usize,
    /// Operations waiting for a place now.
    waiting: AtomicUsize,
    /// `checkout_timeout`.
    checkout_timeout: Duration,
    /// Woken whenever a slot changes state.
    changed: Notify,
    /// The runtime the store was connected on: where background tasks run
    /// when they are started outside any runtime.
    runtime: tokio::runtime::Handle,
}

/// One shared connection, or the attempt to open it again.
struct Slot {
    state: ArcSwap<SlotState>,
    /// Consecutive failed attempts, or connections that closed soon after
    /// opening: the delay before the next attempt grows with it.
    failures: AtomicU32,
}

enum SlotState {
    /// Open, unless its health says it closed (then a task replaces it).
    Open(Live),
    /// The replacing task is opening a connection.
    Connecting,
    /// The last attempt failed; the task tries again after a delay.
    Down(RedisError),
}

struct Live {
    node: Node,
    health: Arc<Health>,
    /// Gathers concurrent commands into one write (one server; a cluster
    /// connection routes each command to its own node and is not batched).
    batcher: Option<Arc<Batcher>>,
}

/// Whether a connection closed, shared with its disconnection notice.
struct Health {
    /// Known to be closed (or no longer to be used).
    closed: AtomicBool,
    /// Its replacement has been started (once).
    replaced: AtomicBool,
    opened_at: Instant,
}

impl Health {
    fn new() -> Health {
        Health {
            closed: AtomicBool::new(false),
            replaced: AtomicBool::new(false),
            opened_at: Instant::now(),
        }
    }
}

/// The state of a [`RedisStore`](crate::RedisStore)'s connections, from
/// [`RedisStore::pool_state`](crate::RedisStore::pool_state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolState {
    /// Shared connections open now (at most
    /// [`pool_size`](crate::RedisStoreConfig::pool_size)).
    pub connections: usize,
    /// Shared connections whose socket closed and that are being opened
    /// again (in a cluster, connections redis-rs could not recover).
    pub reconnecting: usize,
    /// Operations holding a place in flight now (at most `max_in_flight`).
    pub in_flight: usize,
    /// Operations waiting for a place in flight.
    pub waiting: usize,
    /// [`max_in_flight`](crate::RedisStoreConfig::max_in_flight).
    pub max_in_flight: usize,
    /// Connections open for upserts that wait for replicas (0 without
    /// [`wait_for_replicas`](crate::RedisStoreConfig::wait_for_replicas)).
    pub replica_wait_connections: usize,
    /// Most connections the store opens to one server node:
    /// [`pool_size`](crate::RedisStoreConfig::pool_size), plus
    /// [`replica_wait_connections`](crate::RedisStoreConfig::replica_wait_connections)
    /// with `wait_for_replicas`.
    pub max_connections: usize,
}

/// What [`Connections::state`] reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct State {
    pub(crate) open: usize,
    pub(crate) reconnecting: usize,
    pub(crate) in_flight: usize,
    pub(crate) waiting: usize,
    pub(crate) max_in_flight: usize,
}

impl Connections {
    /// Opens the `pool_size` connections (concurrently).
    ///
    /// # Errors
    ///
    /// The first error opening one of them.
    pub(crate) async fn start(
        connector: Connector,
        settings: Settings,
    ) -> Result<Connections, StoreError> {
        let slots = (0..settings.pool_size)
            .map(|_| Slot {
                state: ArcSwap::from_pointee(SlotState::Connecting),
                failures: AtomicU32::new(0),
            })
            .collect();
        let shared = Arc::new(Shared {
            connector,
            slots,
            next: AtomicUsize::new(0),
            places: Semaphore::new(settings.max_in_flight),
            max_in_flight: settings.max_in_flight,
            waiting: AtomicUsize::new(0),
            checkout_timeout: settings.checkout_timeout,
            changed: Notify::new(),
            runtime: tokio::runtime::Handle::current(),
        });
        let opened = futures_util::future::join_all(
            (0..settings.pool_size).map(|index| Shared::open(&shared, index)),
        )
        .await;
        let opened: Vec<Live> = opened
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(super::error::store_error)?;
        for (index, live) in opened.into_iter().enumerate() {
            Shared::install(&shared, index, live);
        }
        Ok(Connections { shared })
    }

    /// Takes a place in flight and a connection to send on.
    ///
    /// # Errors
    ///
    /// [`StoreError::PoolTimeout`] when no place became free, or no
    /// connection was opened, within the checkout timeout;
    /// [`StoreError::Connection`] (the last attempt's error) when no
    /// connection is open and the server could not be reached.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, StoreError> {
        let place = self.place().await?;
        self.lease_with(place).await
    }

    /// Takes a place in flight, waiting at most the checkout timeout.
    ///
    /// # Errors
    ///
    /// [`StoreError::PoolTimeout`] when none became free in time.
    async fn place(&self) -> Result<Place<'_>, StoreError> {
        let shared = &*self.shared;
        if let Ok(permit) = shared.places.try_acquire() {
            telemetry::place_waited(Duration::ZERO);
            return Ok(Place {
                _permit: permit,
                deadline: None,
            });
        }
        let started = Instant::now();
        let waiting = Waiting::new(&shared.waiting);
        let acquired = tokio::time::timeout(shared.checkout_timeout, shared.places.acquire()).await;
        drop(waiting);
        telemetry::place_waited(started.elapsed());
        match acquired {
            Ok(Ok(permit)) => Ok(Place {
                _permit: permit,
                deadline: Some(started + shared.checkout_timeout),
            }),
            // The semaphore is never closed.
            Ok(Err(_)) | Err(_) => Err(StoreError::PoolTimeout(shared.checkout_timeout)),
        }
    }

    /// A connection to send on, for an operation that holds `place`.
    ///
    /// # Errors
    ///
    /// As [`lease`](Self::lease).
    async fn lease_with<'a>(&'a self, place: Place<'a>) -> Result<Lease<'a>, StoreError> {
        let shared = &self.shared;
        if let Some(picked) = shared.pick()? {
            return Ok(Lease::new(shared, picked, place));
        }
        // None is open, and one is being opened: wait for it, until the
        // checkout timeout counted from when the operation started waiting.
        let deadline = place
            .deadline
            .unwrap_or_else(|| Instant::now() + shared.checkout_timeout);
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(picked) = shared.pick()? {
                return Ok(Lease::new(shared, picked, place));
            }
            if tokio::time::timeout_at(deadline.into(), changed)
                .await
                .is_err()
            {
                return Err(StoreError::PoolTimeout(shared.checkout_timeout));
            }
        }
    }

    /// The checkout timeout, as [`StoreError::PoolTimeout`] reports it.
    pub(crate) fn checkout_timeout(&self) -> Duration {
        self.shared.checkout_timeout
    }

    /// Connections open, being replaced, and the places in flight.
    pub(crate) fn state(&self) -> State {
        let shared = &self.shared;
        let open = shared
            .slots
            .iter()
            .filter(|slot| match &**slot.state.load() {
                SlotState::Open(live) => !live.health.closed.load(Ordering::Acquire),
                _ => false,
            })
            .count();
        State {
            open,
            reconnecting: shared.slots.len() - open,
            in_flight: shared.max_in_flight - shared.places.available_permits(),
            waiting: shared.waiting.load(Ordering::Relaxed),
            max_in_flight: shared.max_in_flight,
        }
    }
}

impl Shared {
    /// The next open connection in turn: its node, health and slot.
    ///
    /// `Ok(None)` when none is open but one is being opened (or is about to
    /// be); the last attempt's error when every connection is down.
    fn pick(&self) -> Result<Option<(Arc<SlotState>, usize)>, StoreError> {
        let n = self.slots.len();
        let start = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        let mut pending = false;
        let mut down = None;
        for k in 0..n {
            let index = (start + k) % n;
            let state = self.slots[index].state.load();
            match &**state {
                SlotState::Open(live) if !live.health.closed.load(Ordering::Acquire) => {
                    return Ok(Some((arc_swap::Guard::into_inner(state), index)));
                }
                SlotState::Open(_) | SlotState::Connecting => pending = true,
                SlotState::Down(e) => {
                    down.get_or_insert_with(|| e.clone());
                }
            }
        }
        match down {
            Some(e) if !pending => Err(super::error::store_error(e)),
            _ => Ok(None),
        }
    }

    /// Opens the connection of slot `index`, with a disconnection notice
    /// that replaces it.
    async fn open(this: &Arc<Shared>, index: usize) -> Result<Live, RedisError> {
        let health = Arc::new(Health::new());
        let on_closed: OnClosed = {
            let (weak, health) = (Arc::downgrade(this), Arc::clone(&health));
            Arc::new(move || {
                if let Some(shared) = weak.upgrade() {
                    Shared::closed(&shared, index, &health, None);
                }
            })
        };
        // Boxed: opening a connection (a cluster's or through the sentinels
        // especially) is a future of several kilobytes.
        let node = Box::pin(this.connector.connect(Some(on_closed))).await?;
        let batcher = (!node.is_cluster()).then(Arc::default);
        Ok(Live {
            node,
            health,
            batcher,
        })
    }

    /// Puts `live` into slot `index`. A connection that closed before it
    /// got there (its notice found the slot without it) is replaced now.
    fn install(this: &Arc<Shared>, index: usize, live: Live) {
        let health = Arc::clone(&live.health);
        this.set(index, SlotState::Open(live));
        if health.closed.load(Ordering::SeqCst) {
            Shared::replace_soon(this, index, &health, None);
        }
    }

    /// The connection of slot `index` with `health` closed (`error`: the
    /// reply or failure that showed it, if any). When the slot holds it,
    /// its replacement starts; when it does not hold it yet,
    /// [`install`](Self::install) sees the mark and starts it.
    fn closed(this: &Arc<Shared>, index: usize, health: &Arc<Health>, error: Option<&RedisError>) {
        if health.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let holds = match &**this.slots[index].state.load() {
            SlotState::Open(live) => Arc::ptr_eq(&live.health, health),
            SlotState::Connecting | SlotState::Down(_) => false,
        };
        if holds {
            Shared::replace_soon(this, index, health, error);
        }
    }

    /// Starts the replacement of the closed connection of slot `index`
    /// (once per connection, whoever calls first).
    fn replace_soon(this: &Arc<Shared>, index: usize, health: &Health, error: Option<&RedisError>) {
        if health.replaced.swap(true, Ordering::SeqCst) {
            return;
        }
        let slot = &this.slots[index];
        let failures = if health.opened_at.elapsed() >= STABLE_AFTER {
            slot.failures.store(0, Ordering::Relaxed);
            0
        } else {
            slot.failures.fetch_add(1, Ordering::Relaxed) + 1
        };
        // A connection that keeps closing right after it opened waits
        // before it is opened again, failing operations meanwhile.
        this.set(
            index,
            if failures == 0 {
                SlotState::Connecting
            } else {
                SlotState::Down(error.cloned().unwrap_or_else(closed_error))
            },
        );
        this.spawn(Shared::replace(Arc::downgrade(this), index));
    }

    /// Opens slot `index` again, retrying with a growing delay while the
    /// server cannot be reached, until it is open or the store is dropped.
    async fn replace(weak: Weak<Shared>, index: usize) {
        loop {
            let Some(this) = weak.upgrade() else { return };
            let failures = this.slots[index].failures.load(Ordering::Relaxed);
            if failures > 0 {
                drop(this);
                tokio::time::sleep(reconnect_delay(failures)).await;
            }
            let Some(this) = weak.upgrade() else { return };
            this.set(index, SlotState::Connecting);
            match Shared::open(&this, index).await {
                Ok(live) => {
                    Shared::install(&this, index, live);
                    telemetry::connection_replaced();
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not open a Redis connection again yet");
                    this.slots[index].failures.fetch_add(1, Ordering::Relaxed);
                    this.set(index, SlotState::Down(e));
                }
            }
        }
    }

    /// Runs `task` in the background: on the runtime of the caller, else on
    /// the one the store was connected on. (A store used from another
    /// runtime than the one it was connected on keeps working once that
    /// one is gone: its connections are replaced on the caller's.)
    fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match tokio::runtime::Handle::try_current() {
            Ok(current) => drop(current.spawn(task)),
            Err(_) => drop(self.runtime.spawn(task)),
        }
    }

    fn set(&self, index: usize, state: SlotState) {
        self.slots[index].state.store(Arc::new(state));
        self.changed.notify_waiters();
    }
}

/// The error operations get while a connection that closed by itself (a
/// disconnection notice, no failed command) waits to be opened again.
fn closed_error() -> RedisError {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the connection to Redis closed",
    )
    .into()
}

/// The delay before attempt number `failures + 1`.
fn reconnect_delay(failures: u32) -> Duration {
    RECONNECT_DELAY_MIN
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(RECONNECT_DELAY_MAX)
}

/// Counts an operation waiting for a place while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Waiting(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A place in flight, held until the operation has its reply.
pub(crate) struct Place<'a> {
    _permit: SemaphorePermit<'a>,
    /// When the operation's wait ends, if it had to wait for the place.
    deadline: Option<Instant>,
}

/// A shared connection lent to one operation, with its place in flight.
///
/// Sending through it notices a connection that dropped and starts its
/// replacement.
pub(crate) struct Lease<'a> {
    /// Always [`SlotState::Open`].
    state: Arc<SlotState>,
    index: usize,
    shared: &'a Arc<Shared>,
    _place: Place<'a>,
}

impl<'a> Lease<'a> {
    fn new(
        shared: &'a Arc<Shared>,
        (state, index): (Arc<SlotState>, usize),
        place: Place<'a>,
    ) -> Self {
        Lease {
            state,
            index,
            shared,
            _place: place,
        }
    }

    fn live(&self) -> &Live {
        match &*self.state {
            SlotState::Open(live) => live,
            SlotState::Connecting | SlotState::Down(_) => {
                unreachable!("a lease is only made of an open connection")
            }
        }
    }

    /// Sends one command, in one write with those of the other operations
    /// sending at the same time, and returns its reply.
    pub(crate) async fn send(&mut self, cmd: Cmd) -> Result<Value, RedisError> {
        let live = self.live();
        let result = match &live.batcher {
            Some(batcher) => batcher.send(&live.node, &self.shared.runtime, cmd).await,
            None => live.node.clone().send(&cmd).await,
        };
        self.observe(&result);
        result
    }

    /// Starts the connection's replacement when the outcome shows it must
    /// be: see [`needs_replacing`].
    fn observe(&self, result: &Result<Value, RedisError>) {
        let live = self.live();
        if let Some(e) = needs_replacing(result, live.node.is_cluster()) {
            Shared::closed(self.shared, self.index, &live.health, Some(&e));
        }
    }

    /// [`observe`](Self::observe) for the replies of a pipeline.
    fn observe_all(&self, result: &Result<Vec<Value>, RedisError>) {
        match result {
            Ok(values) => values
                .iter()
                .for_each(|value| self.observe(&Ok(value.clone()))),
            Err(e) => self.observe(&Err(e.clone())),
        }
    }
}

/// The error, when `result` shows that its connection must be replaced:
/// - the socket dropped or the reply stream is out of step (redis-rs's
///   "unrecoverable" errors);
/// - on one server or a sentinel's primary, a `READONLY` or `MASTERDOWN`
///   reply: the node was demoted or lost its primary, and a new connection
///   reaches the current primary (through the sentinels, or a moved DNS
///   name); a cluster connection follows failovers itself.
///
/// A timeout is not such an outcome: the server may only be busy.
pub(crate) fn needs_replacing(
    result: &Result<Value, RedisError>,
    cluster: bool,
) -> Option<RedisError> {
    match result {
        Ok(Value::ServerError(e)) if !cluster && matches!(e.code(), "READONLY" | "MASTERDOWN") => {
            Some(RedisError::from(e.clone()))
        }
        Ok(_) => None,
        Err(e) if closes_connection(e, cluster) => Some(e.clone()),
        Err(_) => None,
    }
}

/// Whether a command's error means its connection must be replaced: a
/// dropped socket or a reply stream out of step (redis-rs's "unrecoverable"
/// errors), or, on one server or a sentinel's primary, a `READONLY` or
/// `MASTERDOWN` error (see [`needs_replacing`]).
pub(crate) fn closes_connection(e: &RedisError, cluster: bool) -> bool {
    e.is_unrecoverable_error() || (!cluster && matches!(e.code(), Some("READONLY" | "MASTERDOWN")))
}

/// Sends straight to the connection, without batching: for the rare
/// commands that are not an operation's (`FUNCTION LOAD`).
impl ConnectionLike for Lease<'_> {
    fn req_packed_command<'b>(&'b mut self, cmd: &'b Cmd) -> RedisFuture<'b, Value> {
        Box::pin(async move {
            let result = self.live().node.clone().send(cmd).await;
            self.observe(&result);
            result
        })
    }

    fn req_packed_commands<'b>(
        &'b mut self,
        cmd: &'b Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'b, Vec<Value>> {
        Box::pin(async move {
            let result = self
                .live()
                .node
                .clone()
                .req_packed_commands(cmd, offset, count)
                .await;
            self.observe_all(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.live().node.get_db()
    }
}
