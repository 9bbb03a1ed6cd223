//! Options that choose and open a store: `--redis`, `--key-prefix`,
//! `--base-secret`. Without `--redis` the embedded in-memory store is used.

use std::sync::Arc;

use anyhow::Context as _;
use charon_sessions::signing::SigningKey;
use charon_sessions::{LocalStore, RedisStore, RedisStoreConfig, SessionStore};
use clap::Args;

/// Where sessions are stored. `Debug` hides the URL's password and the
/// base secret.
#[derive(Args)]
pub struct StoreArgs {
    /// Redis 8 / Valkey 9 URL (redis://, rediss://, redis+unix://); without
    /// it, the embedded in-memory store is used.
    #[arg(
        long,
        value_name = "URL",
        env = "CHARON_REDIS_URL",
        hide_env_values = true
    )]
    pub redis: Option<String>,

    /// Prefix of the store's Redis keys.
    #[arg(long, value_name = "PREFIX", default_value = charon_sessions::DEFAULT_KEY_PREFIX)]
    pub key_prefix: String,

    /// Base secret the signing key is derived from (PBKDF2, as Charon does).
    /// Prefer the environment variable: a command-line argument is visible
    /// to other users in the process list. Without it, a random one is used
    /// and the sessions cannot be read by any other process.
    #[arg(
        long,
        value_name = "SECRET",
        env = "CHARON_BASE_SECRET",
        hide_env_values = true
    )]
    pub base_secret: Option<String>,
}

impl std::fmt::Debug for StoreArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreArgs")
            .field("redis", &self.redis.as_ref().map(|_| "<set>"))
            .field("key_prefix", &self.key_prefix)
            .field(
                "base_secret",
                &self.base_secret.as_ref().map(|_| "<redacted>"),
            )
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
        let Some(config) = self.redis_config() else {
            return Ok(OpenStore {
                store: Arc::new(LocalStore::new()),
                description: "embedded in-memory store (LocalStore)".to_owned(),
            });
        };
        let store = RedisStore::connect(config)
            .await
            .context("cannot open the Redis store")?;
        let description = format!(
            "RedisStore on {} (key prefix {:?})",
            store.server(),
            self.key_prefix
        );
        Ok(OpenStore {
            store: Arc::new(store),
            description,
        })
    }

    /// The Redis store configuration these options name (URL, key prefix,
    /// signing key), for a command that tunes it further before connecting;
    /// `None` without `--redis`.
    pub fn redis_config(&self) -> Option<RedisStoreConfig> {
        let url = self.redis.as_ref()?;
        let signing_key = match &self.base_secret {
            Some(secret) => SigningKey::from_base_secret(secret.as_bytes()),
            None => {
                eprintln!(
                    "note: no --base-secret or CHARON_BASE_SECRET given; using a random one, \
                     so the sessions written now cannot be read by any other process"
                );
                SigningKey::from_bytes(charon_sessions::random_id().as_bytes())
            }
        };
        Some(RedisStoreConfig::new(url.clone(), signing_key).key_prefix(&self.key_prefix))
    }
}
