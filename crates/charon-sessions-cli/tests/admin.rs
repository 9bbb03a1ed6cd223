//! The admin commands (`list`, `revoke`, `revoke-all`, `check`, `stats`)
//! end to end: sessions seeded through the library into a real Redis 8
//! (Valkey 9 for `check`), then the built binary, then the raw Redis state.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use charon_sessions::signing::SigningKey;
use charon_sessions::{RedisStore, RedisStoreConfig, Session, SessionStore};
use charon_sessions_testkit::{Flavor, TestCluster, TestServer};
use redis::aio::MultiplexedConnection;
use serde_json::Value;

use common::{Run, cli};

const SECRET: &str = "admin test base secret, 32 bytes or more";
const DAY: Duration = Duration::from_secs(24 * 3600);

fn with_secret() -> [(&'static str, &'static str); 1] {
    [("CHARON_BASE_SECRET", SECRET)]
}

async fn store(server: &TestServer, prefix: &str) -> RedisStore {
    RedisStore::connect(
        RedisStoreConfig::new(
            server.url(),
            SigningKey::from_base_secret(SECRET.as_bytes()).unwrap(),
        )
        .key_prefix(prefix),
    )
    .await
    .unwrap()
}

async fn raw(server: &TestServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `count` new sessions of `user`/`kind`.
async fn seed(store: &RedisStore, user: &str, kind: &str, count: usize) -> Vec<Session> {
    let mut sessions = Vec::new();
    for _ in 0..count {
        let mut s = Session::new_login(user, DAY);
        s.session_type = kind.to_owned();
        store.upsert(&mut s).await.unwrap();
        sessions.push(s);
    }
    sessions
}

/// Alice's three `full` sessions (one with an absolute expiry, one
/// refreshed once: lock version 2) and one `oauth2`; Bob's one `full`.
async fn seed_alice_and_bob(store: &RedisStore) -> (Vec<Session>, Session, Session) {
    let mut alice = seed(store, "alice", "full", 2).await;
    let mut bounded = Session::new_login("alice", DAY);
    bounded.expires_at = Some(bounded.refresh_expires_at + 3600);
    store.upsert(&mut bounded).await.unwrap();
    alice.push(bounded);
    alice[0].rotate_refresh_token(DAY);
    store.upsert(&mut alice[0]).await.unwrap();
    assert_eq!(alice[0].lock_version, 2);
    let oauth = seed(store, "alice", "oauth2", 1).await.remove(0);
    let bob = seed(store, "bob", "full", 1).await.remove(0);
    (alice, oauth, bob)
}

fn json(run: &Run) -> Value {
    assert_eq!(run.code, 0, "{}", run.all());
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// `list --user 42 --payload-format charon` against sessions of user 42:
/// one of integer user 42 Erlang built and signed as Charon 4.3 does
/// (written with `HSETEX` as Charon's function does), and two in the
/// compact format, of string user "42" and of integer user 42. All are
/// listed; `--json` says which format each is stored in and the user id's
/// kind where the format records it (`null` for the compact string user);
/// a note counts the sessions an Elixir service cannot read yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_charon_sessions_of_an_integer_user() {
    use charon_sessions_testkit::Erlang;
    use charon_sessions_testkit::erlang::binary;
    let server = TestServer::start(Flavor::Redis);
    let mut erl = Erlang::start();
    let now = charon_sessions::Session::now();
    let value = erl.bytes(&format!(
        "K = charon_peer:key({}), S = charon_peer:session(#{{id => <<\"from-elixir\">>, \
         user_id => 42, created_at => {now}, expires_at => infinite, \
         refresh_expires_at => {}, refresh_token_id => <<\"rt\">>, refreshed_at => {now}, \
         tokens_fresh_from => {now}, lock_version => 1}}), \
         charon_peer:sign(charon_peer:encode(S), K).",
        binary(SECRET.as_bytes()),
        now + 3600
    ));
    let mut conn = raw(&server).await;
    let _: i64 = redis::cmd("HSETEX")
        .arg("charon_.42.full")
        .arg("EXAT")
        .arg(now + 3600)
        .arg("FIELDS")
        .arg(2)
        .arg("from-elixir")
        .arg(value)
        .arg("l.from-elixir")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let compact_store = store(&server, "charon_").await;
    let compact = seed(&compact_store, "42", "full", 1).await;
    // The compact format records an integer user id's kind (slot 13).
    let mut compact_integer = Session::new_login_integer(42, Duration::from_secs(3600));
    compact_store.upsert(&mut compact_integer).await.unwrap();
    let url = server.url();
    let run = cli(
        &[
            "list",
            "--redis",
            &url,
            "--user",
            "42",
            "--payload-format",
            "charon",
            "--json",
        ],
        &with_secret(),
    );
    let listing = json(&run);
    let rows = listing["sessions"].as_array().unwrap();
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(rows.len(), 3, "{listing}");
    let elixir = row("from-elixir");
    assert_eq!(
        (
            &elixir["payload_format"],
            &elixir["user_id_kind"],
            &elixir["lock_version"]
        ),
        (
            &Value::from("charon"),
            &Value::from("integer"),
            &Value::from(1)
        )
    );
    // A compact value of a string user does not say it is one: null.
    let rust = row(&compact[0].id);
    assert_eq!(
        (&rust["payload_format"], &rust["user_id_kind"]),
        (&Value::from("compact"), &Value::Null)
    );
    let rust_integer = row(&compact_integer.id);
    assert_eq!(
        (
            &rust_integer["payload_format"],
            &rust_integer["user_id_kind"]
        ),
        (&Value::from("compact"), &Value::from("integer"))
    );
    assert!(
        run.stderr.contains(
            "2 listed session(s) are stored in a format an Elixir Charon service cannot read"
        ),
        "{}",
        run.stderr
    );
    // Without --payload-format charon: the same listing, no note.
    let run = cli(
        &["list", "--redis", &url, "--user", "42", "--json"],
        &with_secret(),
    );
    assert_eq!(json(&run)["sessions"].as_array().unwrap().len(), 3);
    assert!(!run.stderr.contains("note"), "{}", run.stderr);
}

/// `list --json` and the table show exactly the seeded sessions of the user
/// and type asked for, with their times and lock versions, and never a
/// refresh token id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_the_seeded_sessions() {
    let server = TestServer::start(Flavor::Redis);
    let store = store(&server, "charon_").await;
    let (alice, oauth, bob) = seed_alice_and_bob(&store).await;
    let url = server.url();

    let listing = json(&cli(
        &["list", "--redis", &url, "--user", "alice", "--json"],
        &with_secret(),
    ));
    assert_eq!(listing["user_id"], "alice");
    assert_eq!(listing["session_type"], "full");
    assert_eq!(listing["key"], "charon_.alice.full");
    assert_eq!(listing["unverified"], 0);
    let rows = listing["sessions"].as_array().unwrap();
    assert_eq!(rows.len(), alice.len());
    for s in &alice {
        let row = rows
            .iter()
            .find(|r| r["id"] == s.id.as_str())
            .unwrap_or_else(|| panic!("{} missing from {listing}", s.id));
        assert_eq!(row["created_at"], s.created_at);
        assert_eq!(row["refreshed_at"], s.refreshed_at);
        assert_eq!(row["refresh_expires_at"], s.refresh_expires_at);
        assert_eq!(row["expires_at"], serde_json::json!(s.expires_at));
        assert_eq!(row["lock_version"], s.lock_version);
        assert_eq!(row["payload_format"], "compact");
        assert_eq!(row["user_id_kind"], Value::Null);
        assert_eq!(row.as_object().unwrap().len(), 8, "{row}");
    }

    let table = cli(
        &["list", "--redis", &url, "--user", "alice"],
        &with_secret(),
    );
    assert_eq!(table.code, 0, "{}", table.all());
    assert!(
        table.stdout.contains("3 session(s) of user \"alice\""),
        "{}",
        table.stdout
    );
    for s in &alice {
        let line = table
            .stdout
            .lines()
            .find(|l| l.contains(&s.id))
            .unwrap_or_else(|| panic!("{} missing from\n{}", s.id, table.stdout));
        let created = time::OffsetDateTime::from_unix_timestamp(s.created_at).unwrap();
        assert!(line.contains(&format!("{} (", s.created_at)), "{line}");
        assert!(line.contains(&format!("{}-", created.year())), "{line}");
        match s.expires_at {
            Some(at) => assert!(line.contains(&at.to_string()), "{line}"),
            None => assert!(line.contains("never"), "{line}"),
        }
        assert!(
            line.trim_end_matches(['│', ' '])
                .ends_with(&s.lock_version.to_string()),
            "{line}"
        );
        assert!(!table.all().contains(&s.refresh_token_id));
    }
    assert!(!table.stdout.contains(&oauth.id) && !table.stdout.contains(&bob.id));

    let other_type = json(&cli(
        &[
            "list", "--redis", &url, "--user", "alice", "--type", "oauth2", "--json",
        ],
        &with_secret(),
    ));
    let ids: Vec<&str> = other_type["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [oauth.id.as_str()]);
}

/// With a wrong base secret nothing is listed, a warning says how many
/// stored sessions failed verification, and no value is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_a_wrong_base_secret_shows_nothing_and_warns() {
    let server = TestServer::start(Flavor::Redis);
    let store = store(&server, "charon_").await;
    let (alice, _, _) = seed_alice_and_bob(&store).await;
    let run = cli(
        &[
            "list",
            "--redis",
            &server.url(),
            "--user",
            "alice",
            "--json",
        ],
        &[(
            "CHARON_BASE_SECRET",
            "not the secret, but long enough to use",
        )],
    );
    let listing = json(&run);
    assert_eq!(listing["sessions"].as_array().unwrap().len(), 0);
    assert_eq!(listing["unverified"], 3);
    assert!(
        run.stderr
            .contains("3 stored session(s) failed verification"),
        "{}",
        run.stderr
    );
    let all = run.all();
    assert!(!all.contains("signed."), "{all}");
    for s in &alice {
        assert!(!all.contains(&s.refresh_token_id), "{all}");
    }
}

