//! Bytes per session in Redis of the compact payload format against the JSON
//! of earlier releases, on a real Redis 8: one hash of 1 000 typical sessions
//! (`tests/common/typical.rs`: 200-byte `extra_payload`), each signed and
//! written as the store writes it (`HSETEX key EXAT <refresh_expires_at>
//! FIELDS 2 <id> <signed value> l.<id> <lock>`), measured with
//! `MEMORY USAGE <key> SAMPLES 0` and divided by 1 000.
//!
//! Prints one `FIGURES` line per encoding. Asserts only what must hold:
//! every encoding round-trips through Redis, the store's own encoding
//! round-trips through the store, and the store's encoding is not larger
//! than JSON.

mod common;

use charon_sessions::signing::{self, SigningKey};
use charon_sessions::{Session, SessionLimit, SessionStore, codec};
use charon_sessions_testkit::{Flavor, TestServer};
use redis::aio::MultiplexedConnection;

use common::raw::{hgetall, key_of, raw};
use common::{redis_store_with_limit, test_key, typical};

/// Sessions in the measured hash.
const SESSIONS: usize = 1_000;

/// One way to turn a session into the payload that gets signed, and back.
struct Encoding {
    name: &'static str,
    encode: fn(&Session) -> Vec<u8>,
    decode: fn(&[u8]) -> Option<Session>,
}

const ENCODINGS: &[Encoding] = &[
    Encoding {
        name: "json",
        encode: common::legacy_json,
        decode: |b| codec::decode(b).ok(),
    },
    Encoding {
        name: "codec",
        encode: codec::encode,
        decode: |b| codec::decode(b).ok(),
    },
];

/// `SESSIONS` typical sessions of `user` as an upsert stores them (lock
/// version 1).
fn sessions(user: &str) -> Vec<Session> {
    let now = Session::now();
    (0..SESSIONS)
        .map(|_| {
            let mut s = typical::session(user, now);
            s.lock_version = 1;
            s
        })
        .collect()
}

/// Writes `sessions` in `encoding`, signed with `key`, exactly as the upsert
/// function does (`HSETEX … EXAT … FIELDS 2`), in one pipeline.
async fn write(
    conn: &mut MultiplexedConnection,
    key: &str,
    sessions: &[Session],
    encoding: &Encoding,
    signing_key: &SigningKey,
) -> usize {
    let mut pipe = redis::pipe();
    let mut payload_bytes = 0;
    for s in sessions {
        let payload = (encoding.encode)(s);
        payload_bytes += payload.len();
        pipe.cmd("HSETEX")
            .arg(key)
            .arg("EXAT")
            .arg(s.refresh_expires_at)
            .arg("FIELDS")
            .arg(2)
            .arg(&s.id)
            .arg(signing::sign(&payload, signing_key))
            .arg(format!("l.{}", s.id))
            .arg(s.lock_version)
            .ignore();
    }
    pipe.query_async::<()>(conn).await.expect("HSETEX pipeline");
    payload_bytes / sessions.len()
}

/// `MEMORY USAGE key SAMPLES 0` (every field counted).
async fn memory_usage(conn: &mut MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(conn)
        .await
        .expect("MEMORY USAGE")
}

async fn hash_encoding(conn: &mut MultiplexedConnection, key: &str) -> String {
    redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(key)
        .query_async(conn)
        .await
        .expect("OBJECT ENCODING")
}

/// Sorted by id, for comparing sets of sessions.
fn by_id(mut sessions: Vec<Session>) -> Vec<Session> {
    sessions.sort_by(|a, b| a.id.cmp(&b.id));
    sessions
}

/// Memory per session of one hash of 1 000 typical sessions, for JSON,
/// MessagePack with field names, positional MessagePack and the codec the
/// store uses; the last also written through `RedisStore::upsert` itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_per_session_in_redis() {
    let server = TestServer::start(Flavor::Redis);
    let mut conn = raw(&server).await;
    let signing_key = test_key();
    let mut per_session = Vec::new();

    for (i, encoding) in ENCODINGS.iter().enumerate() {
        // Users of one length, so that every hash holds records of one size.
        let user = format!("user-{i}@example.com");
        let key = key_of(&user, "full");
        let written = sessions(&user);
        let payload = write(&mut conn, &key, &written, encoding, &signing_key).await;
        let bytes = memory_usage(&mut conn, &key).await;

        // Round trip through Redis: every value verifies and decodes to the
        // session written.
        let fields = hgetall(&mut conn, &key).await;
        assert_eq!(fields.len(), 2 * SESSIONS, "{}", encoding.name);
        let read: Vec<Session> = fields
            .iter()
            .filter(|(field, _)| !charon_sessions::layout::is_lock_field(field))
            .map(|(_, value)| {
                let payload = signing::verify(value, &signing_key).expect("verifies");
                (encoding.decode)(payload)
                    .unwrap_or_else(|| panic!("{} payload decodes", encoding.name))
            })
            .collect();
        assert_eq!(by_id(read), by_id(written), "{}", encoding.name);

        println!(
            "FIGURES encoding::bytes_per_session [redis8] {}: {} bytes/session \
             (MEMORY USAGE {bytes} / {SESSIONS}; payload {payload} bytes, signed {} bytes; \
             hash encoding {})",
            encoding.name,
            bytes / SESSIONS as u64,
            payload + signing::SIGNED_PREFIX.len() + signing::MAC_LEN + 1,
            hash_encoding(&mut conn, &key).await,
        );
        per_session.push((encoding.name, bytes / SESSIONS as u64));
    }

    // The same through the store itself: upsert writes, get_all reads back
    // (one user with more sessions than the default limit keeps).
    let store = redis_store_with_limit(&server, SessionLimit::Unlimited).await;
    let user = "user-s@example.com";
    let key = key_of(user, "full");
    let mut written = sessions(user);
    for s in &mut written {
        s.lock_version = 0;
        store.upsert(s).await.expect("upsert");
    }
    let bytes = memory_usage(&mut conn, &key).await;
    let read = store.get_all(user, "full").await.expect("get_all");
    assert_eq!(by_id(read), by_id(written), "round trip through the store");
    println!(
        "FIGURES encoding::bytes_per_session [redis8] store (RedisStore::upsert): \
         {} bytes/session (MEMORY USAGE {bytes} / {SESSIONS})",
        bytes / SESSIONS as u64
    );

    let json = per_session[0].1;
    assert!(
        bytes / SESSIONS as u64 <= json,
        "the store's encoding takes {} bytes/session, JSON {json}",
        bytes / SESSIONS as u64
    );
}
