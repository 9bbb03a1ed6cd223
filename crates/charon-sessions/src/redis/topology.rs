//! Opening connections to where the data lives: one server, a Redis
//! Cluster, or the primary that the sentinels name. Everything else in the
//! store sees one [`Node`] type, a redis-rs connection of either kind.
//!
//! This module only connects: it neither retries commands nor decides when
//! a connection must be replaced (that is [`connections`](super::connections)'
//! business).

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "tls")]
use redis::ConnectionAddr;
use redis::aio::{ConnectionLike, MultiplexedConnection};
#[cfg(feature = "cluster")]
use redis::cluster::{ClusterClient, ClusterClientBuilder};
#[cfg(feature = "cluster")]
use redis::cluster_async::ClusterConnection;
#[cfg(feature = "sentinel")]
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionInfo, ProtocolVersion, PushInfo, PushKind,
    RedisError, RedisFuture, Value,
};
#[cfg(feature = "sentinel")]
use tokio::sync::Mutex;

use super::config::{RedisStoreConfig, Topology};
#[cfg(feature = "tls")]
use super::tls::Tls;
use super::url::parse_url;
use crate::error::StoreError;

/// Shortest `TCP_USER_TIMEOUT`, whatever `command_timeout` is.
#[cfg(target_os = "linux")]
const TCP_USER_TIMEOUT_MIN: Duration = Duration::from_secs(1);
/// Idle time before the first keepalive probe.
const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Time between keepalive probes.
#[cfg(target_os = "linux")]
const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Unanswered probes after which an idle connection is closed.
#[cfg(target_os = "linux")]
const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// Socket settings of every data connection, for a store whose commands
/// wait `command_timeout` for their replies.
///
/// A command timeout leaves its connection open: the server may only be
/// busy, and its kernel still acknowledges what is sent. A connection whose
/// peer vanished without closing it (a host gone, a network that drops its
/// packets) is closed by ours instead: once data sent on it has gone
/// unacknowledged for `command_timeout` (at least 1 s; `TCP_USER_TIMEOUT`),
/// or, when idle, once keepalive probes (after 5 s idle, one a second) go
/// unanswered; keepalive also keeps idle connections open through NAT and
/// load balancers. The store then replaces it like any closed connection,
/// through the sentinels to the current primary with Sentinel.
///
/// The probe interval, probe count and user timeout are set on Linux; other
/// systems keep their defaults for them.
fn tcp_settings(command_timeout: Duration) -> redis::io::tcp::TcpSettings {
    use redis::io::tcp::socket2::TcpKeepalive;
    let keepalive = TcpKeepalive::new().with_time(TCP_KEEPALIVE_IDLE);
    #[cfg(target_os = "linux")]
    let keepalive = keepalive
        .with_interval(TCP_KEEPALIVE_INTERVAL)
        .with_retries(TCP_KEEPALIVE_RETRIES);
    let settings = redis::io::tcp::TcpSettings::default().set_keepalive(keepalive);
    #[cfg(target_os = "linux")]
    let settings = settings.set_user_timeout(command_timeout.max(TCP_USER_TIMEOUT_MIN));
    #[cfg(not(target_os = "linux"))]
    let _ = command_timeout;
    settings
}

/// Called when a connection's socket closed.
pub(crate) type OnClosed = Arc<dyn Fn() + Send + Sync>;

/// Opens [`Node`] connections for one topology.
#[derive(Clone)]
pub(crate) enum Connector {
    /// One server.
    Single {
        /// Its address, credentials and, for `rediss://`, TLS.
        link: ServerLink,
        /// Connect and response timeouts.
        config: AsyncConnectionConfig,
    },
    /// A cluster; each connection reaches every node.
    #[cfg(feature = "cluster")]
    Cluster {
        /// The seed nodes, credentials, TLS and timeouts.
        client: ClusterClient,
    },
    /// The primary the sentinels name at the time a connection is opened.
    #[cfg(feature = "sentinel")]
    Sentinel {
        /// The sentinels (redis-rs caches one connection to each).
        sentinel: Arc<Mutex<Sentinel>>,
        /// The name the sentinels monitor the primary by.
        primary_name: String,
        /// Credentials and protocol for the data nodes.
        node: SentinelNodeConnectionInfo,
        /// TLS to the data nodes, when the sentinels are reached over TLS.
        #[cfg(feature = "tls")]
        tls: Option<Tls>,
        /// At most this long to open a TLS connection to the primary.
        #[cfg(feature = "tls")]
        connect_timeout: Duration,
        /// Connect and response timeouts.
        config: AsyncConnectionConfig,
    },
}

