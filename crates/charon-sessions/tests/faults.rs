//! `RedisStore` under faults, against real servers started by each test
//! (never a mock): a server restart without persistence (the function
//! library and all data are lost), SIGKILL and restart under load, client
//! connections killed under load, and a server too old to use. What the
//! connection model itself guarantees (replacement, limits, timeouts) is in
//! `tests/connections.rs`.
//!
//! The load tests run 32 tasks, each owning one user and one session id, so
//! that every result can be checked: a task remembers which stored states
//! are possible for its session (the last one written or read, plus the
//! effects of calls that failed and may or may not have happened, plus
//! "absent" once the server lost its data) and counts as a *wrong result*
//! any read outside that set, any upsert that succeeded although the stored
//! lock version cannot have matched, and any conflict that cannot have
//! happened. Each load test prints one `FIGURES` line (see with
//! `--no-capture`) and asserts zero wrong results.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use charon_sessions::{
    RedisStore, RedisStoreConfig, ServerInfo, Session, SessionStore, StoreError,
};
use charon_sessions_testkit::{Flavor, TestServer};
use redis::aio::MultiplexedConnection;
use tokio::task::JoinHandle;

use common::raw::{command_calls, kill_other_clients, raw};
use common::{HOUR, login, test_key};

// ---------------------------------------------------------------------------
// Tests per server flavour
// ---------------------------------------------------------------------------

/// Expands each behaviour into a `#[tokio::test]` per server: the `both`
/// list on Redis 8 and Valkey 9, the `redis_only` list on Redis 8 only.
macro_rules! fault_tests {
    (both: [$($both:ident),* $(,)?], redis_only: [$($only:ident),* $(,)?] $(,)?) => {
        mod redis8 {
            use charon_sessions_testkit::Flavor;
            $(
                #[doc = concat!("`", stringify!($both), "` on Redis 8 (see that function).")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $both() {
                    super::$both(Flavor::Redis).await;
                }
            )*
            $(
                #[doc = concat!("`", stringify!($only), "` on Redis 8 (see that function).")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $only() {
                    super::$only(Flavor::Redis).await;
                }
            )*
        }
        mod valkey9 {
            use charon_sessions_testkit::Flavor;
            $(
                #[doc = concat!("`", stringify!($both), "` on Valkey 9 (see that function).")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $both() {
                    super::$both(Flavor::Valkey).await;
                }
            )*
        }
    };
}

fault_tests!(
    both: [
        function_library_lost_by_restart_is_registered_once,
        killed_connections_under_load,
    ],
    redis_only: [restart_under_load],
);

// ---------------------------------------------------------------------------
// Raw server access (a connection of the test's own, never the store's)
// ---------------------------------------------------------------------------

/// The library names in `FUNCTION LIST`.
async fn library_names(conn: &mut MultiplexedConnection) -> Vec<String> {
    let reply: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(conn)
        .await
        .expect("FUNCTION LIST");
    fn strings(value: &redis::Value, out: &mut Vec<String>) {
        use redis::Value;
        match value {
            Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => out.push(s.clone()),
            Value::Array(items) | Value::Set(items) => items.iter().for_each(|v| strings(v, out)),
            Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
                strings(k, out);
                strings(v, out);
            }),
            _ => {}
        }
    }
    let mut all = Vec::new();
    strings(&reply, &mut all);
    all.windows(2)
        .filter(|w| w[0] == "library_name")
        .map(|w| w[1].clone())
        .collect()
}

async fn dbsize(conn: &mut MultiplexedConnection) -> i64 {
    redis::cmd("DBSIZE")
        .query_async(conn)
        .await
        .expect("DBSIZE")
}

/// Client connections on the server other than `conn` itself.
async fn other_clients(conn: &mut MultiplexedConnection) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .expect("CLIENT LIST");
    list.lines().count().saturating_sub(1)
}

// ---------------------------------------------------------------------------
// 1. Function library lost by a restart
// ---------------------------------------------------------------------------

