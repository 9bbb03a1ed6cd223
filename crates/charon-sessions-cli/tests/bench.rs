//! `charon-sessions bench` end to end: the built binary against a real
//! Redis 8, with short phases. Checks what the figures must show whatever
//! the machine's speed (every operation ran, none failed, the connection
//! count kept the store's promise, the data set is intact); never timings.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use charon_sessions::codec;
use charon_sessions::signing::{self, SigningKey};
use charon_sessions_testkit::{Flavor, TestServer};
use serde_json::Value;

use common::cli;

/// The base secret the runs sign with (the CLI refuses one under 32 bytes).
const BENCH_SECRET: &str = "bench base secret, 32 bytes or more";

fn bench(args: &[&str]) -> (bool, String) {
    let run = cli(&[&["bench"], args].concat(), &[]);
    (run.ok(), run.all())
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the JSON file was written");
    serde_json::from_str(&text).expect("valid JSON")
}

/// Checks one phase: every operation of `ops` ran and none failed, and the
/// connections seen never exceeded what the store promises.
fn check_phase(phase: &Value, target: &str, ops: &[&str], commands: &[&str], text: &str) {
    assert_eq!(phase["target"], target, "{phase}");
    assert!(phase["elapsed_s"].as_f64().unwrap() > 0.0, "{phase}");
    assert_eq!(phase["errors"], 0, "{phase}\n{text}");
    let operations = phase["operations"].as_object().unwrap();
    assert_eq!(operations.len(), ops.len(), "{phase}");
    for (op, command) in ops.iter().zip(commands) {
        let o = &operations[*op];
        assert!(
            o["count"].as_u64().unwrap() > 0,
            "{target} {op} never ran: {o}"
        );
        assert_eq!(o["errors"], 0, "{target} {op}: {o}");
        assert!(o["first_error"].is_null(), "{target} {op}: {o}");
        assert_eq!(o["command"], *command, "{o}");
        for field in [
            "ops_per_s",
            "mean_us",
            "p50_us",
            "p99_us",
            "p999_us",
            "max_us",
        ] {
            assert!(
                o[field].as_f64().unwrap() > 0.0,
                "{target} {op} {field}: {o}"
            );
        }
        assert!(o["p50_us"].as_f64() <= o["p99_us"].as_f64(), "{o}");
        assert!(o["p99_us"].as_f64() <= o["p999_us"].as_f64(), "{o}");
        assert!(o["p999_us"].as_f64() <= o["max_us"].as_f64(), "{o}");
    }
    let counted: u64 = operations
        .values()
        .map(|o| o["count"].as_u64().unwrap())
        .sum();
    assert_eq!(phase["total_ops"].as_u64().unwrap(), counted, "{phase}");
    for field in ["client_cpu_us_per_op", "server_cpu_us_per_op"] {
        assert!(
            phase[field].as_f64().unwrap() > 0.0,
            "{target} {field}: {phase}"
        );
    }
    let conns = &phase["connections"];
    let max = conns["max_observed"]
        .as_u64()
        .unwrap_or_else(|| panic!("connections were not counted: {conns}\n{text}"));
    assert!(max >= 1, "{conns}");
    assert!(
        max <= conns["promised"].as_u64().unwrap(),
        "more connections than the store promises: {conns}"
    );
    assert!(conns["samples"].as_u64().unwrap() >= 1, "{conns}");
}