/// `list` refuses to run without a base secret (exit 2); the base secret
/// can come from a file (one trailing newline ignored), which wins over the
/// environment (a short secret there is not even looked at); an unreadable
/// file is a clear error, an empty one a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_secret_from_env_or_file() {
    let server = TestServer::start(Flavor::Redis);
    let store = store(&server, "charon_").await;
    seed(&store, "alice", "full", 2).await;
    let url = server.url();
    let list = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["list", "--redis", url.as_str(), "--user", "alice", "--json"];
        args.extend(extra);
        cli(&args, env)
    };

    let none = list(&[], &[]);
    assert_eq!(none.code, 2, "{}", none.all());
    assert!(
        none.stderr.contains("needs the base secret"),
        "{}",
        none.stderr
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let file_arg = file.to_str().unwrap();
    let from_file = json(&list(&["--base-secret-file", file_arg], &[]));
    assert_eq!(from_file["sessions"].as_array().unwrap().len(), 2);
    let file_wins = json(&list(
        &["--base-secret-file", file_arg],
        &[("CHARON_BASE_SECRET", "wrong")],
    ));
    assert_eq!(file_wins["sessions"].as_array().unwrap().len(), 2);

    let missing = dir.path().join("absent");
    let unreadable = list(&["--base-secret-file", missing.to_str().unwrap()], &[]);
    assert_eq!(unreadable.code, 1, "{}", unreadable.all());
    assert!(
        unreadable
            .stderr
            .contains("cannot read the base secret file"),
        "{}",
        unreadable.stderr
    );
    std::fs::write(&file, "\n").unwrap();
    let empty = list(&["--base-secret-file", file_arg], &[]);
    assert_eq!(empty.code, 2, "{}", empty.all());
    assert!(empty.stderr.contains("is empty"), "{}", empty.stderr);
}

