//! Hostile input, against real servers: arbitrary and tampered signed values
//! (property tests with `proptest`, the stored ones through a real Redis 8),
//! oversized sessions and a user with 10 000 sessions, and user ids built to
//! steer keys into other users' hashes.
//!
//! Each test prints one `FIGURE` line (operations tried, succeeded or
//! accepted, refused or conflicting, wrong results) for RELIABILITY.md;
//! wrong results are asserted to be 0. Property tests run their strategy
//! with a `proptest` `TestRunner` inside a tokio test, so that the cases can
//! drive a real server; no failure files are written.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use charon_sessions::signing::{self, SigningKey};
use charon_sessions::{
    MapKeys, PayloadFormat, RedisStore, RedisStoreConfig, Session, SessionLimit, SessionStore,
    StoreError, codec, layout, stored,
};
use charon_sessions_testkit::{Flavor, TestServer};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};

use common::raw::{data_command_calls, exists, hget, hgetall, key_of, raw};
use common::{HOUR, login, redis_store, redis_store_with_limit, test_key};

on_both_servers!(
    /// get_all of a user with 10 000 sessions returns all 10 000.
    get_all_returns_ten_thousand_sessions,
    /// User ids full of separators, glob and hash-tag characters, control
    /// characters and look-alikes each get their own key; nobody sees or
    /// deletes another user's sessions.
    keys_cannot_be_steered,
);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A proptest runner running `cases` cases, writing no failure files.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 512,
        ..Config::default()
    })
}

/// Empties the server's data (not its functions): each proptest case, and
/// each shrinking step, starts from nothing.
async fn flushall(conn: &mut MultiplexedConnection) {
    redis::cmd("FLUSHALL")
        .query_async::<()>(conn)
        .await
        .expect("FLUSHALL");
}

/// Every key on the server (`KEYS *`; the test servers are small).
async fn all_keys(conn: &mut MultiplexedConnection) -> BTreeSet<Vec<u8>> {
    redis::cmd("KEYS")
        .arg("*")
        .query_async(conn)
        .await
        .expect("KEYS")
}

/// Runs `fut` to completion from inside a proptest case (a synchronous
/// closure) on the test's multi-threaded runtime.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(fut))
}

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

/// Charon's url-safe variant of a value signed by [`signing::sign`]:
/// `signed_u64.` ++ base64url(MAC) ++ `.` ++ payload.
fn to_base64_variant(signed: &[u8]) -> Vec<u8> {
    let (mac, rest) = signed[signing::SIGNED_PREFIX.len()..].split_at(signing::MAC_LEN);
    let mut out = signing::SIGNED_BASE64_PREFIX.to_vec();
    out.extend_from_slice(URL_SAFE_NO_PAD.encode(mac).as_bytes());
    out.extend_from_slice(rest);
    out
}

/// Arbitrary user ids: awkward fixed ones, and any characters (control
/// characters and NUL included), 1 to 24 of them.
fn user_id() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => prop::sample::select(vec![
            "alice", "a.b", "l.", ".", "{x}", "*", "a b", "new\nline", "\r\n", "\0",
            "Ærøskøbing", "用户", "alice.full",
        ])
        .prop_map(str::to_owned),
        2 => vec(any::<char>(), 1..24).prop_map(String::from_iter),
    ]
}

/// Arbitrary JSON values, nested a few levels, with object keys that are
/// often the names of session fields.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(json_key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const SESSION_FIELDS: [&str; 13] = [
    "id",
    "user_id",
    "session_type",
    "created_at",
    "expires_at",
    "refresh_expires_at",
    "refreshed_at",
    "refresh_token_id",
    "tokens_fresh_from",
    "prev_tokens_fresh_from",
    "lock_version",
    "extra_payload",
    "version",
];

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(SESSION_FIELDS.to_vec()).prop_map(str::to_owned),
        any::<String>(),
    ]
}

// ---------------------------------------------------------------------------
// Signing: arbitrary bytes and mutations
// ---------------------------------------------------------------------------

/// Arbitrary values to verify: raw bytes (empty, non-UTF-8, up to 100 KB),
/// bytes behind either signed prefix, and well-formed values of either
/// format whose MAC is random.
fn value_to_verify() -> impl Strategy<Value = Vec<u8>> {
    let body = prop_oneof![
        6 => vec(any::<u8>(), 0..128),
        2 => vec(any::<u8>(), 0..4096),
        1 => vec(any::<u8>(), 90_000..=100_000),
    ];
    let prefix = prop::sample::select(vec![
        &b""[..],
        b"signed.",
        b"signed_u64.",
        b"signed",
        b"SIGNED.",
    ]);
    prop_oneof![
        3 => (prefix, body.clone()).prop_map(|(p, b)| [p, &b[..]].concat()),
        1 => (vec(any::<u8>(), 32), body.clone()).prop_map(|(mac, payload)| {
            [&b"signed."[..], &mac, b".", &payload].concat()
        }),
        1 => (vec(any::<u8>(), 32), body).prop_map(|(mac, payload)| {
            [&b"signed_u64."[..], URL_SAFE_NO_PAD.encode(mac).as_bytes(), b".", &payload].concat()
        }),
    ]
}

