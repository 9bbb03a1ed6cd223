//! What server the store talks to, and whether it is new enough.
//!
//! Hash field expiration with `HSETEX` arrived in Redis 8.0 and Valkey 9.0;
//! anything older is refused at connect, before anything is written.
//!
//! The check reads `HELLO`, which every user may run whatever its ACL
//! rights: the application's user needs no `INFO` right (an ACL rule cannot
//! limit `INFO` to one section: `+info|server` also allows `INFO server
//! everything`). `INFO server` is read only when `HELLO` does not name a
//! supported server, to tell a Valkey with `extended-redis-compatibility
//! yes` (whose `HELLO` says Redis 7.2.4) from a real Redis 7.

use std::fmt;

use redis::Value;
use redis::aio::ConnectionLike;
#[cfg(feature = "cluster")]
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};

use super::reply;
use super::topology::Node;
use crate::error::StoreError;

/// Which server implementation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerKind {
    /// Redis (Redis Ltd.).
    Redis,
    /// Valkey (Linux Foundation).
    Valkey,
}

/// The server a [`RedisStore`](crate::RedisStore) is connected to, as read
/// at connect from `HELLO` (or from `INFO server` when `HELLO` does not name
/// a supported server).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// Redis or Valkey.
    pub kind: ServerKind,
    /// The server's own version, e.g. `"8.0.6"` or `"9.1.2"`.
    pub version: String,
}

impl fmt::Display for ServerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ServerKind::Redis => "Redis",
            ServerKind::Valkey => "Valkey",
        };
        write!(f, "{kind} {}", self.version)
    }
}

impl ServerInfo {
    /// The requirement, as stated in errors.
    pub const REQUIRED: &'static str = "Redis >= 8.0 or Valkey >= 9.0";

    /// Reads the kind and version from a `HELLO` reply (a RESP3 map, or a
    /// RESP2 array of name/value pairs): its `server` (`redis` or `valkey`)
    /// and `version` fields.
    pub(crate) fn from_hello(reply: &Value) -> Option<ServerInfo> {
        let field = |name: &str| reply::field(reply, name).and_then(reply::text);
        let kind = match field("server")?.as_str() {
            "redis" => ServerKind::Redis,
            "valkey" => ServerKind::Valkey,
            _ => return None,
        };
        Some(ServerInfo {
            kind,
            version: field("version")?,
        })
    }

    /// Reads the kind and version from the text of `INFO server`.
    pub(crate) fn from_info(info: &str) -> Option<ServerInfo> {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        // Valkey also reports a `redis_version` (7.2.4, for compatibility):
        // its own version is `valkey_version`.
        if let Some(version) = field("valkey_version") {
            return Some(ServerInfo {
                kind: ServerKind::Valkey,
                version,
            });
        }
        if field("server_name").as_deref() == Some("valkey") {
            // A Valkey too old to report its own version (before 8.0).
            let compat = field("redis_version").unwrap_or_default();
            return Some(ServerInfo {
                kind: ServerKind::Valkey,
                version: format!("older than 8.0 (reports redis_version {compat})"),
            });
        }
        field("redis_version").map(|version| ServerInfo {
            kind: ServerKind::Redis,
            version,
        })
    }

    /// Whether this server has what the store needs.
    pub(crate) fn is_supported(&self) -> bool {
        let major = self
            .version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .unwrap_or(0);
        match self.kind {
            ServerKind::Redis => major >= 8,
            ServerKind::Valkey => major >= 9,
        }
    }
}

/// The version check: `HELLO` (to every primary of a cluster), and when
/// that does not name a supported server on every node, `INFO server`,
/// whose answer then stands. Returns the first node's server.
///
/// # Errors
///
/// [`StoreError::UnsupportedServer`] naming the found version and the
/// requirement; connection and server errors of `INFO` (`HELLO`'s are
/// covered by `INFO`); when `HELLO` named an unsupported server and the
/// user may not run `INFO server`, `UnsupportedServer` with what `HELLO`
/// said and that `INFO server` was refused.
pub(crate) async fn check(conn: &mut Node) -> Result<ServerInfo, StoreError> {
    let said = hello(conn)
        .await
        .ok()
        .and_then(|replies| {
            replies
                .iter()
                .map(ServerInfo::from_hello)
                .collect::<Option<Vec<_>>>()
        })
        .unwrap_or_default();
    if !said.is_empty() && said.iter().all(ServerInfo::is_supported) {
        return Ok(said[0].clone());
    }
    match check_info(conn).await {
        Err(StoreError::Auth(e)) => match said.iter().find(|s| !s.is_supported()) {
            Some(server) => Err(StoreError::UnsupportedServer {
                found: format!(
                    "{server} (as HELLO says; INFO server, which tells a Valkey with \
                     extended-redis-compatibility from a Redis, was refused: {e})"
                ),
                required: ServerInfo::REQUIRED,
            }),
            None => Err(StoreError::Auth(e)),
        },
        verdict => verdict,
    }
}