/// After SIGKILL and a restart without persistence (data and function
/// library gone), the next upsert of a new session through the connected
/// store succeeds, loading the library exactly once (one `FUNCTION LOAD`,
/// two `FCALL`s, per `INFO commandstats`), and the upsert after it loads
/// nothing.
async fn function_library_lost_by_restart_is_registered_once(flavor: Flavor) {
    let mut server = TestServer::start(flavor);
    let store = RedisStore::connect(RedisStoreConfig::new(server.url(), test_key()).pool_size(2))
        .await
        .unwrap();
    let mut before_restart = login("alice");
    store.upsert(&mut before_restart).await.unwrap();
    {
        let mut conn = raw(&server).await;
        assert_eq!(
            library_names(&mut conn).await,
            vec![RedisStore::function_library_name().to_owned()]
        );
    }

    server.kill();
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let mut conn = raw(&server).await;
    assert!(
        library_names(&mut conn).await.is_empty(),
        "no persistence: the restarted server has no functions"
    );
    assert_eq!(dbsize(&mut conn).await, 0);
    // The store opens its connections again by itself (tests/connections.rs
    // shows how soon); this test is about the function library.
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.pool_state().connections < 2 {
        assert!(Instant::now() < deadline, "{:?}", store.pool_state());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The next upsert, through the store connected before the restart.
    let mut session = login("alice");
    let result = store.upsert(&mut session).await;
    let calls = command_calls(&mut conn).await;
    if let Err(first) = result {
        // Evidence for the report: how many more upserts fail before one
        // succeeds (at most 20 tries).
        let mut failures = vec![first.to_string()];
        for _ in 0..20 {
            match store.upsert(&mut session).await {
                Ok(()) => break,
                Err(e) => failures.push(e.to_string()),
            }
        }
        panic!(
            "the first upsert after the restart failed; consecutive failures before a \
             success: {failures:?} (pool: {:?})\ncommands the restarted server had seen \
             after the first upsert: {calls:?}",
            store.pool_state()
        );
    }
    assert_eq!(
        calls.get("function|load"),
        Some(&1),
        "exactly one FUNCTION LOAD after the restart: {calls:?}"
    );
    assert_eq!(
        calls.get("fcall"),
        Some(&2),
        "FCALL, then FCALL again after loading: {calls:?}"
    );
    assert_eq!(
        library_names(&mut conn).await,
        vec![RedisStore::function_library_name().to_owned()]
    );
    assert_eq!(
        store.get(&session.id, "alice", "full").await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(
        store
            .get(&before_restart.id, "alice", "full")
            .await
            .unwrap(),
        None,
        "the session written before the restart is gone"
    );

    // Registered again: the next upsert loads nothing.
    session.rotate_refresh_token(HOUR);
    store.upsert(&mut session).await.unwrap();
    let calls = command_calls(&mut conn).await;
    assert_eq!(calls.get("function|load"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("fcall"), Some(&3), "{calls:?}");
}

// ---------------------------------------------------------------------------
// The load: 32 tasks, each checking its own session
// ---------------------------------------------------------------------------

const TASKS: usize = 32;
/// At most this many calls per task (the load is also bounded in time).
const MAX_CALLS_PER_TASK: usize = 200_000;
/// A call that has not returned after this long counts as hung (and is
/// abandoned so that the test ends).
const HUNG_AFTER: Duration = Duration::from_secs(15);
/// A task waits this long after a failed call before its next one (a
/// client's minimal back-off; keeps the outage from being a busy loop).
const BACKOFF_AFTER_FAILURE: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Get,
    Upsert,
    Delete,
    GetAll,
    DeleteAll,
}

/// How one call ended. `Ok` and `Conflict` are answers; the rest failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Ok,
    Conflict,
    Connection,
    PoolTimeout,
    Server,
    OtherError,
    Hung,
}

impl Outcome {
    fn of(e: &StoreError) -> Outcome {
        match e {
            StoreError::Conflict => Outcome::Conflict,
            StoreError::Connection(_) => Outcome::Connection,
            StoreError::PoolTimeout(_) => Outcome::PoolTimeout,
            StoreError::Server(_) => Outcome::Server,
            _ => Outcome::OtherError,
        }
    }

    fn failed(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::Conflict)
    }
}

