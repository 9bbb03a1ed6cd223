//! `charon-sessions demo` end to end: the built binary against the embedded
//! store, a real Redis 8 and a real Valkey 9.

mod common;

use std::process::Stdio;
use std::time::Duration;

use charon_sessions::codec;
use charon_sessions::signing::{self, SigningKey};
use charon_sessions_testkit::{Flavor, TestServer};

use common::{cli, command};

fn demo(args: &[&str]) -> (bool, String) {
    let run = cli(&[&["demo"], args].concat(), &[]);
    (run.ok(), run.all())
}

fn assert_demo_passes(args: &[&str], store: &str) -> String {
    let (ok, text) = demo(args);
    assert!(ok, "demo failed:\n{text}");
    assert!(text.contains(store), "{text}");
    assert!(
        text.contains("all 17 steps behaved as documented"),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
    text
}

/// The default demo runs on the in-memory store and every step passes.
#[test]
fn demo_passes_on_local_store() {
    assert_demo_passes(&[], "LocalStore");
}

/// The demo passes on Redis 8, leaves no key behind, and warns that a
/// random base secret was used.
#[test]
fn demo_passes_on_redis8_and_cleans_up() {
    let server = TestServer::start(Flavor::Redis);
    let text = assert_demo_passes(&["--redis", &server.url()], "RedisStore on Redis 8");
    assert!(text.contains("random key"), "{text}");
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(keys, 0, "the demo must delete its sessions");
}

/// Runs the demo with `args` against `server`, signing with
/// [`DEMO_SECRET`], and reads the server's session values while it runs
/// (every 20 ms, until it exits): the first byte of each verified payload
/// seen, and whether the demo passed, with its output.
fn demo_watching_values(server: &TestServer, args: &[&str]) -> (bool, String, Vec<u8>) {
    let url = server.url();
    let mut child = command(&["demo", "--redis", &url, "--base-secret", DEMO_SECRET])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run charon-sessions demo");
    let key = SigningKey::from_base_secret(DEMO_SECRET.as_bytes()).unwrap();
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut seen = Vec::new();
    while child.try_wait().unwrap().is_none() {
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        for key_name in keys {
            let values: Vec<Vec<u8>> = redis::cmd("HVALS")
                .arg(&key_name)
                .query(&mut conn)
                .unwrap_or_default();
            // Lock fields hold numbers, which do not verify.
            seen.extend(
                values
                    .iter()
                    .filter_map(|v| signing::verify(v, &key).ok())
                    .filter_map(|payload| payload.first().copied()),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, seen)
}

/// The base secret of the demos whose stored values the tests read (the
/// CLI refuses one under 32 bytes).
const DEMO_SECRET: &str = "demo test base secret, 32 bytes or more";

/// With `--payload-format charon` the demo passes on Redis 8, its store
/// writing Charon's format: the line naming the store says so, and every
/// session value it stores (read while it runs) is an Erlang term (first
/// payload byte 0x83); without the option, the compact format (0x01).
#[test]
fn demo_passes_on_redis8_in_charons_format() {
    let server = TestServer::start(Flavor::Redis);
    let (ok, text, seen) = demo_watching_values(&server, &["--payload-format", "charon"]);
    assert!(ok, "demo failed:\n{text}");
    assert!(text.contains("payload format Charon"), "{text}");
    assert!(!seen.is_empty(), "no stored session seen\n{text}");
    assert!(seen.iter().all(|&b| b == codec::FORMAT_TERM), "{seen:02x?}");
    let (ok, text, seen) = demo_watching_values(&server, &[]);
    assert!(ok, "demo failed:\n{text}");
    assert!(!seen.is_empty(), "no stored session seen\n{text}");
    assert!(
        seen.iter().all(|&b| b == codec::FORMAT_MSGPACK),
        "{seen:02x?}"
    );
}

/// The demo passes on Valkey 9 with a base secret and a custom key prefix.
#[test]
fn demo_passes_on_valkey9() {
    let server = TestServer::start(Flavor::Valkey);
    let text = assert_demo_passes(
        &[
            "--redis",
            &server.url(),
            "--base-secret",
            "demo base secret, 32 bytes or more",
            "--key-prefix",
            "demo_app",
        ],
        "RedisStore on Valkey 9",
    );
    assert!(!text.contains("random key"), "{text}");
}

/// A server that cannot be reached is a clear error and a non-zero exit.
#[test]
fn demo_reports_unreachable_server() {
    let port = charon_sessions_testkit::free_port();
    let (ok, text) = demo(&["--redis", &format!("redis://127.0.0.1:{port}")]);
    assert!(!ok, "{text}");
    assert!(text.contains("cannot open the Redis store"), "{text}");
}

/// `--cluster URL,URL,...` runs the demo on a 3-primary Redis cluster, and
/// `--sentinel URL,URL,... --primary-name NAME` through Sentinel.
#[test]
fn demo_passes_on_cluster_and_sentinel() {
    let cluster = charon_sessions_testkit::TestCluster::start();
    let seeds = cluster.urls().join(",");
    assert_demo_passes(&["--cluster", &seeds], "(Redis Cluster (6 seed nodes)");
    drop(cluster);
    let setup = charon_sessions_testkit::TestSentinel::start();
    let sentinels = setup.sentinel_urls().join(",");
    assert_demo_passes(
        &[
            "--sentinel",
            &sentinels,
            "--primary-name",
            setup.primary_name(),
        ],
        "through 3 sentinels",
    );
}