/// `verify` never panics on arbitrary bytes (empty, non-UTF-8, up to
/// 100 KB, behind either signed prefix, with well-formed random MACs), and
/// never accepts one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_never_panics_on_arbitrary_bytes() {
    const CASES: u32 = 1000;
    let started = Instant::now();
    let key = test_key();
    let keys = [SigningKey::from_bytes(b"another key").unwrap(), test_key()];
    let (tried, malformed, mismatch, huge) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let result = runner(CASES).run(&value_to_verify(), |value| {
        tried.fetch_add(1, Ordering::Relaxed);
        huge.fetch_add(u64::from(value.len() >= 90_000), Ordering::Relaxed);
        let one = signing::verify(&value, &key);
        let any = signing::verify_with_any(&value, &keys);
        prop_assert!(one.is_err(), "accepted a forged value: {:?}", one);
        prop_assert!(any.is_err(), "accepted a forged value: {:?}", any);
        match one {
            Err(signing::SignatureError::Malformed) => malformed.fetch_add(1, Ordering::Relaxed),
            _ => mismatch.fetch_add(1, Ordering::Relaxed),
        };
        Ok(())
    });
    let wrong = u64::from(result.is_err());
    eprintln!(
        "FIGURE hostile::verify_never_panics_on_arbitrary_bytes: tried={} (of which {} of 90-100 KB) \
         accepted=0 rejected={} (malformed {}, MAC mismatch {}) panics=0 wrong={wrong} in {:.2} s",
        tried.load(Ordering::Relaxed),
        huge.load(Ordering::Relaxed),
        malformed.load(Ordering::Relaxed) + mismatch.load(Ordering::Relaxed),
        malformed.load(Ordering::Relaxed),
        mismatch.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    result.unwrap();
}

/// One change to a signed value.
#[derive(Debug, Clone)]
enum Mutation {
    /// Keep the first `index(len + 1)` bytes (possibly all of them).
    Truncate(Index),
    /// Flip bit `.1` of byte `index(len)`.
    Flip(Index, u8),
    /// Append these bytes (possibly none).
    Append(Vec<u8>),
}

impl Mutation {
    fn apply(&self, value: &mut Vec<u8>) {
        match self {
            Mutation::Truncate(i) => value.truncate(i.index(value.len() + 1)),
            Mutation::Flip(i, bit) if !value.is_empty() => {
                let at = i.index(value.len());
                value[at] ^= 1 << bit;
            }
            Mutation::Flip(..) => {}
            Mutation::Append(bytes) => value.extend_from_slice(bytes),
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        1 => vec(any::<u8>(), 0..16).prop_map(Mutation::Append),
    ]
}

/// Arbitrary sessions: any user id, either type, arbitrary application data.
fn session() -> impl Strategy<Value = Session> {
    (
        user_id(),
        prop::sample::select(vec!["full", "oauth2"]),
        btree_map(json_key(), json_value(), 0..4),
        any::<u32>(),
    )
        .prop_map(|(user, kind, extra, lock)| {
            let mut s = Session::new_login(user, HOUR);
            s.session_type = kind.to_owned();
            s.extra_payload = extra.into_iter().collect();
            s.lock_version = u64::from(lock);
            s
        })
}

/// Any truncation, single-bit flip or appended bytes (1 to 3 of them in a
/// row) of a validly signed encoded session, in either signed format, is
/// rejected by `verify`, unless the bytes came out unchanged, in which case
/// it returns the original payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_rejects_every_mutation_of_a_signed_session() {
    const CASES: u32 = 2000;
    let started = Instant::now();
    let key = test_key();
    let strategy = (session(), any::<bool>(), vec(mutation(), 1..4));
    let (tried, unchanged, rejected) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let result = runner(CASES).run(&strategy, |(session, base64, mutations)| {
        tried.fetch_add(1, Ordering::Relaxed);
        let payload = common::legacy_json(&session);
        let mut original = signing::sign(&payload, &key);
        if base64 {
            original = to_base64_variant(&original);
        }
        prop_assert_eq!(signing::verify(&original, &key), Ok(&payload[..]));
        let mut mutated = original.clone();
        for m in &mutations {
            m.apply(&mut mutated);
        }
        let verdict = signing::verify(&mutated, &key);
        if mutated == original {
            unchanged.fetch_add(1, Ordering::Relaxed);
            prop_assert_eq!(verdict, Ok(&payload[..]));
        } else {
            rejected.fetch_add(u64::from(verdict.is_err()), Ordering::Relaxed);
            prop_assert!(
                verdict.is_err(),
                "a changed value verified: {:?}",
                String::from_utf8_lossy(&mutated)
            );
        }
        Ok(())
    });
    let tried = tried.load(Ordering::Relaxed);
    let unchanged = unchanged.load(Ordering::Relaxed);
    let rejected = rejected.load(Ordering::Relaxed);
    let wrong = tried - unchanged - rejected;
    eprintln!(
        "FIGURE hostile::verify_rejects_every_mutation_of_a_signed_session: tried={tried} \
         changed={} rejected={rejected} unchanged_and_accepted={unchanged} wrong={wrong} in {:.2} s",
        tried - unchanged,
        started.elapsed().as_secs_f64()
    );
    result.unwrap();
    assert_eq!(wrong, 0);
}

// ---------------------------------------------------------------------------
// Decoding, through a real Redis 8: arbitrary stored values
// ---------------------------------------------------------------------------

/// What to do with one field of a session-like JSON object.
#[derive(Debug, Clone)]
enum Tweak {
    Keep,
    Remove,
    /// Replace with a JSON value (of any type).
    Replace(Value),
    /// Replace a string field with a near miss of its right value.
    NearMiss(u8),
}

fn tweak(replacements: BoxedStrategy<Value>) -> impl Strategy<Value = Tweak> {
    prop_oneof![
        12 => Just(Tweak::Keep),
        1 => Just(Tweak::Remove),
        2 => replacements.prop_map(Tweak::Replace),
        2 => (0u8..6).prop_map(Tweak::NearMiss),
    ]
}

/// A session's JSON object with some fields removed, replaced or nearly
/// right, unknown fields added and bytes around it.
#[derive(Debug, Clone)]
struct SessionLike {
    id: Tweak,
    user_id: Tweak,
    session_type: Tweak,
    refresh_expires_at: Tweak,
    extra: BTreeMap<String, Value>,
    prefix: &'static str,
    suffix: &'static str,
}