/// One call, times relative to the start of the load.
#[derive(Clone, Copy, Debug)]
struct Call {
    op: Op,
    start: Duration,
    end: Duration,
    outcome: Outcome,
}

impl Call {
    fn took(&self) -> Duration {
        self.end - self.start
    }
}

/// State shared by the load tasks and the test driving the fault.
struct Shared {
    t0: Instant,
    /// Bumped once the server has lost its data (after SIGKILL returned,
    /// before the restart).
    data_lost: AtomicU64,
    stop: AtomicBool,
}

/// What one task saw.
#[derive(Default)]
struct TaskReport {
    calls: Vec<Call>,
    wrong: Vec<String>,
    /// One error message per failure kind, for the report.
    samples: BTreeMap<Outcome, String>,
}

/// The stored states one task's session may be in, as far as the task can
/// know from its own calls.
struct Model {
    /// Possible stored values of the session (`None` = absent).
    possible: Vec<Option<Session>>,
    /// The copy the task would refresh next (last read or written).
    local: Option<Session>,
    /// `data_lost` as it was when the last call started.
    seen_loss: u64,
    /// Set after a wrong result: the next read is taken as the truth.
    unknown: bool,
    /// After a conflict, the next call is a read.
    needs_read: bool,
}

fn show(s: &Option<Session>) -> String {
    match s {
        None => "absent".to_owned(),
        Some(s) => format!(
            "{{id {} user {} lock {} token {}}}",
            s.id, s.user_id, s.lock_version, s.refresh_token_id
        ),
    }
}

fn show_all(list: &[Option<Session>]) -> String {
    list.iter().map(show).collect::<Vec<_>>().join(" | ")
}

impl Model {
    fn new(loss: u64) -> Model {
        Model {
            possible: vec![None],
            local: None,
            seen_loss: loss,
            unknown: false,
            needs_read: false,
        }
    }

    fn allow(&mut self, state: Option<Session>) {
        if !self.possible.contains(&state) {
            self.possible.push(state);
        }
    }

    /// Accounts for data loss around a call that started with `loss_at_start`
    /// and ended with `loss_at_end`: a loss entirely before the call leaves
    /// "absent" as the only state; one that may have happened during it
    /// adds "absent" to the possible states.
    fn before_result(&mut self, loss_at_start: u64, loss_at_end: u64) {
        if loss_at_start != self.seen_loss {
            self.possible = vec![None];
            self.unknown = false;
        } else if loss_at_end != self.seen_loss {
            self.allow(None);
        }
    }

    /// Called after the result is applied: a loss after the call started
    /// may still come after the state it saw.
    fn after_result(&mut self, loss_at_start: u64) {
        self.seen_loss = loss_at_start;
    }

    fn read(&mut self, found: Option<Session>) -> Result<(), String> {
        let verdict = if self.unknown || self.possible.contains(&found) {
            Ok(())
        } else {
            Err(format!(
                "read {} but the stored session can only be {}",
                show(&found),
                show_all(&self.possible)
            ))
        };
        self.possible = vec![found.clone()];
        self.local = found;
        self.unknown = false;
        self.needs_read = false;
        verdict
    }

    fn next_write(&self, user: &str, id: &str, n: usize) -> Session {
        let mut s = match &self.local {
            Some(s) => {
                let mut s = s.clone();
                s.rotate_refresh_token(HOUR);
                s
            }
            None => {
                let mut s = Session::new_login(user, HOUR);
                s.id = id.to_owned();
                s
            }
        };
        s.extra_payload.insert("write".into(), serde_json::json!(n));
        s
    }

    fn upsert_ok(&mut self, sent_lock: u64, written: Session) -> Result<(), String> {
        let could = self.unknown
            || if sent_lock == 0 {
                self.possible.contains(&None)
            } else {
                self.possible
                    .iter()
                    .any(|p| p.as_ref().is_some_and(|s| s.lock_version == sent_lock))
            };
        let verdict = if !could {
            Err(format!(
                "upsert with lock {sent_lock} succeeded but the stored session can only be {}",
                show_all(&self.possible)
            ))
        } else if written.lock_version != sent_lock + 1 {
            Err(format!(
                "upsert with lock {sent_lock} succeeded and set lock {}",
                written.lock_version
            ))
        } else {
            Ok(())
        };
        self.possible = vec![Some(written.clone())];
        self.local = Some(written);
        self.unknown = false;
        verdict
    }