/// A short run with the baseline: every operation ran on both sides with no
/// error, ratios are reported, at most the store's promised connections were
/// open, and afterwards every seeded user still has all its sessions.
#[test]
fn bench_with_baseline_reports_every_operation_and_keeps_the_data_set() {
    let server = TestServer::start(Flavor::Redis);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let (ok, text) = bench(&[
        "--redis",
        &server.url(),
        "--key-prefix",
        "benchtest",
        "--base-secret",
        BENCH_SECRET,
        "--duration",
        "2",
        "--warmup",
        "0.2",
        "--concurrency",
        "16",
        "--users",
        "40",
        "--sessions-per-user",
        "3",
        "--pool-size",
        "4",
        "--max-in-flight",
        "8",
        // Deletes and get_all often enough to run in any 2 s.
        "--mix",
        "get=40,upsert=30,get_all=15,delete=15",
        "--baseline",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "bench failed:\n{text}");
    assert!(text.contains("vs baseline"), "{text}");
    assert!(text.contains("interleaved in 6 rounds"), "{text}");
    assert!(text.contains("store/baseline, all operations:"), "{text}");

    let report = read_json(&json);
    assert_eq!(report["tool"], "charon-sessions bench");
    assert!(
        report["server"].as_str().unwrap().starts_with("Redis 8"),
        "{report}"
    );
    assert_eq!(report["pool_size"], 4);
    assert_eq!(report["max_connections"], 4);
    assert_eq!(report["max_in_flight"], 8);
    assert_eq!(report["settings"]["users"], 40);
    assert_eq!(report["settings"]["sessions_per_user"], 3);
    assert_eq!(report["settings"]["baseline"], true);
    assert_eq!(report["settings"]["rounds"], 6, "the default");
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["concurrency"], 16);
    assert_eq!(run["mix"], "get=40,upsert=30,get_all=15,delete=15");
    let ops = ["delete", "get", "get_all", "upsert"];
    check_phase(
        &run["baseline"],
        "baseline",
        &ops,
        &["HDEL", "HGET", "HGETALL", "FCALL"],
        &text,
    );
    check_phase(
        &run["store"],
        "store",
        &ops,
        &["HDEL", "HGET", "HGETALL", "FCALL"],
        &text,
    );
    for op in ops {
        assert!(run["ratio"][op].as_f64().unwrap() > 0.0, "{}", run["ratio"]);
    }
    check_rounds(run, 6);

    // The data sets: each user's hash, the store's and the baseline's,
    // holds its 3 sessions and their locks.
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    for n in 0..40 {
        for user in [format!("charon-bench-{n}"), format!("charon-bench-b-{n}")] {
            let key = format!("benchtest.{user}.full");
            let fields: u64 = redis::cmd("HLEN").arg(&key).query(&mut conn).unwrap();
            assert_eq!(fields, 6, "{key} holds {fields} fields");
        }
    }
    let keys: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(keys, 2 * 40, "only the benchmark users' hashes");
}

