//! The behavioural suite every [`SessionStore`] must pass: the contract of
//! the trait's documentation as tests, the same for
//! [`LocalStore`](charon_sessions::LocalStore), every
//! [`RedisStore`](charon_sessions::RedisStore) topology and payload format,
//! and a store of your own.
//!
//! Each behaviour is a `pub async fn(Harness)`; [`store_suite!`](crate::store_suite)
//! expands one `#[tokio::test]` per behaviour for a factory returning a
//! [`Harness`], here for [`LocalStore`](charon_sessions::LocalStore):
//!
//! ```
//! use std::sync::Arc;
//! use charon_sessions::{LocalStore, SessionStore};
//! use charon_sessions_testkit::suite::Harness;
//!
//! async fn my_store() -> Harness {
//!     Harness::new(Arc::new(LocalStore::new()), |limit| async move {
//!         Arc::new(LocalStore::new().max_sessions_per_user(limit)) as Arc<dyn SessionStore>
//!     })
//! }
//!
//! // A module of its own: the tests are named after the behaviours.
//! mod my_store_suite {
//!     charon_sessions_testkit::store_suite!(super::my_store);
//! }
//! # fn main() {}
//! ```
//!
//! What the store under test must be:
//! - **Isolated.** The factory runs once per test and the tests run in
//!   parallel with the same user ids (`alice`, `crowd`, …): each call
//!   returns a store of its own (a fresh backend, or a key prefix of its
//!   own).
//! - **At the stores' defaults:** sessions of at most 64 KiB encoded
//!   ([`DEFAULT_MAX_SESSION_SIZE`](charon_sessions::limit::DEFAULT_MAX_SESSION_SIZE))
//!   and [`SessionLimit::DEFAULT`]; a refusal for size names
//!   `max_session_size` in its `InvalidInput` message.
//! - The crate using the macro needs `tokio` with the `macros` and
//!   `rt-multi-thread` features.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use charon_sessions::{Session, SessionLimit, SessionStore, StoreError};

/// An hour, the refresh window of the suite's sessions.
pub const HOUR: Duration = Duration::from_secs(3600);

type LimitedStore = Pin<Box<dyn Future<Output = Arc<dyn SessionStore>> + Send>>;

/// A store under test, how to make another like it with another session
/// limit, and whatever must live as long as it (its servers).
pub struct Harness {
    /// The store under test.
    pub store: Arc<dyn SessionStore>,
    with_session_limit: Box<dyn Fn(SessionLimit) -> LimitedStore + Send + Sync>,
    guards: Vec<Box<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").finish_non_exhaustive()
    }
}

impl Harness {
    /// `store` under test; `with_session_limit(limit)` makes a second store
    /// on the same backend, alike but for its session limit.
    pub fn new<F, Fut>(store: Arc<dyn SessionStore>, with_session_limit: F) -> Harness
    where
        F: Fn(SessionLimit) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Arc<dyn SessionStore>> + Send + 'static,
    {
        Harness {
            store,
            with_session_limit: Box::new(move |limit| Box::pin(with_session_limit(limit))),
            guards: Vec::new(),
        }
    }

    /// Keeps `guard` (a server, say) alive as long as the harness.
    pub fn keeping(mut self, guard: impl Any + Send + Sync) -> Harness {
        self.guards.push(Box::new(guard));
        self
    }

    /// The first thing of type `T` kept with [`keeping`](Self::keeping),
    /// such as the [`TestServer`](crate::TestServer) behind the store.
    pub fn kept<T: Any>(&self) -> Option<&T> {
        self.guards
            .iter()
            .find_map(|guard| (**guard).downcast_ref())
    }

    /// A second store like the one under test, on the same backend, with
    /// `limit` sessions per user.
    pub async fn with_session_limit(&self, limit: SessionLimit) -> Arc<dyn SessionStore> {
        (self.with_session_limit)(limit).await
    }
}

/// A new login of `user` for an hour, with a small `extra_payload`.
pub fn login(user: &str) -> Session {
    let mut s = Session::new_login(user, HOUR);
    s.extra_payload
        .insert("device".into(), serde_json::json!("laptop"));
    s
}