fn session_like() -> impl Strategy<Value = SessionLike> {
    let strings = prop_oneof![
        json_value(),
        prop::sample::select(vec!["alice", "", "full", "oauth2", "l.x", "*"]).prop_map(Value::from),
    ]
    .boxed();
    let now = Session::now();
    let times = prop::sample::select(vec![
        json!(now - 3600),
        json!(0),
        json!(-1),
        json!(i64::MIN),
        json!(i64::MAX),
        json!(u64::MAX),
        json!((now + 3600) as f64),
        json!((now + 3600).to_string()),
        Value::Null,
    ])
    .boxed();
    (
        tweak(strings.clone()),
        tweak(strings.clone()),
        tweak(strings),
        tweak(times),
        btree_map("[a-z_]{1,12}", json_value(), 0..3),
        prop::sample::select(vec!["", "", "", "", " ", "\n", "\u{feff}"]),
        prop::sample::select(vec!["", "", "", "", " ", "\n", "x", "}", ",{}"]),
    )
        .prop_map(
            |(id, user_id, session_type, refresh_expires_at, extra, prefix, suffix)| SessionLike {
                id,
                user_id,
                session_type,
                refresh_expires_at,
                extra,
                prefix,
                suffix,
            },
        )
}

impl SessionLike {
    /// The bytes: a session of `user`/`kind` stored at field `id`, expiring
    /// in a day, then tweaked.
    fn render(&self, id: &str, user: &str, kind: &str) -> Vec<u8> {
        let mut s = Session::new_login(user, 24 * HOUR);
        s.id = id.to_owned();
        s.session_type = kind.to_owned();
        s.lock_version = 1;
        let Ok(Value::Object(mut obj)) = serde_json::from_slice(&common::legacy_json(&s)) else {
            unreachable!("a Session is a JSON object")
        };
        for (name, tweak) in [
            ("id", &self.id),
            ("user_id", &self.user_id),
            ("session_type", &self.session_type),
            ("refresh_expires_at", &self.refresh_expires_at),
        ] {
            match tweak {
                Tweak::Keep => {}
                Tweak::Remove => {
                    obj.remove(name);
                }
                Tweak::Replace(v) => {
                    obj.insert(name.to_owned(), v.clone());
                }
                Tweak::NearMiss(how) => {
                    let right = obj[name].to_string().trim_matches('"').to_owned();
                    let near = match how {
                        0 => format!("{right} "),
                        1 => format!(" {right}"),
                        2 => format!("{right}\0"),
                        3 => right.to_uppercase(),
                        4 => format!("{right}.full"),
                        _ => right.chars().skip(1).collect(),
                    };
                    obj.insert(name.to_owned(), Value::String(near));
                }
            }
        }
        for (k, v) in &self.extra {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut out = self.prefix.as_bytes().to_vec();
        out.extend_from_slice(&serde_json::to_vec(&Value::Object(obj)).unwrap());
        out.extend_from_slice(self.suffix.as_bytes());
        out
    }
}

/// What gets signed (or not) and stored.
#[derive(Debug, Clone)]
enum Payload {
    Bytes(Vec<u8>),
    Json(Value),
    SessionLike(SessionLike),
}

/// How the payload is wrapped before it is stored.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wrapping {
    Unsigned,
    Signed,
    SignedBase64,
    SignedWithAnotherKey,
}

/// The hash field written.
#[derive(Debug, Clone)]
enum Field {
    /// A valid session id: read back with get and get_all.
    Id(String),
    /// Arbitrary bytes (non-UTF-8, `l.`-prefixed, …): read back with get_all.
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct StoredCase {
    field: Field,
    user: String,
    kind: &'static str,
    payload: Payload,
    wrapping: Wrapping,
}

fn stored_case() -> impl Strategy<Value = StoredCase> {
    let field = prop_oneof![
        4 => "[A-Za-z0-9_-]{1,40}".prop_map(Field::Id),
        1 => prop_oneof![
            vec(any::<u8>(), 0..24),
            vec(any::<u8>(), 0..8).prop_map(|b| [&b"l."[..], &b].concat()),
            Just(b"\xff\xfe".to_vec()),
            Just(b"a b".to_vec()),
        ]
        .prop_map(Field::Bytes),
    ];
    let payload = prop_oneof![
        1 => prop_oneof![
            vec(any::<u8>(), 0..256),
            vec(any::<u8>(), 0..100_000),
        ]
        .prop_map(Payload::Bytes),
        1 => json_value().prop_map(Payload::Json),
        3 => session_like().prop_map(Payload::SessionLike),
    ];
    let wrapping = prop_oneof![
        1 => Just(Wrapping::Unsigned),
        5 => Just(Wrapping::Signed),
        2 => Just(Wrapping::SignedBase64),
        1 => Just(Wrapping::SignedWithAnotherKey),
    ];
    (
        field,
        user_id(),
        prop::sample::select(vec!["full", "oauth2"]),
        payload,
        wrapping,
    )
        .prop_map(|(field, user, kind, payload, wrapping)| StoredCase {
            field,
            user,
            kind,
            payload,
            wrapping,
        })
}

impl StoredCase {
    fn field_bytes(&self) -> Vec<u8> {
        match &self.field {
            Field::Id(id) => id.as_bytes().to_vec(),
            Field::Bytes(b) => b.clone(),
        }
    }

