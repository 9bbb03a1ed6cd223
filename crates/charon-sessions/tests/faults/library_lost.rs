//! A restart without persistence loses the function library: the next
//! upsert loads it once, and the one after loads nothing.

use std::time::{Duration, Instant};

use charon_sessions::{RedisStore, RedisStoreConfig, SessionStore};
use charon_sessions_testkit::{Flavor, TestServer};

use crate::common::raw::{command_calls, raw};
use crate::common::{HOUR, login, test_key};
use crate::server::{dbsize, library_names};

/// After SIGKILL and a restart without persistence (data and function
/// library gone), the next upsert of a new session through the connected
/// store succeeds, loading the library exactly once (one `FUNCTION LOAD`,
/// two `FCALL`s, per `INFO commandstats`), and the upsert after it loads
/// nothing.
pub(crate) async fn function_library_lost_by_restart_is_registered_once(flavor: Flavor) {
    let mut server = TestServer::start(flavor);
    let store = RedisStore::connect(RedisStoreConfig::new(server.url(), test_key()).pool_size(2))
        .await
        .unwrap();
    let mut before_restart = login("alice");
    store.upsert(&mut before_restart).await.unwrap();
    {
        let mut conn = raw(&server).await;
        assert_eq!(
            library_names(&mut conn).await,
            vec![RedisStore::function_library_name().to_owned()]
        );
    }

    server.kill();
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let mut conn = raw(&server).await;
    assert!(
        library_names(&mut conn).await.is_empty(),
        "no persistence: the restarted server has no functions"
    );
    assert_eq!(dbsize(&mut conn).await, 0);
    // The store opens its connections again by itself (tests/connections.rs
    // shows how soon); this test is about the function library.
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.pool_state().connections < 2 {
        assert!(Instant::now() < deadline, "{:?}", store.pool_state());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The next upsert, through the store connected before the restart.
    let mut session = login("alice");
    let result = store.upsert(&mut session).await;
    let calls = command_calls(&mut conn).await;
    if let Err(first) = result {
        // Evidence for the report: how many more upserts fail before one
        // succeeds (at most 20 tries).
        let mut failures = vec![first.to_string()];
        for _ in 0..20 {
            match store.upsert(&mut session).await {
                Ok(()) => break,
                Err(e) => failures.push(e.to_string()),
            }
        }
        panic!(
            "the first upsert after the restart failed; consecutive failures before a \
             success: {failures:?} (pool: {:?})\ncommands the restarted server had seen \
             after the first upsert: {calls:?}",
            store.pool_state()
        );
    }
    assert_eq!(
        calls.get("function|load"),
        Some(&1),
        "exactly one FUNCTION LOAD after the restart: {calls:?}"
    );
    assert_eq!(
        calls.get("fcall"),
        Some(&2),
        "FCALL, then FCALL again after loading: {calls:?}"
    );
    assert_eq!(
        library_names(&mut conn).await,
        vec![RedisStore::function_library_name().to_owned()]
    );
    assert_eq!(
        store.get(&session.id, "alice", "full").await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(
        store
            .get(&before_restart.id, "alice", "full")
            .await
            .unwrap(),
        None,
        "the session written before the restart is gone"
    );

    // Registered again: the next upsert loads nothing.
    session.rotate_refresh_token(HOUR);
    store.upsert(&mut session).await.unwrap();
    let calls = command_calls(&mut conn).await;
    assert_eq!(calls.get("function|load"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("fcall"), Some(&3), "{calls:?}");
}