/// Sleeps until the wall clock has passed `unix_time` (a whole second).
pub async fn sleep_until_past(unix_time: i64) {
    while Session::now() < unix_time {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_conflict(result: Result<(), StoreError>) {
    match result {
        Err(StoreError::Conflict) => {}
        other => panic!("expected a Conflict, got {other:?}"),
    }
}

fn assert_invalid(result: Result<impl std::fmt::Debug, StoreError>, field: &str) {
    match result {
        Err(StoreError::InvalidInput(msg)) => {
            assert!(msg.contains(field), "{msg} should name {field}")
        }
        other => panic!("expected InvalidInput naming {field}, got {other:?}"),
    }
}

/// A new session (lock 0) is stored with lock 1, read back equal, and the
/// caller's copy is bumped in place.
pub async fn create_stores_lock_one(h: Harness) {
    let s = &h.store;
    let mut session = login("alice");
    s.upsert(&mut session).await.unwrap();
    assert_eq!(session.lock_version, 1);
    let read = s.get(&session.id, "alice", "full").await.unwrap().unwrap();
    assert_eq!(read, session);
}

/// A second upsert of the same stale copy is a conflict and changes nothing.
pub async fn second_create_conflicts_and_changes_nothing(h: Harness) {
    let s = &h.store;
    let mut first = login("alice");
    let mut stale = first.clone();
    s.upsert(&mut first).await.unwrap();
    stale
        .extra_payload
        .insert("device".into(), serde_json::json!("evil"));
    stale.refresh_expires_at += 100;
    assert_conflict(s.upsert(&mut stale).await);
    assert_eq!(
        stale.lock_version, 0,
        "a failed upsert leaves the caller's lock alone"
    );
    let read = s.get(&first.id, "alice", "full").await.unwrap().unwrap();
    assert_eq!(read, first);
}

/// get → modify → upsert passes and bumps the lock; the older copy is stale.
pub async fn get_then_upsert_passes_and_old_copy_conflicts(h: Harness) {
    let s = &h.store;
    let mut session = login("alice");
    s.upsert(&mut session).await.unwrap();
    let old = session.clone();
    let mut read = s.get(&session.id, "alice", "full").await.unwrap().unwrap();
    read.rotate_refresh_token(HOUR);
    s.upsert(&mut read).await.unwrap();
    assert_eq!(read.lock_version, 2);
    let again = s.get(&session.id, "alice", "full").await.unwrap().unwrap();
    assert_eq!(again, read);
    let mut stale = old;
    assert_conflict(s.upsert(&mut stale).await);
    assert_eq!(
        s.get(&session.id, "alice", "full").await.unwrap().unwrap(),
        read
    );
}

/// A stale update after delete is a conflict and stores nothing.
pub async fn stale_update_after_delete_does_not_resurrect(h: Harness) {
    let s = &h.store;
    let mut session = login("alice");
    s.upsert(&mut session).await.unwrap();
    s.delete(&session.id, "alice", "full").await.unwrap();
    assert_conflict(s.upsert(&mut session).await);
    assert_eq!(s.get(&session.id, "alice", "full").await.unwrap(), None);
    assert!(s.get_all("alice", "full").await.unwrap().is_empty());
}

/// A stale update after log-out-everywhere is a conflict and stores nothing.
pub async fn stale_update_after_delete_all_does_not_resurrect(h: Harness) {
    let s = &h.store;
    let mut session = login("alice");
    s.upsert(&mut session).await.unwrap();
    s.delete_all("alice", "full").await.unwrap();
    assert_conflict(s.upsert(&mut session).await);
    assert!(s.get_all("alice", "full").await.unwrap().is_empty());
}

/// A session is gone at its refresh_expires_at, and a stale update after
/// that is a conflict that stores nothing.
pub async fn expiry_removes_and_stale_update_conflicts(h: Harness) {
    let s = &h.store;
    let now = Session::now();
    let mut short = Session::new_login_at("alice", now, Duration::from_secs(2));
    let mut long = login("alice");
    s.upsert(&mut short).await.unwrap();
    s.upsert(&mut long).await.unwrap();
    assert!(s.get(&short.id, "alice", "full").await.unwrap().is_some());
    sleep_until_past(short.refresh_expires_at).await;
    assert_eq!(s.get(&short.id, "alice", "full").await.unwrap(), None);
    let all = s.get_all("alice", "full").await.unwrap();
    assert_eq!(all, vec![long.clone()]);
    short.rotate_refresh_token(HOUR);
    assert_conflict(s.upsert(&mut short).await);
    assert_eq!(s.get(&short.id, "alice", "full").await.unwrap(), None);
}

/// After a delete, the same id can be created again (lock 0).
pub async fn create_after_delete_starts_over(h: Harness) {
    let s = &h.store;
    let mut session = login("alice");
    s.upsert(&mut session).await.unwrap();
    s.upsert(&mut session).await.unwrap();
    s.delete(&session.id, "alice", "full").await.unwrap();
    session.lock_version = 0;
    s.upsert(&mut session).await.unwrap();
    assert_eq!(session.lock_version, 1);
}

/// Deleting removes one session and leaves the others; deleting an absent
/// session succeeds.
pub async fn delete_removes_one_session(h: Harness) {
    let s = &h.store;
    let mut a = login("alice");
    let mut b = login("alice");
    s.upsert(&mut a).await.unwrap();
    s.upsert(&mut b).await.unwrap();
    s.delete(&a.id, "alice", "full").await.unwrap();
    assert_eq!(s.get(&a.id, "alice", "full").await.unwrap(), None);
    assert_eq!(s.get_all("alice", "full").await.unwrap(), vec![b.clone()]);
    s.delete(&a.id, "alice", "full").await.unwrap();
    s.delete("never-existed", "nobody", "full").await.unwrap();
}

/// get_all returns exactly the user's sessions of that type.
pub async fn get_all_lists_one_users_sessions_of_one_type(h: Harness) {
    let s = &h.store;
    let mut mine = Vec::new();
    for _ in 0..3 {
        let mut x = login("alice");
        s.upsert(&mut x).await.unwrap();
        mine.push(x);
    }
    let mut oauth = login("alice");
    oauth.session_type = "oauth2".into();
    s.upsert(&mut oauth).await.unwrap();
    let mut other = login("alice.b");
    s.upsert(&mut other).await.unwrap();

    let mut all = s.get_all("alice", "full").await.unwrap();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    mine.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(all, mine);
    assert_eq!(s.get_all("alice", "oauth2").await.unwrap(), vec![oauth]);
    assert_eq!(s.get_all("alice.b", "full").await.unwrap(), vec![other]);
    assert!(s.get_all("bob", "full").await.unwrap().is_empty());
}

/// delete_all removes only that user's sessions of that type.
pub async fn delete_all_touches_only_that_user_and_type(h: Harness) {
    let s = &h.store;
    let mut sessions = Vec::new();
    for (user, kind) in [
        ("alice", "full"),
        ("alice", "full"),
        ("alice", "oauth2"),
        ("alice.full", "full"),
        ("alice.b", "full"),
        ("bob", "full"),
    ] {
        let mut x = login(user);
        x.session_type = kind.into();
        s.upsert(&mut x).await.unwrap();
        sessions.push(x);
    }
    s.delete_all("alice", "full").await.unwrap();
    assert!(s.get_all("alice", "full").await.unwrap().is_empty());
    for x in &sessions[2..] {
        let read = s.get(&x.id, &x.user_id, &x.session_type).await.unwrap();
        assert_eq!(
            read.as_ref(),
            Some(x),
            "{} {} must survive",
            x.user_id,
            x.session_type
        );
    }
    s.delete_all("nobody", "full").await.unwrap();
}

/// A dead session (refresh_expires_at < refreshed_at) is not stored, and
/// upsert still returns Ok without touching the lock version.
pub async fn dead_session_is_not_stored(h: Harness) {
    let s = &h.store;
    let mut session = login("alice");
    session.refresh_expires_at = session.refreshed_at - 1;
    s.upsert(&mut session).await.unwrap();
    assert_eq!(session.lock_version, 0);
    assert_eq!(s.get(&session.id, "alice", "full").await.unwrap(), None);

    // An existing session updated into a dead one keeps its stored state.
    let mut live = login("alice");
    s.upsert(&mut live).await.unwrap();
    let stored = live.clone();
    live.refreshed_at = live.refresh_expires_at + 10;
    s.upsert(&mut live).await.unwrap();
    assert_eq!(live.lock_version, 1);
    assert_eq!(
        s.get(&live.id, "alice", "full").await.unwrap(),
        Some(stored)
    );
}

/// An upsert whose refresh window already ended (but is not dead) succeeds
/// and leaves nothing behind, not even a lock version.
pub async fn upsert_with_past_expiry_stores_nothing_readable(h: Harness) {
    let s = &h.store;
    let mut session = login("alice");
    session.created_at -= 100;
    session.refreshed_at -= 100;
    session.refresh_expires_at = Session::now() - 10;
    s.upsert(&mut session).await.unwrap();
    assert_eq!(s.get(&session.id, "alice", "full").await.unwrap(), None);
    assert!(s.get_all("alice", "full").await.unwrap().is_empty());
    // No lock version was left behind: the id can be created afresh.
    let mut again = session.clone();
    again.lock_version = 0;
    again.refreshed_at = Session::now();
    again.refresh_expires_at = Session::now() + 3600;
    s.upsert(&mut again).await.unwrap();
    assert_eq!(again.lock_version, 1);

    // Updating a live session into the past removes it, lock included.
    let mut live = login("alice");
    s.upsert(&mut live).await.unwrap();
    live.refreshed_at -= 7200;
    live.refresh_expires_at = Session::now() - 5;
    s.upsert(&mut live).await.unwrap();
    assert_eq!(s.get(&live.id, "alice", "full").await.unwrap(), None);
    assert_conflict(s.upsert(&mut live).await);
    live.lock_version = 0;
    live.refreshed_at = Session::now();
    live.refresh_expires_at = Session::now() + 3600;
    s.upsert(&mut live).await.unwrap();
}

/// Expiry times up to MAX_UNIX_TIME (year 4199) are stored; later ones are
/// refused before any I/O, identically by every store.
pub async fn far_future_expiry_limit(h: Harness) {
    let s = &h.store;
    let mut latest = login("alice");
    latest.refresh_expires_at = charon_sessions::validate::MAX_UNIX_TIME;
    s.upsert(&mut latest).await.unwrap();
    assert_eq!(
        s.get(&latest.id, "alice", "full").await.unwrap(),
        Some(latest)
    );
    let mut too_late = login("alice");
    too_late.refresh_expires_at = charon_sessions::validate::MAX_UNIX_TIME + 1;
    assert_invalid(s.upsert(&mut too_late).await, "refresh_expires_at");
    let mut forever = Session::new_login("alice", Duration::MAX);
    s.upsert(&mut forever).await.unwrap();
    assert_eq!(
        forever.refresh_expires_at,
        charon_sessions::validate::MAX_UNIX_TIME
    );
}

/// A session that encodes to more than the default 64 KiB is refused with
/// InvalidInput, identically by every store; one just under is stored.
pub async fn oversized_session_is_refused(h: Harness) {
    let s = &h.store;
    let mut big = login("alice");
    big.extra_payload
        .insert("blob".into(), serde_json::json!("x".repeat(64 * 1024)));
    match s.upsert(&mut big).await {
        Err(StoreError::InvalidInput(msg)) => assert!(msg.contains("max_session_size"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(big.lock_version, 0);
    assert_eq!(s.get(&big.id, "alice", "full").await.unwrap(), None);
    let mut fits = login("alice");
    fits.extra_payload
        .insert("blob".into(), serde_json::json!("x".repeat(60 * 1024)));
    s.upsert(&mut fits).await.unwrap();
    assert_eq!(s.get(&fits.id, "alice", "full").await.unwrap(), Some(fits));
}

/// Every field survives the round trip, with unusual user ids too.
pub async fn all_fields_round_trip(h: Harness) {
    let s = &h.store;
    for user in [
        "alice",
        "a.b.c",
        "l.x",
        "{tag}",
        "*",
        "with space",
        "new\nline",
        "Ærøskøbing",
        "用户",
    ] {
        let mut session = login(user);
        session.session_type = "oauth2".into();
        session.expires_at = Some(session.refresh_expires_at + 3600);
        session.prev_tokens_fresh_from = session.tokens_fresh_from - 60;
        session.extra_payload.insert(
            "nested".into(),
            serde_json::json!({"scopes": ["read", "write"], "n": 1.5, "none": null}),
        );
        s.upsert(&mut session).await.unwrap();
        let read = s.get(&session.id, user, "oauth2").await.unwrap();
        assert_eq!(read.as_ref(), Some(&session), "user id {user:?}");
        assert_eq!(s.get_all(user, "oauth2").await.unwrap(), vec![session]);
    }
}

/// Bad ids, user ids, types and times are refused with InvalidInput naming
/// the field, by every operation.
pub async fn invalid_input_is_refused(h: Harness) {
    let s = &h.store;
    assert_invalid(s.get("bad.id", "alice", "full").await, "session_id");
    assert_invalid(s.get("", "alice", "full").await, "session_id");
    assert_invalid(s.get("id", "", "full").await, "user_id");
    assert_invalid(s.get("id", "alice", "full.x").await, "session_type");
    assert_invalid(s.delete("a b", "alice", "full").await, "session_id");
    assert_invalid(s.delete("id", &"x".repeat(513), "full").await, "user_id");
    assert_invalid(s.get_all("", "full").await, "user_id");
    assert_invalid(s.get_all("alice", "").await, "session_type");
    assert_invalid(s.delete_all("alice", "a.b").await, "session_type");

    let mut bad = login("alice");
    bad.id = "l.x".into();
    assert_invalid(s.upsert(&mut bad).await, "session_id");
    let mut bad = login("alice");
    bad.session_type = "x".repeat(65);
    assert_invalid(s.upsert(&mut bad).await, "session_type");
    let mut bad = login("alice");
    bad.refresh_expires_at = -5;
    bad.refreshed_at = -10;
    assert_invalid(s.upsert(&mut bad).await, "refresh_expires_at");
    let mut bad = login("alice");
    bad.lock_version = u64::MAX;
    assert_invalid(s.upsert(&mut bad).await, "lock_version");
    assert!(s.get_all("alice", "full").await.unwrap().is_empty());
}

/// Of many concurrent upserts of the same read copy, exactly one wins.
pub async fn one_winner_per_lock_version(h: Harness) {
    let s = &h.store;
    let mut session = login("alice");
    s.upsert(&mut session).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = Arc::clone(s);
        let mut copy = session.clone();
        copy.extra_payload
            .insert("writer".into(), serde_json::json!(i));
        tasks.push(tokio::spawn(async move {
            let result = store.upsert(&mut copy).await;
            (result, copy)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (result, copy) = t.await.unwrap();
        match result {
            Ok(()) => winners.push(copy),
            Err(StoreError::Conflict) => assert_eq!(copy.lock_version, 1),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent upsert may win");
    let read = s.get(&session.id, "alice", "full").await.unwrap().unwrap();
    assert_eq!(read, winners[0]);
    assert_eq!(read.lock_version, 2);
}

/// 130 concurrent logins of one user, each with another refresh window,
/// on a store with the default limit (100 sessions, the soonest-expiring
/// evicted): every login succeeds and the user ends with exactly 100
/// sessions; afterwards a login evicts exactly the session expiring
/// soonest, and a refresh (not a create) is never limited.
pub async fn concurrent_logins_beyond_the_limit_evict_the_soonest_expiring(h: Harness) {
    let s = &h.store;
    let tasks: Vec<_> = (0..130u64)
        .map(|k| {
            let store = Arc::clone(s);
            tokio::spawn(async move {
                let mut session = Session::new_login("crowd", HOUR + Duration::from_secs(k));
                store.upsert(&mut session).await.map(|()| session)
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect("every login succeeds");
    }
    let all = s.get_all("crowd", "full").await.unwrap();
    assert_eq!(all.len(), 100, "exactly the limit");

    let soonest = all
        .iter()
        .min_by_key(|x| (x.refresh_expires_at, x.id.clone()))
        .unwrap()
        .clone();
    let mut newcomer = Session::new_login("crowd", HOUR * 2);
    s.upsert(&mut newcomer).await.unwrap();
    let after = s.get_all("crowd", "full").await.unwrap();
    assert_eq!(after.len(), 100);
    assert!(
        after.iter().all(|x| x.id != soonest.id),
        "the soonest-expiring went"
    );
    assert!(after.iter().any(|x| x.id == newcomer.id));

    let mut refreshed = after.iter().find(|x| x.id != newcomer.id).unwrap().clone();
    refreshed.rotate_refresh_token(HOUR);
    s.upsert(&mut refreshed).await.unwrap();
    assert_eq!(s.get_all("crowd", "full").await.unwrap().len(), 100);
}

/// 30 concurrent logins of one user on a store refusing beyond 10
/// sessions: exactly 10 succeed, 20 fail with `TooManySessions { limit: 10
/// }` and write nothing; another user and another session type are not
/// limited by them; after a logout the next login succeeds.
pub async fn concurrent_logins_beyond_a_refusing_limit_are_refused(h: Harness) {
    let s = h.with_session_limit(SessionLimit::Refuse(10)).await;
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let store = Arc::clone(&s);
            tokio::spawn(async move {
                let mut session = login("capped");
                store.upsert(&mut session).await.map(|()| session)
            })
        })
        .collect();
    let (mut ok, mut refused) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(session) => ok.push(session),
            Err(StoreError::TooManySessions { limit: 10 }) => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok.len(), refused), (10, 20));
    assert_eq!(s.get_all("capped", "full").await.unwrap().len(), 10);
    s.upsert(&mut login("someone-else")).await.unwrap();
    let mut other_type = login("capped");
    other_type.session_type = "oauth2".into();
    s.upsert(&mut other_type).await.unwrap();

    s.delete(&ok[0].id, "capped", "full").await.unwrap();
    s.upsert(&mut login("capped")).await.unwrap();
    assert!(matches!(
        s.upsert(&mut login("capped")).await,
        Err(StoreError::TooManySessions { limit: 10 })
    ));
}

/// Expands the behavioural suite ([`suite`](crate::suite)) for one store
/// factory: `store_suite!(factory)`, where `factory` is an async fn
/// returning a [`Harness`](crate::suite::Harness), gives one
/// `#[tokio::test]` per behaviour; `store_suite!(sequential shared,
/// harness)` gives one test running every behaviour in turn, for setups too
/// costly to start once per behaviour (`shared()` starts them once,
/// `harness(&shared, behaviour name)` gives each behaviour its store).
#[macro_export]
macro_rules! store_suite {
    ($factory:path) => {
        $crate::store_suite!(@list tests $factory);
    };
    // One test running every behaviour in turn, for topologies too costly
    // to start once per behaviour: `$shared()` starts the servers once,
    // `$harness(&shared, behaviour name)` gives each behaviour its store.
    (sequential $shared:path, $harness:path) => {
        $crate::store_suite!(@list seq ($shared, $harness));
    };
    (@list $mode:ident $($factory:tt)+) => {
        $crate::store_suite!(@$mode $($factory)+;
            create_stores_lock_one,
            second_create_conflicts_and_changes_nothing,
            get_then_upsert_passes_and_old_copy_conflicts,
            stale_update_after_delete_does_not_resurrect,
            stale_update_after_delete_all_does_not_resurrect,
            expiry_removes_and_stale_update_conflicts,
            create_after_delete_starts_over,
            delete_removes_one_session,
            get_all_lists_one_users_sessions_of_one_type,
            delete_all_touches_only_that_user_and_type,
            dead_session_is_not_stored,
            upsert_with_past_expiry_stores_nothing_readable,
            all_fields_round_trip,
            invalid_input_is_refused,
            one_winner_per_lock_version,
            far_future_expiry_limit,
            oversized_session_is_refused,
            concurrent_logins_beyond_the_limit_evict_the_soonest_expiring,
            concurrent_logins_beyond_a_refusing_limit_are_refused,
        );
    };
    (@seq ($shared:path, $harness:path); $($name:ident),* $(,)?) => {
        /// Every behaviour of the suite, in turn, on one set of servers.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn behavioural_suite() {
            let shared = $shared().await;
            $(
                eprintln!("behaviour {}", stringify!($name));
                $crate::suite::$name($harness(&shared, stringify!($name)).await).await;
            )*
        }
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::suite::$name($factory().await).await;
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_guards_are_found_by_type() {
        let h = Harness::new(Arc::new(charon_sessions::LocalStore::new()), |_| async {
            Arc::new(charon_sessions::LocalStore::new()) as Arc<dyn SessionStore>
        })
        .keeping(7u32)
        .keeping("server");
        assert_eq!(h.kept::<u32>(), Some(&7));
        assert_eq!(h.kept::<&str>(), Some(&"server"));
        assert!(h.kept::<u64>().is_none());
    }
}
