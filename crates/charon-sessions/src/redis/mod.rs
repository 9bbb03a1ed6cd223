//! [`RedisStore`]: sessions in Redis 8 / Valkey 9, one round trip per
//! operation.
//!
//! Owns everything that talks to Redis: configuration ([`config`]), key
//! layout ([`keys`]), the function library ([`functions`]), the server check
//! ([`server`]), connecting to one server, a cluster or through Sentinel
//! ([`topology`]), the shared connections ([`connections`]) and the
//! connections of upserts that wait for replicas ([`replica_wait`]). Data
//! flows one way: validate → key/encode/sign → one Redis command →
//! verify/decode → result. It never retries an operation, except `FCALL`
//! once after re-registering a lost function library.

pub(crate) mod acl;
pub(crate) mod batch;
pub(crate) mod config;
pub(crate) mod connections;
pub(crate) mod error;
pub(crate) mod functions;
#[cfg(feature = "unstable-raw")]
pub(crate) mod raw;
pub(crate) mod replica_wait;
pub(crate) mod reply;
pub(crate) mod server;
#[cfg(feature = "tls")]
pub(crate) mod tls;
pub(crate) mod topology;
pub(crate) mod url;

use std::fmt;
use std::sync::Arc;

use redis::aio::ConnectionLike;
use tracing::warn;

use self::config::RedisStoreConfig;
use self::connections::{Connections, PoolState};
use self::error::store_error;
use self::functions::Reloader;
use self::replica_wait::ReplicaWaitLane;
use self::server::ServerInfo;
use self::topology::{Connector, Node};
use async_trait::async_trait;

use crate::error::StoreError;
use crate::layout::{hash_key, is_lock_field, lock_field};
use crate::limit::SessionLimit;
use crate::session::Session;
use crate::signing::SigningKey;
use crate::store::SessionStore;
use crate::stored::{self, Encoding};
use crate::telemetry::{self, Observer, Operation};
use crate::validate;