/// Every admin command needs --redis and says why (exit 2); bad ids are
/// clap errors (exit 2).
#[test]
fn admin_commands_need_redis_and_valid_ids() {
    for args in [
        &["list", "--user", "a"][..],
        &["revoke", "--user", "a", "--session", "s"],
        &["revoke-all", "--user", "a"],
        &["check"],
        &["stats"],
    ] {
        let run = cli(args, &with_secret());
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(run.stderr.contains("needs --redis"), "{}", run.stderr);
        assert!(run.stderr.contains("LocalStore"), "{}", run.stderr);
        // A cluster or Sentinel address instead: one server only, said so.
        let topology = [
            &["--cluster", "redis://127.0.0.1:1"][..],
            &["--sentinel", "redis://127.0.0.1:1", "--primary-name", "p"],
        ];
        for extra in topology {
            let run = cli(&[args, extra].concat(), &with_secret());
            assert_eq!(run.code, 2, "{args:?} {extra:?}: {}", run.all());
            assert!(run.stderr.contains("works on one server"), "{}", run.stderr);
        }
    }
    let port = charon_sessions_testkit::free_port().to_string();
    let url = format!("redis://127.0.0.1:{port}");
    for args in [
        &[
            "revoke",
            "--redis",
            &url,
            "--user",
            "a",
            "--session",
            "no.dots",
        ][..],
        &[
            "revoke-all",
            "--redis",
            &url,
            "--user",
            "",
            "--type",
            "full",
        ],
        &["list", "--redis", &url, "--user", "a", "--type", "a.b"],
    ] {
        let run = cli(args, &with_secret());
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(run.stderr.contains("invalid value"), "{}", run.stderr);
    }
    let run = cli(&["stats", "--redis", &url, "--key-prefix", "a.b"], &[]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("invalid --key-prefix"),
        "{}",
        run.stderr
    );
}

