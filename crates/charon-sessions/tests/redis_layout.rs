//! Redis-specific behaviour of `RedisStore`, checked on a real Redis 8 and a
//! real Valkey 9: the raw key/field layout and per-field expiry, the function
//! library and its re-registration, hostile stored values, validation before
//! I/O, one command per operation, key prefix, database, Unix socket, AUTH,
//! signing keys derived from a base secret. The connection model is in
//! `tests/connections.rs`.
//!
//! Every behaviour is one `async fn name(flavor: Flavor)` below;
//! `on_both_servers!` expands each into a `#[tokio::test]` in module `redis8`
//! and one in module `valkey9`. Raw commands go through a connection of the
//! test's own, never through the store.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use charon_sessions::signing::{self, SigningKey};
use charon_sessions::{RedisStore, RedisStoreConfig, Session, SessionStore, StoreError, codec};
use charon_sessions_testkit::{Flavor, TestServer, free_port};
use redis::aio::MultiplexedConnection;

use common::raw::{
    Captured, command_calls, data_command_calls, exists, function_flush, hexpiretime, hget,
    hgetall, hset, key_of, raw, raw_url,
};
use common::{HOUR, login, redis_store, test_key};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

on_both_servers!(
    raw_layout_is_two_fields_per_session,
    json_values_of_earlier_releases_are_read_and_rewritten,
    field_expiry_follows_refresh_expires_at,
    conflicting_upsert_changes_no_byte,
    delete_removes_both_fields_and_last_one_the_key,
    function_library_is_registered_and_restored,
    function_library_is_restored_with_wait_for_replicas,
    hostile_stored_values_are_absent,
    validation_happens_before_any_redis_call,
    one_command_per_operation,
    key_prefix_separates_stores,
    database_in_url_is_used,
    unix_socket_url_works,
    auth_password_is_used_and_never_shown,
    base_secret_keys_interoperate,
    rejection_warnings_never_show_the_value,
);

/// A started server, a store on it with the test key, and a raw connection.
async fn setup(flavor: Flavor) -> (TestServer, RedisStore, MultiplexedConnection) {
    let server = TestServer::start(flavor);
    let store = redis_store(&server).await;
    let conn = raw(&server).await;
    (server, store, conn)
}

/// The lock field of session `id`.
fn lock(id: &str) -> String {
    format!("l.{id}")
}

/// What changed between two command-count readings (commands with a
/// non-zero difference only).
fn calls_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(c, n)| {
            let d = n - before.get(c).copied().unwrap_or(0);
            (d > 0).then(|| (c.clone(), d))
        })
        .collect()
}

fn expected_calls(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(c, n)| (c.to_string(), *n)).collect()
}

/// Every string in a reply, in order (maps flattened key, value).
fn strings_in(value: &redis::Value, out: &mut Vec<String>) {
    use redis::Value;
    match value {
        Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => out.push(s.clone()),
        Value::VerbatimString { text, .. } => out.push(text.clone()),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|v| strings_in(v, out)),
        Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            strings_in(k, out);
            strings_in(v, out);
        }),
        _ => {}
    }
}

/// The names of the function libraries on the server (`FUNCTION LIST`).
async fn library_names(conn: &mut MultiplexedConnection) -> Vec<String> {
    let reply: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(conn)
        .await
        .expect("FUNCTION LIST");
    let mut strings = Vec::new();
    strings_in(&reply, &mut strings);
    strings
        .windows(2)
        .filter(|w| w[0] == "library_name")
        .map(|w| w[1].clone())
        .collect()
}

/// A session signed with `key` the way the store writes it.
fn signed(session: &Session, key: &SigningKey) -> Vec<u8> {
    signing::sign(&codec::encode(session), key)
}

/// The session in a stored value, verified with the test key: a payload
/// in the current format (first byte `codec::FORMAT_MSGPACK`), decoded.
fn stored_session(value: &[u8]) -> Session {
    let payload = signing::verify(value, &test_key()).expect("stored value verifies");
    assert_eq!(
        payload.first(),
        Some(&codec::FORMAT_MSGPACK),
        "payload in the current format"
    );
    codec::decode(payload).expect("payload decodes")
}

