//! Options that choose and open a store. [`ConnectionArgs`] (`--redis`,
//! `--cluster`, `--sentinel` with `--primary-name`, `--key-prefix`) are
//! taken by every command that reaches a server; [`StoreArgs`] adds the
//! base secret ([`SecretArgs`]) and `--payload-format` for the commands
//! that read or write session values (`demo`, `bench`, `list`). Without
//! `--redis`, `--cluster` or `--sentinel` the embedded in-memory store is
//! used (the admin commands refuse that: see `admin.rs`).

use std::sync::Arc;

use anyhow::Context as _;
use charon_sessions::signing::SigningKey;
use charon_sessions::{LocalStore, PayloadFormat, RedisStore, RedisStoreConfig, SessionStore};
use clap::{Args, ValueEnum};

use crate::secret::SecretArgs;

/// Which server, or servers, and which keys on them. `Debug` hides the
/// URLs, which may hold a password.
#[derive(Args)]
pub struct ConnectionArgs {
    /// Redis 8 / Valkey 9 URL (redis://, rediss://, redis+unix://). Without
    /// it, `demo` and `bench` use the embedded in-memory store; the admin
    /// commands need it.
    #[arg(
        long,
        value_name = "URL",
        env = "CHARON_REDIS_URL",
        hide_env_values = true
    )]
    pub redis: Option<String>,

    /// Redis Cluster seed node URLs, comma-separated (any few of the nodes).
    #[arg(
        long,
        value_name = "URL,URL,...",
        value_delimiter = ',',
        conflicts_with_all = ["redis", "sentinel"],
        env = "CHARON_REDIS_CLUSTER",
        hide_env_values = true
    )]
    pub cluster: Vec<String>,

    /// Redis Sentinel URLs, comma-separated; the store follows the primary
    /// they name (see --primary-name).
    #[arg(
        long,
        value_name = "URL,URL,...",
        value_delimiter = ',',
        conflicts_with = "redis",
        requires = "primary_name",
        env = "CHARON_REDIS_SENTINEL",
        hide_env_values = true
    )]
    pub sentinel: Vec<String>,

    /// The name the sentinels monitor the primary by (`sentinel monitor <name> ...`).
    #[arg(long, value_name = "NAME", requires = "sentinel")]
    pub primary_name: Option<String>,

    /// Prefix of the store's Redis keys.
    #[arg(long, value_name = "PREFIX", default_value = charon_sessions::RedisStoreConfig::DEFAULT_KEY_PREFIX)]
    pub key_prefix: String,
}

/// Where sessions are stored, how they are signed and the format they are
/// written in.
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub secret: SecretArgs,

    /// The format sessions are written in: `compact` (the default) or
    /// `charon`, which an Elixir service using Charon 4.x reads and writes.
    /// Every format is read whatever this says.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = Format::Compact)]
    pub payload_format: Format,
}

/// `--payload-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A format byte and positional MessagePack (PayloadFormat::Compact).
    Compact,
    /// Charon's Erlang terms (PayloadFormat::Charon).
    Charon,
}

impl From<Format> for PayloadFormat {
    fn from(format: Format) -> PayloadFormat {
        match format {
            Format::Compact => PayloadFormat::Compact,
            Format::Charon => PayloadFormat::Charon,
        }
    }
}

impl std::fmt::Debug for ConnectionArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionArgs")
            .field("redis", &self.redis.as_ref().map(|_| "<set>"))
            .field("cluster", &format!("<{} URLs>", self.cluster.len()))
            .field("sentinel", &format!("<{} URLs>", self.sentinel.len()))
            .field("primary_name", &self.primary_name)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// An open store and a line describing it.
pub struct OpenStore {
    pub store: Arc<dyn SessionStore>,
    pub description: String,
}

impl StoreArgs {
    /// Opens the store these options name.
    pub async fn open(&self) -> anyhow::Result<OpenStore> {
        let Some((config, topology)) = self.redis_config()? else {
            return Ok(OpenStore {
                store: Arc::new(LocalStore::new()),
                description: "embedded in-memory store (LocalStore)".to_owned(),
            });
        };
        let store = RedisStore::connect(config)
            .await
            .context("cannot open the Redis store")?;
        let description = format!(
            "RedisStore on {} ({topology}, key prefix {:?}, payload format {:?})",
            store.server(),
            self.connection.key_prefix,
            self.payload_format
        );
        Ok(OpenStore {
            store: Arc::new(store),
            description,
        })
    }

    /// The Redis store configuration these options name (topology, URLs,
    /// key prefix, signing key) and a few words on the topology, for a
    /// command that tunes it further before connecting; `None` without
    /// `--redis`, `--cluster` or `--sentinel`.
    ///
    /// # Errors
    ///
    /// Those of [`SecretArgs::base_secret`], also without a server.
    pub fn redis_config(&self) -> anyhow::Result<Option<(RedisStoreConfig, String)>> {
        // Checked even when no server is named: a weak secret given to the
        // demo on the in-memory store is the one the deployment would use.
        let secret = self.secret.base_secret()?;
        let connection = &self.connection;
        if connection.redis.is_none()
            && connection.cluster.is_empty()
            && connection.sentinel.is_empty()
        {
            return Ok(None);
        }
        let signing_key = match &secret {
            Some(secret) => secret.signing_key()?,
            None => {
                eprintln!(
                    "note: no --base-secret, --base-secret-file or CHARON_BASE_SECRET given; using a random key, \
                     so the sessions written now cannot be read by any other process"
                );
                SigningKey::generate()
            }
        };
        let (config, topology) = connection.topology(signing_key);
        let config = config
            .key_prefix(&connection.key_prefix)
            .payload_format(self.payload_format.into());
        Ok(Some((config, topology)))
    }
}

impl ConnectionArgs {
    /// The store configuration for the cluster, sentinels or server named,
    /// and a few words on which.
    fn topology(&self, signing_key: SigningKey) -> (RedisStoreConfig, String) {
        if !self.cluster.is_empty() {
            let n = self.cluster.len();
            (
                RedisStoreConfig::cluster(self.cluster.clone(), signing_key),
                format!("Redis Cluster ({n} seed nodes)"),
            )
        } else if !self.sentinel.is_empty() {
            let name = self.primary_name.clone().unwrap_or_default();
            (
                RedisStoreConfig::sentinel(self.sentinel.clone(), name.clone(), signing_key),
                format!("primary {name:?} through {} sentinels", self.sentinel.len()),
            )
        } else {
            let url = self.redis.clone().unwrap_or_default();
            (
                RedisStoreConfig::new(url, signing_key),
                "one server".to_owned(),
            )
        }
    }
}