/// Each command's `--help` lists only the options it uses: the connection
/// options everywhere, the base secret and the payload format only where
/// session values are read or written (`demo`, `bench`, `list`), not on
/// the commands that delete or inspect without verifying (`revoke`,
/// `revoke-all`, `check`, `stats`).
#[test]
fn help_lists_only_the_options_a_command_uses() {
    let connection = ["--redis", "--cluster", "--sentinel", "--key-prefix"];
    let values = [
        "--base-secret",
        "--base-secret-file",
        "--allow-weak-secret",
        "CHARON_BASE_SECRET",
        "--payload-format",
    ];
    for command in ["demo", "bench", "list"] {
        let run = cli(&[command, "--help"], &[]);
        assert!(run.ok(), "{command}: {}", run.all());
        for option in connection.iter().chain(&values) {
            assert!(run.stdout.contains(option), "{command} lacks {option}");
        }
    }
    for command in ["revoke", "revoke-all", "check", "stats"] {
        let run = cli(&[command, "--help"], &[]);
        assert!(run.ok(), "{command}: {}", run.all());
        for option in connection {
            assert!(run.stdout.contains(option), "{command} lacks {option}");
        }
        for option in values {
            assert!(
                !run.stdout.contains(option),
                "{command} lists {option}:\n{}",
                run.stdout
            );
        }
    }
}

async fn fields(conn: &mut MultiplexedConnection, key: &str) -> BTreeSet<String> {
    redis::cmd("HKEYS")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

/// `revoke` deletes the session and its lock field and nothing else; a
/// second revoke says there was nothing to revoke and still exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_deletes_one_session() {
    let server = TestServer::start(Flavor::Redis);
    let store = store(&server, "app").await;
    let alice = seed(&store, "alice", "full", 3).await;
    let bob = seed(&store, "bob", "full", 1).await;
    let mut conn = raw(&server).await;
    let url = server.url();
    let revoke = || {
        cli(
            &[
                "revoke",
                "--redis",
                &url,
                "--key-prefix",
                "app",
                "--user",
                "alice",
                "--session",
                &alice[1].id,
            ],
            &[],
        )
    };

    let run = revoke();
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains(&format!("revoked session {}", alice[1].id)),
        "{}",
        run.stdout
    );
    let left = fields(&mut conn, "app.alice.full").await;
    let expected: BTreeSet<String> = [&alice[0], &alice[2]]
        .iter()
        .flat_map(|s| [s.id.clone(), format!("l.{}", s.id)])
        .collect();
    assert_eq!(left, expected);
    assert_eq!(fields(&mut conn, "app.bob.full").await.len(), 2);
    assert_eq!(store.get_all("bob", "full").await.unwrap().len(), bob.len());

    let again = revoke();
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        again.stdout.contains("nothing to revoke"),
        "{}",
        again.stdout
    );
}

