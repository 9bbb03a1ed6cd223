//! actix-session's Redis store (`RedisSessionStore`, over redis-rs 0.32),
//! driven through its `SessionStore` trait as actix-session's middleware
//! does, without HTTP: login = `save`, refresh = `load`, change the state,
//! `update`; read = `load`. Its state is a `HashMap<String, String>` of
//! JSON-encoded values, as `Session::insert` makes them.

use std::collections::HashMap;

use actix_session::storage::{RedisSessionStore, SessionKey, SessionStore as _};
use anyhow::Context as _;
use serde_json::Value;

use crate::payload::{REFRESH_TTL_SECONDS, login_fields, rotation};
use crate::stores::Contender;

/// How the store reaches Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// `RedisSessionStore::new(url)`, the documented default: one redis-rs
    /// `ConnectionManager`, a single multiplexed connection.
    Single,
    /// `RedisSessionStore::new_pooled` over a deadpool-redis pool of this
    /// many connections (feature `redis-pool`); `None`: deadpool-redis'
    /// default size, as in actix-session's documentation.
    Pooled(Option<usize>),
}

/// The store with its default settings (no key prefix).
pub struct Actix {
    /// The store under test.
    store: RedisSessionStore,
    /// The deadpool-redis pool, if any, to close it.
    pool: Option<deadpool_redis::Pool>,
}

impl Actix {
    /// Connects (the pooled variant opens its connections on demand).
    pub async fn connect(url: &str, connection: Connection) -> anyhow::Result<Actix> {
        match connection {
            Connection::Single => Ok(Actix {
                store: RedisSessionStore::new(url)
                    .await
                    .context("connecting actix-session's RedisSessionStore")?,
                pool: None,
            }),
            Connection::Pooled(size) => {
                let mut config = deadpool_redis::Config::from_url(url);
                config.pool = size.map(deadpool_redis::PoolConfig::new);
                let pool = config
                    .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                    .context("deadpool-redis: the pool")?;
                let store = RedisSessionStore::new_pooled(pool.clone())
                    .await
                    .context("connecting actix-session's pooled RedisSessionStore")?;
                Ok(Actix {
                    store,
                    pool: Some(pool),
                })
            }
        }
    }
}

impl Actix {
    /// The deadpool-redis pool's most connections, if pooled.
    pub fn pool_size(&self) -> Option<usize> {
        self.pool.as_ref().map(|pool| pool.status().max_size)
    }
}

fn ttl() -> time::Duration {
    time::Duration::seconds(REFRESH_TTL_SECONDS)
}

fn key(handle: &str) -> anyhow::Result<SessionKey> {
    SessionKey::try_from(handle.to_owned()).map_err(|e| anyhow::anyhow!("{e}"))
}

impl Contender for Actix {
    /// The session key (64 alphanumeric characters).
    type Handle = String;

    async fn login(&self, user: &str) -> anyhow::Result<String> {
        let state: HashMap<String, String> = login_fields(user, charon_sessions::Session::now())
            .into_iter()
            .map(|(field, value)| (field, value.to_string()))
            .collect();
        let key = self.store.save(state, &ttl()).await?;
        Ok(key.into())
    }

    async fn refresh(&self, _user: &str, handle: &String) -> anyhow::Result<String> {
        let mut state = self
            .store
            .load(&key(handle)?)
            .await?
            .context("session missing")?;
        let tokens_fresh_from: Value = match state.get("tokens_fresh_from") {
            Some(json) => serde_json::from_str(json)?,
            None => Value::Null,
        };
        for (field, value) in rotation(tokens_fresh_from, charon_sessions::Session::now()) {
            state.insert(field.to_owned(), value.to_string());
        }
        let key = self.store.update(key(handle)?, state, &ttl()).await?;
        Ok(key.into())
    }

    async fn read(&self, _user: &str, handle: &String) -> anyhow::Result<()> {
        self.store
            .load(&key(handle)?)
            .await?
            .context("session missing")?;
        Ok(())
    }

    async fn delete(&self, _user: &str, handle: &String) -> anyhow::Result<()> {
        self.store.delete(&key(handle)?).await?;
        Ok(())
    }

    fn location(&self, _user: &str, handle: &String) -> (String, Option<String>) {
        (handle.clone(), None)
    }

    async fn close(self) {
        drop(self.store);
        if let Some(pool) = self.pool {
            pool.close();
        }
    }
}
