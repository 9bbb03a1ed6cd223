//! The stores the tests run on: the behavioural suite's factories (the
//! suite itself is the testkit's `suite`, expanded by `store_suite!` in
//! `tests/local.rs`, `tests/redis8.rs`, `tests/redis8_charon.rs` and
//! `tests/valkey9.rs`), stores on fresh real servers, and helpers.

#![allow(dead_code)]

pub mod failover;
pub mod raw;
pub mod typical;

use std::sync::Arc;

use charon_sessions::signing::SigningKey;
use charon_sessions::{
    LocalStore, RedisStore, RedisStoreConfig, Session, SessionLimit, SessionStore,
};
use charon_sessions_testkit::{Flavor, TestServer};

#[allow(unused_imports)]
pub use charon_sessions_testkit::suite::{HOUR, Harness, login, sleep_until_past};

pub fn test_key() -> SigningKey {
    SigningKey::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap()
}

pub async fn local() -> Harness {
    Harness::new(Arc::new(LocalStore::new()), |limit| async move {
        Arc::new(LocalStore::new().max_sessions_per_user(limit)) as Arc<dyn SessionStore>
    })
}

/// The harness of a `RedisStore` of `config` (already connected as
/// `store`), whose second stores differ in their session limit only.
pub fn redis_harness(store: RedisStore, config: RedisStoreConfig) -> Harness {
    Harness::new(Arc::new(store), move |limit| {
        let config = config.clone().max_sessions_per_user(limit);
        async move { Arc::new(RedisStore::connect(config).await.unwrap()) as Arc<dyn SessionStore> }
    })
}

pub async fn redis_store(server: &TestServer) -> RedisStore {
    connect_store(server, RedisStoreConfig::new(server.url(), test_key())).await
}

/// A store on `server` with `limit` sessions per user, for tests that give
/// one user more sessions than the default limit keeps.
pub async fn redis_store_with_limit(server: &TestServer, limit: SessionLimit) -> RedisStore {
    let config = RedisStoreConfig::new(server.url(), test_key()).max_sessions_per_user(limit);
    connect_store(server, config).await
}

async fn connect_store(server: &TestServer, config: RedisStoreConfig) -> RedisStore {
    RedisStore::connect(config).await.unwrap_or_else(|e| {
        panic!(
            "connect to {}: {e}\nserver log:\n{}",
            server.url(),
            server.log()
        )
    })
}

pub async fn on_server(flavor: Flavor) -> Harness {
    let server = TestServer::start(flavor);
    let store = redis_store(&server).await;
    redis_harness(store, RedisStoreConfig::new(server.url(), test_key())).keeping(server)
}

pub async fn redis8() -> Harness {
    on_server(Flavor::Redis).await
}

pub async fn valkey9() -> Harness {
    on_server(Flavor::Valkey).await
}

/// A store on a fresh Redis 8 writing Charon's payload format.
pub async fn redis8_charon() -> Harness {
    let server = TestServer::start(Flavor::Redis);
    let config = RedisStoreConfig::new(server.url(), test_key())
        .payload_format(charon_sessions::PayloadFormat::Charon);
    let store = RedisStore::connect(config.clone())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\nserver log:\n{}", server.log()));
    redis_harness(store, config).keeping(server)
}

/// `s` as the JSON object earlier releases stored (first byte `{`), which
/// every read still accepts.
pub fn legacy_json(s: &Session) -> Vec<u8> {
    let mut object = serde_json::json!({
        "id": s.id,
        "user_id": s.user_id,
        "session_type": s.session_type,
        "created_at": s.created_at,
        "expires_at": s.expires_at,
        "refresh_expires_at": s.refresh_expires_at,
        "refreshed_at": s.refreshed_at,
        "refresh_token_id": s.refresh_token_id,
        "tokens_fresh_from": s.tokens_fresh_from,
        "prev_tokens_fresh_from": s.prev_tokens_fresh_from,
        "lock_version": s.lock_version,
        "extra_payload": s.extra_payload,
        "version": s.version,
    });
    if s.user_id_kind == charon_sessions::UserIdKind::Integer {
        object["user_id_kind"] = "integer".into();
    }
    serde_json::to_vec(&object).unwrap()
}

/// Expands one `#[tokio::test]` (multi-threaded, 2 workers) per named
/// behaviour `async fn name(flavor: Flavor)` of the file: `mod redis8` runs
/// each on Redis 8, `mod valkey9` on Valkey 9. Doc comments written before
/// a name are kept on both tests.
#[macro_export]
macro_rules! on_both_servers {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        $crate::on_both_servers!(@server redis8, Redis; $($(#[doc = $doc])* $name),*);
        $crate::on_both_servers!(@server valkey9, Valkey; $($(#[doc = $doc])* $name),*);
    };
    (@server $module:ident, $flavor:ident; $($(#[doc = $doc:literal])* $name:ident),*) => {
        mod $module {
            use charon_sessions_testkit::Flavor;
            $(
                $(#[doc = $doc])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(Flavor::$flavor).await;
                }
            )*
        }
    };
}