/// Session ids, user ids and session types may start with `-` (random
/// url-safe ids do, one time in 64): `list`, `revoke` and `revoke-all` take
/// such values after their options, not as options of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_starting_with_a_hyphen_are_option_values() {
    let server = TestServer::start(Flavor::Redis);
    let store = store(&server, "charon_").await;
    let mut sessions = Vec::new();
    for id in ["-z0", "-q1"] {
        let mut s = Session::new_login("-dash", DAY);
        s.id = id.to_owned();
        s.session_type = "-kind".to_owned();
        store.upsert(&mut s).await.unwrap();
        sessions.push(s);
    }
    let url = server.url();
    let owner = ["--user", "-dash", "--type", "-kind"];

    let listing = json(&cli(
        &[&["list", "--redis", &url, "--json"][..], &owner].concat(),
        &with_secret(),
    ));
    assert_eq!(listing["key"], "charon_.-dash.-kind");
    assert_eq!(
        listing["sessions"].as_array().unwrap().len(),
        2,
        "{listing}"
    );

    let run = cli(
        &[&["revoke", "--redis", &url, "--session", "-z0"][..], &owner].concat(),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("revoked session -z0"), "{}", run.stdout);
    let left = store.get_all("-dash", "-kind").await.unwrap();
    assert_eq!(left, sessions[1..]);

    let run = cli(
        &[&["revoke-all", "--redis", &url][..], &owner].concat(),
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("revoked 1 session(s)"),
        "{}",
        run.stdout
    );
    assert!(store.get_all("-dash", "-kind").await.unwrap().is_empty());
}

/// `revoke-all` deletes the user's hash of that type only, and reports how
/// many sessions it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_all_deletes_one_users_sessions_of_one_type() {
    let server = TestServer::start(Flavor::Redis);
    let store = store(&server, "charon_").await;
    seed_alice_and_bob(&store).await;
    let mut conn = raw(&server).await;
    let url = server.url();

    let run = cli(&["revoke-all", "--redis", &url, "--user", "alice"], &[]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains("revoked 3 session(s) of user \"alice\", type \"full\""),
        "{}",
        run.stdout
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg("charon_.alice.full")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists);
    assert_eq!(fields(&mut conn, "charon_.alice.oauth2").await.len(), 2);
    assert_eq!(fields(&mut conn, "charon_.bob.full").await.len(), 2);

    let oauth = cli(
        &[
            "revoke-all",
            "--redis",
            &url,
            "--user",
            "alice",
            "--type",
            "oauth2",
        ],
        &[],
    );
    assert!(
        oauth.stdout.contains("revoked 1 session(s)"),
        "{}",
        oauth.all()
    );
    let nothing = cli(&["revoke-all", "--redis", &url, "--user", "alice"], &[]);
    assert_eq!(nothing.code, 0);
    assert!(
        nothing.stdout.contains("revoked 0 session(s)"),
        "{}",
        nothing.all()
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, ["charon_.bob.full"]);
}

/// The line of check `name`, e.g. `acl hsetex`.
fn check_line<'a>(run: &'a Run, name: &str) -> &'a str {
    run.stdout
        .lines()
        .find(|l| {
            l.get(6..)
                .is_some_and(|rest| rest.starts_with(&format!("{name} ")))
        })
        .unwrap_or_else(|| panic!("no line {name:?} in\n{}", run.all()))
}

/// On a server the store has run on, every check passes (exit 0), on Redis
/// 8 and on Valkey 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_a_good_server() {
    for (flavor, kind) in [(Flavor::Redis, "Redis 8"), (Flavor::Valkey, "Valkey 9")] {
        let server = TestServer::start(flavor);
        store(&server, "charon_").await;
        let run = cli(&["check", "--redis", &server.url()], &[]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert!(!run.stdout.contains("FAIL"), "{}", run.stdout);
        assert!(check_line(&run, "server").contains(kind), "{}", run.stdout);
        assert!(check_line(&run, "hash field expiration").starts_with("ok"));
        assert!(
            check_line(&run, "function library")
                .contains(&format!("{} loaded", RedisStore::function_library_name()))
        );
        let mut commands = RedisStoreConfig::new(server.url(), SigningKey::generate())
            .register_functions(false)
            .acl_commands()
            .unwrap();
        // Then what a store found through Sentinel, or waiting for
        // replicas, needs.
        commands.extend(["role", "wait"].map(str::to_owned));
        for command in &commands {
            let line = check_line(&run, &format!("acl {command}"));
            assert!(
                line.starts_with("ok") && line.contains("ACL DRYRUN"),
                "{line}"
            );
        }
        // Not in cluster mode: no cluster command is checked.
        for command in ["cluster|slots", "asking", "readonly"] {
            assert!(
                !run.stdout.contains(&format!("acl {command} ")),
                "{}",
                run.stdout
            );
        }
        assert!(
            check_line(&run, "latency").contains("median"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("all checks passed"));
    }
}

/// After FUNCTION FLUSH, check fails (exit 1) on the function library;
/// another charon_sessions_* library is named as another version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_without_the_function_library() {
    let server = TestServer::start(Flavor::Redis);
    store(&server, "charon_").await;
    let mut conn = raw(&server).await;
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let older = "#!lua name=charon_sessions_0000000000000000\n\
                 redis.register_function('charon_sessions_upsert_0000000000000000', function() return 1 end)";
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(older)
        .query_async(&mut conn)
        .await
        .unwrap();

    let run = cli(&["check", "--redis", &server.url()], &[]);
    assert_eq!(run.code, 1, "{}", run.all());
    let line = check_line(&run, "function library");
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(line.contains("not loaded"), "{line}");
    assert!(
        line.contains("other versions loaded: charon_sessions_0000000000000000"),
        "{line}"
    );
    assert!(run.stdout.contains("1 check(s) FAILED"), "{}", run.stdout);
}