/// A [`SessionStore`](crate::SessionStore) in Redis >= 8.0 or Valkey >= 9.0.
///
/// Each user's sessions of one type live in one hash,
/// `<key prefix>.<user_id>.<session_type>`: field `<session_id>` holds the
/// HMAC-signed session, field `l.<session_id>` its lock version, both with a
/// per-field expiry at `refresh_expires_at` (`HSETEX … EXAT`). The key never
/// has a TTL of its own; it vanishes with its last field. Upserts run in a
/// Redis function that checks the lock version atomically.
///
/// Cheap to clone: clones share the connections.
///
/// ```no_run
/// # async fn run() -> Result<(), charon_sessions::StoreError> {
/// use std::time::Duration;
/// use charon_sessions::{RedisStore, RedisStoreConfig, Session, SessionStore};
/// use charon_sessions::signing::SigningKey;
///
/// let key = SigningKey::from_base_secret(b"a long random base secret")?;
/// let store = RedisStore::connect(RedisStoreConfig::new("redis://127.0.0.1:6379", key)).await?;
/// let mut session = Session::new_login("alice", Duration::from_secs(30 * 24 * 3600));
/// store.upsert(&mut session).await?;
/// assert!(store.get(&session.id, "alice", "full").await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    /// The shared connections, shared by clones too.
    connections: Connections,
    /// With `wait_for_replicas`: the upserts' own connections.
    replica_wait: Option<ReplicaWaitLane>,
    /// Loads a lost function library once for all who found it missing.
    reloader: Arc<Reloader>,
    /// Most connections to one node: shared ones plus the replica-wait lane.
    max_connections: usize,
    /// The signing key first, then the older keys still accepted on read.
    keys: Arc<[SigningKey]>,
    /// Whether a lost function library may be loaded again.
    register_functions: bool,
    /// First part of every key, `<key_prefix>.<user_id>.<session_type>`.
    key_prefix: String,
    /// Kind and version found at connect.
    server: ServerInfo,
    /// Most sessions per user and type, and what a create beyond does.
    session_limit: SessionLimit,
    /// `WAIT` after each upsert: replicas and timeout.
    wait_for_replicas: Option<(usize, std::time::Duration)>,
    /// How upserts encode sessions: format, map keys, size limit.
    encoding: Encoding,
    /// Spans and metrics of its operations (labels shared by clones).
    observer: Observer,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("server", &self.server)
            .field("key_prefix", &self.key_prefix)
            .field("pool", &self.pool_state())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects, checks the server, registers the function library and
    /// opens the shared connections.
    ///
    /// In order: the configuration's cross-field checks; one connection of
    /// its own runs `HELLO` (Redis >= 8.0 or Valkey >= 9.0 required; see
    /// [`ServerInfo`])
    /// and, unless
    /// [`register_functions(false)`](RedisStoreConfig::register_functions),
    /// `FUNCTION LOAD REPLACE`, then closes; then the
    /// [`pool_size`](RedisStoreConfig::pool_size) shared connections open.
    /// The connections of upserts that
    /// [wait for replicas](RedisStoreConfig::wait_for_replicas) open when
    /// first needed.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a bad URL or configuration,
    /// [`StoreError::UnsupportedServer`] naming the version found and the
    /// requirement, [`StoreError::Connection`] when the server cannot be
    /// reached (a TLS certificate that does not verify is reported so too),
    /// [`StoreError::Auth`] when it rejects the credentials or the user may
    /// not run `FUNCTION LOAD`, [`StoreError::Server`] for other
    /// error replies.
    pub async fn connect(config: RedisStoreConfig) -> Result<RedisStore, StoreError> {
        let (connector, server) = prepare_server(&config, config.register_functions).await?;
        let replica_wait = match config.wait_for_replicas {
            Some(_) => Some(ReplicaWaitLane::new(
                connector.clone(),
                config.replica_wait_connections,
            )?),
            None => None,
        };
        let connections = Connections::start(
            connector,
            connections::Settings {
                pool_size: config.pool_size,
                max_in_flight: config.max_in_flight,
                checkout_timeout: config.checkout_timeout,
            },
        )
        .await?;
        let keys = std::iter::once(config.signing_key)
            .chain(config.verification_keys)
            .collect();
        Ok(RedisStore {
            connections,
            replica_wait,
            reloader: Arc::default(),
            max_connections: config.pool_size
                + config
                    .wait_for_replicas
                    .map_or(0, |_| config.replica_wait_connections),
            keys,
            register_functions: config.register_functions,
            key_prefix: config.key_prefix,
            server,
            session_limit: config.session_limit,
            wait_for_replicas: config.wait_for_replicas,
            encoding: Encoding::new(
                config.payload_format,
                config.map_keys,
                config.max_session_size,
            ),
            observer: Observer::new(config.record_user_ids),
        })
    }

    /// Registers the function library on the server of `config`
    /// (`HELLO` for the version check, then `FUNCTION LOAD REPLACE`),
    /// without starting a store: for deployments whose application user may
    /// not load functions. Run it with an admin account's URL.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn load_function_library(
        config: &RedisStoreConfig,
    ) -> Result<ServerInfo, StoreError> {
        let (_, server) = prepare_server(config, true).await?;
        Ok(server)
    }

    /// Finds, and with `delete` deletes (`FUNCTION DELETE`), this store's
    /// function libraries of other versions on the one server of `config`
    /// (`HELLO` for the version check, then `FUNCTION LIST`): libraries
    /// named `charon_sessions_<hash>` other than
    /// [`function_library_name`](Self::function_library_name) whose
    /// functions are all named `charon_sessions_<name>_<hash>`. Charon's
    /// own `charon_redis_store_<hash>` and every other library are left
    /// alone. Returns the server and the libraries found (deleted, with
    /// `delete`; one deleted meanwhile by someone else is listed too).
    ///
    /// A store still running an old version reloads its library when it
    /// finds it missing (unless it runs with
    /// [`register_functions(false)`](RedisStoreConfig::register_functions)):
    /// delete only once no such store is left. Run it with an admin
    /// account's URL; on a cluster, on each primary.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a cluster or Sentinel `config`
    /// (this works on one server); otherwise as [`connect`](Self::connect),
    /// and the server's errors of `FUNCTION LIST` and `FUNCTION DELETE`.
    pub async fn prune_function_libraries(
        config: &RedisStoreConfig,
        delete: bool,
    ) -> Result<(ServerInfo, Vec<String>), StoreError> {
        if !matches!(config.topology, config::Topology::Single { .. }) {
            return Err(StoreError::InvalidInput(
                "pruning function libraries works on one server: give the URL of one node \
                 (each primary of a cluster, the primary behind Sentinel)"
                    .to_owned(),
            ));
        }
        let (_, mut conn, server) = open_setup(config).await?;
        let others: Vec<String> = functions::list(&mut conn)
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|(name, functions)| functions::is_other_version(name, functions))
            .map(|(name, _)| name)
            .collect();
        if delete {
            for name in &others {
                functions::delete(&mut conn, name)
                    .await
                    .map_err(store_error)?;
            }
        }
        Ok((server, others))
    }

    /// The Lua source of the function library, as `FUNCTION LOAD` receives it.
    pub fn function_library_code() -> &'static str {
        &functions::LIBRARY.code
    }

    /// The server this store connected to (kind and version).
    pub fn server(&self) -> &ServerInfo {
        &self.server
    }

    /// The connections' current state: open and being replaced, the
    /// operations in flight and waiting for a place.
    pub fn pool_state(&self) -> PoolState {
        let state = self.connections.state();
        PoolState {
            connections: state.open,
            reconnecting: state.reconnecting,
            in_flight: state.in_flight,
            waiting: state.waiting,
            max_in_flight: state.max_in_flight,
            replica_wait_connections: self.replica_wait.as_ref().map_or(0, ReplicaWaitLane::open),
            max_connections: self.max_connections,
        }
    }

    /// The name of the registered function library
    /// (`charon_sessions_<hash of crate version and script>`).
    pub fn function_library_name() -> &'static str {
        &functions::LIBRARY.name
    }

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
    #[cfg(feature = "unstable-raw")]
    pub async fn run_command<T: ::redis::FromRedisValue>(
        &self,
        cmd: &::redis::Cmd,
    ) -> Result<T, StoreError> {
        raw::check_shareable(cmd)?;
        self.query(cmd.clone()).await
    }

    /// What [`upsert`](crate::SessionStore::upsert) of `session` would
    /// send, prepared once: the hash key, the fields, the signed value
    /// (encoding `session` with `lock_version + 1` in the configured payload
    /// format, as upsert does) and the
    /// expiry. [`UpsertCommand::cmd`](raw::UpsertCommand::cmd) then builds the `FCALL` for any lock
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
    #[cfg(feature = "unstable-raw")]
    pub fn upsert_command(
        &self,
        session: &Session,
    ) -> Result<Option<raw::UpsertCommand>, StoreError> {
        let Some(sealed) = stored::seal(session, &self.encoding, &self.keys[0])? else {
            return Ok(None);
        };
        let key = self.key(&session.user_id, &session.session_type);
        Ok(Some(raw::UpsertCommand::new(
            key,
            session,
            sealed,
            self.session_limit,
        )))
    }

    /// Runs one command on a shared connection.
    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        let mut lease = self.connections.lease().await?;
        let reply = lease.send(cmd).await;
        // The place in flight ends with the reply, before it is converted.
        drop(lease);
        let value = reply
            .and_then(redis::Value::extract_error)
            .map_err(store_error)?;
        redis::from_redis_value(value).map_err(|e| store_error(e.into()))
    }

    /// Runs the upsert command `make_cmd` builds (with `WAIT` when
    /// configured): on a shared connection, or on one of the replica-wait
    /// lane's (which bounds those upserts by itself: they take no place
    /// among `max_in_flight`, so that upserts held by `WAIT` never keep other
    /// operations out). Loads a lost function library (once, however many
    /// upserts found it missing) and retries once. Returns the function's
    /// reply and, with `WAIT`, how many replicas acknowledged.
    async fn run_upsert(
        &self,
        make_cmd: impl Fn() -> redis::Cmd,
    ) -> Result<(i64, Option<usize>), StoreError> {
        let checkout_timeout = self.connections.checkout_timeout();
        if let (Some(lane), Some(wait)) = (&self.replica_wait, self.wait_for_replicas) {
            let mut conn = lane.get(checkout_timeout, checkout_timeout).await?;
            let cmd = make_cmd();
            let seen = self.reloader.note();
            return match functions::call_upsert(&mut *conn, &cmd, Some(wait)).await {
                Err(e) if functions::is_function_not_found(&e) => {
                    self.reload_library(seen, &mut *conn).await?;
                    functions::call_upsert(&mut *conn, &cmd, Some(wait))
                        .await
                        .map_err(store_error)
                }
                result => result.map_err(store_error),
            };
        }
        let mut lease = self.connections.lease().await?;
        let seen = self.reloader.note();
        let reply = match lease
            .send(make_cmd())
            .await
            .and_then(redis::Value::extract_error)
        {
            Err(e) if functions::is_function_not_found(&e) => {
                self.reload_library(seen, &mut lease).await?;
                lease
                    .send(make_cmd())
                    .await
                    .and_then(redis::Value::extract_error)
            }
            result => result,
        }
        .map_err(store_error)?;
        drop(lease);
        let written = redis::from_redis_value(reply).map_err(|e| store_error(e.into()))?;
        Ok((written, None))
    }

    /// Loads the function library on `conn` after an `FCALL` found it
    /// missing, unless a load was attempted since `seen` (the reloader's
    /// note from right before that `FCALL` was sent).
    ///
    /// # Errors
    ///
    /// [`StoreError::FunctionLibraryMissing`] when the store may not load
    /// it; the load's error (or that of the load attempted since `seen`);
    /// [`StoreError::PoolTimeout`] when a load under way took longer than
    /// the checkout timeout.
    async fn reload_library(
        &self,
        seen: functions::Note,
        conn: &mut impl ConnectionLike,
    ) -> Result<(), StoreError> {
        if !self.register_functions {
            return Err(StoreError::FunctionLibraryMissing(
                functions::LIBRARY.name.clone(),
            ));
        }
        let wait = self.connections.checkout_timeout();
        if self
            .reloader
            .reload(seen, functions::load_raw(conn), wait)
            .await?
        {
            warn!(
                library = %functions::LIBRARY.name,
                "function library missing on the server (restart, FUNCTION FLUSH or failover): registering it again"
            );
            telemetry::function_registered();
        }
        Ok(())
    }

    fn key(&self, user_id: &str, session_type: &str) -> String {
        hash_key(&self.key_prefix, user_id, session_type)
    }

    /// Opens one stored value read from `key`/`field` ([`stored::open`]);
    /// `None` (a warning naming the key, never the value, and a count in
    /// `charon_sessions_rejected_values_total`) when it is not a valid,
    /// unexpired session of that address.
    fn open_value(
        &self,
        key: &str,
        field: &str,
        user_id: &str,
        session_type: &str,
        value: &[u8],
        now: i64,
    ) -> Option<Session> {
        match stored::open(value, &self.keys, field, user_id, session_type, now) {
            Ok(session) => Some(session),
            Err(rejected) => {
                telemetry::rejected_value(rejected.reason);
                let reason = rejected.reason.name();
                if self.observer.records_user_ids() {
                    warn!(
                        key,
                        reason,
                        detail = %rejected.detail(),
                        "ignoring invalid stored session"
                    );
                } else {
                    warn!(
                        session_type,
                        reason,
                        detail = %rejected.detail(),
                        "ignoring invalid stored session"
                    );
                }
                None
            }
        }
    }
}