/// A login for `user` whose id is `id`.
fn login_with_id(user: &str, id: &str) -> Session {
    let mut s = login(user);
    s.id = id.to_owned();
    s
}

// ---------------------------------------------------------------------------
// Layout and expiry
// ---------------------------------------------------------------------------

/// A new session is exactly two hash fields, `<id>` (a signed session
/// with lock 1) and `l.<id>` = "1"; an update makes the lock field "2".
async fn raw_layout_is_two_fields_per_session(flavor: Flavor) {
    let (_server, store, mut conn) = setup(flavor).await;
    let key = key_of("alice", "full");
    let mut session = login("alice");
    store.upsert(&mut session).await.unwrap();
    assert_eq!(session.lock_version, 1);

    let fields = hgetall(&mut conn, &key).await;
    let names: BTreeSet<&[u8]> = fields.keys().map(Vec::as_slice).collect();
    let lock_field = lock(&session.id);
    let expected: BTreeSet<&[u8]> = [session.id.as_bytes(), lock_field.as_bytes()].into();
    assert_eq!(names, expected);
    let value = &fields[session.id.as_bytes()];
    assert!(
        value.starts_with(b"signed."),
        "value starts {:?}",
        &value[..7]
    );
    let stored = stored_session(value);
    assert_eq!(stored, session);
    assert_eq!(stored.lock_version, 1);
    assert_eq!(fields[lock(&session.id).as_bytes()], b"1");

    let mut read = store
        .get(&session.id, "alice", "full")
        .await
        .unwrap()
        .unwrap();
    read.rotate_refresh_token(HOUR);
    store.upsert(&mut read).await.unwrap();
    let fields = hgetall(&mut conn, &key).await;
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[lock(&session.id).as_bytes()], b"2");
    let stored = stored_session(&fields[session.id.as_bytes()]);
    assert_eq!(stored, read);
    assert_eq!(stored.lock_version, 2);
}

/// A session stored by an earlier release (a signed JSON payload, written
/// as its upsert did) is still returned by get and get_all after the
/// upgrade, and its next upsert rewrites it in the current format.
async fn json_values_of_earlier_releases_are_read_and_rewritten(flavor: Flavor) {
    let (_server, store, mut conn) = setup(flavor).await;
    let key = key_of("alice", "full");
    let mut old = login_with_id("alice", "fromjson");
    old.lock_version = 1;
    old.extra_payload
        .insert("ratio".into(), serde_json::json!(0.1 + 0.2));
    let json = common::legacy_json(&old);
    assert_eq!(json[0], b'{');
    redis::cmd("HSETEX")
        .arg(&key)
        .arg("EXAT")
        .arg(old.refresh_expires_at)
        .arg("FIELDS")
        .arg(2)
        .arg(&old.id)
        .arg(signing::sign(&json, &test_key()))
        .arg(lock(&old.id))
        .arg(1)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let mut read = store.get("fromjson", "alice", "full").await.unwrap();
    assert_eq!(read.as_ref(), Some(&old));
    assert_eq!(store.get_all("alice", "full").await.unwrap(), vec![old]);

    let read = read.as_mut().unwrap();
    read.rotate_refresh_token(HOUR);
    store.upsert(read).await.unwrap();
    let stored = stored_session(&hget(&mut conn, &key, "fromjson").await.unwrap());
    assert_eq!(&stored, read);
    assert_eq!(stored.lock_version, 2);
}