    /// The bytes written to the hash field.
    fn value(&self) -> Vec<u8> {
        let field = String::from_utf8_lossy(&self.field_bytes()).into_owned();
        let payload = match &self.payload {
            Payload::Bytes(b) => b.clone(),
            Payload::Json(v) => serde_json::to_vec(v).unwrap(),
            Payload::SessionLike(s) => s.render(&field, &self.user, self.kind),
        };
        match self.wrapping {
            Wrapping::Unsigned => payload,
            Wrapping::Signed => signing::sign(&payload, &test_key()),
            Wrapping::SignedBase64 => to_base64_variant(&signing::sign(&payload, &test_key())),
            Wrapping::SignedWithAnotherKey => {
                signing::sign(&payload, &SigningKey::from_bytes(b"another key").unwrap())
            }
        }
    }
}

/// What a read of `field` of `user`'s hash of `kind` may return: nothing
/// for a lock field, else the value as `stored::open` opens it, the one
/// reading of DESIGN.md "Signed values" both stores share (the store must
/// add nothing to it and leave nothing out).
fn oracle(field: &[u8], user: &str, kind: &str, value: &[u8]) -> Option<Session> {
    if layout::is_lock_field(field) {
        return None;
    }
    let field = std::str::from_utf8(field).ok()?;
    stored::open(value, &[test_key()], field, user, kind, Session::now()).ok()
}

fn sorted(mut sessions: Vec<Session>) -> Vec<Session> {
    sessions.sort_by(|a, b| a.id.cmp(&b.id));
    sessions
}

/// 300 arbitrary values written with raw HSET into a session field (or an
/// arbitrary field) of a real Redis 8 hash next to a genuine session: raw
/// bytes up to 100 KB, arbitrary JSON, and session-like objects with fields
/// removed, retyped or nearly right, each unsigned, signed with the store's
/// key (either format) or with another key. `get` and `get_all` never fail:
/// they return the stored value exactly when it is a valid unexpired session
/// of that very field, user and type, and otherwise `get` is Ok(None) and
/// `get_all` is Ok with only the genuine session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_garbage_is_absent_never_an_error() {
    const CASES: u32 = 300;
    let started = Instant::now();
    let server = TestServer::start(Flavor::Redis);
    let store = redis_store(&server).await;
    let conn = Mutex::new(raw(&server).await);
    let (tried, accepted, rejected) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let result = runner(CASES).run(&stored_case(), |case| {
        block_on(async {
            tried.fetch_add(1, Ordering::Relaxed);
            let mut conn = conn.lock().unwrap().clone();
            flushall(&mut conn).await;
            let key = key_of(&case.user, case.kind);
            let mut genuine = login(&case.user);
            genuine.session_type = case.kind.to_owned();
            store
                .upsert(&mut genuine)
                .await
                .map_err(|e| TestCaseError::fail(format!("genuine upsert: {e}")))?;
            let field = case.field_bytes();
            let value = case.value();
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg(&field)
                .arg(&value)
                .query_async(&mut conn)
                .await
                .map_err(|e| TestCaseError::fail(format!("HSET: {e}")))?;
            let expected = oracle(&field, &case.user, case.kind, &value);
            if expected.is_some() {
                accepted.fetch_add(1, Ordering::Relaxed);
            } else {
                rejected.fetch_add(1, Ordering::Relaxed);
            }

            if let Field::Id(id) = &case.field {
                let got = store.get(id, &case.user, case.kind).await;
                prop_assert!(
                    matches!(&got, Ok(g) if *g == expected),
                    "get returned {:?}, expected Ok({:?})",
                    got,
                    expected
                );
            }
            let all = store.get_all(&case.user, case.kind).await;
            let want = sorted(std::iter::once(genuine).chain(expected).collect());
            prop_assert!(
                matches!(&all, Ok(all) if sorted(all.clone()) == want),
                "get_all returned {:?}, expected Ok({:?})",
                all,
                want
            );
            Ok(())
        })
    });
    let (tried, accepted, rejected) = (
        tried.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed),
    );
    eprintln!(
        "FIGURE hostile::stored_garbage_is_absent_never_an_error [redis8]: tried={tried} \
         valid_and_returned={accepted} rejected_as_absent={rejected} errors=0 wrong={} in {:.2} s",
        u64::from(result.is_err()),
        started.elapsed().as_secs_f64()
    );
    result.unwrap();
    // The oracle can say yes: some cases were genuine-looking sessions.
    assert!(accepted > 0, "no case produced a valid session");
}

/// Values signed with the store's own key (so only decoding and the
/// address check stand between them and the caller): arbitrary bytes,
/// arbitrary JSON and real sessions of another field, user or type are
/// never returned; the same session at its own field is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validly_signed_foreign_payloads_are_rejected() {
    const CASES: u32 = 200;
    let started = Instant::now();
    let server = TestServer::start(Flavor::Redis);
    let store = redis_store(&server).await;
    let conn = Mutex::new(raw(&server).await);
    let strategy = (
        prop_oneof![
            vec(any::<u8>(), 0..512),
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        ],
        session(),
        0u8..4,
        any::<bool>(),
    );
    let (tried, rejected, own_accepted) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let result = runner(CASES).run(&strategy, |(bytes, session, elsewhere, legacy)| {
        block_on(async {
            let mut conn = conn.lock().unwrap().clone();
            flushall(&mut conn).await;
            let key_sig = test_key();
            let (user, kind) = (session.user_id.clone(), session.session_type.clone());
            let key = key_of(&user, &kind);
            // Arbitrary signed bytes / JSON at a session field.
            let field = Session::new_id();
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg(&field)
                .arg(signing::sign(&bytes, &key_sig))
                .query_async(&mut conn)
                .await
                .unwrap();
            tried.fetch_add(1, Ordering::Relaxed);
            let expected = oracle(
                field.as_bytes(),
                &user,
                &kind,
                &signing::sign(&bytes, &key_sig),
            );
            let got = store.get(&field, &user, &kind).await;
            prop_assert!(matches!(&got, Ok(g) if *g == expected), "get: {:?}", got);
            rejected.fetch_add(u64::from(expected.is_none()), Ordering::Relaxed);

            // A real session, signed with the store's key, written where it
            // does not belong: another field, user or type. Encoded as the
            // store writes it, or as JSON like earlier releases did.
            let payload = if legacy {
                common::legacy_json(&session)
            } else {
                codec::encode(&session)
            };
            let value = signing::sign(&payload, &key_sig);
            let (at_key, at_field) = match elsewhere {
                0 => (key.clone(), Session::new_id()),
                1 => (key_of(&format!("{user}x"), &kind), session.id.clone()),
                2 => (
                    key_of(&user, if kind == "full" { "oauth2" } else { "full" }),
                    session.id.clone(),
                ),
                _ => (key.clone(), session.id.clone()),
            };
            let _: () = redis::cmd("HSET")
                .arg(&at_key)
                .arg(&at_field)
                .arg(&value)
                .query_async(&mut conn)
                .await
                .unwrap();
            tried.fetch_add(1, Ordering::Relaxed);
            let (u, k) = match elsewhere {
                1 => (format!("{user}x"), kind.clone()),
                2 => (
                    user.clone(),
                    if kind == "full" { "oauth2" } else { "full" }.to_owned(),
                ),
                _ => (user.clone(), kind.clone()),
            };
            let got = store.get(&at_field, &u, &k).await;
            let all = store.get_all(&u, &k).await;
            if elsewhere == 3 {
                // Its own address: returned as is (as decoded from JSON for
                // a legacy value: float fidelity is checked by its own test).
                let as_decoded: Session = if legacy {
                    codec::decode(&payload).unwrap()
                } else {
                    session.clone()
                };
                prop_assert!(
                    matches!(&got, Ok(Some(s)) if *s == as_decoded),
                    "get: {:?}",
                    got
                );
                own_accepted.fetch_add(1, Ordering::Relaxed);
            } else {
                prop_assert!(matches!(got, Ok(None)), "get: {:?}", got);
                rejected.fetch_add(1, Ordering::Relaxed);
            }
            let all = all.map_err(|e| TestCaseError::fail(format!("get_all: {e}")))?;
            prop_assert_eq!(all.len(), usize::from(elsewhere == 3));
            Ok(())
        })
    });
    let tried = tried.load(Ordering::Relaxed);
    let (rejected, own) = (
        rejected.load(Ordering::Relaxed),
        own_accepted.load(Ordering::Relaxed),
    );
    eprintln!(
        "FIGURE hostile::validly_signed_foreign_payloads_are_rejected [redis8]: tried={tried} \
         rejected={rejected} own_address_accepted={own} wrong={} in {:.2} s",
        u64::from(result.is_err()),
        started.elapsed().as_secs_f64()
    );
    result.unwrap();
}