/// Checks the interleaved rounds of a run with a baseline: one
/// store/baseline ratio per round, each above 0, and their spread; and the
/// slices, two per round in ABBA order (baseline, store, store, baseline,
/// …), each with operations and no error, adding up to each target's
/// figures, each round's ratio that of its two slices.
fn check_rounds(run: &Value, rounds: usize) {
    let per_round: Vec<f64> = run["ratio_per_round"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_f64().unwrap())
        .collect();
    assert_eq!(per_round.len(), rounds, "{run}");
    assert!(per_round.iter().all(|r| *r > 0.0), "{per_round:?}");
    let spread = &run["ratio_spread"];
    let (min, median, max) = (
        spread["min"].as_f64().unwrap(),
        spread["median"].as_f64().unwrap(),
        spread["max"].as_f64().unwrap(),
    );
    assert!(min <= median && median <= max, "{spread}");
    assert!(
        per_round.contains(&min) && per_round.contains(&max),
        "{run}"
    );
    assert!(run["total_ratio"].as_f64().unwrap() > 0.0, "{run}");

    let slices = run["slices"].as_array().unwrap();
    let seen: Vec<(u64, &str)> = slices
        .iter()
        .map(|s| (s["round"].as_u64().unwrap(), s["target"].as_str().unwrap()))
        .collect();
    let expected: Vec<(u64, &str)> = ["baseline", "store", "store", "baseline"]
        .into_iter()
        .cycle()
        .take(2 * rounds)
        .enumerate()
        .map(|(i, target)| (i as u64 / 2 + 1, target))
        .collect();
    assert_eq!(seen, expected, "not in ABBA order");
    for slice in slices {
        assert!(slice["total_ops"].as_u64().unwrap() > 0, "{slice}");
        assert!(slice["ops_per_s"].as_f64().unwrap() > 0.0, "{slice}");
        assert!(slice["elapsed_s"].as_f64().unwrap() > 0.0, "{slice}");
        assert_eq!(slice["errors"], 0, "{slice}");
    }
    for target in ["baseline", "store"] {
        let mine = || slices.iter().filter(|s| s["target"] == target);
        let ops: u64 = mine().map(|s| s["total_ops"].as_u64().unwrap()).sum();
        let secs: f64 = mine().map(|s| s["elapsed_s"].as_f64().unwrap()).sum();
        let phase = &run[target];
        assert_eq!(ops, phase["total_ops"].as_u64().unwrap(), "{target}: {run}");
        let elapsed = phase["elapsed_s"].as_f64().unwrap();
        assert!(
            (secs - elapsed).abs() < 1e-6,
            "{target}: {secs} vs {elapsed}"
        );
    }
    for (round, ratio) in per_round.iter().enumerate() {
        let ops_per_s = |target: &str| {
            slices
                .iter()
                .find(|s| s["round"] == round as u64 + 1 && s["target"] == target)
                .map(|s| s["ops_per_s"].as_f64().unwrap())
                .unwrap()
        };
        let of_slices = ops_per_s("store") / ops_per_s("baseline");
        assert!(
            (ratio - of_slices).abs() <= 1e-9 * of_slices,
            "round {}: {ratio} vs {of_slices}",
            round + 1
        );
    }
}

/// `--rounds 2`: baseline and store measured in the order baseline,
/// store, store, baseline, each without error, and each on its own users:
/// the lock versions in the baseline's hashes went up by exactly the
/// baseline's upserts, those in the store's by exactly the store's (no
/// warm-up, no delete that would reset them), and the store wrote each
/// value with its lock field's version.
#[test]
fn bench_rounds_interleave_baseline_and_store_on_disjoint_users() {
    let server = TestServer::start(Flavor::Redis);
    let (text, report) = two_rounds(&server, &[]);
    assert!(text.contains("over 2 rounds"), "{text}");
    assert_eq!(report["settings"]["rounds"], 2);
    let run = &report["runs"][0];
    for (phase, target) in [(&run["baseline"], "baseline"), (&run["store"], "store")] {
        assert_eq!(phase["target"], target, "{phase}");
        assert!(phase["total_ops"].as_u64().unwrap() > 0, "{phase}");
        assert_eq!(phase["errors"], 0, "{phase}\n{text}");
        assert!(phase["elapsed_s"].as_f64().unwrap() > 0.0, "{phase}");
    }
    let order: Vec<(u64, &str)> = run["slices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["round"].as_u64().unwrap(), s["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        order,
        [(1, "baseline"), (1, "store"), (2, "store"), (2, "baseline")]
    );
    check_rounds(run, 2);

    let stored = stored_sessions(&server);
    for target in ["baseline", "store"] {
        check_locks_advanced(&stored[target], run, target);
    }
    // The store wrote each session with the lock version of its lock field.
    for (lock, value) in &stored["store"] {
        assert_eq!(stored_lock_version(value), *lock);
    }
}

