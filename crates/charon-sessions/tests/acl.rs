//! The least-privilege user of `RedisStoreConfig::acl_rule` on every
//! topology, on real servers: one server in database 2 (Redis 8 and
//! Valkey 9), the Redis 8 cluster (replica reads off and on, and through a
//! slot migration) and a primary behind Sentinel (across a failover). Each
//! runs the five operations and the session limit (eviction and refusal)
//! through the user, then checks on every node
//! that the user is refused everything else: keys outside the prefix, other
//! databases, `INFO`, `KEYS`, function loading, `FLUSHALL`, `CONFIG SET`…
//!
//! The user exists beforehand with every right and another password: the
//! rule must take those away.

mod common;

use std::time::{Duration, Instant};

use charon_sessions::{
    RedisStore, RedisStoreConfig, ServerKind, Session, SessionLimit, SessionStore, StoreError,
};
use charon_sessions_testkit::{Flavor, TestCluster, TestSentinel, TestServer, redis_cli};
use redis::aio::MultiplexedConnection;

use common::raw::{raw, raw_url};
use common::{HOUR, login, test_key};

async fn connect(config: RedisStoreConfig) -> RedisStore {
    RedisStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect as the least-privilege user: {e}"))
}

/// Gives `user` every right and another password, then applies `rule` (and
/// `extra`) with password `pw`, as an operator would on a user that exists.
async fn create_user(admin: &mut MultiplexedConnection, user: &str, rule: &str, extra: &[&str]) {
    redis::cmd("ACL")
        .arg(&["SETUSER", user, "on", ">old-pw", "~*", "&*", "+@all"])
        .query_async::<()>(admin)
        .await
        .expect("ACL SETUSER (broad)");
    redis::cmd("ACL")
        .arg(&["SETUSER", user, "on", "resetpass", ">pw"])
        .arg(rule.split(' ').collect::<Vec<_>>())
        .arg(extra)
        .query_async::<()>(admin)
        .await
        .unwrap_or_else(|e| panic!("ACL SETUSER {user} {rule}: {e}"));
}

/// `<command> <key>`'s reply as text (`EXISTS`, `GET`; `HGETALL` as
/// `field=value` pairs joined by spaces).
async fn get(conn: &mut MultiplexedConnection, command: &str, key: &str) -> String {
    let reply: redis::Value = redis::cmd(command)
        .arg(key)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{command} {key}: {e}"));
    let text = |v: &redis::Value| redis::from_redis_value_ref::<String>(v).unwrap_or_default();
    match reply.as_map_iter() {
        Some(pairs) => pairs
            .map(|(k, v)| format!("{}={}", text(k), text(v)))
            .collect::<Vec<_>>()
            .join(" "),
        None => text(&reply),
    }
}