/// `HELLO` without arguments (it changes nothing on the connection): one
/// reply, or one per primary of a cluster.
async fn hello(conn: &mut Node) -> Result<Vec<Value>, redis::RedisError> {
    let cmd = redis::cmd("HELLO");
    match conn {
        Node::Single(c) => Ok(vec![cmd.query_async(c).await?]),
        #[cfg(feature = "cluster")]
        Node::Cluster(c) => {
            let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            match c.route_command(cmd, all).await? {
                Value::Map(nodes) => Ok(nodes.into_iter().map(|(_, reply)| reply).collect()),
                one => Ok(vec![one]),
            }
        }
    }
}

/// `INFO server`, then the version check. In a cluster, redis-rs sends
/// `INFO` to every primary and answers with one text per node: each must
/// pass, and the first is returned.
async fn check_info(conn: &mut impl ConnectionLike) -> Result<ServerInfo, StoreError> {
    let reply: Value = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .map_err(super::error::store_error)?;
    let texts: Vec<String> = match reply {
        Value::Map(nodes) => nodes
            .into_iter()
            .map(|(_, info)| redis::from_redis_value(info))
            .collect::<Result<_, _>>(),
        single => redis::from_redis_value(single).map(|text| vec![text]),
    }
    .map_err(|e| super::error::store_error(e.into()))?;
    let mut first = None;
    for info in texts {
        let server = ServerInfo::from_info(&info).ok_or_else(|| StoreError::UnsupportedServer {
            found: "a server that reports no Redis or Valkey version".to_owned(),
            required: ServerInfo::REQUIRED,
        })?;
        if !server.is_supported() {
            return Err(StoreError::UnsupportedServer {
                found: server.to_string(),
                required: ServerInfo::REQUIRED,
            });
        }
        first.get_or_insert(server);
    }
    first.ok_or_else(|| StoreError::UnsupportedServer {
        found: "no server answered INFO".to_owned(),
        required: ServerInfo::REQUIRED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_and_valkey_versions() {
        let redis8 =
            ServerInfo::from_info("# Server\r\nredis_version:8.0.6\r\nredis_mode:standalone\r\n")
                .unwrap();
        assert_eq!(redis8.to_string(), "Redis 8.0.6");
        assert!(redis8.is_supported());
        let redis7 = ServerInfo::from_info("redis_version:7.0.15\r\n").unwrap();
        assert!(!redis7.is_supported());
        let valkey9 = ServerInfo::from_info(
            "redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n",
        )
        .unwrap();
        assert_eq!(valkey9.to_string(), "Valkey 9.1.2");
        assert!(valkey9.is_supported());
        let valkey8 = ServerInfo::from_info(
            "redis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.0\r\n",
        )
        .unwrap();
        assert!(!valkey8.is_supported());
        assert_eq!(ServerInfo::from_info("nothing here"), None);
        let old_valkey =
            ServerInfo::from_info("redis_version:7.2.4\r\nserver_name:valkey\r\n").unwrap();
        assert!(!old_valkey.is_supported());
        assert!(old_valkey.to_string().contains("7.2.4"), "{old_valkey}");
    }

    #[test]
    fn reads_redis_and_valkey_from_hello() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let hello = |server: &str, version: &str| {
            Value::Map(vec![
                (bulk("server"), bulk(server)),
                (bulk("version"), bulk(version)),
                (bulk("proto"), Value::Int(3)),
            ])
        };
        let redis8 = ServerInfo::from_hello(&hello("redis", "8.0.6")).unwrap();
        assert_eq!(redis8.to_string(), "Redis 8.0.6");
        assert!(redis8.is_supported());
        let valkey9 = ServerInfo::from_hello(&hello("valkey", "9.1.2")).unwrap();
        assert_eq!(valkey9.to_string(), "Valkey 9.1.2");
        assert!(valkey9.is_supported());
        // What a Valkey with extended-redis-compatibility says.
        let compat = ServerInfo::from_hello(&hello("redis", "7.2.4")).unwrap();
        assert!(!compat.is_supported());
        let resp2 = Value::Array(vec![
            bulk("server"),
            bulk("valkey"),
            bulk("version"),
            bulk("9.0.0"),
        ]);
        assert_eq!(
            ServerInfo::from_hello(&resp2).unwrap().kind,
            ServerKind::Valkey
        );
        assert_eq!(ServerInfo::from_hello(&hello("keydb", "6.3.4")), None);
        assert_eq!(ServerInfo::from_hello(&bulk("OK")), None);
    }
}
