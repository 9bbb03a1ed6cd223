//! `RedisStore`'s raw access for tools (`run_command`, `upsert_command`),
//! on a real Redis 8: the prepared `FCALL` writes exactly what `upsert`
//! writes, keeps the lock check, and `run_command` runs on the store's pool.

mod common;

use charon_sessions::{RedisStore, SessionStore, StoreError, UpsertCommand};
use charon_sessions_testkit::{Flavor, TestServer};

use common::{login, redis_store};

async fn hget(store: &RedisStore, key: &str, field: &str) -> Option<Vec<u8>> {
    let mut cmd = redis::cmd("HGET");
    cmd.arg(key).arg(field);
    store.run_command(&cmd).await.unwrap()
}

/// A replayed upsert command stores the same bytes as `upsert`, the store
/// reads it back, and only the lock version arguments decide whether it is
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_command_replays_the_store_upsert() {
    let server = TestServer::start(Flavor::Redis);
    let store = redis_store(&server).await;

    // The same session through upsert and through the prepared command.
    let session = login("alice");
    let prepared = store.upsert_command(&session).unwrap().expect("not dead");
    assert_eq!(prepared.key(), "charon_.alice.full");
    assert!(UpsertCommand::function_name().starts_with("charon_sessions_upsert_"));
    let mut stored = session.clone();
    store.upsert(&mut stored).await.unwrap();
    let by_store = hget(&store, prepared.key(), &session.id).await.unwrap();
    store.delete(&session.id, "alice", "full").await.unwrap();
    let written: i64 = store.run_command(&prepared.cmd(1)).await.unwrap();
    assert_eq!(written, 1);
    let by_command = hget(&store, prepared.key(), &session.id).await.unwrap();
    assert_eq!(by_command, by_store, "the same signed value");
    let read = store.get(&session.id, "alice", "full").await.unwrap();
    assert_eq!(read.map(|s| s.lock_version), Some(1));

    // The lock check still runs: a stale version is refused, the next one
    // written.
    let stale: i64 = store.run_command(&prepared.cmd(1)).await.unwrap();
    assert_eq!(stale, 0);
    let next: i64 = store.run_command(&prepared.cmd(2)).await.unwrap();
    assert_eq!(next, 1);
    let lock = hget(&store, prepared.key(), &format!("l.{}", session.id)).await;
    assert_eq!(lock.as_deref(), Some(&b"2"[..]));

    // A moved expiry: both fields get it, the value stays the prepared one.
    let later = session.refresh_expires_at + 3600;
    let moved: i64 = store
        .run_command(&prepared.cmd_expiring_at(3, later))
        .await
        .unwrap();
    assert_eq!(moved, 1);
    let mut expiry = redis::cmd("HEXPIRETIME");
    expiry
        .arg(prepared.key())
        .arg("FIELDS")
        .arg(2)
        .arg(&session.id)
        .arg(format!("l.{}", session.id));
    let times: Vec<i64> = store.run_command(&expiry).await.unwrap();
    assert_eq!(times, [later, later]);
    let value = hget(&store, prepared.key(), &session.id).await.unwrap();
    assert_eq!(value, by_store, "the prepared value");

    // Debug never shows the signed value.
    let shown = format!("{prepared:?}");
    assert!(
        shown.contains("<redacted>") && !shown.contains("signed."),
        "{shown}"
    );
}

/// A dead session has no command, as upsert writes nothing; an error reply
/// of `run_command` is a `StoreError::Server`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_sessions_and_error_replies() {
    let server = TestServer::start(Flavor::Redis);
    let store = redis_store(&server).await;
    let mut dead = login("bob");
    dead.refresh_expires_at = dead.refreshed_at - 1;
    assert!(store.upsert_command(&dead).unwrap().is_none());

    let result: Result<(), StoreError> = store.run_command(&redis::cmd("NO-SUCH-COMMAND")).await;
    assert!(matches!(result, Err(StoreError::Server(_))), "{result:?}");
}