/// Both fields expire at refresh_expires_at (HEXPIRETIME), the key has no
/// TTL (EXPIRETIME -1), and a refresh moves both field expiries, later or
/// earlier.
async fn field_expiry_follows_refresh_expires_at(flavor: Flavor) {
    let (_server, store, mut conn) = setup(flavor).await;
    let key = key_of("alice", "full");
    let mut session = login("alice");
    store.upsert(&mut session).await.unwrap();
    let (id, lock_field) = (session.id.clone(), lock(&session.id));
    let fields = [id.as_str(), &lock_field];
    let at = session.refresh_expires_at;
    assert_eq!(hexpiretime(&mut conn, &key, &fields).await, vec![at, at]);
    let key_ttl: i64 = redis::cmd("EXPIRETIME")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(key_ttl, -1, "the key itself must have no TTL");

    for ttl in [2 * HOUR, HOUR / 2] {
        let before = session.refresh_expires_at;
        session.rotate_refresh_token(ttl);
        assert_ne!(session.refresh_expires_at, before, "the refresh moves it");
        store.upsert(&mut session).await.unwrap();
        let at = session.refresh_expires_at;
        assert_eq!(
            hexpiretime(&mut conn, &key, &fields).await,
            vec![at, at],
            "after a refresh to {ttl:?}"
        );
        let key_ttl: i64 = redis::cmd("EXPIRETIME")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(key_ttl, -1);
    }
}

/// A conflicting upsert (a stale create, then a stale update, each with a
/// different payload and refresh_expires_at) leaves the stored value bytes,
/// the lock field and both field expiries exactly as they were.
async fn conflicting_upsert_changes_no_byte(flavor: Flavor) {
    let (_server, store, mut conn) = setup(flavor).await;
    let key = key_of("alice", "full");
    let mut session = login("alice");
    let stale_create = session.clone();
    store.upsert(&mut session).await.unwrap();
    let stale_update = session.clone();
    session.rotate_refresh_token(HOUR);
    store.upsert(&mut session).await.unwrap();
    let fields = [session.id.as_str(), &lock(&session.id)];

    let snapshot = async |conn: &mut MultiplexedConnection| {
        (
            hgetall(conn, &key).await,
            hexpiretime(conn, &key, &fields).await,
        )
    };
    let before = snapshot(&mut conn).await;
    assert_eq!(before.0[lock(&session.id).as_bytes()], b"2");

    for mut stale in [stale_create, stale_update] {
        stale
            .extra_payload
            .insert("device".into(), serde_json::json!("attacker"));
        stale.refresh_expires_at += 1000;
        let lock_before = stale.lock_version;
        match store.upsert(&mut stale).await {
            Err(StoreError::Conflict) => {}
            other => panic!("expected Conflict for lock {lock_before}, got {other:?}"),
        }
        assert_eq!(stale.lock_version, lock_before);
        assert_eq!(
            snapshot(&mut conn).await,
            before,
            "stale lock {lock_before}"
        );
    }
}

/// Deleting one session removes both of its fields and keeps the other
/// session's two; deleting the last session removes the key.
async fn delete_removes_both_fields_and_last_one_the_key(flavor: Flavor) {
    let (_server, store, mut conn) = setup(flavor).await;
    let key = key_of("alice", "full");
    let mut a = login("alice");
    let mut b = login("alice");
    store.upsert(&mut a).await.unwrap();
    store.upsert(&mut b).await.unwrap();
    assert_eq!(hgetall(&mut conn, &key).await.len(), 4);
    let b_fields = hgetall(&mut conn, &key)
        .await
        .into_iter()
        .filter(|(f, _)| *f == b.id.as_bytes() || *f == lock(&b.id).as_bytes())
        .collect::<BTreeMap<_, _>>();

    store.delete(&a.id, "alice", "full").await.unwrap();
    assert_eq!(hgetall(&mut conn, &key).await, b_fields);
    assert_eq!(b_fields.len(), 2);

    store.delete(&b.id, "alice", "full").await.unwrap();
    assert!(
        !exists(&mut conn, &key).await,
        "the key must go with its last session"
    );
    let dbsize: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    assert_eq!(dbsize, 0);
}

// ---------------------------------------------------------------------------
// Function library
// ---------------------------------------------------------------------------

