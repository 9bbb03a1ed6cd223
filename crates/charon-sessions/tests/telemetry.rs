//! Observability on real stores: every operation's span and metrics
//! (operations by kind and outcome, lock conflicts, rejected values,
//! function re-registrations, waits for a place in flight, replaced
//! connections), user ids left out on request, and
//! no secret in any of it.
//!
//! The metrics recorder (metrics-util's `DebuggingRecorder`) and the tracing
//! subscriber are installed for the test's thread only, and the tests run on
//! a current-thread runtime, so each test sees exactly its own operations.

mod common;

use std::collections::BTreeMap;

use charon_sessions::signing::SigningKey;
use charon_sessions::telemetry::{
    EVICTED_SESSIONS_TOTAL, FUNCTION_REGISTRATIONS_TOTAL, LOCK_CONFLICTS_TOTAL,
    OPERATION_DURATION_SECONDS, OPERATIONS_TOTAL, OTHER_SESSION_TYPE, POOL_WAIT_SECONDS,
    RECONNECTIONS_TOTAL, REJECTED_VALUES_TOTAL, SESSION_TYPE_LABELS,
};
use charon_sessions::{LocalStore, RedisStore, RedisStoreConfig, SessionLimit, SessionStore};
use charon_sessions_testkit::{Flavor, TestServer};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use common::raw::{Captured, function_flush, hset, key_of, kill_other_clients, raw};
use common::{login, test_key};

/// What one test recorded: metrics by `name{label=value,...}`, and the log.
struct Recorded {
    counters: BTreeMap<String, u64>,
    /// Number of samples per histogram.
    histograms: BTreeMap<String, usize>,
    log: String,
}

impl Recorded {
    fn counter(&self, key: &str) -> u64 {
        self.counters.get(key).copied().unwrap_or(0)
    }
    fn samples(&self, key: &str) -> usize {
        self.histograms.get(key).copied().unwrap_or(0)
    }
}

/// Runs `body` with a metrics recorder and a log capture installed on this
/// thread (the runtime is current-thread, so the store's work is polled
/// here too).
async fn recording<F: Future<Output = ()>>(body: F) -> Recorded {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let captured = Captured::default();
    let subscriber = captured.subscriber();
    {
        let _metrics = metrics::set_default_local_recorder(&recorder);
        let _tracing = tracing::subscriber::set_default(subscriber);
        body.await;
    }
    read(&snapshotter, captured.text())
}

fn read(snapshotter: &Snapshotter, log: String) -> Recorded {
    let mut counters = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = if labels.is_empty() {
            key.name().to_owned()
        } else {
            format!("{}{{{}}}", key.name(), labels.join(","))
        };
        match value {
            DebugValue::Counter(n) => {
                counters.insert(name, n);
            }
            DebugValue::Histogram(samples) => {
                histograms.insert(name, samples.len());
            }
            DebugValue::Gauge(_) => {}
        }
    }
    Recorded {
        counters,
        histograms,
        log,
    }
}

fn ops(operation: &str, outcome: &str) -> String {
    format!("{OPERATIONS_TOTAL}{{operation={operation},outcome={outcome}}}")
}

fn duration(operation: &str) -> String {
    format!("{OPERATION_DURATION_SECONDS}{{operation={operation}}}")
}

/// The same day on any store: a login, a read, a miss, a conflict, a
/// listing, a logout and a logout everywhere; returns the refresh token id
/// and the session id, which must never appear in the log.
async fn a_day(store: &dyn SessionStore, user: &str) -> (String, String) {
    let mut session = login(user);
    store.upsert(&mut session).await.unwrap();
    let read = store.get(&session.id, user, "full").await.unwrap();
    assert!(read.is_some());
    assert!(store.get("nosuch", user, "full").await.unwrap().is_none());
    let mut stale = session.clone();
    stale.lock_version = 0;
    assert!(store.upsert(&mut stale).await.unwrap_err().is_conflict());
    assert!(store.get("bad.id", user, "full").await.is_err());
    assert_eq!(store.get_all(user, "full").await.unwrap().len(), 1);
    store.delete(&session.id, user, "full").await.unwrap();
    store.delete_all(user, "full").await.unwrap();
    (session.refresh_token_id.clone(), session.id.clone())
}

