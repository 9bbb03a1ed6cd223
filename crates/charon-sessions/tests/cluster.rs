//! RedisStore on a 3-primary, 3-replica Redis 8 cluster started by the
//! test (testkit `TestCluster`): the behavioural suite, the spread of users
//! over the primaries, the connections per node, a primary killed under
//! load, and the function library lost on one node.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use charon_sessions::{RedisStore, RedisStoreConfig, SessionStore};
use charon_sessions_testkit::{TestCluster, redis_cli};

use common::failover::failover_under_load;
use common::{Harness, login, test_key};

async fn start() -> TestCluster {
    tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap()
}

async fn connect(config: RedisStoreConfig, cluster: &TestCluster) -> RedisStore {
    RedisStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect to the cluster: {e}\n{}", cluster.logs()))
}

/// A store on the shared cluster whose keys start with the behaviour's name.
async fn harness(cluster: &TestCluster, behaviour: &str) -> Harness {
    let config = RedisStoreConfig::cluster(cluster.urls(), test_key())
        .key_prefix(behaviour)
        .pool_size(2);
    let store = connect(config.clone(), cluster).await;
    common::redis_harness(store, config)
}

charon_sessions_testkit::store_suite!(sequential start, harness);

/// Sessions of 1 000 users land on all three primaries (per-node key
/// counts printed as a FIGURES line).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_spread_over_all_primaries() {
    let cluster = start().await;
    let store = connect(
        RedisStoreConfig::cluster(cluster.urls(), test_key()),
        &cluster,
    )
    .await;
    for i in 0..1000 {
        store
            .upsert(&mut login(&format!("user-{i}")))
            .await
            .unwrap();
    }
    let counts: Vec<(u16, u64)> = cluster
        .primaries()
        .into_iter()
        .map(|p| {
            let port = cluster.nodes()[p].port();
            let n = redis_cli(port, &["DBSIZE"])
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            (port, n)
        })
        .collect();
    println!("FIGURES cluster spread of 1000 users: keys per primary {counts:?}");
    assert_eq!(counts.len(), 3);
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 1000);
    assert!(counts.iter().all(|(_, n)| *n > 0), "{counts:?}");
}

/// The store opens `pool_size` connections to every primary, however many
/// operations run at once: 3 shared cluster connections, 256 concurrent
/// operations over users on all primaries, then `CLIENT LIST` on each node
/// (connections counted by redis-rs's library name, the setup connection
/// closed before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_primary_holds_pool_size_connections() {
    let cluster = start().await;
    let store = connect(
        RedisStoreConfig::cluster(cluster.urls(), test_key()).pool_size(3),
        &cluster,
    )
    .await;
    let tasks: Vec<_> = (0..256)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut s = login(&format!("spread-{i}"));
                store.upsert(&mut s).await.unwrap();
                assert_eq!(store.get(&s.id, &s.user_id, "full").await.unwrap(), Some(s));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let count = |port: u16| {
        redis_cli(port, &["CLIENT", "LIST"])
            .unwrap()
            .lines()
            .filter(|l| l.contains("lib-name=redis-rs"))
            .count()
    };
    // The closed setup connection may take a moment to leave.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (primaries, replicas) = loop {
        let primaries: Vec<usize> = cluster
            .primaries()
            .into_iter()
            .map(|p| count(cluster.nodes()[p].port()))
            .collect();
        let replicas: Vec<usize> = cluster
            .primaries()
            .into_iter()
            .map(|p| count(cluster.nodes()[cluster.replica_of(p)].port()))
            .collect();
        if primaries.iter().all(|n| *n == 3) || std::time::Instant::now() > deadline {
            break (primaries, replicas);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "FIGURES cluster connections, pool_size 3, after 256 concurrent operations: per primary \
         {primaries:?}, per replica {replicas:?}"
    );
    assert_eq!(primaries, vec![3, 3, 3]);
    assert!(replicas.iter().all(|n| *n <= 3), "{replicas:?}");
    assert_eq!(store.pool_state().connections, 3);
}