// ---------------------------------------------------------------------------
// Decoding Charon's payload format (Erlang terms), through a real Redis 8
// ---------------------------------------------------------------------------

/// A session in Charon's payload format, as an upsert writes it.
fn charon_payload(session: &Session) -> Vec<u8> {
    let mut stored = session.clone();
    stored.lock_version += 1;
    codec::encode_as(&stored, PayloadFormat::Charon, MapKeys::Binaries)
        .expect("arbitrary JSON is representable")
}

/// Arbitrary sessions in Charon's payload format, each signed with the
/// store's key after one to three truncations, bit flips or appended bytes
/// of the Erlang term (so that only decoding and the address check stand
/// between them and the caller), written at the session's own field next
/// to nothing else: `get` and `get_all` never fail and never panic; they
/// return the session exactly when the changed bytes still decode to a
/// session of that field, user and type (an unchanged term always does,
/// with every field as written), and nothing otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_charon_terms_are_rejected_or_exact() {
    const CASES: u32 = 400;
    let started = Instant::now();
    let server = TestServer::start(Flavor::Redis);
    let store = redis_store(&server).await;
    let conn = Mutex::new(raw(&server).await);
    let strategy = (session(), vec(mutation(), 0..4));
    let (tried, unchanged, accepted, rejected) = (
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    );
    let result = runner(CASES).run(&strategy, |(session, mutations)| {
        block_on(async {
            tried.fetch_add(1, Ordering::Relaxed);
            let mut conn = conn.lock().unwrap().clone();
            flushall(&mut conn).await;
            let original = charon_payload(&session);
            let mut payload = original.clone();
            for m in &mutations {
                m.apply(&mut payload);
            }
            let key = key_of(&session.user_id, &session.session_type);
            let value = signing::sign(&payload, &test_key());
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg(&session.id)
                .arg(&value)
                .query_async(&mut conn)
                .await
                .map_err(|e| TestCaseError::fail(format!("HSET: {e}")))?;
            let got = store
                .get(&session.id, &session.user_id, &session.session_type)
                .await
                .map_err(|e| TestCaseError::fail(format!("get: {e}")))?;
            let all = store
                .get_all(&session.user_id, &session.session_type)
                .await
                .map_err(|e| TestCaseError::fail(format!("get_all: {e}")))?;
            prop_assert_eq!(all.len(), usize::from(got.is_some()));
            if payload == original {
                unchanged.fetch_add(1, Ordering::Relaxed);
                let mut expected = session.clone();
                expected.lock_version += 1;
                prop_assert_eq!(got.as_ref(), Some(&expected));
            }
            match got {
                Some(s) => {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    prop_assert_eq!(
                        (s.id.as_str(), s.user_id.as_str(), s.session_type.as_str()),
                        (
                            session.id.as_str(),
                            session.user_id.as_str(),
                            session.session_type.as_str()
                        )
                    );
                    let decoded = codec::decode(&payload).ok();
                    prop_assert_eq!(Some(&s), decoded.as_ref());
                    prop_assert_eq!(&all[0], &s);
                }
                None => {
                    rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        })
    });
    let (tried, unchanged, accepted, rejected) = (
        tried.load(Ordering::Relaxed),
        unchanged.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed),
    );
    eprintln!(
        "FIGURE hostile::mutated_charon_terms_are_rejected_or_exact [redis8]: tried={tried} \
         unchanged={unchanged} returned={accepted} rejected_as_absent={rejected} errors=0 wrong={} in {:.2} s",
        u64::from(result.is_err()),
        started.elapsed().as_secs_f64()
    );
    result.unwrap();
    assert!(unchanged > 0 && rejected > 0, "both outcomes were tried");
}

/// `level(depth, last)`: the integer `last` at depth 0, else the map
/// `#{level(depth - 1, 0) => 0, level(depth - 1, 1) => last}`, whose two
/// keys differ only in their very last value (comparing them walks both
/// whole): maps as keys of maps as keys, twice the size per level.
fn maps_as_keys(depth: usize) -> Vec<u8> {
    fn level(depth: usize, last: u8, out: &mut Vec<u8>) {
        if depth == 0 {
            out.extend_from_slice(&[97, last]);
            return;
        }
        out.extend_from_slice(&[116, 0, 0, 0, 2]);
        level(depth - 1, 0, out);
        out.extend_from_slice(&[97, 0]);
        level(depth - 1, 1, out);
        out.extend_from_slice(&[97, last]);
    }
    let mut out = vec![0x83];
    level(depth, 0, &mut out);
    out
}