fn assert_a_day(recorded: &Recorded, user: &str, refresh_token_id: &str) {
    for (operation, outcome, n) in [
        ("upsert", "ok", 1),
        ("upsert", "conflict", 1),
        ("get", "ok", 1),
        ("get", "not_found", 1),
        ("get", "invalid_input", 1),
        ("get_all", "ok", 1),
        ("delete", "ok", 1),
        ("delete_all", "ok", 1),
    ] {
        assert_eq!(
            recorded.counter(&ops(operation, outcome)),
            n,
            "{operation}/{outcome}: {:#?}",
            recorded.counters
        );
    }
    assert_eq!(
        recorded.counter(&format!("{LOCK_CONFLICTS_TOTAL}{{session_type=full}}")),
        1
    );
    for (operation, n) in [
        ("upsert", 2),
        ("get", 3),
        ("get_all", 1),
        ("delete", 1),
        ("delete_all", 1),
    ] {
        assert_eq!(recorded.samples(&duration(operation)), n, "{operation}");
    }
    let log = &recorded.log;
    for span in [
        "charon_sessions.upsert",
        "charon_sessions.get",
        "charon_sessions.get_all",
        "charon_sessions.delete",
        "charon_sessions.delete_all",
    ] {
        assert!(log.contains(span), "no span {span} in:\n{log}");
    }
    assert!(
        log.contains(&format!(
            r#"charon_sessions.upsert{{operation="upsert" session_type="full" user_id={user} outcome="conflict""#
        )) || log.contains(&format!(
            r#"charon_sessions.upsert{{operation="upsert" session_type="full" user_id="{user}" outcome="conflict""#
        )),
        "no conflict outcome with the user id in:\n{log}"
    );
    assert!(log.contains("outcome=\"not_found\""), "{log}");
    assert!(log.contains("duration_ms="), "{log}");
    assert!(
        !log.contains(refresh_token_id),
        "the refresh token id reached the log:\n{log}"
    );
    assert!(
        !log.contains("laptop"),
        "the payload reached the log:\n{log}"
    );
}

/// A subscriber that takes events but no spans still gets each
/// operation's "store operation finished" event, with its outcome.
#[tokio::test]
async fn the_finished_event_does_not_need_spans() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let captured = Captured::default();
    let writer = captured.clone();
    let events_only = tracing_subscriber::fmt::layer()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|metadata| {
            metadata.is_event()
        }));
    let subscriber = tracing_subscriber::registry().with(events_only);
    let store = LocalStore::new();
    {
        let _tracing = tracing::subscriber::set_default(subscriber);
        let mut session = login("erin");
        store.upsert(&mut session).await.unwrap();
        assert!(store.get("nosuch", "erin", "full").await.unwrap().is_none());
    }
    let log = captured.text();
    let finished: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("store operation finished"))
        .collect();
    assert_eq!(finished.len(), 2, "{log}");
    assert!(finished[0].contains("outcome=\"ok\""), "{log}");
    assert!(finished[1].contains("outcome=\"not_found\""), "{log}");
    assert!(!log.contains("charon_sessions.get"), "no span: {log}");
}

#[tokio::test]
async fn local_store_operations_are_traced_and_counted() {
    let store = LocalStore::new().record_user_ids(true);
    let mut secret = (String::new(), String::new());
    let recorded = recording(async {
        secret = a_day(&store, "alice").await;
    })
    .await;
    assert_a_day(&recorded, "alice", &secret.0);
    assert_eq!(recorded.samples(POOL_WAIT_SECONDS), 0, "no pool in memory");
}

async fn redis_store_operations_are_traced_and_counted(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let store =
        RedisStore::connect(RedisStoreConfig::new(server.url(), test_key()).record_user_ids(true))
            .await
            .unwrap();
    let mut secret = (String::new(), String::new());
    let recorded = recording(async {
        secret = a_day(&store, "alice").await;
    })
    .await;
    assert_a_day(&recorded, "alice", &secret.0);
    // Every operation that reached Redis took a place in flight: all but
    // the invalid get.
    assert_eq!(recorded.samples(POOL_WAIT_SECONDS), 7);
    assert_eq!(recorded.counter(RECONNECTIONS_TOTAL), 0);
}

/// Sessions evicted to keep a user within the session limit are counted:
/// with room for 2, a third login evicts one, on both stores.
async fn evicted_sessions_are_counted(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let limit = SessionLimit::EvictSoonestExpiring(2);
    let redis = RedisStore::connect(
        RedisStoreConfig::new(server.url(), test_key()).max_sessions_per_user(limit),
    )
    .await
    .unwrap();
    let local = LocalStore::new().max_sessions_per_user(limit);
    let recorded = recording(async {
        for store in [&redis as &dyn SessionStore, &local] {
            for _ in 0..3 {
                store.upsert(&mut login("dora")).await.unwrap();
            }
            assert_eq!(store.get_all("dora", "full").await.unwrap().len(), 2);
        }
    })
    .await;
    assert_eq!(recorded.counter(EVICTED_SESSIONS_TOTAL), 2);
}

