//! `charon-sessions functions` end to end: load the library with an admin
//! account, create an application user from the printed ACL rule, and run a
//! store through that user on a real Redis 8.

use charon_sessions::signing::SigningKey;
use charon_sessions::{RedisStore, RedisStoreConfig, Session, SessionStore};
use charon_sessions_testkit::{Flavor, TestServer};

mod common;

fn cli(args: &[&str]) -> (bool, String, String) {
    let run = common::cli(args, &[]);
    (run.ok(), run.stdout, run.stderr)
}

/// `functions load` registers the library; `functions acl` prints a rule
/// that, given to `ACL SETUSER`, lets a store with `register_functions(false)`
/// work while the user may not load functions itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_then_acl_user_runs_the_store() {
    let server = TestServer::start(Flavor::Redis);
    let (ok, out, err) = cli(&["functions", "load", "--redis", &server.url()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(RedisStore::function_library_name()), "{out}");
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let libraries: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(format!("{libraries:?}").contains(RedisStore::function_library_name()));

    let (ok, rule, err) = cli(&["functions", "acl", "--key-prefix", "myapp", "--user", "web"]);
    assert!(ok, "{rule}{err}");
    assert!(
        err.contains("ACL SETUSER web on resetpass >PASSWORD"),
        "{err}"
    );
    let mut setuser = redis::cmd("ACL");
    setuser.arg("SETUSER").arg("web").arg("on").arg(">web-pw");
    for part in rule.split_whitespace() {
        setuser.arg(part);
    }
    setuser.query_async::<()>(&mut admin).await.unwrap();

    let url = format!("redis://web:web-pw@127.0.0.1:{}", server.port());
    let store = RedisStore::connect(
        RedisStoreConfig::new(url.clone(), SigningKey::from_bytes(&[9; 32]).unwrap())
            .key_prefix("myapp")
            .register_functions(false),
    )
    .await
    .unwrap();
    let mut s = Session::new_login("alice", std::time::Duration::from_secs(60));
    store.upsert(&mut s).await.unwrap();
    assert_eq!(store.get(&s.id, "alice", "full").await.unwrap(), Some(s));

    // The same user cannot load the library itself.
    let (ok, out, err) = cli(&["functions", "load", "--redis", &url]);
    assert!(!ok, "{out}");
    assert!(err.contains("cannot load the function library"), "{err}");
}

/// `functions acl` prints the library's rule for the topology, database
/// and options given, and refuses options that do not go together.
#[test]
fn acl_prints_the_rule_of_each_topology() {
    let key = || SigningKey::generate();
    let base = |config: RedisStoreConfig| config.key_prefix("myapp").register_functions(false);
    let wait = std::time::Duration::from_secs(1);
    let cases: Vec<(Vec<&str>, RedisStoreConfig)> = vec![
        (vec![], base(RedisStoreConfig::new("redis://h", key()))),
        (
            vec!["--db", "3"],
            base(RedisStoreConfig::new("redis://h/3", key())),
        ),
        (
            vec!["--db", "3", "--wait-for-replicas"],
            base(RedisStoreConfig::new("redis://h/3", key())).wait_for_replicas(1, wait),
        ),
        (
            vec!["--cluster"],
            base(RedisStoreConfig::cluster(["redis://h"], key())),
        ),
        (
            vec!["--cluster", "--read-from-replicas", "--wait-for-replicas"],
            base(RedisStoreConfig::cluster(["redis://h"], key()))
                .read_from_replicas(true)
                .wait_for_replicas(1, wait),
        ),
        (
            vec!["--sentinel"],
            base(RedisStoreConfig::sentinel(["redis://h"], "p", key())),
        ),
    ];
    let mut rules = std::collections::BTreeSet::new();
    for (options, config) in cases {
        let mut args = vec!["functions", "acl", "--key-prefix", "myapp"];
        args.extend(&options);
        let (ok, out, err) = cli(&args);
        assert!(ok, "{options:?}: {err}");
        let expected = config.acl_rule().unwrap();
        assert_eq!(out.trim_end(), expected, "{options:?}");
        rules.insert(expected);
        let db3 = options.contains(&"3");
        assert_eq!(err.contains("resetdbs db=3"), db3, "{options:?}: {err}");
    }
    assert_eq!(rules.len(), 6, "each case has its own rule: {rules:?}");

    for bad in [
        &["--db", "1", "--cluster"][..],
        &["--db", "1", "--sentinel"],
        &["--cluster", "--sentinel"],
        &["--read-from-replicas"],
        &["--sentinel", "--read-from-replicas"],
    ] {
        let mut args = vec!["functions", "acl"];
        args.extend(bad);
        let (ok, out, err) = cli(&args);
        assert!(!ok, "{bad:?} accepted: {out}");
        assert!(
            err.contains("cannot be used with") || err.contains("required"),
            "{err}"
        );
    }
}