/// Validly signed Erlang terms built to hurt a decoder, at a session's
/// field next to a genuine session in Charon's format: nesting 100 000
/// deep, chains of 20 000 pids or exports whose node or module "atom" is
/// the next one (the pids compressed to 49 bytes), length headers claiming
/// 4 billion elements or bytes, a compressed term that would unpack to 2
/// GiB (and one just over the 1 MiB limit), maps whose keys are maps
/// nested 14 and 16 levels (180 KB and 720 KB, every key comparison
/// walking both keys whole), distribution-only tags, another struct,
/// record version 6, a term of 2 MiB, truncated and trailing bytes. Each
/// is skipped like any invalid value (`get` is Ok(None), `get_all` gives
/// the genuine session only), each within a second (`get` and `get_all`
/// together, in a debug build), the process staying up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_charon_terms_are_skipped() {
    let server = TestServer::start(Flavor::Redis);
    let config =
        RedisStoreConfig::new(server.url(), test_key()).payload_format(PayloadFormat::Charon);
    let store = RedisStore::connect(config).await.unwrap();
    let mut conn = raw(&server).await;
    let mut genuine = login("mallory");
    store.upsert(&mut genuine).await.unwrap();
    let good = charon_payload(&login("mallory"));
    let replace = |from: &[u8], to: &[u8]| {
        let at = good
            .windows(from.len())
            .position(|w| w == from)
            .expect("pattern in the payload");
        [&good[..at], to, &good[at + from.len()..]].concat()
    };
    let compressed = |stated: u32, inflated: &[u8]| {
        let mut out = vec![0x83, 80];
        out.extend_from_slice(&stated.to_be_bytes());
        out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec_zlib(inflated, 9));
        out
    };
    let mut deep = vec![0x83];
    for _ in 0..100_000 {
        deep.extend_from_slice(&[104, 1]);
    }
    deep.push(106);
    let zeros = vec![0u8; 64 << 20];
    let mut big = login("mallory");
    big.extra_payload
        .insert("blob".into(), json!("x".repeat(2 << 20)));
    let pids = compressed(20_000, &[88; 20_000]);
    assert_eq!(pids.len(), 49);
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("nested 100 000 deep", deep),
        ("20 000 chained pids, compressed", pids),
        (
            "20 000 chained exports",
            [&[0x83][..], &[113; 20_000]].concat(),
        ),
        ("maps as keys, 14 levels", maps_as_keys(14)),
        ("maps as keys, 16 levels", maps_as_keys(16)),
        ("list of 4 billion", vec![0x83, 108, 0xFF, 0xFF, 0xFF, 0xFF]),
        (
            "binary of 4 GiB",
            vec![0x83, 109, 0xFF, 0xFF, 0xFF, 0xFF, 0],
        ),
        ("map of 4 billion", vec![0x83, 116, 0xFF, 0xFF, 0xFF, 0xFF]),
        (
            "big integer of 4 GiB",
            vec![0x83, 111, 0xFF, 0xFF, 0xFF, 0xFF, 0],
        ),
        ("compressed, 2 GiB stated", compressed(0x8000_0000, &zeros)),
        (
            "compressed, 1 MiB + 1",
            compressed((1 << 20) + 1, &zeros[..(1 << 20) + 1]),
        ),
        (
            "compressed, 64 MiB of zeros stated as 100 bytes",
            compressed(100, &zeros),
        ),
        ("atom cache reference", vec![0x83, 82, 0]),
        ("distribution header", vec![0x83, 68, 0]),
        (
            "another struct",
            replace(b"Models.Session", b"Models.Sessiom"),
        ),
        (
            "record version 6",
            replace(b"version\x61\x07", b"version\x61\x06"),
        ),
        ("2 MiB term", charon_payload(&big)),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("trailing byte", [&good[..], &[106]].concat()),
    ];
    for (what, payload) in hostile {
        let started = Instant::now();
        let field = Session::new_id();
        let value = signing::sign(&payload, &test_key());
        let _: () = redis::cmd("HSET")
            .arg(key_of("mallory", "full"))
            .arg(&field)
            .arg(&value)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            store.get(&field, "mallory", "full").await.unwrap(),
            None,
            "{what}"
        );
        assert_eq!(
            store.get_all("mallory", "full").await.unwrap(),
            std::slice::from_ref(&genuine),
            "{what}"
        );
        let _: () = redis::cmd("HDEL")
            .arg(key_of("mallory", "full"))
            .arg(&field)
            .query_async(&mut conn)
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(took.as_secs_f64() < 1.0, "{what} took {took:?}");
    }
    // The unchanged payload is read (so the cases above differ from it by
    // what they name).
    let field = genuine.id.clone();
    let value = hget(&mut conn, &key_of("mallory", "full"), &field)
        .await
        .unwrap();
    assert_eq!(value[40], 0x83);
}

// ---------------------------------------------------------------------------
// Fidelity of application data
// ---------------------------------------------------------------------------

/// Floating-point numbers (finite) whose exact round trip is checked: a
/// value found by the property tests, edge values, then arbitrary ones.
fn floats_to_check(random: usize) -> Vec<f64> {
    let mut floats = vec![
        -9.018079929878177e23,
        0.1,
        1.0 / 3.0,
        123_456_789.123_456_79,
        -1.295_616_953_177_366_7e-297,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        5e-324,
        2.225_073_858_507_201e-308,
    ];
    let mut runner = runner(1);
    let any_f64 = any::<f64>();
    let fixed = floats.len();
    while floats.len() < fixed + random {
        let f = any_f64.new_tree(&mut runner).unwrap().current();
        if f.is_finite() {
            floats.push(f);
        }
    }
    floats
}

