//! Figures for SCALING.md and RELIABILITY.md, measured on real servers
//! started here: bytes per session (`MEMORY USAGE`, `INFO memory`),
//! operations per second per primary, the cost of `wait_for_replicas`, and
//! throughput from one primary to a 3-primary cluster. Each test prints
//! `FIGURES` lines (see with `--no-capture`) and asserts only that every
//! call succeeded: speed is reported, never asserted. On a 2-core machine
//! clients and servers share the cores, so the figures are CPU-bound
//! lower bounds.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use charon_sessions::{RedisStore, RedisStoreConfig, Session, SessionStore};
use charon_sessions_testkit::{Flavor, TestCluster, TestServer, redis_cli};

use common::{login, test_key};

const TASKS: usize = 32;
const RUN: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
enum Op {
    Get,
    Upsert,
    GetAll,
}

/// Runs `op` from `TASKS` tasks, each on its own user, for `RUN`; returns
/// operations per second and the median and 99th-percentile latency.
async fn measure_with(
    store: Arc<RedisStore>,
    op: Op,
    users: usize,
    tasks: usize,
) -> (f64, Duration, Duration) {
    let mut sessions = Vec::new();
    for i in 0..users {
        let mut s = login(&format!("cap-{i}"));
        store.upsert(&mut s).await.unwrap();
        sessions.push(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = Arc::clone(&store);
            let stop = Arc::clone(&stop);
            let done = Arc::clone(&done);
            let mut mine: Vec<Session> = sessions.iter().skip(t).step_by(TASKS).cloned().collect();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let n = mine.len();
                    let s = &mut mine[i % n];
                    i += 1;
                    let at = Instant::now();
                    match op {
                        Op::Get => {
                            store.get(&s.id, &s.user_id, "full").await.unwrap().unwrap();
                        }
                        Op::Upsert => store.upsert(s).await.unwrap(),
                        Op::GetAll => {
                            store.get_all(&s.user_id, "full").await.unwrap();
                        }
                    }
                    latencies.push(at.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize];
    (
        done.load(Ordering::Relaxed) as f64 / secs,
        pct(0.5),
        pct(0.99),
    )
}

async fn measure(store: Arc<RedisStore>, op: Op, users: usize) -> (f64, Duration, Duration) {
    measure_with(store, op, users, TASKS).await
}

fn line(name: &str, (ops, p50, p99): (f64, Duration, Duration)) -> String {
    format!(
        "{name}: {ops:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    )
}

async fn single(server: &TestServer, pool: usize) -> Arc<RedisStore> {
    Arc::new(
        RedisStore::connect(RedisStoreConfig::new(server.url(), test_key()).pool_size(pool))
            .await
            .unwrap(),
    )
}

/// Bytes per session: `MEMORY USAGE` of a user's hash with 1 and 3
/// sessions, and `used_memory` growth for 10 000 users × 3 sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_per_session() {
    let server = TestServer::start(Flavor::Redis);
    let store = single(&server, 10).await;
    let used = || -> i64 {
        redis_cli(server.port(), &["INFO", "memory"])
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let before = used();
    let users = 3_000;
    for u in 0..users {
        for _ in 0..3 {
            store.upsert(&mut login(&format!("mem-{u}"))).await.unwrap();
        }
    }
    let after = used();
    let key = "charon_.mem-0.full";
    let three: i64 = redis_cli(server.port(), &["MEMORY", "USAGE", key, "SAMPLES", "0"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut one = login("mem-single");
    store.upsert(&mut one).await.unwrap();
    let single_key = "charon_.mem-single.full";
    let one_usage: i64 = redis_cli(
        server.port(),
        &["MEMORY", "USAGE", single_key, "SAMPLES", "0"],
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let value_len: usize = redis_cli(server.port(), &["HSTRLEN", single_key, &one.id])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    println!(
        "FIGURES memory: signed value {value_len} B; MEMORY USAGE of a hash with 1 session {one_usage} B, with 3 sessions {three} B; \
         used_memory growth for {users} users x 3 sessions {} B = {:.0} B per session",
        after - before,
        (after - before) as f64 / (users * 3) as f64
    );
    assert!(three > one_usage);
}

/// Operations per second on one primary, per operation, and the cost of
/// `wait_for_replicas(1, 100 ms)` on upserts with one replica attached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_per_second_and_wait_cost() {
    let primary = TestServer::start(Flavor::Redis);
    let port = primary.port().to_string();
    let _replica = TestServer::start_with(Flavor::Redis, &["--replicaof", "127.0.0.1", &port]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis_cli(primary.port(), &["INFO", "replication"])
        .unwrap()
        .contains("state=online")
    {
        assert!(Instant::now() < deadline, "replica did not sync");
        std::thread::sleep(Duration::from_millis(50));
    }
    let store = single(&primary, 10).await;
    // The server's own CPU time (user + system, so including its network
    // I/O) per operation: what bounds one primary's throughput.
    let cpu = || -> f64 {
        redis_cli(primary.port(), &["INFO", "cpu"])
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
            .map(|l| l.split(':').nth(1).unwrap().trim().parse::<f64>().unwrap())
            .sum()
    };
    for op in [Op::Get, Op::Upsert, Op::GetAll] {
        let before = cpu();
        let started = Instant::now();
        let m = measure(Arc::clone(&store), op, 1000).await;
        let calls = m.0 * started.elapsed().as_secs_f64();
        let per_call = (cpu() - before) / calls * 1e6;
        println!(
            "FIGURES one primary, {TASKS} tasks, {}, server CPU {per_call:.1} us per call (setup upserts included)",
            line(&format!("{op:?}"), m)
        );
    }
    let waiting = Arc::new(
        RedisStore::connect(
            RedisStoreConfig::new(primary.url(), test_key())
                .wait_for_replicas(1, Duration::from_millis(100)),
        )
        .await
        .unwrap(),
    );
    // Alternated, twice, at 1 and at 32 tasks: the machine is shared, so a
    // single pair of runs says little.
    for round in 1..=2 {
        for tasks in [1, TASKS] {
            let plain = measure_with(Arc::clone(&store), Op::Upsert, 1000, tasks).await;
            let with_wait = measure_with(Arc::clone(&waiting), Op::Upsert, 1000, tasks).await;
            println!(
                "FIGURES WAIT cost, round {round}, {tasks} tasks, primary + 1 replica: {} | {}",
                line("upsert", plain),
                line("upsert + WAIT 1 100ms", with_wait)
            );
        }
    }
    let calls = redis_cli(primary.port(), &["INFO", "commandstats"]).unwrap();
    let fcall = calls
        .lines()
        .find(|l| l.starts_with("cmdstat_fcall:"))
        .unwrap_or("");
    let hget = calls
        .lines()
        .find(|l| l.starts_with("cmdstat_hget:"))
        .unwrap_or("");
    println!("FIGURES server-side cost (INFO commandstats): {fcall} | {hget}");
}

/// Mixed load (one upsert per nine reads) on one primary, then on a
/// 3-primary cluster: throughput from 1 to 3 primaries. All processes
/// share this machine's cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_one_to_three_primaries() {
    let server = TestServer::start(Flavor::Redis);
    let one = single(&server, 10).await;
    let one_get = measure(Arc::clone(&one), Op::Get, 1000).await;
    let one_upsert = measure(one, Op::Upsert, 1000).await;
    drop(server);
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .unwrap();
    let three = Arc::new(
        RedisStore::connect(RedisStoreConfig::cluster(cluster.urls(), test_key()).pool_size(10))
            .await
            .unwrap(),
    );
    let three_get = measure(Arc::clone(&three), Op::Get, 1000).await;
    let three_upsert = measure(three, Op::Upsert, 1000).await;
    println!(
        "FIGURES scaling ({} cores): 1 primary {} | {} ; 3-primary cluster {} | {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        line("get", one_get),
        line("upsert", one_upsert),
        line("get", three_get),
        line("upsert", three_upsert)
    );
}