/// How connections to one server are opened.
#[derive(Clone)]
pub(crate) enum ServerLink {
    /// By redis-rs: plain TCP or a Unix socket.
    Plain(Client),
    /// Over TLS with the store's own configuration (see [`Tls`]).
    #[cfg(feature = "tls")]
    Tls {
        /// The configuration and its connector.
        tls: Tls,
        /// Host, port, credentials, database and socket settings.
        info: ConnectionInfo,
        /// At most this long for TCP, TLS and the Redis handshake.
        connect_timeout: Duration,
    },
}

impl ServerLink {
    /// The link to the server of `info`: over TLS when its URL said
    /// `rediss://`, with the CA and client certificate of `config`.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for certificates that do not parse, or a
    /// URL asking not to verify the server (`#insecure`).
    #[cfg_attr(
        not(feature = "tls"),
        expect(unused_variables, reason = "only TLS links read the configuration")
    )]
    fn new(info: ConnectionInfo, config: &RedisStoreConfig) -> Result<ServerLink, StoreError> {
        match info.addr() {
            #[cfg(feature = "tls")]
            ConnectionAddr::TcpTls { insecure: true, .. } => Err(StoreError::InvalidInput(
                "a rediss:// URL with #insecure: the store always verifies the server's certificate"
                    .to_owned(),
            )),
            #[cfg(feature = "tls")]
            ConnectionAddr::TcpTls { .. } => Ok(ServerLink::Tls {
                tls: store_tls(config)?,
                info,
                connect_timeout: config.connect_timeout,
            }),
            _ => Client::open(info)
                .map(ServerLink::Plain)
                .map_err(|e| StoreError::InvalidInput(format!("topology: {e}"))),
        }
    }

    /// Opens one connection with `config` (timeouts, push sender).
    async fn connect(
        &self,
        config: &AsyncConnectionConfig,
    ) -> Result<MultiplexedConnection, RedisError> {
        match self {
            ServerLink::Plain(client) => {
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await
            }
            #[cfg(feature = "tls")]
            ServerLink::Tls {
                tls,
                info,
                connect_timeout,
            } => {
                let (ConnectionAddr::TcpTls { host, port, .. } | ConnectionAddr::Tcp(host, port)) =
                    info.addr()
                else {
                    unreachable!("a TLS link is made for TCP addresses only")
                };
                tls.connect(
                    host,
                    *port,
                    info.redis_settings(),
                    info.tcp_settings(),
                    config.clone(),
                    *connect_timeout,
                )
                .await
            }
        }
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The clients hold credentials: name the kind only.
        let kind = match self {
            Connector::Single { .. } => "Single",
            #[cfg(feature = "cluster")]
            Connector::Cluster { .. } => "Cluster",
            #[cfg(feature = "sentinel")]
            Connector::Sentinel { .. } => "Sentinel",
        };
        f.debug_tuple("Connector").field(&kind).finish()
    }
}