/// The configuration's checks, then one connection of its own and the
/// server check on it. Returns the connector (topology, URLs, TLS
/// certificates, timeouts), that connection and what the server is.
async fn open_setup(
    config: &RedisStoreConfig,
) -> Result<(Connector, Node, ServerInfo), StoreError> {
    config.check()?;
    let connector = Connector::new(config)?;
    let mut setup = connector.connect(None).await.map_err(store_error)?;
    let server = server::check(&mut setup).await?;
    Ok((connector, setup, server))
}

/// [`open_setup`], then, when `register`, `FUNCTION LOAD` on its
/// connection, which then closes. Returns the connector and what the
/// server is.
async fn prepare_server(
    config: &RedisStoreConfig,
    register: bool,
) -> Result<(Connector, ServerInfo), StoreError> {
    let (connector, mut setup, server) = open_setup(config).await?;
    if register {
        functions::load(&mut setup).await?;
    }
    Ok((connector, server))
}

/// The operations themselves; the trait impl wraps them in telemetry.
impl RedisStore {
    async fn get_inner(
        &self,
        session_id: &str,
        user_id: &str,
        session_type: &str,
    ) -> Result<Option<Session>, StoreError> {
        validate::address(session_id, user_id, session_type)?;
        let key = self.key(user_id, session_type);
        let mut cmd = redis::cmd("HGET");
        cmd.arg(&key).arg(session_id);
        let value: Option<Vec<u8>> = self.query(cmd).await?;
        Ok(value.and_then(|v| {
            self.open_value(&key, session_id, user_id, session_type, &v, Session::now())
        }))
    }

