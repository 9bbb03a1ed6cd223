//! RedisStore on a Sentinel-managed primary (testkit `TestSentinel`: 1
//! primary, 1 replica, 3 sentinels): the behavioural suite, and the
//! primary killed under load.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use charon_sessions::{RedisStore, RedisStoreConfig};
use charon_sessions_testkit::TestSentinel;

use common::failover::failover_under_load;
use common::{Harness, test_key};

async fn start() -> TestSentinel {
    tokio::task::spawn_blocking(TestSentinel::start)
        .await
        .unwrap()
}

fn config(setup: &TestSentinel) -> RedisStoreConfig {
    RedisStoreConfig::sentinel(setup.sentinel_urls(), setup.primary_name(), test_key())
}

async fn connect(config: RedisStoreConfig, setup: &TestSentinel) -> RedisStore {
    RedisStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect through the sentinels: {e}\n{}", setup.logs()))
}

/// A store on the shared setup whose keys start with the behaviour's name.
async fn harness(setup: &TestSentinel, behaviour: &str) -> Harness {
    let config = config(setup).key_prefix(behaviour).pool_size(2);
    let store = connect(config.clone(), setup).await;
    common::redis_harness(store, config)
}

charon_sessions_testkit::store_suite!(sequential start, harness);

/// Kills the primary under load from 32 tasks; the sentinels promote the
/// replica and the store follows it. The old primary is restarted 4 s
/// after the kill (the sentinels make it a replica of the new one, which
/// with `WAIT` is what lets upserts succeed again); the load stops
/// `after` the kill.
async fn primary_killed_under_load(wait: Option<(usize, Duration)>, after: Duration, name: &str) {
    let setup = start().await;
    let mut config = config(&setup);
    if let Some((n, timeout)) = wait {
        config = config.wait_for_replicas(n, timeout);
    }
    let store = Arc::new(connect(config, &setup).await);
    let setup = Arc::new(Mutex::new(setup));
    let (kill, restart) = (Arc::clone(&setup), Arc::clone(&setup));
    let (figures, load) = failover_under_load(
        Arc::clone(&store),
        Duration::from_secs(2),
        move || kill.lock().unwrap().node_mut(0).kill(),
        Duration::from_secs(4),
        move || restart.lock().unwrap().node_mut(0).restart(),
        after,
    )
    .await;
    println!("{}", figures.line(name, load));
    let setup = setup.lock().unwrap();
    assert_eq!(setup.primary(), Some(1), "the replica was not promoted");
    assert_eq!(figures.wrong, 0, "{}", setup.logs());
    assert!(figures.failed > 0, "the kill caused no failure at all?");
    assert!(figures.all_recovered, "{figures:?}\n{}", setup.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_under_load_without_wait() {
    primary_killed_under_load(None, Duration::from_secs(10), "sentinel failover, no WAIT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_under_load_with_wait() {
    primary_killed_under_load(
        Some((1, Duration::from_millis(200))),
        // The sentinels reconfigure a returning old primary on their
        // 10-second INFO round: give it time.
        Duration::from_secs(22),
        "sentinel failover, WAIT 1 200ms",
    )
    .await;
}