impl Connector {
    /// The connector for `config`'s topology, URLs, TLS and timeouts.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for a URL that does not parse.
    pub(crate) fn new(config: &RedisStoreConfig) -> Result<Connector, StoreError> {
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout));
        match &config.topology {
            Topology::Single { url } => Ok(Connector::Single {
                link: ServerLink::new(
                    connection_info(url)?.set_tcp_settings(tcp_settings(config.command_timeout)),
                    config,
                )?,
                config: connection_config,
            }),
            #[cfg(feature = "cluster")]
            Topology::Cluster { seeds } => cluster(config, seeds),
            #[cfg(feature = "sentinel")]
            Topology::Sentinel {
                sentinels,
                primary_name,
                node_username,
                node_password,
            } => {
                let infos = sentinels
                    .iter()
                    .map(|url| parse_url(url, "sentinel url"))
                    .collect::<Result<Vec<_>, _>>()?;
                #[cfg(feature = "tls")]
                let tls = infos
                    .iter()
                    .any(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. }));
                #[cfg(feature = "tls")]
                if tls {
                    super::tls::install_default_provider();
                }
                let mut redis_info =
                    redis::RedisConnectionInfo::default().set_protocol(ProtocolVersion::RESP3);
                if let Some(username) = node_username {
                    redis_info = redis_info.set_username(username);
                }
                if let Some(password) = node_password {
                    redis_info = redis_info.set_password(password);
                }
                // The data nodes' TLS is the store's own (ServerLink), so
                // redis-rs is asked for plain addresses.
                let node = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(redis_info)
                    .set_tcp_settings(tcp_settings(config.command_timeout));
                Ok(Connector::Sentinel {
                    sentinel: Arc::new(Mutex::new(Sentinel::build(infos).map_err(invalid)?)),
                    primary_name: primary_name.clone(),
                    node,
                    #[cfg(feature = "tls")]
                    tls: tls.then(|| store_tls(config)).transpose()?,
                    #[cfg(feature = "tls")]
                    connect_timeout: config.connect_timeout,
                    config: connection_config,
                })
            }
        }
    }

    /// Opens one connection. When `on_closed` is given, it is called when
    /// redis-rs reports that the connection's socket closed (single server
    /// and sentinel; a cluster connection reconnects to its nodes by
    /// itself). It runs on the connection's own redis-rs task: it must not
    /// block.
    ///
    /// Sentinel: asks the sentinels for the current primary first.
    pub(crate) async fn connect(&self, on_closed: Option<OnClosed>) -> Result<Node, RedisError> {
        let with_notice = |config: &AsyncConnectionConfig| match &on_closed {
            None => config.clone(),
            Some(on_closed) => {
                let on_closed = Arc::clone(on_closed);
                config.clone().set_push_sender(move |info: PushInfo| {
                    if info.kind == PushKind::Disconnection {
                        on_closed();
                    }
                    Ok::<(), std::convert::Infallible>(())
                })
            }
        };
        match self {
            Connector::Single { link, config } => {
                Ok(Node::Single(link.connect(&with_notice(config)).await?))
            }
            #[cfg(feature = "cluster")]
            Connector::Cluster { client } => {
                Ok(Node::Cluster(client.get_async_connection().await?))
            }
            #[cfg(feature = "sentinel")]
            Connector::Sentinel {
                sentinel,
                primary_name,
                node,
                #[cfg(feature = "tls")]
                tls,
                #[cfg(feature = "tls")]
                connect_timeout,
                config,
            } => {
                let client = sentinel
                    .lock()
                    .await
                    .async_master_for(primary_name, Some(node))
                    .await?;
                #[cfg(feature = "tls")]
                let link = match tls {
                    None => ServerLink::Plain(client),
                    Some(tls) => ServerLink::Tls {
                        tls: tls.clone(),
                        info: client.get_connection_info().clone(),
                        connect_timeout: *connect_timeout,
                    },
                };
                #[cfg(not(feature = "tls"))]
                let link = ServerLink::Plain(client);
                Ok(Node::Single(link.connect(&with_notice(config)).await?))
            }
        }
    }
}

/// The connector of a cluster reached through `seeds`.
#[cfg(feature = "cluster")]
fn cluster(config: &RedisStoreConfig, seeds: &[String]) -> Result<Connector, StoreError> {
    let seeds = seeds
        .iter()
        .map(|url| connection_info(url))
        .collect::<Result<Vec<_>, _>>()?;
    #[cfg(feature = "tls")]
    if seeds
        .iter()
        .any(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. }))
    {
        super::tls::install_default_provider();
    }
    let mut builder = ClusterClientBuilder::new(seeds)
        .tcp_settings(tcp_settings(config.command_timeout))
        .use_protocol(ProtocolVersion::RESP3)
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.command_timeout);
    #[cfg(feature = "tls")]
    if let Some(certificates) = cluster_certificates(config) {
        builder = builder.certs(certificates);
    }
    if config.read_from_replicas {
        builder = builder.read_routing_strategy(redis::cluster_read_routing::RandomReplicaStrategy);
    }
    Ok(Connector::Cluster {
        client: builder.build().map_err(invalid)?,
    })
}

