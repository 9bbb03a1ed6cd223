//! Optimistic locking under real concurrency, on LocalStore, a real Redis 8
//! and a real Valkey 9: no lost updates, one winner per lock version, and no
//! resurrection of a session by refreshes racing its deletion.
//!
//! Every behaviour is one `async fn name(h: Harness, store: &str)` below;
//! `on_every_store!` expands each into a `#[tokio::test]` in modules `local`,
//! `redis8` and `valkey9`. Each test prints one `FIGURE` line (operations
//! tried, succeeded, conflicts, wrong results) for RELIABILITY.md; wrong
//! results are asserted to be 0.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use charon_sessions::{Session, StoreError};
use charon_sessions_testkit::TestServer;
use redis::aio::MultiplexedConnection;
use tokio::sync::Barrier;

use common::raw::{hgetall, key_of};
use common::{HOUR, Harness, login};

/// Expands each listed behaviour into one test per store; the `///` lines
/// given with a behaviour become the doc of each of its tests.
macro_rules! on_every_store {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        on_every_store!(@store local, crate::common::local; $($(#[doc = $doc])* $name),*);
        on_every_store!(@store redis8, crate::common::redis8; $($(#[doc = $doc])* $name),*);
        on_every_store!(@store valkey9, crate::common::valkey9; $($(#[doc = $doc])* $name),*);
    };
    (@store $store:ident, $factory:path; $($(#[doc = $doc:literal])* $name:ident),*) => {
        mod $store {
            $(
                $(#[doc = $doc])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($factory().await, stringify!($store)).await;
                }
            )*
        }
    };
}

on_every_store!(
    /// 64 tasks × 50 read-increment-write rounds on one counter lose no
    /// update: the counter equals the successful upserts and the lock
    /// version is that plus one.
    no_lost_updates,
    /// Of 100 concurrent upserts of one read copy exactly one wins and is
    /// what is stored, round after round.
    one_winner_per_version,
    /// Stale refreshes racing a delete never bring the session back.
    no_resurrection_after_delete,
    /// Stale refreshes racing a delete_all (log out everywhere) never bring
    /// the user's sessions back.
    no_resurrection_after_delete_all,
);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A connection of the test's own to the harness's server, outside any
/// store; `None` for LocalStore.
async fn raw(h: &Harness) -> Option<MultiplexedConnection> {
    let server: &TestServer = h.kept()?;
    let url = server.url();
    Some(
        redis::Client::open(url.as_str())
            .expect("valid URL")
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("raw connection to {url}: {e}")),
    )
}

/// A tiny pseudo-random generator for backoff jitter (xorshift64; the
/// seed must not be 0).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn counter_of(s: &Session) -> Option<u64> {
    s.extra_payload.get("counter")?.as_u64()
}

// ---------------------------------------------------------------------------
// Behaviours
// ---------------------------------------------------------------------------

const TASKS: u64 = 64;
const ROUNDS: u64 = 50;
const MAX_ATTEMPTS_PER_ROUND: u64 = 1000;

/// What one writer task of `no_lost_updates` saw.
#[derive(Default)]
struct WriterReport {
    attempts: u64,
    conflicts: u64,
    gave_up: u64,
    /// (lock version written, counter written) of each successful upsert.
    writes: Vec<(u64, u64)>,
    /// Reads that found no session or no counter, and unexpected errors.
    wrong: Vec<String>,
}

/// One session holds `counter = 0` (lock 1). 64 tasks each run 50 rounds of
/// get → counter + 1 → upsert, retrying a round on Conflict after a random
/// exponential backoff (up to 2, 4, … 32 ms; giving up after 1000 attempts,
/// counted as a failure). Every successful upsert must have
/// written lock version n + 1 with counter n, each lock version exactly once
/// (2 ..= 3201), and at the end the stored counter is the number of
/// successful upserts (3200) and the lock version that plus one.
async fn no_lost_updates(h: Harness, store_name: &str) {
    let started = Instant::now();
    let store = Arc::clone(&h.store);
    let mut session = login("counter-owner");
    session
        .extra_payload
        .insert("counter".into(), serde_json::json!(0));
    store.upsert(&mut session).await.unwrap();
    assert_eq!(session.lock_version, 1);
    let id = session.id.clone();

    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            let id = id.clone();
            tokio::spawn(async move {
                let mut r = WriterReport::default();
                let mut rng = XorShift(task + 1);
                barrier.wait().await;
                'rounds: for _ in 0..ROUNDS {
                    let mut tries = 0;
                    loop {
                        if tries == MAX_ATTEMPTS_PER_ROUND {
                            r.gave_up += 1;
                            break;
                        }
                        tries += 1;
                        r.attempts += 1;
                        let mut s = match store.get(&id, "counter-owner", "full").await {
                            Ok(Some(s)) => s,
                            other => {
                                r.wrong.push(format!("get returned {other:?}"));
                                break 'rounds;
                            }
                        };
                        let Some(n) = counter_of(&s) else {
                            r.wrong.push(format!("no counter in {:?}", s.extra_payload));
                            break 'rounds;
                        };
                        s.extra_payload
                            .insert("counter".into(), serde_json::json!(n + 1));
                        match store.upsert(&mut s).await {
                            Ok(()) => {
                                r.writes.push((s.lock_version, n + 1));
                                break;
                            }
                            Err(StoreError::Conflict) => {
                                r.conflicts += 1;
                                // Back off as a real client would: a random
                                // 0 ..= 2^tries ms, at most 32 ms.
                                let ms = rng.next() % ((1 << tries.min(5)) + 1);
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            Err(e) => {
                                r.wrong.push(format!("upsert failed: {e}"));
                                break 'rounds;
                            }
                        }
                    }
                }
                r
            })
        })
        .collect();

    let (mut attempts, mut conflicts, mut gave_up) = (0, 0, 0);
    let mut writes = Vec::new();
    let mut wrong = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        attempts += r.attempts;
        conflicts += r.conflicts;
        gave_up += r.gave_up;
        writes.extend(r.writes);
        wrong.extend(r.wrong);
    }
    let succeeded = writes.len() as u64;

    // Each successful write continued the one chain: lock n + 1 carries
    // counter n, and no lock version was written twice.
    writes.sort_unstable();
    for (i, &(lock, counter)) in writes.iter().enumerate() {
        if lock != i as u64 + 2 || counter != lock - 1 {
            wrong.push(format!(
                "write #{i} stored lock {lock} with counter {counter}"
            ));
        }
    }
    let stored = store
        .get(&id, "counter-owner", "full")
        .await
        .unwrap()
        .expect("the counter session still exists");
    let (final_counter, final_lock) = (counter_of(&stored), stored.lock_version);
    if final_counter != Some(succeeded) {
        wrong.push(format!(
            "stored counter {final_counter:?} after {succeeded} successful upserts"
        ));
    }
    if final_lock != succeeded + 1 {
        wrong.push(format!(
            "stored lock version {final_lock} after {succeeded} successful upserts"
        ));
    }

    eprintln!(
        "FIGURE races::no_lost_updates [{store_name}]: {TASKS} tasks x {ROUNDS} rounds: \
         tried={attempts} succeeded={succeeded} conflicts={conflicts} gave_up={gave_up} \
         wrong={} (final counter {}, lock {final_lock}) in {:.2} s",
        wrong.len(),
        final_counter.map_or_else(|| "missing".to_owned(), |c| c.to_string()),
        started.elapsed().as_secs_f64()
    );
    assert!(wrong.is_empty(), "wrong results: {wrong:#?}");
    assert_eq!(
        gave_up, 0,
        "a round gave up after {MAX_ATTEMPTS_PER_ROUND} attempts"
    );
    assert_eq!(succeeded, TASKS * ROUNDS);
    assert_eq!(attempts, succeeded + conflicts);
}

const WRITERS: usize = 100;
const WINNER_ROUNDS: usize = 20;

/// 20 rounds: read the session, then 100 tasks each upsert their own copy
/// of that read (each with a different payload) at once, released together
/// by a barrier. Exactly one is Ok and 99 are Conflict; the winner's copy
/// (lock bumped in place) is exactly what is stored; each loser's copy
/// keeps its lock version.
async fn one_winner_per_version(h: Harness, store_name: &str) {
    let started = Instant::now();
    let store = Arc::clone(&h.store);
    let mut session = login("contended");
    store.upsert(&mut session).await.unwrap();

    let (mut tried, mut succeeded, mut conflicts) = (0, 0, 0);
    let mut wrong = Vec::new();
    for round in 0..WINNER_ROUNDS {
        let read = store
            .get(&session.id, "contended", "full")
            .await
            .unwrap()
            .expect("the session exists");
        let barrier = Arc::new(Barrier::new(WRITERS));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let store = Arc::clone(&store);
                let barrier = Arc::clone(&barrier);
                let mut copy = read.clone();
                copy.rotate_refresh_token(HOUR);
                copy.extra_payload
                    .insert("writer".into(), serde_json::json!(i));
                tokio::spawn(async move {
                    barrier.wait().await;
                    let result = store.upsert(&mut copy).await;
                    (result, copy)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (result, copy) = t.await.unwrap();
            tried += 1;
            match result {
                Ok(()) => {
                    succeeded += 1;
                    winners.push(copy);
                }
                Err(StoreError::Conflict) => {
                    conflicts += 1;
                    if copy.lock_version != read.lock_version {
                        wrong.push(format!(
                            "round {round}: a loser's lock moved to {}",
                            copy.lock_version
                        ));
                    }
                }
                Err(e) => wrong.push(format!("round {round}: unexpected error {e}")),
            }
        }
        let stored = store.get(&session.id, "contended", "full").await.unwrap();
        match winners.as_slice() {
            [winner] => {
                if stored.as_ref() != Some(winner) {
                    wrong.push(format!(
                        "round {round}: stored {stored:?} is not the winner's {winner:?}"
                    ));
                }
                if winner.lock_version != read.lock_version + 1 {
                    wrong.push(format!(
                        "round {round}: winner's lock {} after reading {}",
                        winner.lock_version, read.lock_version
                    ));
                }
            }
            _ => wrong.push(format!("round {round}: {} winners", winners.len())),
        }
    }

    eprintln!(
        "FIGURE races::one_winner_per_version [{store_name}]: {WINNER_ROUNDS} rounds x {WRITERS} \
         concurrent upserts of one read copy: tried={tried} succeeded={succeeded} \
         conflicts={conflicts} wrong={} in {:.2} s",
        wrong.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(wrong.is_empty(), "wrong results: {wrong:#?}");
    assert_eq!(succeeded, WINNER_ROUNDS);
    assert_eq!(conflicts, WINNER_ROUNDS * (WRITERS - 1));
}

/// How the session is removed in a resurrection scenario.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Removal {
    Delete,
    DeleteAll,
}

const SCENARIOS: usize = 200;
const REFRESHERS: usize = 32;
/// Attempts per refresher: the held stale copy first, then re-reads.
const REFRESH_ATTEMPTS: usize = 3;

/// What one refresher task of a resurrection scenario saw.
#[derive(Default)]
struct RefresherReport {
    tried: u64,
    /// Upserts that were Ok (they started before the removal completed).
    won: u64,
    conflicts: u64,
    /// Upserts started after the removal had completed (all must conflict).
    started_after_removal: u64,
    /// Re-reads that found the session gone (the refresher stopped).
    saw_gone: u64,
    wrong: Vec<String>,
}

async fn no_resurrection_after_delete(h: Harness, store_name: &str) {
    no_resurrection(h, store_name, Removal::Delete).await;
}

async fn no_resurrection_after_delete_all(h: Harness, store_name: &str) {
    no_resurrection(h, store_name, Removal::DeleteAll).await;
}

/// 200 scenarios. In each, a session exists (for delete_all, with a sibling
/// session of the same user); 32 refresher tasks each hold the same read
/// copy; a barrier releases them together with one task that removes the
/// session (delete, or delete_all of the user); one side or the other
/// yields 0 to 4 times first, varying by scenario, so that the removal
/// lands at different points of the refreshes. A refresher rotates the refresh token and upserts; on Conflict
/// it re-reads and, if the session is still there, tries again (3 attempts
/// in all). A refresh that lands before the removal may win; an upsert that
/// starts after the removal completed must conflict, a read that starts
/// after it must find nothing, and once everything is done nothing is
/// stored: get is None, get_all is empty and, on Redis, the hash has neither
/// the session field nor its lock field (for delete_all: no key at all).
async fn no_resurrection(h: Harness, store_name: &str, removal: Removal) {
    let started = Instant::now();
    let store = Arc::clone(&h.store);
    let mut conn = raw(&h).await;
    let mut total = RefresherReport::default();
    let mut won_scenarios = 0;

    for scenario in 0..SCENARIOS {
        let user = format!("resurrect-{scenario}");
        let mut session = login(&user);
        store.upsert(&mut session).await.unwrap();
        if removal == Removal::DeleteAll {
            let mut sibling = login(&user);
            store.upsert(&mut sibling).await.unwrap();
        }
        let read = store
            .get(&session.id, &user, "full")
            .await
            .unwrap()
            .expect("just stored");

        // Who gets a head start after the barrier, and by how many yields:
        // the remover (scenarios 0, 9, …: none) or the refreshers.
        let head_start = scenario % 9;
        let (remover_yields, refresher_yields) = if head_start < 5 {
            (head_start, 0)
        } else {
            (0, head_start - 4)
        };
        let removed = Arc::new(AtomicBool::new(false));
        let barrier = Arc::new(Barrier::new(REFRESHERS + 1));
        let refreshers: Vec<_> = (0..REFRESHERS)
            .map(|_| {
                let store = Arc::clone(&store);
                let barrier = Arc::clone(&barrier);
                let removed = Arc::clone(&removed);
                let (mut copy, user) = (read.clone(), user.clone());
                tokio::spawn(async move {
                    let mut r = RefresherReport::default();
                    barrier.wait().await;
                    for _ in 0..refresher_yields {
                        tokio::task::yield_now().await;
                    }
                    for attempt in 0..REFRESH_ATTEMPTS {
                        if attempt > 0 {
                            let after = removed.load(Ordering::SeqCst);
                            match store.get(&copy.id, &user, "full").await {
                                Ok(Some(fresh)) if after => {
                                    r.wrong.push(format!(
                                        "a read started after the removal found lock {}",
                                        fresh.lock_version
                                    ));
                                    break;
                                }
                                Ok(Some(fresh)) => copy = fresh,
                                Ok(None) => {
                                    r.saw_gone += 1;
                                    break;
                                }
                                Err(e) => {
                                    r.wrong.push(format!("get failed: {e}"));
                                    break;
                                }
                            }
                        }
                        copy.rotate_refresh_token(HOUR);
                        r.tried += 1;
                        let after = removed.load(Ordering::SeqCst);
                        r.started_after_removal += u64::from(after);
                        match store.upsert(&mut copy).await {
                            Ok(()) if after => {
                                r.wrong.push(format!(
                                    "an upsert started after the removal stored lock {}",
                                    copy.lock_version
                                ));
                                break;
                            }
                            Ok(()) => {
                                r.won += 1;
                                break;
                            }
                            Err(StoreError::Conflict) => r.conflicts += 1,
                            Err(e) => {
                                r.wrong.push(format!("upsert failed: {e}"));
                                break;
                            }
                        }
                    }
                    r
                })
            })
            .collect();
        let remover = {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            let removed = Arc::clone(&removed);
            let (id, user) = (session.id.clone(), user.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                for _ in 0..remover_yields {
                    tokio::task::yield_now().await;
                }
                match removal {
                    Removal::Delete => store.delete(&id, &user, "full").await.unwrap(),
                    Removal::DeleteAll => store.delete_all(&user, "full").await.unwrap(),
                }
                removed.store(true, Ordering::SeqCst);
            })
        };
        remover.await.unwrap();
        let mut won_here = 0;
        for t in refreshers {
            let r = t.await.unwrap();
            won_here += r.won;
            total.tried += r.tried;
            total.won += r.won;
            total.conflicts += r.conflicts;
            total.started_after_removal += r.started_after_removal;
            total.saw_gone += r.saw_gone;
            total.wrong.extend(
                r.wrong
                    .into_iter()
                    .map(|w| format!("scenario {scenario}: {w}")),
            );
        }
        won_scenarios += usize::from(won_here > 0);

        // Nothing may be stored once everything has completed.
        let got = store.get(&session.id, &user, "full").await.unwrap();
        if let Some(s) = got {
            total.wrong.push(format!(
                "scenario {scenario}: get found lock {} after the removal",
                s.lock_version
            ));
        }
        let all = store.get_all(&user, "full").await.unwrap();
        if !all.is_empty() {
            total.wrong.push(format!(
                "scenario {scenario}: get_all found {} sessions after the removal",
                all.len()
            ));
        }
        if let Some(conn) = conn.as_mut() {
            let fields = hgetall(conn, &key_of(&user, "full")).await;
            let lock_field = charon_sessions::layout::lock_field(&session.id);
            if fields.contains_key(session.id.as_bytes())
                || fields.contains_key(lock_field.as_bytes())
                || (removal == Removal::DeleteAll && !fields.is_empty())
            {
                let names: Vec<_> = fields.keys().map(|f| String::from_utf8_lossy(f)).collect();
                total.wrong.push(format!(
                    "scenario {scenario}: raw hash still holds {names:?}"
                ));
            }
        }
    }

    let what = match removal {
        Removal::Delete => "delete",
        Removal::DeleteAll => "delete_all",
    };
    eprintln!(
        "FIGURE races::no_resurrection_after_{what} [{store_name}]: {SCENARIOS} scenarios x \
         {REFRESHERS} stale refreshers racing one {what}: tried={} succeeded={} (won before the \
         {what}, in {won_scenarios} scenarios) conflicts={} (of which {} started after the \
         {what} completed) stopped_on_gone={} wrong={} in {:.2} s",
        total.tried,
        total.won,
        total.conflicts,
        total.started_after_removal,
        total.saw_gone,
        total.wrong.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(total.wrong.is_empty(), "wrong results: {:#?}", total.wrong);
    assert_eq!(total.tried, total.won + total.conflicts);
}