/// The library `RedisStore::function_library_name()` is registered at
/// connect; after FUNCTION FLUSH or FUNCTION DELETE the next upsert loads it
/// again once (one FUNCTION LOAD, two FCALLs) and succeeds.
/// With `wait_for_replicas`, the `FCALL` travels in a pipeline with `WAIT`;
/// a lost library must still be recognised there, registered again and the
/// call retried. The server has no replica, so the retried upsert is applied
/// and then reported as `ReplicationTimeout` (0 of 1 replicas), not as a
/// server error.
async fn function_library_is_restored_with_wait_for_replicas(flavor: Flavor) {
    let (server, _, mut conn) = setup(flavor).await;
    let store = RedisStore::connect(
        RedisStoreConfig::new(server.url(), test_key())
            .wait_for_replicas(1, std::time::Duration::from_millis(50)),
    )
    .await
    .unwrap();
    function_flush(&mut conn).await;

    let before = command_calls(&mut conn).await;
    let mut session = login("alice");
    let err = store.upsert(&mut session).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::ReplicationTimeout {
                acknowledged: 0,
                required: 1
            }
        ),
        "{err:?}"
    );
    let delta = calls_delta(&before, &command_calls(&mut conn).await);
    assert_eq!(delta.get("function|load"), Some(&1), "{delta:?}");
    assert_eq!(delta.get("fcall"), Some(&2), "{delta:?}");
    assert_eq!(
        library_names(&mut conn).await,
        vec![RedisStore::function_library_name().to_owned()]
    );
    let stored = store.get(&session.id, "alice", "full").await.unwrap();
    assert_eq!(stored.map(|s| s.lock_version), Some(1));
}

async fn function_library_is_registered_and_restored(flavor: Flavor) {
    let (_server, store, mut conn) = setup(flavor).await;
    let name = RedisStore::function_library_name();
    assert!(name.starts_with("charon_sessions_"), "{name}");
    assert_eq!(library_names(&mut conn).await, vec![name.to_owned()]);

    for how in ["FLUSH", "DELETE"] {
        let mut remove = redis::cmd("FUNCTION");
        remove.arg(how);
        if how == "DELETE" {
            remove.arg(name);
        }
        remove.query_async::<()>(&mut conn).await.unwrap();
        assert!(library_names(&mut conn).await.is_empty(), "after {how}");

        let before = command_calls(&mut conn).await;
        let mut session = login("alice");
        store
            .upsert(&mut session)
            .await
            .unwrap_or_else(|e| panic!("upsert after FUNCTION {how}: {e}"));
        let delta = calls_delta(&before, &command_calls(&mut conn).await);
        assert_eq!(
            delta.get("function|load"),
            Some(&1),
            "after {how}: {delta:?}"
        );
        assert_eq!(delta.get("fcall"), Some(&2), "after {how}: {delta:?}");
        assert_eq!(library_names(&mut conn).await, vec![name.to_owned()]);
        assert_eq!(
            store.get(&session.id, "alice", "full").await.unwrap(),
            Some(session.clone())
        );

        // Registered again: the next upsert is one FCALL, no load.
        let before = command_calls(&mut conn).await;
        session.rotate_refresh_token(HOUR);
        store.upsert(&mut session).await.unwrap();
        let delta = calls_delta(&before, &command_calls(&mut conn).await);
        assert_eq!(delta.get("function|load"), None, "{delta:?}");
        assert_eq!(delta.get("fcall"), Some(&1), "{delta:?}");
    }
}

// ---------------------------------------------------------------------------
// Hostile stored values
// ---------------------------------------------------------------------------

