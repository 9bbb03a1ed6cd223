//! Size limits: a session over the limit (the default 64 KiB, or a
//! configured one) is refused before any Redis call, and one exactly at it
//! is stored.

use charon_sessions::signing;
use charon_sessions::{RedisStore, RedisStoreConfig, Session, SessionStore, StoreError, codec};
use charon_sessions_testkit::{Flavor, TestServer};
use serde_json::json;

use crate::common::raw::{data_command_calls, hget, key_of, raw};
use crate::common::{login, redis_store, test_key};

/// The payload a store signs for `session`, with the lock version the
/// upsert will write, in the compact format.
fn encoded_for_upsert(session: &Session) -> Vec<u8> {
    let mut stored = session.clone();
    stored.lock_version += 1;
    codec::encode(&stored)
}

/// Pads `session`'s extra_payload so that its upsert payload is exactly
/// `target` bytes.
fn pad_to(session: &mut Session, target: usize) {
    if encoded_for_upsert(session).len() == target {
        return;
    }
    session.extra_payload.insert("pad".into(), json!(""));
    let base = encoded_for_upsert(session).len();
    assert!(target >= base, "{target} < {base}");
    // A MessagePack string header grows (1, 2, 3 or 5 bytes) with the
    // string: some totals need a slightly shorter pad plus a small second
    // entry.
    let guess = target - base;
    for n in (guess.saturating_sub(8)..=guess).rev() {
        for q in 0..4 {
            session
                .extra_payload
                .insert("pad".into(), json!("x".repeat(n)));
            if q == 0 {
                session.extra_payload.remove("q");
            } else {
                session
                    .extra_payload
                    .insert("q".into(), json!("y".repeat(q - 1)));
            }
            if encoded_for_upsert(session).len() == target {
                return;
            }
        }
    }
    panic!("cannot pad a session to exactly {target} bytes");
}

fn assert_too_big(result: Result<(), StoreError>, what: &str) {
    match result {
        Err(StoreError::InvalidInput(msg)) => {
            assert!(msg.contains("max_session_size"), "{what}: {msg}")
        }
        other => panic!("{what}: expected InvalidInput(max_session_size), got {other:?}"),
    }
}

/// Upserts, on `store`, one new session of user `user` padded to each of
/// `sizes` (encoded bytes) and returns how many were accepted and refused;
/// a refusal must be InvalidInput naming max_session_size and must leave
/// the caller's lock version and the store untouched.
async fn try_sizes(
    store: &dyn SessionStore,
    user: &str,
    sizes: &[usize],
    max: usize,
) -> (u64, u64) {
    let (mut accepted, mut refused) = (0, 0);
    for &size in sizes {
        let mut s = login(user);
        pad_to(&mut s, size);
        let result = store.upsert(&mut s).await;
        if size <= max {
            result.unwrap_or_else(|e| panic!("{size} bytes (max {max}): {e}"));
            assert_eq!(store.get(&s.id, user, "full").await.unwrap(), Some(s));
            accepted += 1;
        } else {
            assert_too_big(result, &format!("{size} bytes (max {max})"));
            assert_eq!(s.lock_version, 0, "{size} bytes: lock untouched");
            assert_eq!(store.get(&s.id, user, "full").await.unwrap(), None);
            refused += 1;
        }
    }
    (accepted, refused)
}