/// A redis-rs error building a client, as the store reports it.
#[cfg(any(feature = "cluster", feature = "sentinel"))]
fn invalid(e: RedisError) -> StoreError {
    StoreError::InvalidInput(format!("topology: {e}"))
}

/// `url` parsed, speaking RESP3 whatever the URL says: it is what lets
/// redis-rs tell the store that an idle connection's socket closed.
fn connection_info(url: &str) -> Result<ConnectionInfo, StoreError> {
    let info = parse_url(url, "url")?;
    let resp3 = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Ok(info.set_redis_settings(resp3))
}

/// The store's own TLS configuration (one server, Sentinel's primaries)
/// from the configured CA and client certificate.
///
/// # Errors
///
/// [`StoreError::InvalidInput`] for certificates or a key that do not
/// parse.
#[cfg(feature = "tls")]
fn store_tls(config: &RedisStoreConfig) -> Result<Tls, StoreError> {
    Tls::new(
        config.tls_root_certificate.as_deref(),
        config
            .tls_client_certificate
            .as_ref()
            .map(|(cert, key)| (cert.as_slice(), key.as_slice())),
    )
}

/// The configured CA and client certificates, if any, as redis-rs takes
/// them (a cluster's connections).
#[cfg(all(feature = "cluster", feature = "tls"))]
fn cluster_certificates(config: &RedisStoreConfig) -> Option<redis::TlsCertificates> {
    if config.tls_root_certificate.is_none() && config.tls_client_certificate.is_none() {
        return None;
    }
    Some(redis::TlsCertificates {
        client_tls: config.tls_client_certificate.as_ref().map(|(cert, key)| {
            redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }
        }),
        root_cert: config.tls_root_certificate.clone(),
    })
}

/// One connection of any topology.
#[derive(Clone)]
pub(crate) enum Node {
    /// To one server (single, or the primary a sentinel named).
    Single(MultiplexedConnection),
    /// To every node of a cluster; routes each command by its key's slot.
    #[cfg(feature = "cluster")]
    Cluster(ClusterConnection),
}

impl Node {
    /// Whether this is a cluster connection.
    pub(crate) fn is_cluster(&self) -> bool {
        match self {
            Node::Single(_) => false,
            #[cfg(feature = "cluster")]
            Node::Cluster(_) => true,
        }
    }

    /// Sends one command and returns its reply: on a single connection
    /// without the boxed future of [`ConnectionLike`].
    pub(crate) async fn send(&mut self, cmd: &Cmd) -> Result<Value, RedisError> {
        match self {
            Node::Single(c) => c.send_packed_command(cmd).await,
            #[cfg(feature = "cluster")]
            Node::Cluster(c) => c.req_packed_command(cmd).await,
        }
    }

    /// Sends the `count` commands of `pipeline` in one write and returns
    /// their replies in order (a server error is its command's reply).
    pub(crate) async fn send_pipeline(
        &mut self,
        pipeline: &redis::Pipeline,
        count: usize,
    ) -> Result<Vec<Value>, RedisError> {
        match self {
            Node::Single(c) => c.send_packed_commands(pipeline, 0, count).await,
            #[cfg(feature = "cluster")]
            Node::Cluster(c) => c.req_packed_commands(pipeline, 0, count).await,
        }
    }
}

impl ConnectionLike for Node {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Node::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Node::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Node::Single(c) => c.req_packed_commands(cmd, offset, count),
            #[cfg(feature = "cluster")]
            Node::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Node::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Node::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(all(test, not(feature = "tls")))]
mod tests {
    use super::*;
    use crate::signing::SigningKey;

    #[test]
    fn a_tls_url_names_the_feature_it_needs() {
        let key = SigningKey::from_bytes(&[7; 32]).unwrap();
        let config = RedisStoreConfig::new("rediss://127.0.0.1", key);
        match Connector::new(&config) {
            Err(StoreError::InvalidInput(message)) => {
                assert!(message.contains("`tls` cargo feature"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