/// Values written behind the store's back (unsigned, garbage, other key,
/// bit flips, non-JSON, wrong id/user/type, expired, empty, non-UTF-8 field
/// names) are absent for `get` and skipped by `get_all`, which returns
/// exactly the genuine session without an error.
async fn hostile_stored_values_are_absent(flavor: Flavor) {
    let (_server, store, mut conn) = setup(flavor).await;
    let key = key_of("alice", "full");
    let good = test_key();

    let mut genuine = login("alice");
    store.upsert(&mut genuine).await.unwrap();

    let mut expired = login_with_id("alice", "expired");
    expired.created_at -= 7200;
    expired.refreshed_at -= 7200;
    expired.refresh_expires_at = Session::now() - 60;
    expired.lock_version = 1;
    // Field name -> value written with raw HSET.
    let mut hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "unsigned",
            codec::encode(&login_with_id("alice", "unsigned")),
        ),
        (
            "garbage",
            b"signed.\x00\x01garbage that is not a MAC".to_vec(),
        ),
        (
            "garbage64",
            b"signed_u64.!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!.{}".to_vec(),
        ),
        (
            "otherkey",
            signed(
                &login_with_id("alice", "otherkey"),
                &SigningKey::from_bytes(b"other").unwrap(),
            ),
        ),
        ("nonjson", signing::sign(b"not json at all", &good)),
        ("array", signing::sign(b"[\"alice\"]", &good)),
        (
            "idmismatch",
            signed(&login_with_id("alice", "someone-else"), &good),
        ),
        ("empty", Vec::new()),
        ("expired", signed(&expired, &good)),
    ];

    // Genuine values written by the store, then tampered with or moved.
    for (id, position) in [("flippedpayload", None), ("flippedmac", Some(10))] {
        let mut s = login_with_id("alice", id);
        store.upsert(&mut s).await.unwrap();
        let mut value = hget(&mut conn, &key, id).await.unwrap();
        // By default flip "laptop" to "maptop": still valid JSON, so only
        // the MAC can tell.
        let i = position.unwrap_or_else(|| value.windows(6).position(|w| w == b"laptop").unwrap());
        value[i] ^= 1;
        hostile.push((id, value));
    }
    let mut bobs = login_with_id("bob", "otheruser");
    store.upsert(&mut bobs).await.unwrap();
    let bobs_value = hget(&mut conn, &key_of("bob", "full"), "otheruser")
        .await
        .unwrap();
    hostile.push(("otheruser", bobs_value));
    let mut oauth = login_with_id("alice", "othertype");
    oauth.session_type = "oauth2".into();
    store.upsert(&mut oauth).await.unwrap();
    let oauth_value = hget(&mut conn, &key_of("alice", "oauth2"), "othertype")
        .await
        .unwrap();
    hostile.push(("othertype", oauth_value));

    for (field, value) in &hostile {
        hset(&mut conn, &key, field.as_bytes(), value).await;
    }
    // A non-UTF-8 field name holding a copy of the genuine value, and an
    // orphan lock field.
    let genuine_value = hget(&mut conn, &key, &genuine.id).await.unwrap();
    hset(&mut conn, &key, b"\xff\xfe\xfd", &genuine_value).await;
    hset(&mut conn, &key, b"l.orphan", b"7").await;

    for (field, _) in &hostile {
        assert_eq!(
            store.get(field, "alice", "full").await.unwrap(),
            None,
            "hostile field {field}"
        );
    }
    assert_eq!(
        store.get_all("alice", "full").await.unwrap(),
        vec![genuine.clone()]
    );
    assert_eq!(
        store.get(&genuine.id, "alice", "full").await.unwrap(),
        Some(genuine)
    );
    // The originals the copies came from are still fine where they belong.
    assert_eq!(
        store.get("otheruser", "bob", "full").await.unwrap(),
        Some(bobs)
    );
    assert_eq!(
        store.get("othertype", "alice", "oauth2").await.unwrap(),
        Some(oauth)
    );
}

