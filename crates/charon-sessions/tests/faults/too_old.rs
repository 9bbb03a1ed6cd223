//! A server too old (Debian 12's Redis 7.0) is refused with the version
//! found and the one required, and left untouched.

use std::time::{Duration, Instant};

use charon_sessions::{RedisStore, RedisStoreConfig, ServerInfo, StoreError};
use charon_sessions_testkit::{Flavor, TestServer};

use crate::common::raw::raw;
use crate::common::test_key;
use crate::server::{dbsize, library_names, other_clients};

/// On Debian 12's Redis 7.0, `RedisStore::connect` (and
/// `load_function_library`) fail with UnsupportedServer naming the version
/// found ("Redis 7.0.") and the requirement ("Redis >= 8.0"), and leave the
/// server untouched: DBSIZE 0, no function library, no connection left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis7_is_refused_and_left_untouched() {
    let server = TestServer::start(Flavor::Redis7);
    let mut conn = raw(&server).await;
    let config = RedisStoreConfig::new(server.url(), test_key());

    let err = RedisStore::connect(config.clone())
        .await
        .expect_err("Redis 7 must be refused");
    let shown = err.to_string();
    match &err {
        StoreError::UnsupportedServer { found, required } => {
            assert!(found.starts_with("Redis 7.0."), "{found}");
            assert_eq!(*required, ServerInfo::REQUIRED);
        }
        other => panic!("expected UnsupportedServer, got {other:?}"),
    }
    assert!(shown.contains("Redis 7.0."), "{shown}");
    assert!(shown.contains("Redis >= 8.0"), "{shown}");
    eprintln!("Redis 7 refused with: {shown}");

    let err = RedisStore::load_function_library(&config)
        .await
        .expect_err("Redis 7 must be refused");
    assert!(
        matches!(err, StoreError::UnsupportedServer { .. }),
        "{err:?}"
    );

    assert_eq!(dbsize(&mut conn).await, 0);
    assert!(library_names(&mut conn).await.is_empty());
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut n = other_clients(&mut conn).await;
    while n != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        n = other_clients(&mut conn).await;
    }
    assert_eq!(n, 0, "the refused store left no connection open");
}
