//! Options that choose and open a store: `--redis`, `--cluster`,
//! `--sentinel` with `--primary-name`, `--key-prefix`, `--base-secret` /
//! `--base-secret-file` / `--allow-weak-secret`, `--payload-format`. Without
//! any of the first three the embedded in-memory store is used (the admin
//! commands refuse that: see `admin.rs`).
//!
//! A base secret shorter than [`MIN_BASE_SECRET_LEN`] bytes is refused as a
//! usage error unless `--allow-weak-secret` says a weak one is meant: the
//! signing key is only as hard to guess as the secret, and whoever guesses
//! it and can write to Redis forges every user's session. An empty one is
//! refused even then (`CHARON_BASE_SECRET=` from an unset template
//! variable, say).

use std::sync::Arc;

use anyhow::Context as _;
use charon_sessions::signing::{MIN_BASE_SECRET_LEN, SigningKey};
use charon_sessions::{LocalStore, PayloadFormat, RedisStore, RedisStoreConfig, SessionStore};
use clap::builder::FalseyValueParser;
use clap::{Args, ValueEnum};

use crate::admin::UsageError;

/// How to make a good base secret, for the refusals.
const HOW_TO_GENERATE: &str = "generate one of at least 32 random bytes with \
    `head -c 32 /dev/urandom | base64`";

/// Where sessions are stored. `Debug` hides the URL's password and the
/// base secret.
#[derive(Args)]
pub struct StoreArgs {
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

    /// Base secret the signing key is derived from (PBKDF2, as Charon does):
    /// at least 32 bytes (`head -c 32 /dev/urandom | base64`), see
    /// --allow-weak-secret. Prefer the environment variable: a command-line
    /// argument is visible to other users in the process list. Without it,
    /// a random key is used and the sessions cannot be read by any other
    /// process.
    #[arg(
        long,
        value_name = "SECRET",
        env = "CHARON_BASE_SECRET",
        hide_env_values = true
    )]
    pub base_secret: Option<String>,

    /// File holding the base secret (one trailing newline is ignored);
    /// takes precedence over --base-secret and CHARON_BASE_SECRET.
    #[arg(long, value_name = "FILE")]
    pub base_secret_file: Option<std::path::PathBuf>,

    /// Accept a base secret shorter than 32 bytes (a demo, a test): without
    /// this such a secret is refused, since anyone who guesses it can forge
    /// every session. An empty one is refused regardless.
    #[arg(
        long,
        env = "CHARON_ALLOW_WEAK_SECRET",
        value_parser = FalseyValueParser::new()
    )]
    pub allow_weak_secret: bool,

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

impl std::fmt::Debug for StoreArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreArgs")
            .field("redis", &self.redis.as_ref().map(|_| "<set>"))
            .field("cluster", &format!("<{} URLs>", self.cluster.len()))
            .field("sentinel", &format!("<{} URLs>", self.sentinel.len()))
            .field("primary_name", &self.primary_name)
            .field("key_prefix", &self.key_prefix)
            .field(
                "base_secret",
                &self.base_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("base_secret_file", &self.base_secret_file)
            .field("allow_weak_secret", &self.allow_weak_secret)
            .field("payload_format", &self.payload_format)
            .finish()
    }
}

/// An open store and a line describing it.
pub struct OpenStore {
    pub store: Arc<dyn SessionStore>,
    pub description: String,
}

impl StoreArgs {
    /// The base secret: the contents of `--base-secret-file` (less one
    /// trailing newline), else `--base-secret` / `CHARON_BASE_SECRET`;
    /// `None` when none is given.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not UTF-8; a [`UsageError`] when
    /// the secret is empty, or shorter than [`MIN_BASE_SECRET_LEN`] bytes
    /// without `--allow-weak-secret`.
    pub fn base_secret(&self) -> anyhow::Result<Option<String>> {
        let (secret, source) = match &self.base_secret_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the base secret file {}", path.display())
                })?;
                let secret = text
                    .strip_suffix('\n')
                    .map(|s| s.strip_suffix('\r').unwrap_or(s))
                    .unwrap_or(&text)
                    .to_owned();
                (secret, format!("the base secret file {}", path.display()))
            }
            None => match &self.base_secret {
                Some(secret) => (
                    secret.clone(),
                    "the base secret (CHARON_BASE_SECRET or --base-secret)".to_owned(),
                ),
                None => return Ok(None),
            },
        };
        check_strength(&secret, &source, self.allow_weak_secret)?;
        Ok(Some(secret))
    }

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
            self.key_prefix,
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
    /// Those of [`base_secret`](Self::base_secret), also without a server.
    pub fn redis_config(&self) -> anyhow::Result<Option<(RedisStoreConfig, String)>> {
        // Checked even when no server is named: a weak secret given to the
        // demo on the in-memory store is the one the deployment would use.
        let secret = self.base_secret()?;
        if self.redis.is_none() && self.cluster.is_empty() && self.sentinel.is_empty() {
            return Ok(None);
        }
        let signing_key = match &secret {
            Some(secret) => SigningKey::from_base_secret(secret.as_bytes())?,
            None => {
                eprintln!(
                    "note: no --base-secret, --base-secret-file or CHARON_BASE_SECRET given; using a random key, \
                     so the sessions written now cannot be read by any other process"
                );
                SigningKey::generate()
            }
        };
        let (config, topology) = if !self.cluster.is_empty() {
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
        };
        let config = config
            .key_prefix(&self.key_prefix)
            .payload_format(self.payload_format.into());
        Ok(Some((config, topology)))
    }
}

/// Refuses an empty `secret`, and one shorter than [`MIN_BASE_SECRET_LEN`]
/// bytes unless `allow_weak`, as a [`UsageError`] naming `source`.
fn check_strength(secret: &str, source: &str, allow_weak: bool) -> Result<(), UsageError> {
    if secret.is_empty() {
        return Err(UsageError(format!(
            "{source} is empty (an unset variable in a template?), so anyone could derive \
             its signing key and forge every session; {HOW_TO_GENERATE}"
        )));
    }
    if secret.len() < MIN_BASE_SECRET_LEN && !allow_weak {
        return Err(UsageError(format!(
            "{source} is {} bytes long, shorter than {MIN_BASE_SECRET_LEN}: whoever guesses it can \
             forge every session; {HOW_TO_GENERATE}, or pass --allow-weak-secret \
             (CHARON_ALLOW_WEAK_SECRET=1) if a weak one is meant, for a demo",
            secret.len()
        )));
    }
    Ok(())
}
