//! A plain redis-rs connection beside the stores under test, to look at
//! the server: its version, its client count and what a session occupies.

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;

/// One connection of its own to the server.
pub struct Probe {
    /// Counted in `connected_clients`; [`Probe::connected_clients`] leaves it out.
    connection: MultiplexedConnection,
}

/// The bytes one session occupies in Redis (key, value and any side field).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SessionBytes {
    /// Length of the key (for a hash, shared by the user's sessions).
    pub key: usize,
    /// Length of the stored value (string or hash field value).
    pub value: usize,
    /// Length of the hash field name, 0 for a string key.
    pub field: usize,
    /// charon-sessions' lock field (`l.<sid>` and its value), else 0.
    pub lock_field: usize,
}

impl Probe {
    /// Connects to `url`.
    pub async fn connect(url: &str) -> anyhow::Result<Probe> {
        let client = redis::Client::open(url).context("parsing the Redis URL")?;
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .context("connecting to Redis")?;
        Ok(Probe { connection })
    }

    /// A field of `INFO <section>`.
    async fn info_field(&mut self, section: &str, field: &str) -> anyhow::Result<String> {
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut self.connection)
            .await?;
        info.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .map(|value| value.trim().to_owned())
            .with_context(|| format!("INFO {section} has no {field}"))
    }

    /// The server's CPU time so far (`INFO cpu`: `used_cpu_user` +
    /// `used_cpu_sys`), seconds.
    pub async fn server_cpu_seconds(&mut self) -> anyhow::Result<f64> {
        let user: f64 = self.info_field("cpu", "used_cpu_user").await?.parse()?;
        let sys: f64 = self.info_field("cpu", "used_cpu_sys").await?.parse()?;
        Ok(user + sys)
    }

    /// `redis_version` (Valkey reports a compatible one, too).
    pub async fn server_version(&mut self) -> anyhow::Result<String> {
        self.info_field("server", "redis_version").await
    }

    /// `INFO clients` `connected_clients`, less this probe's own connection.
    pub async fn connected_clients(&mut self) -> anyhow::Result<u64> {
        let count: u64 = self
            .info_field("clients", "connected_clients")
            .await?
            .parse()?;
        Ok(count.saturating_sub(1))
    }

    /// What the session at `key` (and `field`, for a hash) occupies.
    pub async fn session_bytes(
        &mut self,
        key: &str,
        field: Option<&str>,
    ) -> anyhow::Result<SessionBytes> {
        match field {
            None => {
                let value: usize = redis::cmd("STRLEN")
                    .arg(key)
                    .query_async(&mut self.connection)
                    .await?;
                Ok(SessionBytes {
                    key: key.len(),
                    value,
                    field: 0,
                    lock_field: 0,
                })
            }
            Some(field) => {
                let lock = charon_sessions::layout::lock_field(field);
                let (value, lock_value): (usize, usize) = redis::pipe()
                    .cmd("HSTRLEN")
                    .arg(key)
                    .arg(field)
                    .cmd("HSTRLEN")
                    .arg(key)
                    .arg(&lock)
                    .query_async(&mut self.connection)
                    .await?;
                Ok(SessionBytes {
                    key: key.len(),
                    value,
                    field: field.len(),
                    lock_field: if lock_value > 0 {
                        lock.len() + lock_value
                    } else {
                        0
                    },
                })
            }
        }
    }
}