/// Warnings about rejected stored values name the key but never contain
/// the value (neither its payload nor its refresh token id).
async fn rejection_warnings_never_show_the_value(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let store =
        RedisStore::connect(RedisStoreConfig::new(server.url(), test_key()).record_user_ids(true))
            .await
            .unwrap();
    let mut conn = raw(&server).await;
    let key = key_of("alice", "full");
    let mut victim = login_with_id("alice", "someone-else");
    victim
        .extra_payload
        .insert("secret".into(), serde_json::json!("payload-marker-4711"));
    let value = signed(
        &login_with_id("alice", "x"),
        &SigningKey::from_bytes(b"other").unwrap(),
    );
    hset(&mut conn, &key, b"otherkey", &value).await;
    hset(&mut conn, &key, b"wrongid", &signed(&victim, &test_key())).await;

    let captured = Captured::default();
    let subscriber = captured.subscriber();
    // The test body is polled on this thread, and so is the decoding.
    let guard = tracing::subscriber::set_default(subscriber);
    assert_eq!(store.get("otherkey", "alice", "full").await.unwrap(), None);
    assert_eq!(store.get("wrongid", "alice", "full").await.unwrap(), None);
    assert!(store.get_all("alice", "full").await.unwrap().is_empty());
    drop(guard);

    let log = captured.text();
    assert_eq!(log.matches("WARN").count(), 4, "{log}");
    assert!(log.contains(&key), "{log}");
    for secret in [
        "payload-marker-4711",
        victim.refresh_token_id.as_str(),
        "signed.",
    ] {
        assert!(!log.contains(secret), "log shows {secret:?}: {log}");
    }
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

/// Invalid input (bad session id, empty user id, type with '.') is refused
/// by every operation with InvalidInput, and not one command reaches the
/// server.
async fn validation_happens_before_any_redis_call(flavor: Flavor) {
    let (_server, store, mut conn) = setup(flavor).await;
    let before = data_command_calls(&mut conn).await;

    let mut results: Vec<(String, Result<(), StoreError>)> = Vec::new();
    for (sid, user, kind) in [
        ("bad.id", "alice", "full"),
        ("good", "", "full"),
        ("good", "alice", "full.x"),
    ] {
        let at = format!("({sid:?}, {user:?}, {kind:?})");
        let r = store.get(sid, user, kind).await.map(|_| ());
        results.push((format!("get {at}"), r));
        let r = store.delete(sid, user, kind).await;
        results.push((format!("delete {at}"), r));
        let mut s = login("alice");
        s.id = sid.to_owned();
        s.user_id = user.to_owned();
        s.session_type = kind.to_owned();
        let r = store.upsert(&mut s).await;
        results.push((format!("upsert {at}"), r));
    }
    for (user, kind) in [("", "full"), ("alice", "full.x")] {
        let at = format!("({user:?}, {kind:?})");
        let r = store.get_all(user, kind).await.map(|_| ());
        results.push((format!("get_all {at}"), r));
        let r = store.delete_all(user, kind).await;
        results.push((format!("delete_all {at}"), r));
    }
    for (call, result) in &results {
        assert!(
            matches!(result, Err(StoreError::InvalidInput(_))),
            "{call}: expected InvalidInput, got {result:?}"
        );
    }

    let delta = calls_delta(&before, &data_command_calls(&mut conn).await);
    assert_eq!(delta, BTreeMap::new(), "commands sent for invalid input");
    // The same reading does see a valid call: the check can fail.
    let before = data_command_calls(&mut conn).await;
    store.get("good", "alice", "full").await.unwrap();
    let delta = calls_delta(&before, &data_command_calls(&mut conn).await);
    assert_eq!(delta, expected_calls(&[("hget", 1)]));
}

/// Each operation is exactly one command: N gets are N HGETs, N upserts N
/// FCALLs, N deletes N HDELs, N get_alls N HGETALLs, N delete_alls N DELs,
/// and no other data command reaches the server. (Commands a function runs
/// inside FCALL are counted by the server too: one HGET and one HSETEX per
/// upsert, and one HLEN per created session for the session limit, far
/// below the limit; no round trip of their own.)
async fn one_command_per_operation(flavor: Flavor) {
    const N: u64 = 20;
    let (_server, store, mut conn) = setup(flavor).await;
    let mut sessions = Vec::new();
    for _ in 0..N {
        sessions.push(login("alice"));
    }

    let before = data_command_calls(&mut conn).await;
    for s in &mut sessions {
        store.upsert(s).await.unwrap();
    }
    let after = data_command_calls(&mut conn).await;
    assert_eq!(
        calls_delta(&before, &after),
        expected_calls(&[("fcall", N), ("hget", N), ("hlen", N), ("hsetex", N)]),
        "upsert"
    );

    let before = after;
    for s in &sessions {
        assert!(store.get(&s.id, "alice", "full").await.unwrap().is_some());
    }
    let after = data_command_calls(&mut conn).await;
    assert_eq!(
        calls_delta(&before, &after),
        expected_calls(&[("hget", N)]),
        "get"
    );

    let before = after;
    for _ in 0..N {
        assert_eq!(
            store.get_all("alice", "full").await.unwrap().len(),
            N as usize
        );
    }
    let after = data_command_calls(&mut conn).await;
    assert_eq!(
        calls_delta(&before, &after),
        expected_calls(&[("hgetall", N)]),
        "get_all"
    );

    let before = after;
    for s in &sessions {
        store.delete(&s.id, "alice", "full").await.unwrap();
    }
    let after = data_command_calls(&mut conn).await;
    assert_eq!(
        calls_delta(&before, &after),
        expected_calls(&[("hdel", N)]),
        "delete"
    );

    let before = after;
    for i in 0..N {
        store.delete_all(&format!("user{i}"), "full").await.unwrap();
    }
    let after = data_command_calls(&mut conn).await;
    assert_eq!(
        calls_delta(&before, &after),
        expected_calls(&[("del", N)]),
        "delete_all"
    );
}

// ---------------------------------------------------------------------------
// Addressing the server
// ---------------------------------------------------------------------------

/// A store with key prefix "myapp" writes `myapp.alice.full`; stores with
/// different prefixes on one server never see each other's sessions, and
/// delete_all on one leaves the other's.
async fn key_prefix_separates_stores(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let mut conn = raw(&server).await;
    let myapp =
        RedisStore::connect(RedisStoreConfig::new(server.url(), test_key()).key_prefix("myapp"))
            .await
            .unwrap();
    let default = redis_store(&server).await;

    let mut mine = login("alice");
    myapp.upsert(&mut mine).await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, vec!["myapp.alice.full".to_owned()]);
    let fields = hgetall(&mut conn, "myapp.alice.full").await;
    assert_eq!(fields.len(), 2);
    assert_eq!(fields[lock(&mine.id).as_bytes()], b"1");

    let mut theirs = login("alice");
    default.upsert(&mut theirs).await.unwrap();
    assert!(exists(&mut conn, "charon_.alice.full").await);
    assert_eq!(
        myapp.get_all("alice", "full").await.unwrap(),
        vec![mine.clone()]
    );
    assert_eq!(
        default.get_all("alice", "full").await.unwrap(),
        vec![theirs.clone()]
    );
    assert_eq!(default.get(&mine.id, "alice", "full").await.unwrap(), None);
    assert_eq!(myapp.get(&theirs.id, "alice", "full").await.unwrap(), None);

    myapp.delete_all("alice", "full").await.unwrap();
    assert!(!exists(&mut conn, "myapp.alice.full").await);
    assert!(myapp.get_all("alice", "full").await.unwrap().is_empty());
    assert_eq!(
        default.get_all("alice", "full").await.unwrap(),
        vec![theirs]
    );
}