/// `functions acl` refuses an invalid key prefix, naming the rule.
#[test]
fn acl_refuses_a_bad_prefix() {
    let (ok, _, err) = cli(&["functions", "acl", "--key-prefix", "a.b"]);
    assert!(!ok);
    assert!(err.contains("key_prefix"), "{err}");
}

/// `functions show` prints the Lua library that `load` registers.
#[test]
fn show_prints_the_library() {
    let (ok, out, _) = cli(&["functions", "show"]);
    assert!(ok);
    assert!(out.contains(RedisStore::function_library_code()));
    assert!(out.contains("HSETEX"));
}

/// The libraries on the server, by name.
async fn library_names(conn: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let reply: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(conn)
        .await
        .unwrap();
    let mut names: Vec<String> = reply
        .iter()
        .map(|library| redis::from_redis_value_ref(&library["library_name"]).unwrap())
        .collect();
    names.sort();
    names
}

/// `FUNCTION LOAD` of a one-function library.
async fn load_raw(conn: &mut redis::aio::MultiplexedConnection, library: &str, function: &str) {
    let code = format!(
        "#!lua name={library}\nredis.register_function('{function}', function() return 1 end)"
    );
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(code)
        .query_async::<()>(conn)
        .await
        .unwrap();
}

/// `functions prune` on a server holding the current library, one of
/// another version, Charon's own and two unrelated ones (one merely named
/// like ours): the dry run lists the old one and deletes nothing, `--apply`
/// deletes exactly it, a second run finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_other_versions() {
    let server = TestServer::start(Flavor::Redis);
    let (ok, out, err) = cli(&["functions", "load", "--redis", &server.url()]);
    assert!(ok, "{out}{err}");
    let current = RedisStore::function_library_name().to_owned();
    let old_hash = if current.ends_with("0123456789abcdef") {
        "fedcba9876543210"
    } else {
        "0123456789abcdef"
    };
    let old = format!("charon_sessions_{old_hash}");
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    load_raw(
        &mut admin,
        &old,
        &format!("charon_sessions_upsert_{old_hash}"),
    )
    .await;
    load_raw(
        &mut admin,
        "charon_redis_store_abc",
        "charon_redis_store_upsert_abc",
    )
    .await;
    load_raw(&mut admin, "otherapp", "otherapp_do").await;
    load_raw(
        &mut admin,
        "charon_sessions_aaaaaaaaaaaaaaaa",
        "otherapp_lookalike",
    )
    .await;
    let before = library_names(&mut admin).await;
    assert_eq!(before.len(), 5, "{before:?}");

    let (ok, out, err) = cli(&["functions", "prune", "--redis", &server.url()]);
    assert!(ok, "{out}{err}");
    assert_eq!(out, format!("would delete {old}\n"), "{err}");
    assert!(err.contains("--apply"), "{err}");
    assert_eq!(
        library_names(&mut admin).await,
        before,
        "the dry run deleted"
    );

    let (ok, out, err) = cli(&["functions", "prune", "--redis", &server.url(), "--apply"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out, format!("deleted {old}\n"), "{err}");
    let after = library_names(&mut admin).await;
    let expected: Vec<String> = before.iter().filter(|n| **n != old).cloned().collect();
    assert_eq!(after, expected);
    assert!(after.contains(&current), "{after:?}");

    for apply in [false, true] {
        let mut args = vec!["functions", "prune", "--redis"];
        let url = server.url();
        args.push(&url);
        if apply {
            args.push("--apply");
        }
        let (ok, out, err) = cli(&args);
        assert!(ok, "{out}{err}");
        assert!(
            out.starts_with("no function libraries of other versions"),
            "{out}"
        );
        assert!(out.contains(&current), "{out}");
    }
    assert_eq!(library_names(&mut admin).await, expected);
}

/// `functions prune` needs a server, refuses cluster and Sentinel options
/// (usage errors, status 2) and reports an unreachable server (status 1).
#[test]
fn prune_reports_bad_input() {
    let run = |args: &[&str]| common::cli(args, &[]);
    for args in [
        &["functions", "prune"][..],
        &["functions", "prune", "--cluster", "redis://127.0.0.1:1"],
        &[
            "functions",
            "prune",
            "--redis",
            "redis://127.0.0.1:1",
            "--yes",
        ],
    ] {
        let out = run(args);
        assert_eq!(out.code, 2, "{args:?}");
    }
    let out = run(&["functions", "prune", "--redis", "redis://127.0.0.1:1"]);
    assert_eq!(out.code, 1);
    let err = &out.stderr;
    assert!(err.contains("cannot prune the function libraries"), "{err}");
    let out = run(&["functions", "prune", "--redis", "not a url"]);
    assert_eq!(out.code, 1);
    let err = &out.stderr;
    assert!(err.contains("cannot prune"), "{err}");
}
