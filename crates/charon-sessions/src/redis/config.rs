//! [`RedisStoreConfig`]: where the server is, how values are signed, and how
//! the store shares its connections. Setters follow bb8's builder style; the
//! cross-field checks run at [`RedisStore::connect`](crate::RedisStore::connect).

use std::fmt;
use std::time::Duration;

use super::url::redacted_url;
use crate::codec::{MapKeys, PayloadFormat};
use crate::error::StoreError;
use crate::limit::{DEFAULT_MAX_SESSION_SIZE, SessionLimit};
use crate::signing::SigningKey;
use crate::validate;

/// Default [`RedisStoreConfig::pool_size`]: shared connections per node.
const DEFAULT_POOL_SIZE: usize = 2;
/// Default [`RedisStoreConfig::max_in_flight`].
const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Default [`RedisStoreConfig::replica_wait_connections`].
const DEFAULT_REPLICA_WAIT_CONNECTIONS: usize = 16;
/// Most connections of either kind per node a configuration may ask for.
const MAX_POOL_SIZE: usize = 1024;
/// Largest `max_in_flight` (far below what Tokio's semaphore can count).
const MAX_IN_FLIGHT_LIMIT: usize = 1 << 20;

/// Where the data lives: one server, a cluster, or a primary found
/// through Sentinel.
#[derive(Clone)]
pub(crate) enum Topology {
    /// One server at `url` (its replicas, if any, are not used).
    Single {
        /// `redis://`, `rediss://` or `redis+unix://`.
        url: String,
    },
    /// A Redis Cluster, discovered from any of the seed nodes.
    #[cfg(feature = "cluster")]
    Cluster {
        /// `redis://` or `rediss://` URLs of some of the nodes.
        seeds: Vec<String>,
    },
    /// A primary the sentinels name, followed across failovers.
    #[cfg(feature = "sentinel")]
    Sentinel {
        /// `redis://` or `rediss://` URLs of the sentinels, with the
        /// sentinels' own credentials.
        sentinels: Vec<String>,
        /// The name the sentinels monitor the primary by.
        primary_name: String,
        /// Username for the data nodes (`None`: the default user).
        node_username: Option<String>,
        /// Password for the data nodes.
        node_password: Option<String>,
    },
}

/// Configuration of a [`RedisStore`](crate::RedisStore).
///
/// ```
/// use std::time::Duration;
/// use charon_sessions::RedisStoreConfig;
/// use charon_sessions::signing::SigningKey;
///
/// let config = RedisStoreConfig::new("redis://127.0.0.1:6379/0", SigningKey::from_bytes(&[7; 32]).unwrap())
///     .key_prefix("myapp")
///     .max_in_flight(512)
///     .checkout_timeout(Duration::from_secs(1));
/// // Neither the signing key nor a password in the URL is ever shown.
/// assert!(format!("{config:?}").contains("<redacted>"));
/// ```
#[derive(Clone)]
pub struct RedisStoreConfig {
    pub(crate) topology: Topology,
    pub(crate) signing_key: SigningKey,
    pub(crate) key_prefix: String,
    pub(crate) pool_size: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) checkout_timeout: Duration,
    pub(crate) replica_wait_connections: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) max_session_size: usize,
    pub(crate) verification_keys: Vec<SigningKey>,
    pub(crate) register_functions: bool,
    pub(crate) record_user_ids: bool,
    pub(crate) session_limit: SessionLimit,
    #[cfg(feature = "tls")]
    pub(crate) tls_root_certificate: Option<Vec<u8>>,
    #[cfg(feature = "tls")]
    pub(crate) tls_client_certificate: Option<(Vec<u8>, Vec<u8>)>,
    pub(crate) wait_for_replicas: Option<(usize, Duration)>,
    #[cfg(feature = "cluster")]
    pub(crate) read_from_replicas: bool,
    pub(crate) payload_format: PayloadFormat,
    pub(crate) map_keys: MapKeys,
}

