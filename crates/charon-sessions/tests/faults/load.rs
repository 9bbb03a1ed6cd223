//! The load: 32 tasks, each running a steady mix of all five operations on
//! its own session and checking every result against its [`Model`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use charon_sessions::{RedisStore, RedisStoreConfig, SessionStore, StoreError};
use charon_sessions_testkit::TestServer;
use tokio::task::JoinHandle;

use crate::common::test_key;
use crate::model::Model;

pub(crate) const TASKS: usize = 32;

/// At most this many calls per task (the load is also bounded in time).
const MAX_CALLS_PER_TASK: usize = 200_000;

/// A call that has not returned after this long counts as hung (and is
/// abandoned so that the test ends).
const HUNG_AFTER: Duration = Duration::from_secs(15);

/// A task waits this long after a failed call before its next one (a
/// client's minimal back-off; keeps the outage from being a busy loop).
const BACKOFF_AFTER_FAILURE: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    Get,
    Upsert,
    Delete,
    GetAll,
    DeleteAll,
}

/// How one call ended. `Ok` and `Conflict` are answers; the rest failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Outcome {
    Ok,
    Conflict,
    Connection,
    PoolTimeout,
    Server,
    OtherError,
    Hung,
}

impl Outcome {
    pub(crate) fn of(e: &StoreError) -> Outcome {
        match e {
            StoreError::Conflict => Outcome::Conflict,
            StoreError::Connection(_) => Outcome::Connection,
            StoreError::PoolTimeout(_) => Outcome::PoolTimeout,
            StoreError::Server(_) => Outcome::Server,
            _ => Outcome::OtherError,
        }
    }

    pub(crate) fn failed(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::Conflict)
    }
}

/// One call, times relative to the start of the load.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call {
    pub(crate) op: Op,
    pub(crate) start: Duration,
    pub(crate) end: Duration,
    pub(crate) outcome: Outcome,
}

impl Call {
    pub(crate) fn took(&self) -> Duration {
        self.end - self.start
    }
}

/// State shared by the load tasks and the test driving the fault.
pub(crate) struct Shared {
    pub(crate) t0: Instant,
    /// Bumped once the server has lost its data (after SIGKILL returned,
    /// before the restart).
    pub(crate) data_lost: AtomicU64,
    pub(crate) stop: AtomicBool,
}

/// What one task saw.
#[derive(Default)]
pub(crate) struct TaskReport {
    calls: Vec<Call>,
    wrong: Vec<String>,
    /// One error message per failure kind, for the report.
    samples: BTreeMap<Outcome, String>,
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

/// The command timeout of the stores under load.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Their checkout timeout.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest any call of a load may take: a command timeout after a
/// checkout timeout, and a second of slack.
pub(crate) const LATENCY_BOUND: Duration = Duration::from_secs(2 + 1 + 1);

/// A store on `server` with the load tests' command and checkout timeouts.
pub(crate) async fn store_under_load(server: &TestServer) -> RedisStore {
    RedisStore::connect(
        RedisStoreConfig::new(server.url(), test_key())
            .command_timeout(COMMAND_TIMEOUT)
            .checkout_timeout(CHECKOUT_TIMEOUT),
    )
    .await
    .unwrap()
}

pub(crate) fn start_load(store: &RedisStore) -> (Arc<Shared>, Vec<JoinHandle<TaskReport>>) {
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
pub(crate) struct LoadReport {
    pub(crate) calls: Vec<Call>,
    pub(crate) wrong: Vec<String>,
    pub(crate) samples: BTreeMap<Outcome, String>,
}

pub(crate) async fn stop_load(shared: &Shared, tasks: Vec<JoinHandle<TaskReport>>) -> LoadReport {
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