/// A Redis user lacking one right the store needs fails check (exit 1) on
/// that command: found with ACL DRYRUN when the user may run it, else by
/// running the command harmlessly. The probes leave no key behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_for_a_user_lacking_a_right() {
    let server = TestServer::start(Flavor::Redis);
    store(&server, "myapp").await;
    let mut admin = raw(&server).await;
    let rule = RedisStoreConfig::new(server.url(), SigningKey::generate())
        .key_prefix("myapp")
        .register_functions(false)
        .acl_rule()
        .unwrap();
    let set_user = |name: &str, drop: &str, add: &[&str]| {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(name).arg("on").arg(">pw");
        for part in rule.split(' ').filter(|p| *p != drop) {
            cmd.arg(part);
        }
        cmd.arg(add);
        cmd
    };
    let _: () = set_user("nohsetex", "+hsetex", &[])
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = set_user("nohdel", "+hdel", &["+acl|whoami", "+acl|dryrun"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let url = |user: &str| format!("redis://{user}:pw@127.0.0.1:{}", server.port());

    // The least-privilege rule allows no ACL DRYRUN: probed.
    let run = cli(
        &[
            "check",
            "--redis",
            &url("nohsetex"),
            "--key-prefix",
            "myapp",
        ],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.all());
    let line = check_line(&run, "acl hsetex");
    assert!(
        line.starts_with("FAIL") && line.contains("probed"),
        "{line}"
    );
    for command in [
        "hget",
        "hgetall",
        "hdel",
        "hlen",
        "hkeys",
        "hexpiretime",
        "del",
        "fcall",
    ] {
        let line = check_line(&run, &format!("acl {command}"));
        assert!(line.starts_with("ok") && line.contains("probed"), "{line}");
    }
    // Outside this store's rule: refused, and not counted as failures.
    for (command, when) in [("role", "Sentinel"), ("wait", "wait_for_replicas")] {
        let line = check_line(&run, &format!("acl {command}"));
        assert!(
            line.starts_with("--") && line.contains("refused") && line.contains(when),
            "{line}"
        );
    }
    assert!(
        check_line(&run, "function library").contains("cannot inspect"),
        "{}",
        run.stdout
    );
    assert!(
        check_line(&run, "server").starts_with("ok"),
        "{}",
        run.stdout
    );
    let latency = check_line(&run, "latency");
    assert!(
        latency.starts_with("ok") && latency.contains("HGET (PING refused"),
        "{latency}"
    );
    assert!(run.stdout.contains("1 check(s) FAILED"), "{}", run.stdout);

    // ACL DRYRUN allowed: used.
    let run = cli(
        &["check", "--redis", &url("nohdel"), "--key-prefix", "myapp"],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.all());
    let line = check_line(&run, "acl hdel");
    assert!(
        line.starts_with("FAIL") && line.contains("ACL DRYRUN"),
        "{line}"
    );
    assert!(
        check_line(&run, "acl hsetex").starts_with("ok"),
        "{}",
        run.stdout
    );

    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(keys.is_empty(), "probes left {keys:?}");
}

/// Creates `user` with password `pw` and `rule`, less the `drop` part.
async fn set_user(admin: &mut MultiplexedConnection, user: &str, rule: &str, drop: &str) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg(&["SETUSER", user, "on", ">pw"]);
    for part in rule.split(' ').filter(|p| *p != drop) {
        cmd.arg(part);
    }
    cmd.query_async::<()>(admin).await.unwrap();
}