/// `FUNCTION FLUSH` on one primary only: the next upserts whose keys live
/// there load the library again and succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_library_lost_on_one_primary_is_reloaded() {
    let cluster = start().await;
    let store = connect(
        RedisStoreConfig::cluster(cluster.urls(), test_key()),
        &cluster,
    )
    .await;
    let mut sessions: Vec<_> = (0..30).map(|i| login(&format!("flush-{i}"))).collect();
    for s in &mut sessions {
        store.upsert(s).await.unwrap();
    }
    let victim = cluster.nodes()[cluster.primaries()[0]].port();
    assert!(
        redis_cli(victim, &["FUNCTION", "FLUSH"])
            .unwrap()
            .contains("OK")
    );
    assert_eq!(redis_cli(victim, &["FUNCTION", "LIST"]).unwrap().trim(), "");
    for s in &mut sessions {
        store.upsert(s).await.unwrap();
        assert_eq!(s.lock_version, 2);
    }
    let list = redis_cli(victim, &["FUNCTION", "LIST"]).unwrap();
    assert!(list.contains(RedisStore::function_library_name()), "{list}");
}

/// Kills one primary under load from 32 tasks; its replica takes over and
/// the store carries on with no manual step. The killed node is restarted
/// 5 s later (it rejoins as a replica). FIGURES: failed calls and their
/// window, wrong results (must be 0), acknowledged upserts lost.
async fn primary_killed_under_load(wait: Option<(usize, Duration)>, name: &str) {
    let cluster = start().await;
    let mut config = RedisStoreConfig::cluster(cluster.urls(), test_key());
    if let Some((n, timeout)) = wait {
        config = config.wait_for_replicas(n, timeout);
    }
    let store = Arc::new(connect(config, &cluster).await);
    let victim = cluster.primaries()[0];
    let cluster = Arc::new(Mutex::new(cluster));
    let (kill, restart) = (Arc::clone(&cluster), Arc::clone(&cluster));
    let (figures, load) = failover_under_load(
        Arc::clone(&store),
        Duration::from_secs(2),
        move || kill.lock().unwrap().node_mut(victim).kill(),
        Duration::from_secs(5),
        move || restart.lock().unwrap().node_mut(victim).restart(),
        Duration::from_secs(12),
    )
    .await;
    println!("{}", figures.line(name, load));
    let cluster = cluster.lock().unwrap();
    assert_eq!(figures.wrong, 0, "{}", cluster.logs());
    assert!(figures.failed > 0, "the kill caused no failure at all?");
    assert!(figures.all_recovered, "{figures:?}\n{}", cluster.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_under_load_without_wait() {
    primary_killed_under_load(None, "cluster failover, no WAIT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_killed_under_load_with_wait() {
    primary_killed_under_load(
        Some((1, Duration::from_millis(200))),
        "cluster failover, WAIT 1 200ms",
    )
    .await;
}

/// With `wait_for_replicas`, the `WAIT` goes to the node that ran the
/// upsert's `FCALL` (same pipeline): on every primary, as many `WAIT`s as
/// `FCALL`s, and every primary took some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_goes_to_the_node_of_the_upsert() {
    let cluster = start().await;
    let config = RedisStoreConfig::cluster(cluster.urls(), test_key())
        .wait_for_replicas(1, Duration::from_millis(1500));
    let store = connect(config, &cluster).await;
    for i in 0..60 {
        store
            .upsert(&mut login(&format!("wait-{i}")))
            .await
            .unwrap();
    }
    let calls = |stats: &str, command: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    let mut per_node = Vec::new();
    for p in cluster.primaries() {
        let stats = redis_cli(cluster.nodes()[p].port(), &["INFO", "commandstats"]).unwrap();
        per_node.push((calls(&stats, "fcall"), calls(&stats, "wait")));
    }
    println!("FIGURES WAIT routing: (FCALL, WAIT) per primary {per_node:?}");
    assert!(
        per_node.iter().all(|(f, w)| f == w && *f > 0),
        "{per_node:?}"
    );
    assert_eq!(per_node.iter().map(|(f, _)| f).sum::<u64>(), 60);
}