    fn upsert_conflict(&mut self, sent_lock: u64) -> Result<(), String> {
        let conflicts = |p: &Option<Session>| match p {
            None => sent_lock != 0,
            Some(s) => sent_lock == 0 || s.lock_version != sent_lock,
        };
        self.needs_read = true;
        if self.unknown {
            return Ok(());
        }
        if self.possible.iter().any(conflicts) {
            self.possible.retain(conflicts);
            Ok(())
        } else {
            let msg = format!(
                "upsert with lock {sent_lock} conflicted but the stored session can only be {}",
                show_all(&self.possible)
            );
            self.unknown = true;
            Err(msg)
        }
    }

    /// An upsert that failed (or hung) may or may not have been applied.
    fn upsert_failed(&mut self, mut attempted: Session) {
        attempted.lock_version += 1;
        self.allow(Some(attempted));
    }

    fn deleted(&mut self) {
        self.possible = vec![None];
        self.local = None;
        self.unknown = false;
    }

    fn delete_failed(&mut self) {
        self.allow(None);
    }
}

/// A small deterministic generator for the operation mix.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Whether a failed call certainly never reached the server: no pooled
/// connection in time, or no connection could be opened at all. Any other
/// failure may have happened after the command was executed.
fn surely_not_sent(e: &StoreError) -> bool {
    match e {
        StoreError::PoolTimeout(_) => true,
        StoreError::Connection(cause) => cause.to_string().contains("Connection refused"),
        _ => false,
    }
}

