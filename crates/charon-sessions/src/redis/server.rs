//! What server the store talks to, and whether it is new enough.
//!
//! Hash field expiration with `HSETEX` arrived in Redis 8.0 and Valkey 9.0;
//! anything older is refused at connect, before anything is written.

use std::fmt;

use redis::Value;
use redis::aio::ConnectionLike;

use crate::store::StoreError;

/// The requirement, as stated in errors.
pub const REQUIRED_SERVER: &str = "Redis >= 8.0 or Valkey >= 9.0";

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
/// from `INFO server` at connect.
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

/// `INFO server`, then the version check. In a cluster, redis-rs sends
/// `INFO` to every primary and answers with one text per node: each must
/// pass, and the first is returned.
///
/// # Errors
///
/// [`StoreError::UnsupportedServer`] naming the found version and the
/// requirement; connection and server errors of `INFO`.
pub(crate) async fn check(conn: &mut impl ConnectionLike) -> Result<ServerInfo, StoreError> {
    let reply: Value = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .map_err(super::store_error)?;
    let texts: Vec<String> = match reply {
        Value::Map(nodes) => nodes
            .into_iter()
            .map(|(_, info)| redis::from_redis_value(info))
            .collect::<Result<_, _>>(),
        single => redis::from_redis_value(single).map(|text| vec![text]),
    }
    .map_err(|e| super::store_error(e.into()))?;
    let mut first = None;
    for info in texts {
        let server = ServerInfo::from_info(&info).ok_or_else(|| StoreError::UnsupportedServer {
            found: "a server that reports no Redis or Valkey version".to_owned(),
            required: REQUIRED_SERVER,
        })?;
        if !server.is_supported() {
            return Err(StoreError::UnsupportedServer {
                found: server.to_string(),
                required: REQUIRED_SERVER,
            });
        }
        first.get_or_insert(server);
    }
    first.ok_or_else(|| StoreError::UnsupportedServer {
        found: "no server answered INFO".to_owned(),
        required: REQUIRED_SERVER,
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
}