impl RedisStoreConfig {
    /// The default key prefix, Charon's.
    pub const DEFAULT_KEY_PREFIX: &'static str = "charon_";

    /// A configuration for the server at `url`, signing with `signing_key`.
    ///
    /// URL forms: `redis://[user][:password@]host[:port][/db]`,
    /// `rediss://…` (TLS, verified against the system's root certificates)
    /// and `redis+unix:///path/to/socket[?db=N&user=U&pass=P]`.
    pub fn new(url: impl Into<String>, signing_key: SigningKey) -> RedisStoreConfig {
        Self::with_topology(Topology::Single { url: url.into() }, signing_key)
    }

    /// A configuration for a Redis Cluster reached through `seed_urls`
    /// (`redis://[user][:password@]host:port` or `rediss://…`; any few of
    /// the nodes: the client learns the others with `CLUSTER SLOTS` and
    /// follows `MOVED`/`ASK` redirections and failovers by itself).
    ///
    /// Every operation touches one key, so each runs on the one primary
    /// that owns the key's slot and stays atomic. The function library is
    /// loaded on every primary at connect, and again on all primaries when
    /// one of them answers "function not found" (a promoted replica, an
    /// added node).
    ///
    /// Each of the [`pool_size`](Self::pool_size) shared connections is a
    /// cluster connection holding one multiplexed socket per node, so the
    /// store opens `pool_size` sockets to every node.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster<I, U>(seed_urls: I, signing_key: SigningKey) -> RedisStoreConfig
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        let seeds = seed_urls.into_iter().map(Into::into).collect();
        Self::with_topology(Topology::Cluster { seeds }, signing_key)
    }

    /// A configuration for a primary monitored by Redis Sentinel:
    /// `sentinel_urls` are the sentinels (`redis://[user][:password@]host:port`
    /// with the sentinels' own credentials, if any; `rediss://` for TLS,
    /// which then also applies to the data nodes), `primary_name` the name
    /// they monitor it by (`sentinel monitor <name> …`).
    ///
    /// Each connection the store opens asks the sentinels for the current
    /// primary (`SENTINEL MASTERS`) and checks that it is one (`ROLE`).
    /// After a failover, connections to the old primary fail (closed, or
    /// `READONLY` once it is demoted) and are replaced in the background by
    /// connections to the new one; the function library is loaded there at
    /// the first upsert that finds it missing.
    ///
    /// The data nodes' credentials, when they differ from none, are set with
    /// [`sentinel_node_credentials`](Self::sentinel_node_credentials).
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn sentinel<I, U>(
        sentinel_urls: I,
        primary_name: impl Into<String>,
        signing_key: SigningKey,
    ) -> RedisStoreConfig
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        let topology = Topology::Sentinel {
            sentinels: sentinel_urls.into_iter().map(Into::into).collect(),
            primary_name: primary_name.into(),
            node_username: None,
            node_password: None,
        };
        Self::with_topology(topology, signing_key)
    }

    fn with_topology(topology: Topology, signing_key: SigningKey) -> RedisStoreConfig {
        RedisStoreConfig {
            topology,
            signing_key,
            key_prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            checkout_timeout: Duration::from_secs(5),
            replica_wait_connections: DEFAULT_REPLICA_WAIT_CONNECTIONS,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            max_session_size: DEFAULT_MAX_SESSION_SIZE,
            verification_keys: Vec::new(),
            register_functions: true,
            record_user_ids: false,
            session_limit: SessionLimit::DEFAULT,
            #[cfg(feature = "tls")]
            tls_root_certificate: None,
            #[cfg(feature = "tls")]
            tls_client_certificate: None,
            wait_for_replicas: None,
            #[cfg(feature = "cluster")]
            read_from_replicas: false,
            payload_format: PayloadFormat::Compact,
            map_keys: MapKeys::Binaries,
        }
    }

    /// The format [`upsert`](crate::SessionStore::upsert) writes session
    /// values in. Reads accept every format whatever this says, so it can be
    /// changed on a running deployment: each session is rewritten in the new
    /// format at its next refresh.
    ///
    /// [`PayloadFormat::Charon`] writes Charon 4.3's value, `=:=` equal to
    /// what Charon's Redis store writes on any Erlang/OTP release (byte for
    /// byte OTP 25's `term_to_binary(S, [{minor_version, 2}])`), so that an
    /// Elixir service using Charon and this store share sessions (same key
    /// prefix, same base secret); see GUIDE.md's "Sharing sessions with an
    /// Elixir Charon service".
    ///
    /// Defaults to [`PayloadFormat::Compact`].
    #[must_use]
    pub fn payload_format(mut self, payload_format: PayloadFormat) -> Self {
        self.payload_format = payload_format;
        self
    }

    /// With [`PayloadFormat::Charon`], whether maps the application puts in
    /// `extra_payload` get binary keys (`%{"ip" => …}`) or atom keys
    /// (`%{ip: …}`) in Erlang. Keys of maps read from Charon keep their
    /// type either way. Ignored by the compact format.
    ///
    /// Defaults to [`MapKeys::Binaries`].
    #[must_use]
    pub fn charon_map_keys(mut self, map_keys: MapKeys) -> Self {
        self.map_keys = map_keys;
        self
    }

    /// The username (or `None` for the default user) and password for the
    /// data nodes of a [`sentinel`](Self::sentinel) configuration, which may
    /// differ from the sentinels' own (those go into the sentinel URLs).
    /// Ignored by the other topologies, whose URLs carry the credentials.
    /// The password is never shown in `Debug` output.
    ///
    /// Defaults to none (no `AUTH` on the data nodes).
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    #[must_use]
    pub fn sentinel_node_credentials(
        mut self,
        username: Option<String>,
        password: impl Into<String>,
    ) -> Self {
        if let Topology::Sentinel {
            node_username,
            node_password,
            ..
        } = &mut self.topology
        {
            *node_username = username;
            *node_password = Some(password.into());
        }
        self
    }

    /// After each upsert, wait until at least `replicas` replicas of the
    /// primary that took it have acknowledged it (`WAIT replicas
    /// timeout_ms`, sent in the same round trip as the `FCALL`, to the same
    /// node), or `timeout` has passed.
    ///
    /// Redis replication is asynchronous: without this, an upsert the store
    /// acknowledged can be lost when its primary dies before the replica
    /// that takes over received it. With it, an acknowledged upsert is on
    /// `replicas` replicas too (in their memory: still lost if those die as
    /// well, and `WAIT` does not make the failover pick an up-to-date
    /// replica, so a loss remains possible, only much rarer). When fewer
    /// replicas acknowledge in time, the upsert fails with
    /// [`StoreError::ReplicationTimeout`]; the write *was* applied on the
    /// primary then. Costs a round trip's worth of latency to the replica on
    /// every upsert (see `RELIABILITY.md` for figures). `timeout` must be at
    /// least 250 ms shorter than
    /// [`command_timeout`](Self::command_timeout) (checked at connect).
    ///
    /// Defaults to off (`None`).
    #[must_use]
    pub fn wait_for_replicas(mut self, replicas: usize, timeout: Duration) -> Self {
        self.wait_for_replicas = Some((replicas, timeout));
        self
    }

    /// In a [`cluster`](Self::cluster), send `get` and `get_all` to
    /// replicas instead of primaries, to spread the read load.
    ///
    /// What it costs: replication is asynchronous, so a read right after an
    /// upsert may return the previous version of a session (whose
    /// `lock_version` then makes the next upsert a
    /// [`StoreError::Conflict`]), or miss a session just created, or still
    /// see one just deleted. Refresh flows that read and then upsert should
    /// keep reading from primaries. Ignored by the other topologies.
    ///
    /// Defaults to `false`.
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    #[must_use]
    pub fn read_from_replicas(mut self, read_from_replicas: bool) -> Self {
        self.read_from_replicas = read_from_replicas;
        self
    }

    /// Prefix of every key the store uses: keys are
    /// `<prefix>.<user_id>.<session_type>`. `[A-Za-z0-9_:-]`, 1–64 bytes.
    ///
    /// Defaults to `"charon_"`, Charon's own.
    #[must_use]
    pub fn key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// Shared connections to each server node, opened at connect and kept
    /// open. Every operation sends its command on one of them in turn, and
    /// concurrent commands travel pipelined on the same socket, so a few
    /// connections serve thousands of concurrent operations; more rarely
    /// help (see `BENCHMARKS.md` for the measurement behind the default).
    /// A connection whose socket closes is replaced in the background while
    /// the others keep serving. At least 1.
    ///
    /// Defaults to 2.
    #[must_use]
    pub fn pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
    }

    /// Most operations in flight at once on the shared connections (sent
    /// and not yet answered, or being prepared to send). An operation beyond
    /// the limit waits for a place, at most
    /// [`checkout_timeout`](Self::checkout_timeout), then fails with
    /// [`StoreError::PoolTimeout`]. The limit bounds the callers waiting on
    /// the store, and so the commands it adds to a slow server's queue; an
    /// operation that gave up (its `command_timeout` passed, or its caller
    /// dropped it) frees its place even though its command, once written,
    /// still waits on the server. Upserts that
    /// [wait for replicas](Self::wait_for_replicas) are bounded by
    /// [`replica_wait_connections`](Self::replica_wait_connections) instead.
    /// At least 1.
    ///
    /// Defaults to 1024.
    #[must_use]
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight;
        self
    }

    /// How long an operation may wait for a place among
    /// [`max_in_flight`](Self::max_in_flight), or for a connection being
    /// reopened, or (with [`wait_for_replicas`](Self::wait_for_replicas))
    /// for one of the upserts' own connections, before it fails with
    /// [`StoreError::PoolTimeout`]. Nothing has been sent then.
    ///
    /// Defaults to 5 seconds.
    #[must_use]
    pub fn checkout_timeout(mut self, checkout_timeout: Duration) -> Self {
        self.checkout_timeout = checkout_timeout;
        self
    }

    /// With [`wait_for_replicas`](Self::wait_for_replicas): most
    /// connections kept for upserts, each lent to one upsert at a time.
    ///
    /// `WAIT` blocks the connection it runs on until the replicas answer
    /// (up to its timeout), so upserts that wait for replicas do not use
    /// the shared connections, where they would hold up every command
    /// queued behind them; they take one of these instead, opened when
    /// first needed and kept. An upsert finding all of them busy waits for
    /// one, at most [`checkout_timeout`](Self::checkout_timeout). In a
    /// cluster each is a cluster connection (a socket per node). Unused
    /// without `wait_for_replicas`. At least 1.
    ///
    /// Defaults to 16.
    #[must_use]
    pub fn replica_wait_connections(mut self, replica_wait_connections: usize) -> Self {
        self.replica_wait_connections = replica_wait_connections;
        self
    }

    /// How long opening one connection (TCP, TLS, AUTH, SELECT) may take.
    ///
    /// Defaults to 2 seconds.
    #[must_use]
    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// How long one command may wait for its reply before it fails with
    /// [`StoreError::Connection`]. The connection stays: its other commands
    /// are unaffected, and the late reply is discarded when it comes.
    ///
    /// Defaults to 2 seconds.
    #[must_use]
    pub fn command_timeout(mut self, command_timeout: Duration) -> Self {
        self.command_timeout = command_timeout;
        self
    }

    /// Largest encoded session, in bytes; a bigger one is refused with
    /// [`StoreError::InvalidInput`] before anything is sent.
    ///
    /// Defaults to 65 536 (64 KiB).
    #[must_use]
    pub fn max_session_size(mut self, max_session_size: usize) -> Self {
        self.max_session_size = max_session_size;
        self
    }

    /// Older signing keys still accepted when reading, for key rotation.
    ///
    /// Every write signs with the signing key given to [`new`](Self::new);
    /// a stored value is accepted when it verifies under that key or any of
    /// these (tried in order). Sessions thus migrate to the new key as they
    /// refresh; drop an old key once its longest refresh window has passed.
    ///
    /// Defaults to none.
    #[must_use]
    pub fn verification_keys(mut self, verification_keys: Vec<SigningKey>) -> Self {
        self.verification_keys = verification_keys;
        self
    }

    /// Whether [`connect`](crate::RedisStore::connect) registers the function
    /// library (`FUNCTION LOAD REPLACE`) and re-registers it when the server
    /// has lost it.
    ///
    /// Turn it off to run with an ACL user that may not load functions; load
    /// the library beforehand with an admin account, with
    /// [`RedisStore::load_function_library`](crate::RedisStore::load_function_library)
    /// or `charon-sessions functions load`. An upsert that then finds the
    /// library missing fails with [`StoreError::FunctionLibraryMissing`].
    ///
    /// Defaults to `true`.
    #[must_use]
    pub fn register_functions(mut self, register_functions: bool) -> Self {
        self.register_functions = register_functions;
        self
    }

    /// How many sessions of one type a user may have, and what a new
    /// session beyond does: evict the soonest-expiring ones, or be refused
    /// with [`StoreError::TooManySessions`] (see [`SessionLimit`]). Checked
    /// in the upsert function, atomically with the create.
    ///
    /// Defaults to [`SessionLimit::EvictSoonestExpiring`] of
    /// [`SessionLimit::DEFAULT`]
    /// (100).
    #[must_use]
    pub fn max_sessions_per_user(mut self, limit: SessionLimit) -> Self {
        self.session_limit = limit;
        self
    }

    /// Whether the store's tracing spans carry the `user_id` field, and
    /// its warnings about rejected values name the key (which contains the
    /// user id). User ids are personal data in most deployments, so they
    /// stay out of logs unless this is turned on; spans then carry only the
    /// operation and session type. See [`telemetry`](crate::telemetry).
    ///
    /// Defaults to `false`.
    #[must_use]
    pub fn record_user_ids(mut self, record_user_ids: bool) -> Self {
        self.record_user_ids = record_user_ids;
        self
    }

    /// A CA certificate (PEM) to verify the server's TLS certificate against,
    /// instead of the system's root certificates. Used with `rediss://` URLs.
    ///
    /// Defaults to none (the system's roots).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[must_use]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificate = Some(pem.into());
        self
    }

    /// A client certificate and its private key (both PEM) for mutual TLS.
    /// The key is never shown in `Debug` output.
    ///
    /// Defaults to none.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[must_use]
    pub fn tls_client_certificate(
        mut self,
        certificate_pem: impl Into<Vec<u8>>,
        private_key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client_certificate = Some((certificate_pem.into(), private_key_pem.into()));
        self
    }

    /// The cross-field checks `connect` runs first.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        validate::key_prefix(&self.key_prefix)?;
        let invalid = |msg: &str| Err(StoreError::InvalidInput(msg.to_owned()));
        match &self.topology {
            Topology::Single { .. } => {}
            #[cfg(feature = "cluster")]
            Topology::Cluster { seeds } => {
                if seeds.is_empty() {
                    return invalid("a cluster needs at least one seed URL");
                }
            }
            #[cfg(feature = "sentinel")]
            Topology::Sentinel {
                sentinels,
                primary_name,
                ..
            } => {
                if sentinels.is_empty() {
                    return invalid("sentinel needs at least one sentinel URL");
                }
                if primary_name.is_empty() {
                    return invalid("sentinel needs the primary's name");
                }
            }
        }
        if let Some((replicas, timeout)) = self.wait_for_replicas {
            if replicas == 0 {
                return invalid("wait_for_replicas needs at least 1 replica");
            }
            // WAIT with a timeout of 0 waits forever.
            if timeout < Duration::from_millis(1) {
                return invalid("wait_for_replicas timeout must be at least 1 ms");
            }
            // The reply to FCALL + WAIT arrives after the WAIT timeout: a
            // command_timeout that fires first would report an applied
            // write as a broken connection instead of ReplicationTimeout.
            if timeout + Duration::from_millis(250) > self.command_timeout {
                return invalid(
                    "wait_for_replicas timeout must be at least 250 ms shorter than command_timeout",
                );
            }
        }
        for (name, value, max) in [
            ("pool_size", self.pool_size, MAX_POOL_SIZE),
            ("max_in_flight", self.max_in_flight, MAX_IN_FLIGHT_LIMIT),
            (
                "replica_wait_connections",
                self.replica_wait_connections,
                MAX_POOL_SIZE,
            ),
        ] {
            if value == 0 || value > max {
                return invalid(&format!("{name} must be between 1 and {max}"));
            }
        }
        for (name, value) in [
            ("checkout_timeout", self.checkout_timeout),
            ("connect_timeout", self.connect_timeout),
            ("command_timeout", self.command_timeout),
        ] {
            if value.is_zero() {
                return invalid(&format!("{name} must be greater than zero"));
            }
        }
        self.session_limit.check()?;
        if self.max_session_size == 0 {
            return invalid("max_session_size must be greater than zero");
        }
        Ok(())
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[cfg(any(feature = "cluster", feature = "sentinel"))]
        let redacted = |urls: &[String]| urls.iter().map(|u| redacted_url(u)).collect::<Vec<_>>();
        match self {
            Topology::Single { url } => f.debug_tuple("Single").field(&redacted_url(url)).finish(),
            #[cfg(feature = "cluster")]
            Topology::Cluster { seeds } => {
                f.debug_tuple("Cluster").field(&redacted(seeds)).finish()
            }
            #[cfg(feature = "sentinel")]
            Topology::Sentinel {
                sentinels,
                primary_name,
                node_username,
                node_password,
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", &redacted(sentinels))
                .field("primary_name", primary_name)
                .field("node_username", node_username)
                .field(
                    "node_password",
                    &node_password.as_ref().map(|_| "<redacted>"),
                )
                .finish(),
        }
    }
}

