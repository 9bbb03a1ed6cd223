//! tower-sessions' Redis store (`tower-sessions-redis-store`, over fred),
//! driven through the `SessionStore` trait as tower-sessions' middleware
//! does, without HTTP: login = `create`, refresh = `load`, change the data,
//! `save`; read = `load`.

use std::collections::HashMap;

use anyhow::Context as _;
use time::OffsetDateTime;
use tower_sessions_core::SessionStore as _;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike as _, Config, Pool};

use crate::payload::{REFRESH_TTL_SECONDS, login_fields, rotation};
use crate::stores::Contender;

/// The pool size tower-sessions-redis-store's README and example use.
pub const TOWER_POOL: usize = 6;

/// The store over a fred round-robin `Pool` (as in its README) of
/// `pool_size` clients, fred's default configuration otherwise.
pub struct Tower {
    /// The store under test.
    store: RedisStore<Pool>,
    /// The fred pool, to close it.
    pool: Pool,
}

impl Tower {
    /// Connects the pool and waits until every client is connected.
    pub async fn connect(url: &str, pool_size: usize) -> anyhow::Result<Tower> {
        let config = Config::from_url(url).context("fred: parsing the URL")?;
        let pool = Pool::new(config, None, None, None, pool_size).context("fred: the pool")?;
        pool.init().await.context("fred: connecting the pool")?;
        Ok(Tower {
            store: RedisStore::new(pool.clone()),
            pool,
        })
    }
}

fn expiry(now: i64) -> anyhow::Result<OffsetDateTime> {
    Ok(OffsetDateTime::from_unix_timestamp(
        now + REFRESH_TTL_SECONDS,
    )?)
}

impl Contender for Tower {
    /// The session id (an `i128`).
    type Handle = Id;

    async fn login(&self, user: &str) -> anyhow::Result<Id> {
        let now = charon_sessions::Session::now();
        let mut record = Record {
            id: Id::default(),
            data: login_fields(user, now)
                .into_iter()
                .collect::<HashMap<_, _>>(),
            expiry_date: expiry(now)?,
        };
        self.store.create(&mut record).await?;
        Ok(record.id)
    }

    async fn refresh(&self, _user: &str, handle: &Id) -> anyhow::Result<Id> {
        let mut record = self.store.load(handle).await?.context("session missing")?;
        let now = charon_sessions::Session::now();
        let tokens_fresh_from = record.data.get("tokens_fresh_from").cloned();
        for (field, value) in rotation(tokens_fresh_from.unwrap_or_default(), now) {
            record.data.insert(field.to_owned(), value);
        }
        record.expiry_date = expiry(now)?;
        self.store.save(&record).await?;
        Ok(record.id)
    }

    async fn read(&self, _user: &str, handle: &Id) -> anyhow::Result<()> {
        self.store.load(handle).await?.context("session missing")?;
        Ok(())
    }

    async fn delete(&self, _user: &str, handle: &Id) -> anyhow::Result<()> {
        self.store.delete(handle).await?;
        Ok(())
    }

    fn location(&self, _user: &str, handle: &Id) -> (String, Option<String>) {
        (handle.to_string(), None)
    }

    async fn close(self) {
        drop(self.store);
        // Ends the clients' connection tasks; an error here means the
        // connections are gone already.
        let _ = self.pool.quit().await;
    }
}