/// `--control` (the A/A check of the method): both sides run the bare
/// commands, in the same ABBA rounds on their own users. The store side's
/// lock fields advanced by exactly its upserts, many beyond 2, but its
/// values are still the seeded one (lock version 1 inside) or the one
/// prepared at seeding (2, which the bare `FCALL` replays): the store's
/// `upsert`, which writes the lock field's version into the value, never
/// ran.
#[test]
fn bench_control_runs_the_bare_commands_on_both_sides() {
    let server = TestServer::start(Flavor::Redis);
    let (text, report) = two_rounds(&server, &["--control"]);
    assert!(text.contains("control run (--control)"), "{text}");
    assert_eq!(report["settings"]["control"], true);
    let run = &report["runs"][0];
    check_rounds(run, 2);
    let stored = stored_sessions(&server);
    for target in ["baseline", "store"] {
        check_locks_advanced(&stored[target], run, target);
        assert!(
            stored[target].iter().any(|(lock, _)| *lock > 2),
            "{target}: no lock field beyond 2, nothing tells the writers apart"
        );
        for (lock, value) in &stored[target] {
            let inside = stored_lock_version(value);
            assert!(inside <= 2, "{target}: value of lock {lock} has {inside}");
        }
    }

    // Refused without a baseline, and with a sweep.
    let (ok, text) = bench(&["--redis", &server.url(), "--control"]);
    assert!(!ok && text.contains("--baseline"), "{text}");
    let (ok, text) = bench(&[
        "--redis",
        &server.url(),
        "--baseline",
        "--control",
        "--sweep",
        "1",
    ]);
    assert!(!ok && text.contains("--sweep"), "{text}");
}

/// A short run of `get` and `upsert` with the baseline, in two rounds
/// with no warm-up, on 64 users of 5 sessions per side, the base secret
/// [`BENCH_SECRET`] and `extra` options; it must succeed. Its output and
/// its JSON report.
fn two_rounds(server: &TestServer, extra: &[&str]) -> (String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("rounds.json");
    let url = server.url();
    let mut args = vec![
        "--redis",
        &url,
        "--base-secret",
        BENCH_SECRET,
        "--duration",
        "0.4",
        "--warmup",
        "0",
        "--users",
        "64",
        "--concurrency",
        "8",
        "--mix",
        "get=1,upsert=1",
        "--baseline",
        "--rounds",
        "2",
        "--json",
        json.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, text) = bench(&args);
    assert!(ok, "bench failed:\n{text}");
    let report = read_json(&json);
    (text, report)
}

