//! charon-sessions' `RedisStore`: login = `Session::new_login` + `upsert`,
//! refresh = `get` + `rotate_refresh_token` + `upsert`, read = `get`.

use std::time::Duration;

use anyhow::Context as _;
use charon_sessions::signing::SigningKey;
use charon_sessions::{RedisStore, RedisStoreConfig, Session, SessionLimit, SessionStore};

use crate::payload::{REFRESH_TTL_SECONDS, extra_payload};
use crate::stores::Contender;

/// The store with its default settings, or `pool_size` shared connections.
pub struct Charon {
    /// The store under test.
    store: RedisStore,
}

impl Charon {
    /// Connects with a random signing key (PBKDF2 would only slow the start).
    pub async fn connect(url: &str, pool_size: Option<usize>) -> anyhow::Result<Charon> {
        // Each worker's one user keeps every session it logs in, thousands
        // in a run, and refreshes any of them; the peers have no limit per
        // user, so neither has ours here (the default would evict sessions
        // the loop still refreshes).
        let mut config = RedisStoreConfig::new(url, SigningKey::generate())
            .max_sessions_per_user(SessionLimit::Unlimited);
        if let Some(size) = pool_size {
            config = config.pool_size(size);
        }
        let store = RedisStore::connect(config)
            .await
            .context("connecting charon-sessions' RedisStore")?;
        Ok(Charon { store })
    }

    /// How the store reaches Redis, for the report.
    pub fn describe(&self) -> String {
        let state = self.store.pool_state();
        format!(
            "charon-sessions RedisStore, {} shared connections, max_in_flight {}",
            state.connections, state.max_in_flight
        )
    }
}

fn ttl() -> Duration {
    Duration::from_secs(REFRESH_TTL_SECONDS as u64)
}

impl Contender for Charon {
    /// The session id.
    type Handle = String;

    async fn login(&self, user: &str) -> anyhow::Result<String> {
        let mut session = Session::new_login(user, ttl());
        session.extra_payload = extra_payload();
        self.store.upsert(&mut session).await?;
        Ok(session.id)
    }

    async fn refresh(&self, user: &str, handle: &String) -> anyhow::Result<String> {
        let mut session = self
            .store
            .get(handle, user, "full")
            .await?
            .context("session missing")?;
        session.rotate_refresh_token(ttl());
        self.store.upsert(&mut session).await?;
        Ok(session.id)
    }

    async fn read(&self, user: &str, handle: &String) -> anyhow::Result<()> {
        self.store
            .get(handle, user, "full")
            .await?
            .context("session missing")?;
        Ok(())
    }

    async fn delete(&self, user: &str, handle: &String) -> anyhow::Result<()> {
        self.store.delete(handle, user, "full").await?;
        Ok(())
    }

    fn location(&self, user: &str, handle: &String) -> (String, Option<String>) {
        (
            charon_sessions::layout::hash_key(RedisStoreConfig::DEFAULT_KEY_PREFIX, user, "full"),
            Some(handle.clone()),
        )
    }

    async fn close(self) {
        drop(self.store);
    }
}