/// Retries `read` for up to 2 s until it returns `expected`: reads from
/// replicas may lag a delete by a moment.
async fn settles<F, Fut, T>(expected: T, mut read: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
    T: PartialEq + std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let got = read().await;
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {expected:?}, got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The five operations for `user`: two logins, a read, a refresh, the
/// list, a logout, a logout everywhere.
async fn run_the_operations(store: &RedisStore, user: &str) {
    let fail = |what: &str, e: StoreError| -> ! { panic!("{what} for {user}: {e}") };
    let mut a = login(user);
    let mut b = login(user);
    store
        .upsert(&mut a)
        .await
        .unwrap_or_else(|e| fail("upsert", e));
    store
        .upsert(&mut b)
        .await
        .unwrap_or_else(|e| fail("upsert", e));
    let mut read = store
        .get(&a.id, user, "full")
        .await
        .unwrap_or_else(|e| fail("get", e))
        .expect("the session just written");
    read.rotate_refresh_token(HOUR);
    store
        .upsert(&mut read)
        .await
        .unwrap_or_else(|e| fail("refresh", e));
    let all = store
        .get_all(user, "full")
        .await
        .unwrap_or_else(|e| fail("get_all", e));
    assert_eq!(all.len(), 2, "{all:?}");
    store
        .delete(&b.id, user, "full")
        .await
        .unwrap_or_else(|e| fail("delete", e));
    settles(1, || async {
        store.get_all(user, "full").await.unwrap().len()
    })
    .await;
    store
        .delete_all(user, "full")
        .await
        .unwrap_or_else(|e| fail("delete_all", e));
    settles(0, || async {
        store.get_all(user, "full").await.unwrap().len()
    })
    .await;
}

/// The session limit through the user, whose rights the upsert function's
/// `HLEN`, `HKEYS` and `HEXPIRETIME` run under: with a limit of 2, a third
/// login evicts the session expiring soonest; with `Refuse(2)`, it is
/// refused and nothing is written.
async fn the_session_limit(config: &RedisStoreConfig, user: &str) {
    let evicting = connect(
        config
            .clone()
            .max_sessions_per_user(SessionLimit::EvictSoonestExpiring(2)),
    )
    .await;
    let mut soonest = Session::new_login(user, Duration::from_secs(600));
    let (mut later, mut third) = (login(user), login(user));
    for s in [&mut soonest, &mut later, &mut third] {
        evicting
            .upsert(s)
            .await
            .unwrap_or_else(|e| panic!("upsert at the limit for {user}: {e}"));
    }
    let ids = || async {
        let mut ids: Vec<String> = evicting
            .get_all(user, "full")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        ids.sort();
        ids
    };
    let mut kept = vec![later.id.clone(), third.id.clone()];
    kept.sort();
    settles(kept.clone(), ids).await;

    let refusing = connect(
        config
            .clone()
            .max_sessions_per_user(SessionLimit::Refuse(2)),
    )
    .await;
    match refusing.upsert(&mut login(user)).await {
        Err(StoreError::TooManySessions { limit: 2 }) => {}
        other => panic!("a login over Refuse(2) for {user}: {other:?}"),
    }
    settles(kept, ids).await;
    evicting.delete_all(user, "full").await.unwrap();
}

/// What the user must be refused (`NOPERM`), with `other_db` a database
/// it must not reach.
fn forbidden(other_db: i64) -> Vec<(String, redis::Cmd)> {
    let cmd = |words: &[&str]| {
        let mut cmd = redis::cmd(words[0]);
        cmd.arg(&words[1..]);
        cmd
    };
    let db = other_db.to_string();
    let mut list = vec![
        ("GET outside the prefix", cmd(&["GET", "other.key"])),
        ("SET outside the prefix", cmd(&["SET", "other.key", "y"])),
        ("DEL outside the prefix", cmd(&["DEL", "other.key"])),
        (
            "HGETALL under another prefix",
            cmd(&["HGETALL", "charon_.alice.full"]),
        ),
        (
            "FCALL on a key outside the prefix",
            cmd(&["FCALL", "charon_sessions_any", "1", "other.key"]),
        ),
        (
            "EVAL reading outside the prefix",
            cmd(&["EVAL", "return redis.call('GET', 'other.key')", "0"]),
        ),
        ("SELECT of another database", cmd(&["SELECT", &db])),
        ("SWAPDB", cmd(&["SWAPDB", "0", &db])),
        (
            "MOVE to another database",
            cmd(&["MOVE", "myapp.alice.full", &db]),
        ),
        (
            "COPY to another database",
            cmd(&["COPY", "myapp.alice.full", "myapp.copy", "DB", &db]),
        ),
        ("INFO", cmd(&["INFO"])),
        ("INFO server", cmd(&["INFO", "server"])),
        ("INFO keyspace", cmd(&["INFO", "keyspace"])),
        // What `+info|server` would let through: it looks at the first
        // section only.
        ("INFO server keyspace", cmd(&["INFO", "server", "keyspace"])),
        ("INFO everything", cmd(&["INFO", "everything"])),
        ("KEYS", cmd(&["KEYS", "*"])),
        ("SCAN", cmd(&["SCAN", "0"])),
        ("FUNCTION FLUSH", cmd(&["FUNCTION", "FLUSH"])),
        ("FLUSHALL", cmd(&["FLUSHALL"])),
        ("FLUSHDB", cmd(&["FLUSHDB"])),
        ("CONFIG SET", cmd(&["CONFIG", "SET", "maxmemory", "1"])),
        ("CONFIG GET", cmd(&["CONFIG", "GET", "*"])),
        ("ACL LIST", cmd(&["ACL", "LIST"])),
        ("CLUSTER NODES", cmd(&["CLUSTER", "NODES"])),
    ];
    let mut load = redis::cmd("FUNCTION");
    load.arg("LOAD")
        .arg("REPLACE")
        .arg(RedisStore::function_library_code());
    list.push(("FUNCTION LOAD", load));
    list.into_iter().map(|(w, c)| (w.to_owned(), c)).collect()
}

/// Sends every [`forbidden`] command on `app` and checks each is refused
/// with `NOPERM`; returns how many were.
async fn all_refused(app: &mut MultiplexedConnection, other_db: i64, node: &str) -> usize {
    let mut refused = 0;
    for (what, cmd) in forbidden(other_db) {
        let result = cmd.query_async::<redis::Value>(app).await;
        assert!(
            matches!(&result, Err(e) if e.code() == Some("NOPERM")),
            "{node}: {what} must be refused with NOPERM, got {result:?}"
        );
        refused += 1;
    }
    refused
}

on_both_servers!(least_privilege_user_in_database_2);

/// One server, the store in database 2: the user runs the store there, may
/// select no other database (a store for database 3 cannot connect), runs
/// no `INFO` at all (the version check reads `HELLO`), and is refused the
/// [`forbidden`] list. Database 0 stays reachable, as the rule's docs say;
/// on Valkey `resetdbs db=2` closes it.
async fn least_privilege_user_in_database_2(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let port = server.port();
    let url = |user: &str, db: i64| format!("redis://{user}:pw@127.0.0.1:{port}/{db}");
    let config = |user: &str, db: i64| {
        RedisStoreConfig::new(url(user, db), test_key())
            .key_prefix("myapp")
            .register_functions(false)
    };
    let rule = config("app", 2).acl_rule().unwrap();
    assert!(
        rule.contains(" +select|2") && !rule.contains("+info"),
        "{rule}"
    );
    let mut admin = raw(&server).await;
    create_user(&mut admin, "app", &rule, &[]).await;
    RedisStore::load_function_library(&RedisStoreConfig::new(server.url(), test_key()))
        .await
        .unwrap();

    let store = connect(config("app", 2)).await;
    let kind = match flavor {
        Flavor::Redis => ServerKind::Redis,
        _ => ServerKind::Valkey,
    };
    assert_eq!(store.server().kind, kind);
    run_the_operations(&store, "alice").await;
    the_session_limit(&config("app", 2), "erin").await;
    let mut bob = login("bob");
    store.upsert(&mut bob).await.unwrap();
    let mut admin2 = raw_url(&format!("{}/2", server.url())).await;
    assert_eq!(get(&mut admin2, "EXISTS", "myapp.bob.full").await, "1");
    assert_eq!(get(&mut admin, "EXISTS", "myapp.bob.full").await, "0");

    // A session hash in database 3 and a key outside the prefix here.
    let mut admin3 = raw_url(&format!("{}/3", server.url())).await;
    redis::cmd("HSET")
        .arg(&["myapp.alice.full", "s", "in db 3"])
        .query_async::<()>(&mut admin3)
        .await
        .unwrap();
    redis::cmd("SET")
        .arg(&["other.key", "x"])
        .query_async::<()>(&mut admin2)
        .await
        .unwrap();
    let mut app = raw_url(&url("app", 2)).await;
    let refused = all_refused(&mut app, 3, "server").await;
    assert_eq!(get(&mut admin2, "GET", "other.key").await, "x");
    assert_eq!(
        get(&mut admin3, "HGETALL", "myapp.alice.full").await,
        "s=in db 3"
    );
    match RedisStore::connect(config("app", 3)).await {
        // redis-rs reports the refused SELECT as a generic error, NOPERM in
        // its text only.
        Err(e @ StoreError::Server(_))
            if format!("{e:?}").contains("no permissions to run the 'select' command") => {}
        other => panic!("a store for database 3 must be refused SELECT 3, got {other:?}"),
    }

    // Redis ACLs have no per-database rights, and a connection starts in
    // database 0: keys under the prefix there stay reachable.
    redis::cmd("HSET")
        .arg(&["myapp.carol.full", "s", "in db 0"])
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let hget_db0 = |user: &str| {
        let url = url(user, 0);
        async move {
            let mut conn = raw_url(&url).await;
            redis::cmd("HGET")
                .arg(&["myapp.carol.full", "s"])
                .query_async::<Option<String>>(&mut conn)
                .await
        }
    };
    assert_eq!(hget_db0("app").await.unwrap().as_deref(), Some("in db 0"));
    let mut db0 = "reachable";
    if flavor == Flavor::Valkey {
        // Valkey 9's database rights keep the user to database 2.
        create_user(&mut admin, "app_db2", &rule, &["resetdbs", "db=2"]).await;
        let store = connect(config("app_db2", 2)).await;
        run_the_operations(&store, "dave").await;
        let refused = hget_db0("app_db2").await.expect_err("database 0 is closed");
        assert_eq!(refused.code(), Some("NOPERM"), "{refused:?}");
        db0 = "reachable with the rule alone, refused with resetdbs db=2";
    }
    println!(
        "FIGURES least privilege, {flavor:?} database 2: 5 operations through the user; \
         {refused} of {refused} forbidden commands refused with NOPERM; a store for database 3 \
         refused SELECT 3 at connect; database 0 {db0}"
    );
}

/// A Valkey with `extended-redis-compatibility yes` says Redis 7.2.4 in
/// `HELLO`: the store then reads `INFO server`. Refused to a user with the
/// plain rule, that is `UnsupportedServer` saying why; with `+info|server`
/// added, the store runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valkey_in_redis_compatibility_mode_needs_info_server() {
    let server = TestServer::start_with(Flavor::Valkey, &["--extended-redis-compatibility", "yes"]);
    let admin_store = connect(RedisStoreConfig::new(server.url(), test_key())).await;
    assert_eq!(admin_store.server().kind, ServerKind::Valkey);

    let config = RedisStoreConfig::new(
        format!("redis://app:pw@127.0.0.1:{}", server.port()),
        test_key(),
    )
    .key_prefix("myapp")
    .register_functions(false);
    let rule = config.acl_rule().unwrap();
    let mut admin = raw(&server).await;
    create_user(&mut admin, "app", &rule, &[]).await;
    match RedisStore::connect(config.clone()).await {
        Err(StoreError::UnsupportedServer { found, .. }) => {
            assert!(
                found.contains("Redis 7.2.4") && found.contains("INFO server"),
                "{found}"
            );
        }
        other => panic!("expected UnsupportedServer naming INFO server, got {other:?}"),
    }
    create_user(&mut admin, "app", &rule, &["+info|server"]).await;
    let store = connect(config).await;
    assert_eq!(store.server().kind, ServerKind::Valkey);
    run_the_operations(&store, "alice").await;
}