/// A shared connection killed on the server is counted once it has been
/// opened again.
async fn replaced_connections_are_counted(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let store = RedisStore::connect(RedisStoreConfig::new(server.url(), test_key()).pool_size(2))
        .await
        .unwrap();
    let mut conn = raw(&server).await;
    let recorded = recording(async {
        assert_eq!(kill_other_clients(&mut conn).await, 2);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while store.pool_state().connections < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                store.pool_state()
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(recorded.counter(RECONNECTIONS_TOTAL), 2);
}

/// Values that fail each check are counted by reason; a lost function
/// library is counted when it is registered again.
async fn rejections_and_reregistrations_are_counted(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let store = RedisStore::connect(RedisStoreConfig::new(server.url(), test_key()))
        .await
        .unwrap();
    let mut conn = raw(&server).await;
    let key = key_of("alice", "full");

    // A value signed with another key, one that is not a session, and a
    // genuine session of bob copied into alice's hash.
    let mut bob = login("bob");
    store.upsert(&mut bob).await.unwrap();
    let bobs_value: Vec<u8> = redis::cmd("HGET")
        .arg(key_of("bob", "full"))
        .arg(&bob.id)
        .query_async(&mut conn)
        .await
        .unwrap();
    let foreign =
        charon_sessions::signing::sign(b"{}", &SigningKey::from_bytes(b"other key").unwrap());
    hset(&mut conn, &key, b"foreign", &foreign).await;
    let garbage = charon_sessions::signing::sign(b"not a session", &test_key());
    hset(&mut conn, &key, b"garbage", &garbage).await;
    hset(&mut conn, &key, bob.id.as_bytes(), &bobs_value).await;

    let recorded = recording(async {
        assert!(
            store
                .get("foreign", "alice", "full")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .get("garbage", "alice", "full")
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.get(&bob.id, "alice", "full").await.unwrap().is_none());
        assert!(store.get_all("alice", "full").await.unwrap().is_empty());

        function_flush(&mut conn).await;
        let mut carol = login("carol");
        store.upsert(&mut carol).await.unwrap();
        let mut dave = login("dave");
        store.upsert(&mut dave).await.unwrap();
    })
    .await;

    for (reason, n) in [("signature", 2), ("decode", 2), ("owner_mismatch", 2)] {
        assert_eq!(
            recorded.counter(&format!("{REJECTED_VALUES_TOTAL}{{reason={reason}}}")),
            n,
            "{reason}: {:#?}",
            recorded.counters
        );
    }
    assert_eq!(recorded.counter(FUNCTION_REGISTRATIONS_TOTAL), 1);
    assert_eq!(recorded.counter(&ops("upsert", "ok")), 2);
    let log = &recorded.log;
    assert_eq!(
        log.matches("ignoring invalid stored session").count(),
        6,
        "{log}"
    );
    assert_eq!(log.matches("registering it again").count(), 1, "{log}");
    assert_eq!(log.matches("WARN").count(), 7, "{log}");
    assert!(recorded.log.contains("reason=\"signature\""));
}

/// By default (`record_user_ids` off) no span, event or warning carries the
/// user id (it is part of the key, so warnings name only the session type).
async fn user_ids_are_left_out_by_default(flavor: Flavor) {
    const USER: &str = "user-marker-8841";
    let server = TestServer::start(flavor);
    let store = RedisStore::connect(RedisStoreConfig::new(server.url(), test_key()))
        .await
        .unwrap();
    let mut conn = raw(&server).await;
    let foreign =
        charon_sessions::signing::sign(b"{}", &SigningKey::from_bytes(b"other key").unwrap());
    hset(&mut conn, &key_of(USER, "full"), b"foreign", &foreign).await;
    hset(&mut conn, &key_of(USER, "full"), b"\xff\xfe", b"x").await;

    let local = LocalStore::new();
    let recorded = recording(async {
        a_day(&store, USER).await;
        a_day(&local, USER).await;
        assert!(store.get("foreign", USER, "full").await.unwrap().is_none());
    })
    .await;
    assert_eq!(recorded.counter(&ops("upsert", "conflict")), 2);
    assert!(recorded.log.contains("charon_sessions.get{"));
    assert!(recorded.log.contains("ignoring invalid stored session"));
    assert!(
        recorded.log.contains("not a session id"),
        "{}",
        recorded.log
    );
    assert!(
        !recorded.log.contains(USER),
        "user id in the log:\n{}",
        recorded.log
    );
}

/// A lock conflict in each of `types` distinct session types, in order,
/// and one more in the first and the last.
async fn conflict_in_many_session_types(store: &dyn SessionStore, types: usize) {
    let session_types: Vec<String> = (0..types).map(|i| format!("type-{i:03}")).collect();
    for session_type in session_types.iter().chain([&session_types[0]]) {
        let mut session = login("frank");
        session.session_type = session_type.clone();
        store.upsert(&mut session).await.unwrap();
        let mut stale = session.clone();
        stale.lock_version = 0;
        assert!(store.upsert(&mut stale).await.unwrap_err().is_conflict());
    }
    let mut session = login("frank");
    session.session_type = session_types[types - 1].clone();
    store.upsert(&mut session).await.unwrap();
    session.lock_version = 0;
    assert!(store.upsert(&mut session).await.unwrap_err().is_conflict());
}

/// The `session_type` label of the lock conflict counter takes at most
/// `SESSION_TYPE_LABELS` values of its own, the first types seen, plus
/// `other` for all the rest; spans keep the real session type.
fn assert_session_type_labels_are_bounded(recorded: &Recorded, types: usize) {
    let prefix = format!("{LOCK_CONFLICTS_TOTAL}{{session_type=");
    let series: BTreeMap<&str, u64> = recorded
        .counters
        .iter()
        .filter_map(|(key, n)| Some((key.strip_prefix(&prefix)?.strip_suffix('}')?, *n)))
        .collect();
    assert_eq!(series.len(), SESSION_TYPE_LABELS + 1, "{series:#?}");
    for i in 0..SESSION_TYPE_LABELS {
        let expected = if i == 0 { 2 } else { 1 };
        assert_eq!(
            series.get(format!("type-{i:03}").as_str()),
            Some(&expected),
            "{series:#?}"
        );
    }
    assert_eq!(
        series.get(OTHER_SESSION_TYPE),
        Some(&((types - SESSION_TYPE_LABELS + 1) as u64)),
        "{series:#?}"
    );
    assert_eq!(series.values().sum::<u64>(), types as u64 + 2);
    assert_eq!(
        recorded.counter(&ops("upsert", "conflict")),
        types as u64 + 2
    );
    let last = format!("session_type=\"type-{:03}\"", types - 1);
    assert!(recorded.log.contains(&last), "no span with {last}");
}

#[tokio::test]
async fn local_store_session_type_labels_are_bounded() {
    let store = LocalStore::new();
    let recorded = recording(conflict_in_many_session_types(&store, 100)).await;
    assert_session_type_labels_are_bounded(&recorded, 100);
}

/// On a Redis store, and its clones, which share the labels.
async fn session_type_labels_are_bounded(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let store = RedisStore::connect(RedisStoreConfig::new(server.url(), test_key()))
        .await
        .unwrap();
    let recorded = recording(async {
        conflict_in_many_session_types(&store, 50).await;
        conflict_in_many_session_types(&store.clone(), 100).await;
    })
    .await;
    let prefix = format!("{LOCK_CONFLICTS_TOTAL}{{session_type=");
    assert_eq!(
        recorded
            .counters
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .count(),
        SESSION_TYPE_LABELS + 1,
        "{:#?}",
        recorded.counters
    );
    assert_eq!(
        recorded.counter(&format!("{prefix}type-000}}")),
        4,
        "{:#?}",
        recorded.counters
    );
    assert_eq!(
        recorded.counter(&format!("{prefix}{OTHER_SESSION_TYPE}}}")),
        (50 - SESSION_TYPE_LABELS + 1 + 100 - SESSION_TYPE_LABELS + 1) as u64
    );
}

macro_rules! on_both_servers {
    ($($name:ident),* $(,)?) => {
        mod redis8 {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(charon_sessions_testkit::Flavor::Redis).await;
                }
            )*
        }
        mod valkey9 {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(charon_sessions_testkit::Flavor::Valkey).await;
                }
            )*
        }
    };
}

on_both_servers!(
    redis_store_operations_are_traced_and_counted,
    replaced_connections_are_counted,
    evicted_sessions_are_counted,
    rejections_and_reregistrations_are_counted,
    user_ids_are_left_out_by_default,
    session_type_labels_are_bounded,
);