/// With a URL naming database 2, check probes `SELECT 2`: a user from the
/// rule for database 2 passes every check; one from the rule for database
/// 0 fails to connect, `SELECT 2` being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probes_the_database_of_the_url() {
    let server = TestServer::start(Flavor::Redis);
    store(&server, "myapp").await;
    let rule = |db: u32| {
        RedisStoreConfig::new(format!("{}/{db}", server.url()), SigningKey::generate())
            .key_prefix("myapp")
            .register_functions(false)
            .acl_rule()
            .unwrap()
    };
    let mut admin = raw(&server).await;
    set_user(&mut admin, "db2", &rule(2), "").await;
    set_user(&mut admin, "db0", &rule(0), "").await;
    let url = |user: &str| format!("redis://{user}:pw@127.0.0.1:{}/2", server.port());

    let run = cli(
        &["check", "--redis", &url("db2"), "--key-prefix", "myapp"],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    let line = check_line(&run, "acl select|2");
    assert!(line.starts_with("ok") && line.contains("probed"), "{line}");
    assert!(run.stdout.contains("all checks passed"), "{}", run.stdout);

    let run = cli(
        &["check", "--redis", &url("db0"), "--key-prefix", "myapp"],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.all());
    let line = check_line(&run, "connect");
    assert!(
        line.starts_with("FAIL") && line.contains("'select'"),
        "{line}"
    );
}

/// On a node in cluster mode, check probes the cluster's rule: the admin
/// may run all of it and `READONLY` and `WAIT`; a user from the cluster's
/// rule passes, told `READONLY` and `WAIT` are refused but needed only
/// with replica reads and waits; a user without `+cluster|slots` fails on
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_on_a_cluster_node_probes_the_clusters_rule() {
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let config =
        || RedisStoreConfig::cluster(cluster.urls(), SigningKey::generate()).key_prefix("myapp");
    RedisStore::load_function_library(&config()).await.unwrap();
    let rule = config().register_functions(false).acl_rule().unwrap();
    let node = &cluster.nodes()[0];
    let mut admin = raw(node).await;
    set_user(&mut admin, "app", &rule, "").await;
    set_user(&mut admin, "noslots", &rule, "+cluster|slots").await;
    let check = |user: Option<&str>| {
        let url = match user {
            None => node.url(),
            Some(user) => format!("redis://{user}:pw@127.0.0.1:{}", node.port()),
        };
        cli(&["check", "--redis", &url, "--key-prefix", "myapp"], &[])
    };
    let cluster_commands = ["cluster|slots", "ping", "asking"];

    let run = check(None);
    assert_eq!(run.code, 0, "{}", run.all());
    for command in cluster_commands.iter().chain(&["readonly", "wait"]) {
        let line = check_line(&run, &format!("acl {command}"));
        assert!(
            line.starts_with("ok") && line.contains("ACL DRYRUN"),
            "{line}"
        );
    }
    assert!(!run.stdout.contains("acl role "), "{}", run.stdout);

    let run = check(Some("app"));
    assert_eq!(run.code, 0, "{}", run.all());
    for command in cluster_commands {
        let line = check_line(&run, &format!("acl {command}"));
        assert!(line.starts_with("ok") && line.contains("probed"), "{line}");
    }
    for (command, when) in [
        ("readonly", "read_from_replicas"),
        ("wait", "wait_for_replicas"),
    ] {
        let line = check_line(&run, &format!("acl {command}"));
        assert!(
            line.starts_with("--") && line.contains("refused") && line.contains(when),
            "{line}"
        );
    }
    let latency = check_line(&run, "latency");
    assert!(latency.contains("× PING"), "{latency}");

    let run = check(Some("noslots"));
    assert_eq!(run.code, 1, "{}", run.all());
    let line = check_line(&run, "acl cluster|slots");
    assert!(
        line.starts_with("FAIL") && line.contains("refused"),
        "{line}"
    );
    assert!(run.stdout.contains("1 check(s) FAILED"), "{}", run.stdout);
}