/// Runs `call` with the hung-call watchdog.
async fn watched<T>(
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<Result<T, StoreError>, ()> {
    tokio::time::timeout(HUNG_AFTER, call).await.map_err(|_| ())
}

/// One load task: user `load-<n>.x`, session `s<n>`; a steady mix of all
/// five operations (35 % get, 35 % upsert, 10 % each get_all, delete,
/// delete_all) until told to stop; every result checked against its model.
async fn load_task(n: usize, store: RedisStore, shared: Arc<Shared>) -> TaskReport {
    let user = format!("load-{n}.x");
    let id = format!("s{n}");
    let mut model = Model::new(shared.data_lost.load(Ordering::SeqCst));
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1));
    let mut report = TaskReport::default();
    while !shared.stop.load(Ordering::SeqCst) && report.calls.len() < MAX_CALLS_PER_TASK {
        let roll = rng.next() % 100;
        let op = match roll {
            _ if model.needs_read => {
                if roll.is_multiple_of(2) {
                    Op::Get
                } else {
                    Op::GetAll
                }
            }
            0..35 => Op::Get,
            35..70 => Op::Upsert,
            70..80 => Op::GetAll,
            80..90 => Op::Delete,
            _ => Op::DeleteAll,
        };
        let loss_at_start = shared.data_lost.load(Ordering::SeqCst);
        let start = shared.t0.elapsed();
        let mut verdict = Ok(());
        let finish = |model: &mut Model| {
            let end = shared.t0.elapsed();
            model.before_result(loss_at_start, shared.data_lost.load(Ordering::SeqCst));
            end
        };
        let (end, outcome, error) = match op {
            Op::Get | Op::GetAll => {
                let result = if op == Op::Get {
                    watched(store.get(&id, &user, "full")).await
                } else {
                    watched(async {
                        let all = store.get_all(&user, "full").await?;
                        Ok(all)
                    })
                    .await
                    .map(|r| {
                        r.map(|mut all| {
                            if all.len() > 1 {
                                verdict = Err(format!(
                                    "get_all returned {} sessions, the user has at most one",
                                    all.len()
                                ));
                            }
                            all.pop()
                        })
                    })
                };
                let end = finish(&mut model);
                match result {
                    Ok(Ok(found)) => {
                        let read = model.read(found);
                        if verdict.is_ok() {
                            verdict = read;
                        }
                        (end, Outcome::Ok, None)
                    }
                    Ok(Err(e)) => (end, Outcome::of(&e), Some(e.to_string())),
                    Err(()) => (end, Outcome::Hung, None),
                }
            }
            Op::Upsert => {
                let mut session = model.next_write(&user, &id, report.calls.len());
                let attempted = session.clone();
                let sent_lock = session.lock_version;
                let result = watched(store.upsert(&mut session)).await;
                let end = finish(&mut model);
                match result {
                    Ok(Ok(())) => {
                        verdict = model.upsert_ok(sent_lock, session);
                        (end, Outcome::Ok, None)
                    }
                    Ok(Err(StoreError::Conflict)) => {
                        verdict = model.upsert_conflict(sent_lock);
                        if session.lock_version != sent_lock {
                            verdict = Err("a conflict changed the caller's lock version".into());
                        }
                        (end, Outcome::Conflict, None)
                    }
                    Ok(Err(e)) => {
                        if !surely_not_sent(&e) {
                            model.upsert_failed(attempted);
                        }
                        (end, Outcome::of(&e), Some(e.to_string()))
                    }
                    Err(()) => {
                        model.upsert_failed(attempted);
                        (end, Outcome::Hung, None)
                    }
                }
            }
            Op::Delete | Op::DeleteAll => {
                let result = if op == Op::Delete {
                    watched(store.delete(&id, &user, "full")).await
                } else {
                    watched(store.delete_all(&user, "full")).await
                };
                let end = finish(&mut model);
                match result {
                    Ok(Ok(())) => {
                        model.deleted();
                        (end, Outcome::Ok, None)
                    }
                    Ok(Err(e)) => {
                        if !surely_not_sent(&e) {
                            model.delete_failed();
                        }
                        (end, Outcome::of(&e), Some(e.to_string()))
                    }
                    Err(()) => {
                        model.delete_failed();
                        (end, Outcome::Hung, None)
                    }
                }
            }
        };
        model.after_result(loss_at_start);
        if let Err(msg) = verdict {
            report.wrong.push(format!(
                "task {n} {op:?} at {:.3}s: {msg}",
                start.as_secs_f64()
            ));
        }
        if let Some(msg) = error {
            report.samples.entry(outcome).or_insert(msg);
        }
        report.calls.push(Call {
            op,
            start,
            end,
            outcome,
        });
        if outcome.failed() {
            tokio::time::sleep(BACKOFF_AFTER_FAILURE).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
    report
}

fn start_load(store: &RedisStore) -> (Arc<Shared>, Vec<JoinHandle<TaskReport>>) {
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        data_lost: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let tasks = (0..TASKS)
        .map(|n| tokio::spawn(load_task(n, store.clone(), Arc::clone(&shared))))
        .collect();
    (shared, tasks)
}

/// All tasks' calls, wrong results and sample errors.
struct LoadReport {
    calls: Vec<Call>,
    wrong: Vec<String>,
    samples: BTreeMap<Outcome, String>,
}

async fn stop_load(shared: &Shared, tasks: Vec<JoinHandle<TaskReport>>) -> LoadReport {
    shared.stop.store(true, Ordering::SeqCst);
    let joined = tokio::time::timeout(HUNG_AFTER + Duration::from_secs(5), join_tasks(tasks))
        .await
        .expect("the load tasks end: no call hangs past the watchdog");
    let mut report = LoadReport {
        calls: Vec::new(),
        wrong: Vec::new(),
        samples: BTreeMap::new(),
    };
    for task in joined {
        let task = task.expect("a load task panicked");
        report.calls.extend(task.calls);
        report.wrong.extend(task.wrong);
        for (k, v) in task.samples {
            report.samples.entry(k).or_insert(v);
        }
    }
    report.calls.sort_by_key(|c| c.start);
    report
}

async fn join_tasks(
    tasks: Vec<JoinHandle<TaskReport>>,
) -> Vec<Result<TaskReport, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

/// Failures by kind among `calls`.
struct Kinds(BTreeMap<Outcome, usize>);

impl Kinds {
    fn of<'a>(calls: impl IntoIterator<Item = &'a Call>) -> Kinds {
        let mut map = BTreeMap::new();
        for c in calls {
            if c.outcome.failed() {
                *map.entry(c.outcome).or_insert(0) += 1;
            }
        }
        Kinds(map)
    }

    fn total(&self) -> usize {
        self.0.values().sum()
    }
}

