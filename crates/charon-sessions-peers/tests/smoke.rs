//! The benchmark binary against a real Redis 8 from the testkit: every
//! store completes operations of each kind without an error, and cleans up
//! after itself. No timing is asserted.

use std::process::Command;

use charon_sessions_testkit::{Flavor, TestServer};

/// A 2-second run per store at concurrency 4 completes logins, refreshes
/// and reads on all four stores with 0 errors and leaves no key behind.
#[test]
fn every_store_completes_operations_without_errors() {
    let server = TestServer::start(Flavor::Redis);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("peers.json");
    let output = Command::new(env!("CARGO_BIN_EXE_charon-sessions-peers"))
        .args(["--redis", &server.url()])
        .args(["--concurrency", "4", "--duration", "2", "--pool", "2"])
        .args(["--mix", "read=2,refresh=2,login=1"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        output.status,
        server.log()
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let stores = report["stores"].as_array().unwrap();
    let names: Vec<&str> = stores.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["charon", "tower", "actix", "actix-single"]);
    for store in stores {
        let name = &store["name"];
        assert_eq!(store["errors"], 0, "{name}: {store:#}");
        for kind in store["kinds"].as_array().unwrap() {
            assert!(
                kind["count"].as_u64().unwrap() > 0,
                "{name}: no {} completed: {store:#}",
                kind["kind"]
            );
            assert_eq!(kind["errors"], 0, "{name}: {store:#}");
        }
        assert!(store["connections"].as_u64().unwrap() >= 1, "{store:#}");
        assert!(store["bytes"]["value"].as_u64().unwrap() > 200, "{store:#}");
    }
    assert_eq!(stores[0]["ratio_to_charon"], 1.0);
    assert!(stdout.contains("vs charon"), "{stdout}");
    assert!(stdout.contains("no optimistic locking"), "{stdout}");

    // Every session was deleted again.
    let mut connection = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: u64 = redis::cmd("DBSIZE").query(&mut connection).unwrap();
    assert_eq!(keys, 0);
}