/// Stores `floats` in the extra_payload of sessions of `store` (500 per
/// session) and reads them back: the floats that came back different, with
/// the session id and index of each.
async fn changed_floats(
    store: &dyn SessionStore,
    floats: &[f64],
) -> Vec<(String, usize, f64, f64)> {
    let mut changed = Vec::new();
    for chunk in floats.chunks(500) {
        let mut s = login("floats");
        s.extra_payload.insert("numbers".into(), json!(chunk));
        store.upsert(&mut s).await.unwrap();
        let read = store.get(&s.id, "floats", "full").await.unwrap().unwrap();
        let numbers = read.extra_payload["numbers"].as_array().unwrap();
        assert_eq!(numbers.len(), chunk.len());
        for (i, (sent, got)) in chunk.iter().zip(numbers).enumerate() {
            let got = got.as_f64().unwrap();
            if got != *sent {
                changed.push((s.id.clone(), i, *sent, got));
            }
        }
    }
    changed
}

/// Numbers in extra_payload come back exactly as they were stored, from
/// LocalStore and from RedisStore on Redis 8: 11 edge and known values and
/// 2 000 arbitrary finite f64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_payload_floats_round_trip_exactly() {
    let floats = floats_to_check(2000);
    let local = charon_sessions::LocalStore::new();
    let local_changed = changed_floats(&local, &floats).await;
    let server = TestServer::start(Flavor::Redis);
    let store = redis_store(&server).await;
    let redis_changed = changed_floats(&store, &floats).await;
    for (name, changed) in [("local", &local_changed), ("redis8", &redis_changed)] {
        eprintln!(
            "FIGURE hostile::extra_payload_floats_round_trip_exactly [{name}]: tried={} \
             came_back_equal={} came_back_changed={} wrong={}{}",
            floats.len(),
            floats.len() - changed.len(),
            changed.len(),
            changed.len(),
            changed
                .first()
                .map(|(_, _, sent, got)| format!(" (e.g. stored {sent:e}, read {got:e})"))
                .unwrap_or_default()
        );
    }
    // Where a change happened: whether the stored bytes hold the number as
    // a MessagePack float 64 (0xcb, then its 8 big-endian bytes).
    if let Some((id, _, sent, _)) = redis_changed.first() {
        let mut conn = raw(&server).await;
        let value = hget(&mut conn, &key_of("floats", "full"), id)
            .await
            .unwrap();
        let exact = [&[0xcb][..], &sent.to_be_bytes()].concat();
        eprintln!(
            "redis8: the stored value holds {sent:e} as float 64: {}",
            value.windows(exact.len()).any(|w| w == exact)
        );
    }
    assert!(
        local_changed.is_empty(),
        "LocalStore changed {local_changed:?}"
    );
    assert!(
        redis_changed.is_empty(),
        "RedisStore changed {} of {} floats, e.g. {:?}",
        redis_changed.len(),
        floats.len(),
        &redis_changed[..redis_changed.len().min(5)]
    );
}

// ---------------------------------------------------------------------------
// Size limits
// ---------------------------------------------------------------------------

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