/// `(id, port, first slot, last slot)` of each primary, from `CLUSTER NODES`.
fn slot_owners(port: u16) -> Vec<(String, u16, u16, u16)> {
    let nodes = redis_cli(port, &["CLUSTER", "NODES"]).expect("CLUSTER NODES");
    let mut owners = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 9 || !fields[2].contains("master") {
            continue;
        }
        let node_port: u16 = fields[1]
            .split(['@', ','])
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("a node address");
        for range in &fields[8..] {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            owners.push((
                fields[0].to_owned(),
                node_port,
                first.parse().expect("a slot"),
                last.parse().expect("a slot"),
            ));
        }
    }
    owners
}

/// `HGET` and `HGETALL` calls a node has served, from `INFO commandstats`.
fn reads_served(port: u16) -> u64 {
    let stats = redis_cli(port, &["INFO", "commandstats"]).unwrap_or_default();
    ["hget", "hgetall"]
        .iter()
        .filter_map(|c| {
            stats
                .lines()
                .find_map(|l| l.strip_prefix(&format!("cmdstat_{c}:calls=")))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

/// `MOVED` replies a node has sent, from `INFO errorstats`.
fn moved_replies(port: u16) -> u64 {
    redis_cli(port, &["INFO", "errorstats"])
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.trim().strip_prefix("errorstat_MOVED:count="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The cluster: the user (created on all six nodes) runs the store with
/// replica reads off, over users on all three primaries, and through a
/// slot migration (`ASK` redirections, hence `ASKING`); asked to read from
/// replicas, its reads still go to the primaries (no `READONLY`); a user
/// from the rule for replica reads runs the store with them, the replicas
/// serving reads. Every node refuses the [`forbidden`] list to both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_user_on_the_cluster() {
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let config = |user: &str| {
        let urls = cluster
            .nodes()
            .iter()
            .map(|n| format!("redis://{user}:pw@127.0.0.1:{}", n.port()));
        RedisStoreConfig::cluster(urls, test_key())
            .key_prefix("myapp")
            .register_functions(false)
    };
    let primaries_only = config("app");
    // Waiting for the replica makes a read right after an upsert see it.
    let replica_reads = config("reader")
        .read_from_replicas(true)
        .wait_for_replicas(1, Duration::from_millis(500));
    let (rule, reader_rule) = (
        primaries_only.acl_rule().unwrap(),
        replica_reads.acl_rule().unwrap(),
    );
    assert!(rule.contains("+cluster|slots") && !rule.contains("readonly"));
    assert!(reader_rule.contains("+readonly") && reader_rule.contains("+wait"));
    for node in cluster.nodes() {
        let mut admin = raw(node).await;
        create_user(&mut admin, "app", &rule, &[]).await;
        create_user(&mut admin, "reader", &reader_rule, &[]).await;
    }
    RedisStore::load_function_library(&RedisStoreConfig::cluster(cluster.urls(), test_key()))
        .await
        .unwrap();

    // Replica reads off.
    let store = connect(primaries_only.clone()).await;
    for i in 0..6 {
        run_the_operations(&store, &format!("user-{i}")).await;
    }
    the_session_limit(&primaries_only, "erin").await;
    for i in 0..30 {
        store
            .upsert(&mut login(&format!("spread-{i}")))
            .await
            .unwrap();
    }
    let per_primary: Vec<u64> = cluster
        .primaries()
        .into_iter()
        .map(|p| {
            let n = redis_cli(cluster.nodes()[p].port(), &["DBSIZE"]).unwrap();
            n.trim().parse().unwrap()
        })
        .collect();
    assert!(
        per_primary.len() == 3 && per_primary.iter().all(|n| *n > 0),
        "sessions on every primary: {per_primary:?}"
    );
    for i in 0..30 {
        store
            .delete_all(&format!("spread-{i}"), "full")
            .await
            .unwrap();
    }

    // Replica reads asked of a user without READONLY: the store works, the
    // replicas answer MOVED to whatever reads reach them and the primaries
    // serve the reads.
    let replicas: Vec<u16> = cluster
        .primaries()
        .into_iter()
        .map(|p| cluster.nodes()[cluster.replica_of(p)].port())
        .collect();
    let replica_reads_now = || replicas.iter().map(|p| reads_served(*p)).sum::<u64>();
    let moved_now = || replicas.iter().map(|p| moved_replies(*p)).sum::<u64>();
    let (before, moved_before) = (replica_reads_now(), moved_now());
    let no_readonly = connect(config("app").read_from_replicas(true)).await;
    for i in 0..6 {
        run_the_operations(&no_readonly, &format!("no-readonly-{i}")).await;
    }
    let without_readonly = replica_reads_now() - before;
    let redirected = moved_now() - moved_before;
    // How many reads reach a replica (and come back MOVED) varies from run
    // to run, none included: that a replica serves reads with the rule for
    // them, below, is what shows this is not vacuous.
    assert_eq!(
        without_readonly, 0,
        "replicas serve reads only after READONLY"
    );

    // Replica reads on, with the rule for them.
    // On a loaded machine the first 6 rounds once all went to the
    // primaries (redis-rs chooses where a read goes): up to 60 rounds until
    // a replica served one.
    let before = replica_reads_now();
    let reader = connect(replica_reads).await;
    let mut rounds = 0;
    while replica_reads_now() == before && rounds < 60 {
        run_the_operations(&reader, &format!("reader-{rounds}")).await;
        rounds += 1;
    }
    let replica_reads_served = replica_reads_now() - before;
    assert!(
        replica_reads_served > 0,
        "the replicas served no read in {rounds} rounds"
    );

    // A slot migrating from its primary to another: a key missing on the
    // owner is answered with ASK, which redis-rs follows with ASKING.
    let key = "myapp.mover.full";
    let any = cluster.nodes()[0].port();
    let slot: u16 = redis_cli(any, &["CLUSTER", "KEYSLOT", key])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let owners = slot_owners(any);
    let (owner_id, owner_port) = owners
        .iter()
        .find(|(_, _, first, last)| (*first..=*last).contains(&slot))
        .map(|(id, port, _, _)| (id.clone(), *port))
        .expect("an owner");
    let (target_id, target_port) = owners
        .iter()
        .find(|(id, _, _, _)| *id != owner_id)
        .map(|(id, port, _, _)| (id.clone(), *port))
        .expect("another primary");
    let slot_arg = slot.to_string();
    for (port, state, other) in [
        (target_port, "IMPORTING", &owner_id),
        (owner_port, "MIGRATING", &target_id),
    ] {
        let reply = redis_cli(port, &["CLUSTER", "SETSLOT", &slot_arg, state, other]).unwrap();
        assert_eq!(reply.trim(), "OK", "SETSLOT {state}: {reply}");
    }
    assert_eq!(store.get("none", "mover", "full").await.unwrap(), None);
    let mut moved = login("mover");
    store.upsert(&mut moved).await.unwrap();
    let count = |port: u16| {
        redis_cli(port, &["CLUSTER", "COUNTKEYSINSLOT", &slot_arg])
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(
        (count(owner_port), count(target_port)),
        ("0".to_owned(), "1".to_owned()),
        "the new session went to the importing node"
    );
    assert_eq!(
        store.get(&moved.id, "mover", "full").await.unwrap(),
        Some(moved.clone())
    );
    assert_eq!(store.get_all("mover", "full").await.unwrap().len(), 1);
    store.delete_all("mover", "full").await.unwrap();
    assert_eq!(count(target_port), "0");

    let mut refused = 0;
    for node in cluster.nodes() {
        for user in ["app", "reader"] {
            let url = format!("redis://{user}:pw@127.0.0.1:{}", node.port());
            let mut app = raw_url(&url).await;
            refused += all_refused(&mut app, 1, &format!("{user} on {}", node.port())).await;
        }
    }
    println!(
        "FIGURES least privilege, cluster: 5 operations through the user with replica reads \
         off (users on all 3 primaries: {per_primary:?} keys) and on ({replica_reads_served} \
         reads served by replicas; without +readonly {without_readonly}, the replicas \
         answering {redirected} MOVED); through a migrating \
         slot (ASK); {refused} of {refused} forbidden commands refused with NOPERM (2 users x 6 \
         nodes)"
    );
}

/// Sentinel: the user (on both data nodes; the sentinels keep their
/// default user) runs the store, waiting for the replica, before and after
/// a failover; both nodes refuse it the [`forbidden`] list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_user_through_sentinel() {
    let setup = tokio::task::spawn_blocking(TestSentinel::start)
        .await
        .unwrap();
    let config =
        RedisStoreConfig::sentinel(setup.sentinel_urls(), setup.primary_name(), test_key())
            .sentinel_node_credentials(Some("app".to_owned()), "pw")
            .key_prefix("myapp")
            .register_functions(false)
            .wait_for_replicas(1, Duration::from_millis(500));
    let rule = config.acl_rule().unwrap();
    assert!(rule.contains("+role") && rule.contains("+wait"), "{rule}");
    for node in setup.nodes() {
        create_user(&mut raw(node).await, "app", &rule, &[]).await;
    }
    let admin = RedisStoreConfig::sentinel(setup.sentinel_urls(), setup.primary_name(), test_key());
    RedisStore::load_function_library(&admin).await.unwrap();

    let store = connect(config.clone()).await;
    run_the_operations(&store, "alice").await;
    the_session_limit(&config, "erin").await;

    // A failover: the replica, promoted, serves the same user.
    let sentinel_port: u16 = setup.sentinel_urls()[0]
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap();
    let reply = redis_cli(
        sentinel_port,
        &["SENTINEL", "FAILOVER", setup.primary_name()],
    )
    .unwrap();
    assert_eq!(reply.trim(), "OK", "{reply}");
    let setup = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while setup.primary() != Some(1) {
            assert!(Instant::now() < deadline, "no failover\n{}", setup.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
        setup.wait_until_ready(Duration::from_secs(30));
        setup
    })
    .await
    .unwrap();
    let after = connect(config).await;
    run_the_operations(&after, "bob").await;
    // The first store follows the failover once its connections to the old
    // primary are replaced.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = login("carol");
        match store.upsert(&mut s).await {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "the store did not recover: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut refused = 0;
    for node in setup.nodes() {
        let url = format!("redis://app:pw@127.0.0.1:{}", node.port());
        let mut app = raw_url(&url).await;
        refused += all_refused(&mut app, 1, &format!("data node {}", node.port())).await;
    }
    println!(
        "FIGURES least privilege, Sentinel: 5 operations through the user, waiting for the \
         replica, before and after a failover (ROLE on the promoted node); {refused} of \
         {refused} forbidden commands refused with NOPERM (2 data nodes)"
    );
}