impl fmt::Display for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.total())?;
        if !self.0.is_empty() {
            let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k:?} {n}")).collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Signed milliseconds from `from` to `to`.
fn delta_ms(from: Duration, to: Duration) -> String {
    if to >= from {
        format!("+{}ms", (to - from).as_millis())
    } else {
        format!("-{}ms", (from - to).as_millis())
    }
}

fn max_took<'a>(calls: impl IntoIterator<Item = &'a Call>) -> Duration {
    calls.into_iter().map(Call::took).max().unwrap_or_default()
}

fn count_ops(calls: &[Call]) -> String {
    let mut map: BTreeMap<Op, usize> = BTreeMap::new();
    for c in calls {
        *map.entry(c.op).or_insert(0) += 1;
    }
    map.iter()
        .map(|(op, n)| format!("{op:?} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn assert_no_wrong_results(report: &LoadReport) {
    assert!(
        report.wrong.is_empty(),
        "{} wrong results, first ones:\n{}",
        report.wrong.len(),
        report
            .wrong
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn samples(report: &LoadReport) -> String {
    report
        .samples
        .iter()
        .map(|(k, v)| format!("  {k:?}: {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------
// 2. SIGKILL and restart under load
// ---------------------------------------------------------------------------

/// 32 tasks run a steady mix of all five operations; after ~1 s the server
/// is SIGKILLed and ~3 s later restarted empty on the same port; the load
/// goes on ~3 s more. Every call returns (Ok or Err) within the command
/// timeout plus the checkout timeout plus 1 s, none hangs, no result is wrong (a read after
/// the restart may find the session absent, an update may conflict, but
/// nothing older or foreign ever comes back), and every call started from
/// 1 s after the server was back succeeds.
async fn restart_under_load(flavor: Flavor) {
    const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
    const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(1);
    let bound = COMMAND_TIMEOUT + CHECKOUT_TIMEOUT + Duration::from_secs(1);
    let mut server = TestServer::start(flavor);
    let store = RedisStore::connect(
        RedisStoreConfig::new(server.url(), test_key())
            .command_timeout(COMMAND_TIMEOUT)
            .checkout_timeout(CHECKOUT_TIMEOUT),
    )
    .await
    .unwrap();

    let (shared, tasks) = start_load(&store);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kill_at = shared.t0.elapsed();
    server.kill();
    shared.data_lost.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let back_at = shared.t0.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = stop_load(&shared, tasks).await;
    let stop_at = shared.t0.elapsed();
    let recovered_from = back_at + Duration::from_secs(1);

    let calls = &report.calls;
    let before: Vec<&Call> = calls.iter().filter(|c| c.end < kill_at).collect();
    let outage: Vec<&Call> = calls
        .iter()
        .filter(|c| c.end >= kill_at && c.start < recovered_from)
        .collect();
    let after: Vec<&Call> = calls.iter().filter(|c| c.start >= recovered_from).collect();
    let failed_outage: Vec<&Call> = outage
        .iter()
        .copied()
        .filter(|c| c.outcome.failed())
        .collect();
    let answered_new_server = calls
        .iter()
        .filter(|c| c.start >= kill_at && !c.outcome.failed())
        .map(|c| c.end)
        .min();
    let last_failure = calls
        .iter()
        .filter(|c| c.outcome.failed())
        .map(|c| c.end)
        .max();
    let conflicts = calls
        .iter()
        .filter(|c| c.outcome == Outcome::Conflict)
        .count();
    let max_latency = max_took(calls);
    let hung = calls.iter().filter(|c| c.outcome == Outcome::Hung).count();

    eprintln!(
        "FIGURES restart_under_load {flavor:?}: {TASKS} tasks, {:.1}s of load, calls {} ({}); \
         failed {}; before kill {} failed of {}; during outage {} failed of {} \
         (outage {} from SIGKILL to restart done; max latency of a failed call {}); \
         after recovery (from restart+1s) {} failed of {}; conflicts {conflicts} (legitimate after \
         the data loss); wrong results {}; max latency of any call {} (bound {}); hung {hung}; \
         restart→first success {}; restart→last failure {}",
        stop_at.as_secs_f64(),
        calls.len(),
        count_ops(calls),
        Kinds::of(calls),
        Kinds::of(before.iter().copied()).total(),
        before.len(),
        Kinds::of(outage.iter().copied()),
        outage.len(),
        ms(back_at - kill_at),
        ms(max_took(failed_outage.iter().copied())),
        Kinds::of(after.iter().copied()),
        after.len(),
        report.wrong.len(),
        ms(max_latency),
        ms(bound),
        answered_new_server.map_or("never".into(), |t| delta_ms(back_at, t)),
        last_failure.map_or("none".into(), |t| delta_ms(back_at, t)),
    );
    eprintln!("  error samples:\n{}", samples(&report));

    assert_no_wrong_results(&report);
    assert_eq!(hung, 0, "calls hung");
    assert!(
        max_latency <= bound,
        "a call took {} (bound {})",
        ms(max_latency),
        ms(bound)
    );
    assert_eq!(
        Kinds::of(before.iter().copied()).total(),
        0,
        "failures before the kill"
    );
    assert!(
        !failed_outage.is_empty(),
        "the outage must show as failures"
    );
    assert!(!after.is_empty(), "calls after recovery");
    let after_failed: Vec<String> = after
        .iter()
        .filter(|c| c.outcome.failed())
        .take(10)
        .map(|c| {
            format!(
                "{:?} {:?} started {} after the restart, took {}",
                c.op,
                c.outcome,
                delta_ms(back_at, c.start),
                ms(c.took())
            )
        })
        .collect();
    assert!(
        after_failed.is_empty(),
        "calls started 1 s or more after the server was back failed ({} in all):\n{}\n\
         error samples:\n{}",
        Kinds::of(after.iter().copied()),
        after_failed.join("\n"),
        samples(&report)
    );
    drop(server);
}

// ---------------------------------------------------------------------------
// 3. Client connections killed under load
// ---------------------------------------------------------------------------

/// While 32 tasks run the mixed load (~3 s), every 100 ms for 2 s
/// `CLIENT KILL TYPE normal SKIPME yes` drops every store connection; no
/// result is ever wrong, no call hangs or exceeds command_timeout +
/// checkout_timeout + 1 s, and from 1 s after the killing stopped every
/// call succeeds (broken pooled connections were replaced).
async fn killed_connections_under_load(flavor: Flavor) {
    const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
    const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(1);
    let bound = COMMAND_TIMEOUT + CHECKOUT_TIMEOUT + Duration::from_secs(1);
    let server = TestServer::start(flavor);
    let store = RedisStore::connect(
        RedisStoreConfig::new(server.url(), test_key())
            .command_timeout(COMMAND_TIMEOUT)
            .checkout_timeout(CHECKOUT_TIMEOUT),
    )
    .await
    .unwrap();
    let mut conn = raw(&server).await;

    let (shared, tasks) = start_load(&store);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kills_from = shared.t0.elapsed();
    let mut kills = 0;
    let mut killed_clients = 0;
    while shared.t0.elapsed() < kills_from + Duration::from_secs(2) {
        let n = kill_other_clients(&mut conn).await;
        kills += 1;
        killed_clients += n;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kills_until = shared.t0.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = stop_load(&shared, tasks).await;
    let stop_at = shared.t0.elapsed();
    let recovered_from = kills_until + Duration::from_secs(1);

    let calls = &report.calls;
    let before: Vec<&Call> = calls.iter().filter(|c| c.end < kills_from).collect();
    let during: Vec<&Call> = calls
        .iter()
        .filter(|c| c.end >= kills_from && c.start < recovered_from)
        .collect();
    let after: Vec<&Call> = calls.iter().filter(|c| c.start >= recovered_from).collect();
    let last_failure = calls
        .iter()
        .filter(|c| c.outcome.failed())
        .map(|c| c.end)
        .max();
    let conflicts = calls
        .iter()
        .filter(|c| c.outcome == Outcome::Conflict)
        .count();
    let max_latency = max_took(calls);
    let hung = calls.iter().filter(|c| c.outcome == Outcome::Hung).count();

    eprintln!(
        "FIGURES killed_connections_under_load {flavor:?}: {TASKS} tasks, {:.1}s of load, \
         {kills} CLIENT KILLs over {} dropping {killed_clients} connections; calls {} ({}); \
         failed {}; before the kills {} failed of {}; while killing (to kills end+1s) {} failed \
         of {}; after (from kills end+1s) {} failed of {}; conflicts {conflicts} (after an \
         ambiguous failed write); wrong results {}; max latency {} (bound {}); hung {hung}; \
         kills end→last failure {}",
        stop_at.as_secs_f64(),
        ms(kills_until - kills_from),
        calls.len(),
        count_ops(calls),
        Kinds::of(calls),
        Kinds::of(before.iter().copied()).total(),
        before.len(),
        Kinds::of(during.iter().copied()),
        during.len(),
        Kinds::of(after.iter().copied()),
        after.len(),
        report.wrong.len(),
        ms(max_latency),
        ms(bound),
        last_failure.map_or("none".into(), |t| delta_ms(kills_until, t)),
    );
    eprintln!("  error samples:\n{}", samples(&report));

    assert_no_wrong_results(&report);
    assert_eq!(hung, 0, "calls hung");
    assert!(
        max_latency <= bound,
        "a call took {} (bound {})",
        ms(max_latency),
        ms(bound)
    );
    assert!(killed_clients > 0, "CLIENT KILL dropped connections");
    assert!(!after.is_empty(), "calls after the kills");
    let after_failed: Vec<String> = after
        .iter()
        .filter(|c| c.outcome.failed())
        .take(10)
        .map(|c| {
            format!(
                "{:?} {:?} started {} after the last kill, took {}",
                c.op,
                c.outcome,
                delta_ms(kills_until, c.start),
                ms(c.took())
            )
        })
        .collect();
    assert!(
        after_failed.is_empty(),
        "calls started 1 s or more after the last CLIENT KILL failed ({} in all):\n{}\n\
         error samples:\n{}",
        Kinds::of(after.iter().copied()),
        after_failed.join("\n"),
        samples(&report)
    );
}

// ---------------------------------------------------------------------------
// 5. A server too old
// ---------------------------------------------------------------------------

/// On Debian 12's Redis 7.0, `RedisStore::connect` (and
/// `load_function_library`) fail with UnsupportedServer naming the version
/// found ("Redis 7.0.") and the requirement ("Redis >= 8.0"), and leave the
/// server untouched: DBSIZE 0, no function library, no connection left open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis7_is_refused_and_left_untouched() {
    let server = TestServer::start(Flavor::Redis7);
    let mut conn = raw(&server).await;
    let config = RedisStoreConfig::new(server.url(), test_key());

    let err = RedisStore::connect(config.clone())
        .await
        .expect_err("Redis 7 must be refused");
    let shown = err.to_string();
    match &err {
        StoreError::UnsupportedServer { found, required } => {
            assert!(found.starts_with("Redis 7.0."), "{found}");
            assert_eq!(*required, ServerInfo::REQUIRED);
        }
        other => panic!("expected UnsupportedServer, got {other:?}"),
    }
    assert!(shown.contains("Redis 7.0."), "{shown}");
    assert!(shown.contains("Redis >= 8.0"), "{shown}");
    eprintln!("Redis 7 refused with: {shown}");

    let err = RedisStore::load_function_library(&config)
        .await
        .expect_err("Redis 7 must be refused");
    assert!(
        matches!(err, StoreError::UnsupportedServer { .. }),
        "{err:?}"
    );

    assert_eq!(dbsize(&mut conn).await, 0);
    assert!(library_names(&mut conn).await.is_empty());
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut n = other_clients(&mut conn).await;
    while n != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        n = other_clients(&mut conn).await;
    }
    assert_eq!(n, 0, "the refused store left no connection open");
}