/// 10 000 sessions of one user, created by 32 concurrent tasks, all come
/// back from one get_all, each exactly as stored.
async fn get_all_returns_ten_thousand_sessions(flavor: Flavor) {
    const SESSIONS: usize = 10_000;
    const TASKS: usize = 32;
    let server = TestServer::start(flavor);
    // Far more sessions than the default limit per user keeps.
    let store = Arc::new(redis_store_with_limit(&server, SessionLimit::Unlimited).await);
    let mut conn = raw(&server).await;

    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut made = Vec::new();
                for _ in (t..SESSIONS).step_by(TASKS) {
                    let mut s = login("many");
                    s.extra_payload.insert("task".into(), json!(t));
                    store.upsert(&mut s).await.unwrap();
                    made.push(s);
                }
                made
            })
        })
        .collect();
    let mut created = BTreeMap::new();
    for t in tasks {
        for s in t.await.unwrap() {
            created.insert(s.id.clone(), s);
        }
    }
    let create_time = started.elapsed();
    assert_eq!(created.len(), SESSIONS);
    let hlen: usize = redis::cmd("HLEN")
        .arg(key_of("many", "full"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(hlen, 2 * SESSIONS, "a session field and a lock field each");

    let started = Instant::now();
    let all = store.get_all("many", "full").await.unwrap();
    let get_all_time = started.elapsed();
    let returned = all.len();
    let mut wrong = 0;
    for s in all {
        if created.remove(&s.id).as_ref() != Some(&s) {
            wrong += 1;
        }
    }
    wrong += created.len();
    eprintln!(
        "FIGURE hostile::get_all_returns_ten_thousand_sessions [{flavor:?}]: created={SESSIONS} \
         (32 tasks, {:.2} s) get_all returned={returned} in {:.0} ms wrong={wrong}",
        create_time.as_secs_f64(),
        get_all_time.as_secs_f64() * 1000.0
    );
    assert_eq!(returned, SESSIONS);
    assert_eq!(wrong, 0);
}

// ---------------------------------------------------------------------------
// Keys cannot be steered
// ---------------------------------------------------------------------------

/// The addresses (user id, session type) of `keys_cannot_be_steered`.
fn steering_addresses() -> Vec<(String, &'static str)> {
    let users = [
        "a",
        "b",
        "x",
        "ab",
        ".",
        "..",
        ".a",
        "a.",
        "l.",
        "l.x",
        "a.b",
        "a.full",
        "a.b.full",
        "full",
        "a.oauth2",
        "charon_.a.full",
        "{",
        "}",
        "{x}",
        "{a}.full",
        "*",
        "a*",
        "?",
        "a?",
        "[",
        "[a-z]",
        "[ab]",
        " ",
        "a b",
        "a ",
        "\n",
        "a\nb",
        "\r\n",
        "a\r\nDEL charon_.b.full\r\n",
        "\0",
        "a\0",
        "a\0b",
        "\t",
        "\u{7f}",
        "Ærøskøbing",
        "用户",
        "caf\u{e9}",
        "cafe\u{301}",
        "\u{202e}a",
        "a\u{200b}",
    ];
    let mut addresses: Vec<(String, &str)> =
        users.iter().map(|u| ((*u).to_owned(), "full")).collect();
    addresses.push(("x".repeat(512), "full"));
    addresses.push(("é".repeat(256), "full"));
    // Pairs where the type is moved into or out of the user id.
    for (user, kind) in [("a", "b"), ("a", "oauth2"), ("a.b", "oauth2"), ("a", "l")] {
        addresses.push((user.to_owned(), kind));
    }
    addresses
}

/// Users whose ids are separators (`.`, `l.`), glob characters (`*`, `?`,
/// `[`), hash tags (`{x}`), spaces, newlines, CR LF with a command in it,
/// NUL, other control and invisible characters, non-ASCII letters in two
/// normalisations, 512-byte ids, and pairs built to collide (`a.full`/`full`
/// vs `a`/`full`, `a*` vs `ab`, `{x}` vs `x`, `a.b`/`full` vs `a`/`b`): each
/// address maps to its own key (raw KEYS and EXISTS) holding exactly its own
/// two sessions, get and get_all never show another user's session, and
/// delete / delete_all of one user leave every other hash byte for byte as
/// it was. Over-long user ids and dotted types are refused.
async fn keys_cannot_be_steered(flavor: Flavor) {
    let started = Instant::now();
    let server = TestServer::start(flavor);
    let store = redis_store(&server).await;
    let mut conn = raw(&server).await;
    let addresses = steering_addresses();
    let (mut tried, mut wrong) = (0u64, Vec::<String>::new());

    let expected_keys: BTreeSet<Vec<u8>> = addresses
        .iter()
        .map(|(u, k)| key_of(u, k).into_bytes())
        .collect();
    assert_eq!(
        expected_keys.len(),
        addresses.len(),
        "the test's addresses are distinct"
    );

    // Two sessions per address.
    let mut owned: Vec<Vec<Session>> = Vec::new();
    for (user, kind) in &addresses {
        let mut mine = Vec::new();
        for _ in 0..2 {
            let mut s = login(user);
            s.session_type = (*kind).to_owned();
            tried += 1;
            store.upsert(&mut s).await.unwrap();
            mine.push(s);
        }
        owned.push(mine);
    }
    assert_eq!(
        all_keys(&mut conn).await,
        expected_keys,
        "one key per address"
    );
    for ((user, kind), mine) in addresses.iter().zip(&owned) {
        let key = key_of(user, kind);
        assert!(exists(&mut conn, &key).await, "{key:?}");
        let fields: BTreeSet<Vec<u8>> = hgetall(&mut conn, &key).await.into_keys().collect();
        let want: BTreeSet<Vec<u8>> = mine
            .iter()
            .flat_map(|s| {
                [
                    s.id.clone().into_bytes(),
                    format!("l.{}", s.id).into_bytes(),
                ]
            })
            .collect();
        if fields != want {
            wrong.push(format!("{key:?} holds {fields:?}"));
        }
    }

    // Visibility: each address sees exactly its own sessions.
    for (i, (user, kind)) in addresses.iter().enumerate() {
        tried += 1;
        let all = sorted(store.get_all(user, kind).await.unwrap());
        if all != sorted(owned[i].clone()) {
            wrong.push(format!(
                "get_all({user:?}, {kind}) returned {} sessions",
                all.len()
            ));
        }
        for (j, theirs) in owned.iter().enumerate() {
            for s in theirs {
                tried += 1;
                let got = store.get(&s.id, user, kind).await.unwrap();
                if (i == j) != got.is_some() {
                    wrong.push(format!(
                        "get of {:?}'s session as ({user:?}, {kind}) returned {got:?}",
                        s.user_id
                    ));
                }
            }
        }
    }

    // A delete addressed to the wrong owner touches nothing.
    let snapshot = {
        let mut all = BTreeMap::new();
        for key in &expected_keys {
            let key = String::from_utf8(key.clone()).unwrap();
            let fields = hgetall(&mut conn, &key).await;
            all.insert(key, fields);
        }
        all
    };
    for (i, (user, kind)) in addresses.iter().enumerate() {
        let j = (i + 1) % addresses.len();
        tried += 1;
        store.delete(&owned[j][0].id, user, kind).await.unwrap();
    }
    for (key, fields) in &snapshot {
        if hgetall(&mut conn, key).await != *fields {
            wrong.push(format!("a misaddressed delete changed {key:?}"));
        }
    }

    // delete_all, one address at a time: the others stay byte for byte.
    let mut remaining = snapshot;
    for (user, kind) in &addresses {
        let key = key_of(user, kind);
        remaining.remove(&key);
        tried += 1;
        store.delete_all(user, kind).await.unwrap();
        if exists(&mut conn, &key).await {
            wrong.push(format!("delete_all left {key:?}"));
        }
        for (other, fields) in &remaining {
            if hgetall(&mut conn, other).await != *fields {
                wrong.push(format!("delete_all({user:?}, {kind}) changed {other:?}"));
            }
        }
    }
    assert!(all_keys(&mut conn).await.is_empty());

    // What cannot be addressed at all.
    for result in [
        store.get_all(&"x".repeat(513), "full").await.map(|_| ()),
        store.get_all("a", "b.full").await.map(|_| ()),
        store.delete_all("a", "full.").await,
        store.delete_all("", "full").await,
    ] {
        tried += 1;
        if !matches!(result, Err(StoreError::InvalidInput(_))) {
            wrong.push(format!("expected InvalidInput, got {result:?}"));
        }
    }

    eprintln!(
        "FIGURE hostile::keys_cannot_be_steered [{flavor:?}]: {} addresses, {} distinct keys: \
         operations tried={tried} cross-user leaks/changes={} wrong={} in {:.2} s",
        addresses.len(),
        expected_keys.len(),
        wrong.len(),
        wrong.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(wrong.is_empty(), "wrong results: {wrong:#?}");
}