    async fn upsert_inner(&self, session: &mut Session) -> Result<(), StoreError> {
        let Some(sealed) = stored::seal(session, &self.encoding, &self.keys[0])? else {
            return Ok(());
        };
        let new_lock = sealed.lock_version;
        let key = self.key(&session.user_id, &session.session_type);
        let lock_field = lock_field(&session.id);
        let make_cmd = || {
            functions::upsert_cmd(
                &key,
                &session.id,
                &lock_field,
                new_lock,
                &sealed.value,
                session.refresh_expires_at,
                self.session_limit,
            )
        };
        let (reply, acknowledged) = self.run_upsert(make_cmd).await?;
        let wait = self.wait_for_replicas;
        match functions::Upserted::from_reply(reply) {
            functions::Upserted::Written { evicted } => telemetry::sessions_evicted(evicted),
            functions::Upserted::Conflict => return Err(StoreError::Conflict),
            functions::Upserted::Refused => {
                return Err(StoreError::TooManySessions {
                    limit: self.session_limit.max().unwrap_or(0),
                });
            }
        }
        session.lock_version = new_lock;
        if let (Some((required, _)), Some(acknowledged)) = (wait, acknowledged)
            && acknowledged < required
        {
            return Err(StoreError::ReplicationTimeout {
                acknowledged,
                required,
            });
        }
        Ok(())
    }