/// A store on `redis://…/3` writes into database 3; database 0 stays empty.
async fn database_in_url_is_used(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let store = RedisStore::connect(RedisStoreConfig::new(
        format!("{}/3", server.url()),
        test_key(),
    ))
    .await
    .unwrap();
    let mut session = login("alice");
    store.upsert(&mut session).await.unwrap();
    assert_eq!(
        store.get(&session.id, "alice", "full").await.unwrap(),
        Some(session.clone())
    );

    let mut db0 = raw(&server).await;
    let size0: i64 = redis::cmd("DBSIZE").query_async(&mut db0).await.unwrap();
    assert_eq!(size0, 0, "database 0 must stay empty");

    let mut db3 = raw(&server).await;
    redis::cmd("SELECT")
        .arg(3)
        .query_async::<()>(&mut db3)
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut db3)
        .await
        .unwrap();
    assert_eq!(keys, vec![key_of("alice", "full")]);
    let fields = hgetall(&mut db3, &key_of("alice", "full")).await;
    assert_eq!(fields[lock(&session.id).as_bytes()], b"1");
    assert_eq!(
        stored_session(&fields[session.id.as_bytes()]).id,
        session.id
    );
}

/// A store reaches a server over a Unix socket with `redis+unix://<path>`.
async fn unix_socket_url_works(flavor: Flavor) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.sock");
    let path = path.to_str().unwrap();
    let server = TestServer::start_with(flavor, &["--unixsocket", path, "--unixsocketperm", "700"]);
    let url = format!("redis+unix://{path}");
    let store = RedisStore::connect(RedisStoreConfig::new(url.as_str(), test_key()).pool_size(2))
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}\n{}", server.log()));
    let mut session = login("alice");
    store.upsert(&mut session).await.unwrap();
    assert_eq!(
        store.get(&session.id, "alice", "full").await.unwrap(),
        Some(session.clone())
    );
    // It went through the socket to this very server.
    let mut conn = raw_url(&url).await;
    assert!(exists(&mut conn, &key_of("alice", "full")).await);
    // The pool's two connections and this one are Unix-socket clients
    // (flag U).
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let on_socket = clients
        .lines()
        .filter(|l| {
            l.split(' ')
                .any(|kv| kv.strip_prefix("flags=").is_some_and(|f| f.contains('U')))
        })
        .count();
    assert!(on_socket >= 3, "{clients}");
}

