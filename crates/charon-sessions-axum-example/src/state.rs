//! What every handler shares: the session store, the token keys, the
//! refresh rule and the metrics handle. Built once at start from the
//! [`Config`]; cheap to clone (everything behind `Arc`).

use std::sync::Arc;

use anyhow::Context as _;
use charon_sessions::signing::SigningKey;
use charon_sessions::{LocalStore, RedisStore, RedisStoreConfig, SessionStore};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::freshness::RefreshPolicy;
use crate::tokens::TokenKeys;

/// The handlers' shared state.
#[derive(Clone)]
pub struct AppState {
    /// Where sessions live: `RedisStore` or `LocalStore`.
    pub store: Arc<dyn SessionStore>,
    /// Signs and verifies the JWTs.
    pub tokens: Arc<TokenKeys>,
    /// Which refresh tokens are still fresh, and how a refresh rotates.
    pub policy: RefreshPolicy,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
}

impl AppState {
    /// Opens the store `config` names and prepares the token keys. Returns
    /// the state and a line describing the store.
    ///
    /// # Errors
    ///
    /// A weak base secret (see [`Config::base_secret`]), `REDIS_URL`
    /// without `CHARON_BASE_SECRET`, or a Redis store that cannot be opened
    /// (unreachable, too old, refused credentials).
    pub async fn open(
        config: &Config,
        metrics: PrometheusHandle,
    ) -> anyhow::Result<(AppState, String)> {
        // Checked even on LocalStore: the secret given is the one the
        // deployment would run with.
        let base_secret = config.base_secret()?;
        let (store, description): (Arc<dyn SessionStore>, String) = match &config.redis_url {
            None => (
                Arc::new(LocalStore::new()),
                "LocalStore (in memory: sessions die with the process)".to_owned(),
            ),
            Some(url) => {
                let secret = base_secret.context(
                    "REDIS_URL is set but CHARON_BASE_SECRET is not: every instance must derive the same signing key",
                )?;
                // PBKDF2 with 250 000 iterations: derive once, off the runtime's workers.
                let secret = secret.as_bytes().to_vec();
                let key =
                    tokio::task::spawn_blocking(move || SigningKey::from_base_secret(&secret))
                        .await
                        .context("deriving the signing key")?
                        .context("CHARON_BASE_SECRET")?;
                let store = RedisStore::connect(RedisStoreConfig::new(url.clone(), key))
                    .await
                    .context("cannot open the Redis store")?;
                let description = format!("RedisStore on {}", store.server());
                (Arc::new(store), description)
            }
        };
        let jwt_secret = match &config.jwt_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => {
                tracing::warn!(
                    "no JWT_SECRET given: using a random one, so tokens die with this process"
                );
                let mut secret = vec![0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| {
                    anyhow::anyhow!("the operating system's random source failed: {e}")
                })?;
                secret
            }
        };
        let state = AppState {
            store,
            tokens: Arc::new(
                TokenKeys::new(&jwt_secret, config.access_ttl(), config.leeway_secs)
                    .context("JWT_SECRET must not be empty")?,
            ),
            policy: RefreshPolicy {
                refresh_ttl: config.refresh_ttl(),
                grace_secs: i64::try_from(config.grace_secs).unwrap_or(i64::MAX),
            },
            metrics,
        };
        Ok((state, description))
    }
}
