//! Load from 32 tasks while a primary is killed, with every result checked.
//!
//! Each task owns one session and loops: read it, then upsert the copy it
//! read. It remembers the last lock version the store acknowledged and the
//! one a failed upsert may have written. A read showing an older version
//! than acknowledged counts the difference as *acknowledged upserts lost*
//! (replication is asynchronous); a read showing a version nobody wrote, or
//! a conflict on the copy just read, is a *wrong result*.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use charon_sessions::{RedisStore, Session, SessionStore, StoreError};

use super::login;

/// Tasks running the load.
pub const TASKS: usize = 32;

/// What one run measured.
#[derive(Debug, Default)]
pub struct Figures {
    /// Calls made (reads and upserts).
    pub calls: u64,
    /// Calls that failed (any error but a conflict).
    pub failed: u64,
    /// Of those, upserts applied on the primary but not acknowledged by
    /// enough replicas (`StoreError::ReplicationTimeout`).
    pub replication_timeouts: u64,
    /// Reads or conflicts no correct store could give.
    pub wrong: u64,
    /// Acknowledged upserts later found missing.
    pub lost: u64,
    /// First and last failed call, after the kill.
    pub failures_from: Option<Duration>,
    /// See `failures_from`.
    pub failures_until: Option<Duration>,
    /// Whether every task completed an upsert after its last failure.
    pub all_recovered: bool,
    /// When losses were detected (first, last), after the kill.
    pub losses_seen: Option<(Duration, Duration)>,
    /// Reads that found a session missing altogether.
    pub vanished: u64,
}

impl Figures {
    /// One `FIGURES` line.
    pub fn line(&self, name: &str, load: Duration) -> String {
        let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| d.as_millis().to_string());
        format!(
            "FIGURES {name}: {TASKS} tasks, {:.1}s of load, calls {}, failed {} (replication timeouts {}), \
             failures from {} ms to {} ms after the kill, wrong results {}, acknowledged upserts lost {}, \
             every task recovered: {}, losses seen {:?} after the kill, sessions vanished {}",
            load.as_secs_f64(),
            self.calls,
            self.failed,
            self.replication_timeouts,
            ms(self.failures_from),
            ms(self.failures_until),
            self.wrong,
            self.lost,
            self.all_recovered,
            self.losses_seen,
            self.vanished
        )
    }
}

#[derive(Default)]
struct TaskFigures {
    calls: u64,
    failed: u64,
    replication_timeouts: u64,
    wrong: u64,
    lost: u64,
    failures: Vec<Instant>,
    losses: Vec<Instant>,
    vanished: u64,
    ok_upsert_after_last_failure: bool,
}

async fn task(store: Arc<RedisStore>, mut session: Session, stop: Arc<AtomicBool>) -> TaskFigures {
    let mut f = TaskFigures::default();
    let first = session.clone();
    let mut acked = session.lock_version;
    let mut maybe: Option<u64> = None;
    while !stop.load(Ordering::Relaxed) {
        f.calls += 1;
        match store
            .get(&session.id, &session.user_id, &session.session_type)
            .await
        {
            Err(_) => {
                f.failed += 1;
                f.failures.push(Instant::now());
                f.ok_upsert_after_last_failure = false;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Ok(None) => {
                // Even the creation was lost: start over.
                f.lost += acked;
                f.vanished += 1;
                f.losses.push(Instant::now());
                session = first.clone();
                session.lock_version = 0;
                acked = 0;
                maybe = None;
            }
            Ok(Some(read)) => {
                let v = read.lock_version;
                if v < acked {
                    f.lost += acked - v;
                    f.losses.push(Instant::now());
                } else if v != acked && Some(v) != maybe {
                    f.wrong += 1;
                }
                acked = v;
                maybe = None;
                session = read;
            }
        }
        f.calls += 1;
        session.tokens_fresh_from = charon_sessions::Session::now();
        let target = session.lock_version + 1;
        match store.upsert(&mut session).await {
            Ok(()) => {
                acked = session.lock_version;
                f.ok_upsert_after_last_failure = true;
            }
            Err(StoreError::Conflict) => f.wrong += 1,
            Err(e) => {
                if matches!(e, StoreError::ReplicationTimeout { .. }) {
                    f.replication_timeouts += 1;
                }
                f.failed += 1;
                f.failures.push(Instant::now());
                f.ok_upsert_after_last_failure = false;
                maybe = Some(target);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    f
}

/// Creates one session per task, runs the load for `before`, runs `kill`
/// (on a blocking thread), runs `after_kill` once `restart_after` has passed
/// since the kill, and stops the load `after` after the kill.
pub async fn failover_under_load(
    store: Arc<RedisStore>,
    before: Duration,
    kill: impl FnOnce() + Send + 'static,
    restart_after: Duration,
    after_kill: impl FnOnce() + Send + 'static,
    after: Duration,
) -> (Figures, Duration) {
    let mut sessions = Vec::new();
    for i in 0..TASKS {
        let mut s = login(&format!("failover-user-{i}"));
        store.upsert(&mut s).await.expect("create before the kill");
        sessions.push(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = sessions
        .into_iter()
        .map(|s| tokio::spawn(task(Arc::clone(&store), s, Arc::clone(&stop))))
        .collect();
    tokio::time::sleep(before).await;
    let killed_at = Instant::now();
    tokio::task::spawn_blocking(kill).await.unwrap();
    tokio::time::sleep(restart_after.saturating_sub(killed_at.elapsed())).await;
    tokio::task::spawn_blocking(after_kill).await.unwrap();
    tokio::time::sleep(after.saturating_sub(killed_at.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    let mut figures = Figures {
        all_recovered: true,
        ..Figures::default()
    };
    for h in handles {
        let t = h.await.unwrap();
        figures.calls += t.calls;
        figures.failed += t.failed;
        figures.replication_timeouts += t.replication_timeouts;
        figures.wrong += t.wrong;
        figures.lost += t.lost;
        figures.all_recovered &= t.ok_upsert_after_last_failure;
        figures.vanished += t.vanished;
        for at in t.losses {
            let since = at.saturating_duration_since(killed_at);
            figures.losses_seen = Some(
                figures
                    .losses_seen
                    .map_or((since, since), |(a, b)| (a.min(since), b.max(since))),
            );
        }
        for at in t.failures {
            let since = at.saturating_duration_since(killed_at);
            figures.failures_from = Some(figures.failures_from.map_or(since, |d| d.min(since)));
            figures.failures_until = Some(figures.failures_until.map_or(since, |d| d.max(since)));
        }
    }
    (figures, started.elapsed())
}