/// With the default limit (64 KiB) a session encoding to exactly 65 536
/// bytes is stored and sessions of 65 537 bytes and 1 MB are refused with
/// InvalidInput, on LocalStore and on Redis 8; on Redis before any call
/// (INFO commandstats shows no FCALL nor any other data command), and an
/// update that grows a stored session past the limit is refused too,
/// leaving the stored session as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_session_is_refused_before_any_redis_call() {
    const MAX: usize = 64 * 1024;
    const SIZES: [usize; 4] = [1024, MAX, MAX + 1, 1_000_000];

    let local = charon_sessions::LocalStore::new();
    let (accepted, refused) = try_sizes(&local, "big", &SIZES, MAX).await;
    eprintln!(
        "FIGURE hostile::oversized_session_is_refused [local]: max {MAX}: tried={} \
         accepted={accepted} (1 KiB, exactly 64 KiB) refused={refused} (64 KiB + 1, 1 MB) wrong=0",
        SIZES.len()
    );

    let server = TestServer::start(Flavor::Redis);
    let store = redis_store(&server).await;
    let mut conn = raw(&server).await;
    let (mut tried, mut accepted, mut refused) = (0, 0, 0);

    let mut at_limit = login("big");
    pad_to(&mut at_limit, MAX);
    tried += 1;
    store.upsert(&mut at_limit).await.unwrap();
    accepted += 1;
    let value = hget(&mut conn, &key_of("big", "full"), &at_limit.id)
        .await
        .expect("stored");
    assert_eq!(
        value.len(),
        signing::SIGNED_PREFIX.len() + signing::MAC_LEN + 1 + MAX,
        "the limit counts the encoded session, before signing"
    );

    let mut over = login("big");
    pad_to(&mut over, MAX + 1);
    let mut huge = login("big");
    pad_to(&mut huge, 1_000_000);
    let mut grown = at_limit.clone();
    pad_to(&mut grown, MAX + 1);

    let before = data_command_calls(&mut conn).await;
    for (what, session) in [
        ("65 537 bytes", &mut over),
        ("1 MB", &mut huge),
        ("update grown past the limit", &mut grown),
    ] {
        let lock = session.lock_version;
        tried += 1;
        assert_too_big(store.upsert(session).await, what);
        refused += 1;
        assert_eq!(session.lock_version, lock, "{what}: lock untouched");
    }
    let after = data_command_calls(&mut conn).await;
    assert_eq!(
        before.get("fcall"),
        after.get("fcall"),
        "FCALL sent for an oversized session"
    );
    assert_eq!(before, after, "data commands sent for oversized sessions");

    assert_eq!(store.get(&over.id, "big", "full").await.unwrap(), None);
    assert_eq!(store.get(&huge.id, "big", "full").await.unwrap(), None);
    assert_eq!(
        store.get(&at_limit.id, "big", "full").await.unwrap(),
        Some(at_limit)
    );
    eprintln!(
        "FIGURE hostile::oversized_session_is_refused [redis8]: max {MAX}: tried={tried} \
         accepted={accepted} (exactly 64 KiB) refused={refused} (64 KiB + 1, 1 MB, grown update) \
         redis_commands_for_refused=0 wrong=0"
    );
}

/// With a limit of 1024 bytes (`.max_session_size(1024)` on Redis 8,
/// `LocalStore::with_max_session_size(1024)`) a small session and one of
/// exactly 1024 bytes are stored; 1025 bytes and 2 KB are refused with
/// InvalidInput, on Redis without sending any command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_max_session_size_is_enforced() {
    const MAX: usize = 1024;
    let small = encoded_for_upsert(&login("small")).len();
    let sizes = [small, MAX, MAX + 1, 2048];

    let local = charon_sessions::LocalStore::with_max_session_size(MAX);
    let (accepted, refused) = try_sizes(&local, "small", &sizes, MAX).await;
    eprintln!(
        "FIGURE hostile::configured_max_session_size [local]: max {MAX}: tried={} \
         accepted={accepted} ({small} B, 1024 B) refused={refused} (1025 B, 2048 B) wrong=0",
        sizes.len()
    );

    let server = TestServer::start(Flavor::Redis);
    let store =
        RedisStore::connect(RedisStoreConfig::new(server.url(), test_key()).max_session_size(MAX))
            .await
            .unwrap();
    let mut conn = raw(&server).await;
    let (accepted, _) = try_sizes(&store, "small", &sizes[..2], MAX).await;
    let before = data_command_calls(&mut conn).await;
    let mut refused = 0;
    for size in &sizes[2..] {
        let mut s = login("small");
        pad_to(&mut s, *size);
        assert_too_big(store.upsert(&mut s).await, &format!("{size} bytes"));
        refused += 1;
    }
    assert_eq!(
        before,
        data_command_calls(&mut conn).await,
        "commands sent for refused sessions"
    );
    assert_eq!(store.get_all("small", "full").await.unwrap().len(), 2);
    eprintln!(
        "FIGURE hostile::configured_max_session_size [redis8]: max {MAX}: tried={} \
         accepted={accepted} ({small} B, 1024 B) refused={refused} (1025 B, 2048 B) \
         redis_commands_for_refused=0 wrong=0",
        sizes.len()
    );
}