    async fn delete_inner(
        &self,
        session_id: &str,
        user_id: &str,
        session_type: &str,
    ) -> Result<(), StoreError> {
        validate::address(session_id, user_id, session_type)?;
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(self.key(user_id, session_type))
            .arg(session_id)
            .arg(lock_field(session_id));
        self.query::<()>(cmd).await?;
        Ok(())
    }

    async fn get_all_inner(
        &self,
        user_id: &str,
        session_type: &str,
    ) -> Result<Vec<Session>, StoreError> {
        validate::owner(user_id, session_type)?;
        let key = self.key(user_id, session_type);
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(&key);
        let fields: Vec<(Vec<u8>, Vec<u8>)> = self.query(cmd).await?;
        let now = Session::now();
        Ok(fields
            .into_iter()
            .filter(|(field, _)| !is_lock_field(field))
            .filter_map(|(field, value)| {
                let Ok(field) = std::str::from_utf8(&field) else {
                    if self.observer.records_user_ids() {
                        warn!(key, "ignoring a hash field that is not a session id");
                    } else {
                        warn!(
                            session_type,
                            "ignoring a hash field that is not a session id"
                        );
                    }
                    return None;
                };
                self.open_value(&key, field, user_id, session_type, &value, now)
            })
            .collect())
    }

    async fn delete_all_inner(&self, user_id: &str, session_type: &str) -> Result<(), StoreError> {
        validate::owner(user_id, session_type)?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.key(user_id, session_type));
        self.query::<()>(cmd).await?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn get(
        &self,
        id: &str,
        user_id: &str,
        kind: &str,
    ) -> Result<Option<Session>, StoreError> {
        let work = || self.get_inner(id, user_id, kind);
        self.observer
            .observe(Operation::Get, kind, user_id, work)
            .await
    }

    async fn upsert(&self, session: &mut Session) -> Result<(), StoreError> {
        // Not `observe`: the operation borrows `session` mutably while its
        // type and user id label the span.
        let observation =
            self.observer
                .start(Operation::Upsert, &session.session_type, &session.user_id);
        let result = observation.run(self.upsert_inner(session)).await;
        self.observer
            .finish(observation, result, &session.session_type)
    }

    async fn delete(&self, id: &str, user_id: &str, kind: &str) -> Result<(), StoreError> {
        let work = || self.delete_inner(id, user_id, kind);
        self.observer
            .observe(Operation::Delete, kind, user_id, work)
            .await
    }

    async fn get_all(&self, user_id: &str, kind: &str) -> Result<Vec<Session>, StoreError> {
        let work = || self.get_all_inner(user_id, kind);
        self.observer
            .observe(Operation::GetAll, kind, user_id, work)
            .await
    }

    async fn delete_all(&self, user_id: &str, kind: &str) -> Result<(), StoreError> {
        let work = || self.delete_all_inner(user_id, kind);
        self.observer
            .observe(Operation::DeleteAll, kind, user_id, work)
            .await
    }
}