impl fmt::Debug for RedisStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("RedisStoreConfig");
        f.field("topology", &self.topology)
            .field("signing_key", &self.signing_key)
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("max_in_flight", &self.max_in_flight)
            .field("checkout_timeout", &self.checkout_timeout)
            .field("replica_wait_connections", &self.replica_wait_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("max_session_size", &self.max_session_size)
            .field("verification_keys", &self.verification_keys)
            .field("register_functions", &self.register_functions)
            .field("record_user_ids", &self.record_user_ids)
            .field("session_limit", &self.session_limit);
        #[cfg(feature = "tls")]
        f.field(
            "tls_root_certificate",
            &self.tls_root_certificate.as_ref().map(|_| "<PEM>"),
        )
        .field(
            "tls_client_certificate",
            &self
                .tls_client_certificate
                .as_ref()
                .map(|_| "<PEM, key redacted>"),
        );
        f.field("wait_for_replicas", &self.wait_for_replicas);
        #[cfg(feature = "cluster")]
        f.field("read_from_replicas", &self.read_from_replicas);
        f.field("payload_format", &self.payload_format)
            .field("map_keys", &self.map_keys)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> RedisStoreConfig {
        RedisStoreConfig::new(url, SigningKey::from_bytes(b"k").unwrap())
    }

    #[test]
    fn defaults() {
        let c = config("redis://127.0.0.1");
        assert_eq!(c.key_prefix, "charon_");
        assert_eq!((c.pool_size, c.max_in_flight), (2, 1024));
        assert_eq!(c.replica_wait_connections, 16);
        assert_eq!(c.checkout_timeout, Duration::from_secs(5));
        assert_eq!(c.max_session_size, 65_536);
        assert_eq!(c.payload_format, PayloadFormat::Compact);
        assert_eq!(c.map_keys, MapKeys::Binaries);
        c.check().unwrap();
    }

    #[test]
    fn debug_redacts_passwords() {
        for url in [
            "redis://user:hunter2@127.0.0.1:6379/2",
            "rediss://:hunter2@example.com",
            "redis+unix:///tmp/redis.sock?db=1&pass=hunter2",
        ] {
            let shown = format!("{:?}", config(url));
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        let shown = format!("{:?}", config("redis://user:hunter2@127.0.0.1:6379/2"));
        assert!(
            shown.contains("user") && shown.contains("6379/2"),
            "{shown}"
        );
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn cluster_debug_redacts_passwords_and_checks_seeds() {
        let key = || SigningKey::from_bytes(b"k").unwrap();
        let cluster = RedisStoreConfig::cluster(
            [
                "redis://:hunter2@10.0.0.1:6379",
                "redis://:hunter2@10.0.0.2:6379",
            ],
            key(),
        );
        let shown = format!("{cluster:?}");
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let no_seed = RedisStoreConfig::cluster(Vec::<String>::new(), key());
        assert!(no_seed.check().unwrap_err().to_string().contains("seed"));
    }

    #[cfg(feature = "sentinel")]
    #[test]
    fn sentinel_debug_redacts_passwords_and_checks_the_name() {
        let key = || SigningKey::from_bytes(b"k").unwrap();
        let sentinel =
            RedisStoreConfig::sentinel(["redis://:hunter2@10.0.1.1:26379"], "sessions", key())
                .sentinel_node_credentials(Some("app".into()), "hunter3");
        let shown = format!("{sentinel:?}");
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(shown.contains("sessions"), "{shown}");
        let no_name = RedisStoreConfig::sentinel(["redis://s"], "", key());
        assert!(
            no_name
                .check()
                .unwrap_err()
                .to_string()
                .contains("primary's name")
        );
    }

    #[test]
    fn wait_checks() {
        let msg = |c: RedisStoreConfig| c.check().unwrap_err().to_string();
        assert!(
            msg(config("redis://x").wait_for_replicas(0, Duration::from_secs(1)))
                .contains("at least 1 replica")
        );
        assert!(msg(config("redis://x").wait_for_replicas(1, Duration::ZERO)).contains("1 ms"));
        assert!(
            msg(config("redis://x").wait_for_replicas(1, Duration::from_secs(2)))
                .contains("shorter than command_timeout")
        );
        config("redis://x")
            .command_timeout(Duration::from_secs(5))
            .wait_for_replicas(1, Duration::from_secs(2))
            .check()
            .unwrap();
        config("redis://x")
            .wait_for_replicas(1, Duration::from_millis(100))
            .check()
            .unwrap();
    }

    #[test]
    fn cross_field_checks() {
        let msg = |c: RedisStoreConfig| c.check().unwrap_err().to_string();
        assert!(msg(config("redis://x").pool_size(0)).contains("pool_size"));
        assert!(msg(config("redis://x").pool_size(1025)).contains("between 1 and 1024"));
        assert!(msg(config("redis://x").max_in_flight(0)).contains("max_in_flight"));
        assert!(
            msg(config("redis://x").replica_wait_connections(0))
                .contains("replica_wait_connections")
        );
        assert!(msg(config("redis://x").key_prefix("a.b")).contains("key_prefix"));
        assert!(
            msg(config("redis://x").checkout_timeout(Duration::ZERO)).contains("checkout_timeout")
        );
        assert!(msg(config("redis://x").max_session_size(0)).contains("max_session_size"));
    }
}
