//! `charon-sessions functions` end to end: load the library with an admin
//! account, create an application user from the printed ACL rule, and run a
//! store through that user on a real Redis 8.

use std::process::Command;

use charon_sessions::signing::SigningKey;
use charon_sessions::{RedisStore, RedisStoreConfig, Session, SessionStore};
use charon_sessions_testkit::{Flavor, TestServer};

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_charon-sessions"))
        .args(args)
        .env_remove("CHARON_REDIS_URL")
        .output()
        .expect("run charon-sessions");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