/// With `--requirepass`, the password in the URL works; a wrong or missing
/// password fails at connect with Connection/Server and the error never
/// shows the password; an unreachable port fails with Connection at once.
async fn auth_password_is_used_and_never_shown(flavor: Flavor) {
    let server = TestServer::start_with(flavor, &["--requirepass", "s3cret"]);
    let port = server.port();
    let store = RedisStore::connect(RedisStoreConfig::new(
        format!("redis://:s3cret@127.0.0.1:{port}"),
        test_key(),
    ))
    .await
    .unwrap_or_else(|e| panic!("connect with the password: {e}"));
    let mut session = login("alice");
    store.upsert(&mut session).await.unwrap();
    assert!(
        store
            .get(&session.id, "alice", "full")
            .await
            .unwrap()
            .is_some()
    );

    for url in [
        format!("redis://:wr0ng-passw0rd@127.0.0.1:{port}"),
        format!("redis://default:wr0ng-passw0rd@127.0.0.1:{port}/0"),
        format!("redis://127.0.0.1:{port}"),
    ] {
        let err = RedisStore::connect(RedisStoreConfig::new(url.as_str(), test_key()))
            .await
            .expect_err("a wrong password must fail");
        assert!(matches!(err, StoreError::Auth(_)), "{url}: {err:?}");
        assert!(!err.is_unavailable(), "{url}: retrying will not help");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("wr0ng-passw0rd"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    let nobody = free_port();
    let started = Instant::now();
    let err = RedisStore::connect(RedisStoreConfig::new(
        format!("redis://127.0.0.1:{nobody}"),
        test_key(),
    ))
    .await
    .expect_err("nothing listens there");
    assert!(matches!(err, StoreError::Connection(_)), "{err:?}");
    assert!(err.is_unavailable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Stores whose keys come from the same base secret read each other's
/// sessions; a store with another base secret sees none of them.
async fn base_secret_keys_interoperate(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let store_with = async |secret: &[u8]| {
        RedisStore::connect(RedisStoreConfig::new(
            server.url(),
            SigningKey::from_base_secret(secret).unwrap(),
        ))
        .await
        .unwrap()
    };
    let a = store_with(b"shared secret").await;
    let b = store_with(b"shared secret").await;
    let other = store_with(b"another secret").await;

    let mut session = login("alice");
    a.upsert(&mut session).await.unwrap();
    let mut read = b.get(&session.id, "alice", "full").await.unwrap().unwrap();
    assert_eq!(read, session);
    read.rotate_refresh_token(HOUR);
    b.upsert(&mut read).await.unwrap();
    assert_eq!(
        a.get_all("alice", "full").await.unwrap(),
        vec![read.clone()]
    );

    assert_eq!(other.get(&session.id, "alice", "full").await.unwrap(), None);
    assert!(other.get_all("alice", "full").await.unwrap().is_empty());
}