/// Every seeded session of each side of a [`two_rounds`] run, read
/// straight from the server (64 users of 5 sessions each): its lock field
/// (`l.<session id>`) and its value, keyed by `"baseline"` (users
/// `charon-bench-b-<n>`) and `"store"` (`charon-bench-<n>`).
fn stored_sessions(server: &TestServer) -> HashMap<&'static str, Vec<(u64, Vec<u8>)>> {
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut of = |pattern: &str| -> Vec<(u64, Vec<u8>)> {
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut conn).unwrap();
        assert_eq!(keys.len(), 64, "{pattern}: {keys:?}");
        keys.iter()
            .flat_map(|key| {
                // Session values are binary; lock versions decimal text.
                let fields: HashMap<Vec<u8>, Vec<u8>> =
                    redis::cmd("HGETALL").arg(key).query(&mut conn).unwrap();
                assert_eq!(fields.len(), 2 * 5, "{key}");
                fields
                    .iter()
                    .filter_map(|(field, lock)| {
                        Some((
                            field.strip_prefix(
                                charon_sessions::layout::LOCK_FIELD_PREFIX.as_bytes(),
                            )?,
                            lock,
                        ))
                    })
                    .map(|(id, lock)| {
                        let lock = std::str::from_utf8(lock).unwrap().parse().unwrap();
                        (lock, fields[id].clone())
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    HashMap::from([
        ("baseline", of("charon_.charon-bench-b-*")),
        ("store", of("charon_.charon-bench-[0-9]*")),
    ])
}

/// Checks that the lock fields of `target`'s sessions (seeded at 1)
/// advanced by exactly the upserts `run` counted for it, and that some did.
fn check_locks_advanced(stored: &[(u64, Vec<u8>)], run: &Value, target: &str) {
    let locks: Vec<u64> = stored.iter().map(|(lock, _)| *lock).collect();
    assert_eq!(locks.len(), 64 * 5, "{target}: one lock per session");
    let upserts = run[target]["operations"]["upsert"]["count"]
        .as_u64()
        .unwrap();
    assert!(upserts > 0, "{target} never upserted");
    assert!(
        locks.iter().any(|l| *l > 1),
        "no lock of the {target}'s users advanced: {locks:?}"
    );
    let advanced: u64 = locks.iter().map(|l| l - 1).sum();
    assert_eq!(
        advanced, upserts,
        "the {target}'s locks advanced by other than its {upserts} upserts"
    );
}

/// The lock version inside a stored value (signed with the tests' base
/// secret [`BENCH_SECRET`]).
fn stored_lock_version(value: &[u8]) -> u64 {
    static KEY: LazyLock<SigningKey> =
        LazyLock::new(|| SigningKey::from_base_secret(BENCH_SECRET.as_bytes()).unwrap());
    let payload = signing::verify(value, &KEY).expect("a value the benchmark signed");
    codec::decode(payload)
        .expect("a session record")
        .lock_version
}

/// A sweep runs get alone and upsert alone, baseline and store in
/// interleaved rounds, at each concurrency, writes them to the JSON and
/// draws the SVG chart.
#[test]
fn bench_sweep_writes_json_and_chart() {
    let server = TestServer::start(Flavor::Redis);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sweep.json");
    let svg = dir.path().join("sweep.svg");
    let (ok, text) = bench(&[
        "--redis",
        &server.url(),
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--users",
        "20",
        "--sessions-per-user",
        "2",
        "--sweep",
        "1,4",
        "--json",
        json.to_str().unwrap(),
        "--chart",
        svg.to_str().unwrap(),
    ]);
    assert!(ok, "bench failed:\n{text}");
    let report = read_json(&json);
    assert_eq!(report["settings"]["sweep"], serde_json::json!([1, 4]));
    let runs = report["runs"].as_array().unwrap();
    let seen: Vec<(u64, &str)> = runs
        .iter()
        .map(|r| {
            (
                r["concurrency"].as_u64().unwrap(),
                r["mix"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [(1, "get=1"), (1, "upsert=1"), (4, "get=1"), (4, "upsert=1")]
    );
    for run in runs {
        let op = run["mix"].as_str().unwrap().trim_end_matches("=1");
        let command = if op == "get" { "HGET" } else { "FCALL" };
        check_phase(&run["baseline"], "baseline", &[op], &[command], &text);
        check_phase(&run["store"], "store", &[op], &[command], &text);
        check_rounds(run, 6);
    }
    let chart = std::fs::read_to_string(&svg).expect("the chart was written");
    assert!(
        chart.starts_with("<svg"),
        "{}",
        &chart[..chart.len().min(200)]
    );
    for label in [
        "get store",
        "get baseline",
        "upsert store",
        "upsert baseline",
    ] {
        assert!(chart.contains(label), "legend {label:?} missing");
    }
}

/// Bad options are refused before any load: no server, too few users for
/// the concurrency, a malformed mix, rounds too short or none.
#[test]
fn bench_refuses_bad_options() {
    let (ok, text) = bench(&["--duration", "1"]);
    assert!(!ok && text.contains("needs a Redis server"), "{text}");
    let (ok, text) = bench(&[
        "--redis",
        "redis://127.0.0.1:1",
        "--users",
        "10",
        "--concurrency",
        "64",
    ]);
    assert!(
        !ok && text.contains("--users (10) must be at least"),
        "{text}"
    );
    let (ok, text) = bench(&["--redis", "redis://127.0.0.1:1", "--mix", "get=1,read=2"]);
    assert!(!ok && text.contains("unknown operation"), "{text}");
    let (ok, text) = bench(&[
        "--redis",
        "redis://127.0.0.1:1",
        "--baseline",
        "--duration",
        "0.05",
        "--rounds",
        "10",
    ]);
    assert!(!ok && text.contains("at least 10 ms per round"), "{text}");
    let (ok, text) = bench(&["--redis", "redis://127.0.0.1:1", "--rounds", "0"]);
    assert!(!ok && text.contains("--rounds"), "{text}");
}
