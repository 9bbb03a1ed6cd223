//! Decoding, through a real Redis 8: arbitrary values written in a
//! session's place (raw bytes, JSON, session-like objects with fields
//! removed or nearly right; unsigned, signed, or signed with another key)
//! read as absent, never as an error, unless they are a valid session of
//! that very field, user and type.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use charon_sessions::signing::{self, SigningKey};
use charon_sessions::{Session, SessionStore, layout, stored};
use charon_sessions_testkit::{Flavor, TestServer};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::common::raw::{key_of, raw};
use crate::common::{HOUR, login, redis_store, test_key};
use crate::proptest_cases::{block_on, flushall, runner, sorted};
use crate::signatures::to_base64_variant;
use crate::strategies::{json_value, user_id};

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
        let Ok(Value::Object(mut obj)) = serde_json::from_slice(&crate::common::legacy_json(&s))
        else {
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
/// reading of "Signed values" (GUIDE.md) both stores share: the store must
/// add nothing to it and leave nothing out.
pub(crate) fn oracle(field: &[u8], user: &str, kind: &str, value: &[u8]) -> Option<Session> {
    if layout::is_lock_field(field) {
        return None;
    }
    let field = std::str::from_utf8(field).ok()?;
    stored::open(value, &[test_key()], field, user, kind, Session::now()).ok()
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