/// `stats` counts hashes, users (a dotted user id included, users with
/// several types counted once), sessions, the histogram, other keys and
/// bytes, over several SCAN calls; keys of another prefix are not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counts_match_the_seed() {
    let server = TestServer::start(Flavor::Redis);
    let store = store(&server, "charon_").await;
    seed(&store, "alice", "full", 3).await;
    seed(&store, "alice", "oauth2", 1).await;
    seed(&store, "bob", "full", 1).await;
    seed(&store, "carol.smith.full", "full", 2).await;
    seed(&store, "dave", "full", 6).await;
    seed(&store, "eve", "oauth2", 11).await;
    let other_prefix = self::store(&server, "other").await;
    seed(&other_prefix, "zed", "full", 2).await;
    let mut conn = raw(&server).await;
    let _: () = redis::cmd("SET")
        .arg("charon_.junk")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();

    let run = cli(
        &[
            "stats",
            "--redis",
            &server.url(),
            "--scan-count",
            "2",
            "--json",
        ],
        &[],
    );
    let stats = json(&run);
    assert_eq!(stats["key_prefix"], "charon_");
    assert_eq!(stats["keys"], 7);
    assert_eq!(stats["hashes"], 6);
    assert_eq!(stats["other_keys"], 1);
    assert_eq!(stats["users"], 5);
    assert_eq!(stats["sessions"], 24);
    assert_eq!(stats["lock_fields"], 24);
    let histogram: Vec<(String, u64)> = stats["sessions_per_user"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["bucket"].as_str().unwrap().to_owned(),
                b["users"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [("1", 1), ("2", 1), ("3-5", 1), ("6-10", 1), ("11+", 1)]
        .iter()
        .map(|(b, n)| ((*b).to_owned(), *n))
        .collect();
    assert_eq!(histogram, expected);
    assert_eq!(stats["types"]["full"]["hashes"], 4);
    assert_eq!(stats["types"]["full"]["users"], 4);
    assert_eq!(stats["types"]["full"]["sessions"], 12);
    assert_eq!(stats["types"]["oauth2"]["hashes"], 2);
    assert_eq!(stats["types"]["oauth2"]["users"], 2);
    assert_eq!(stats["types"]["oauth2"]["sessions"], 12);

    // Bytes: the sum of MEMORY USAGE over the six hashes.
    let mut expected_bytes = 0;
    for key in [
        "charon_.alice.full",
        "charon_.alice.oauth2",
        "charon_.bob.full",
        "charon_.carol.smith.full.full",
        "charon_.dave.full",
        "charon_.eve.oauth2",
    ] {
        let bytes: u64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap();
        expected_bytes += bytes;
    }
    assert_eq!(stats["bytes"], expected_bytes);
    assert_eq!(stats["bytes_method"], "MEMORY USAGE per key, summed");
    let type_bytes = stats["types"]["full"]["bytes"].as_u64().unwrap()
        + stats["types"]["oauth2"]["bytes"].as_u64().unwrap();
    assert_eq!(type_bytes, expected_bytes);

    let text = cli(&["stats", "--redis", &server.url()], &[]);
    assert_eq!(text.code, 0, "{}", text.all());
    assert!(
        text.stdout.contains("users: 5, sessions: 24"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains(&format!("bytes used: {expected_bytes}")),
        "{}",
        text.stdout
    );
}

/// A user who may not run MEMORY USAGE gets counts but no byte figure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_without_memory_rights_gives_no_bytes() {
    let server = TestServer::start(Flavor::Redis);
    let store = store(&server, "charon_").await;
    seed(&store, "alice", "full", 2).await;
    let mut admin = raw(&server).await;
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "counter",
            "on",
            ">pw",
            "~charon_.*",
            "+scan",
            "+hkeys",
            "+hello",
            "+client",
        ])
        .query_async(&mut admin)
        .await
        .unwrap();
    let url = format!("redis://counter:pw@127.0.0.1:{}", server.port());
    let stats = json(&cli(&["stats", "--redis", &url, "--json"], &[]));
    assert_eq!(stats["sessions"], 2);
    assert_eq!(stats["bytes"], Value::Null);
    assert_eq!(stats["types"]["full"]["bytes"], Value::Null);
    assert!(stats["bytes_method"].as_str().unwrap().contains("refused"));
}
