//! Nothing is stored that cannot be read back: whatever `upsert` accepts,
//! `get` returns as it was written; whatever `get` would refuse, `upsert`
//! refuses first with `InvalidInput` naming the limit, and stores nothing.
//!
//! A property test over random `extra_payload`s (nesting up to past every
//! decoder's depth limit, a few values beside each level, sizes on both
//! sides of `max_session_size`) on `LocalStore` and on a real Redis 8 in
//! each payload format: compact, and Charon's with binary and with atom map
//! keys. `LocalStore` and the compact `RedisStore` share the compact
//! codec's limits, so they must also agree on every case.
//!
//! Prints one `FIGURES` line for RELIABILITY.md: cases, accepted and
//! refused per store, and why the refusals were.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use charon_sessions::{
    LocalStore, MapKeys, PayloadFormat, RedisStore, RedisStoreConfig, Session, SessionStore,
    StoreError,
};
use charon_sessions_testkit::{Flavor, TestServer};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value};

use common::test_key;

/// `max_session_size` of every store under test: small, so that payloads on
/// both sides of it are cheap to generate.
const MAX_SESSION_SIZE: usize = 4096;

/// Proptest cases; each runs an upsert and a get on four stores.
const CASES: u32 = 1000;

/// Leaves: every JSON scalar, strings of any characters.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ]
}

/// Small JSON values, nested up to 3 levels: what sits beside each level of
/// the deep spine.
fn small_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A deep spine of arrays and objects, `levels` long, with values beside
/// some of its levels; its innermost value is a string of `pad` characters
/// that pushes the session towards or past `MAX_SESSION_SIZE`.
#[derive(Debug, Clone)]
struct Payload {
    /// For each level, outermost first: an array (`true`) or an object.
    levels: Vec<bool>,
    /// Values beside the spine at a level (index into `levels`, modulo).
    beside: Vec<(usize, Value)>,
    /// Characters of the innermost string.
    pad: usize,
    /// A key longer than an atom can be (255 characters), beside the spine.
    long_key: bool,
    /// Other entries of `extra_payload`.
    top: BTreeMap<String, Value>,
}

fn payload() -> impl Strategy<Value = Payload> {
    // The depth limits sit near 126 (compact) and 128 (Charon's terms):
    // most cases are shallow or close to them.
    let depth = prop_oneof![1 => 0usize..8, 3 => 118usize..=134];
    let pad = prop_oneof![2 => 0usize..300, 1 => 3000usize..4400];
    (
        depth.prop_flat_map(|d| vec(any::<bool>(), d)),
        vec((any::<usize>(), small_value()), 0..5),
        pad,
        prop::bool::weighted(0.1),
        btree_map("[a-z_]{1,10}", small_value(), 0..4),
    )
        .prop_map(|(levels, beside, pad, long_key, top)| Payload {
            levels,
            beside,
            pad,
            long_key,
            top,
        })
}

impl Payload {
    fn extra_payload(&self) -> Map<String, Value> {
        let mut value = Value::String("x".repeat(self.pad));
        for (level, &array) in self.levels.iter().enumerate().rev() {
            let beside: Vec<&Value> = self
                .beside
                .iter()
                .filter(|(at, _)| at % self.levels.len() == level)
                .map(|(_, v)| v)
                .collect();
            value = if array {
                let mut items = vec![value];
                items.extend(beside.into_iter().cloned());
                Value::Array(items)
            } else {
                let mut map = Map::new();
                map.insert("d".into(), value);
                for (k, v) in beside.into_iter().enumerate() {
                    map.insert(format!("b{k}"), v.clone());
                }
                Value::Object(map)
            };
        }
        let mut extra: Map<String, Value> = self.top.clone().into_iter().collect();
        extra.insert("spine".into(), value);
        if self.long_key {
            extra.insert("k".repeat(256), Value::Bool(true));
        }
        extra
    }
}

/// What one store did with one session.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Accepted,
    /// Refused with `InvalidInput`: the limit it named.
    Refused(&'static str),
}

/// The limit an `InvalidInput` message names; `None` for a message that
/// names none of them.
fn limit_named(message: &str) -> Option<&'static str> {
    if message.contains("max_session_size") || message.contains("MAX_TERM_BYTES") {
        Some("size")
    } else if message.contains("deeper than") {
        Some("depth")
    } else if message.contains("atom") {
        Some("atom")
    } else {
        None
    }
}

/// Upserts a copy of `session` on `store`, then reads it back: an accepted
/// session must come back with the same payload and lock version; a
/// refused one must be `InvalidInput` naming a limit, leave the copy's lock
/// version alone, and leave nothing to read.
async fn try_store(store: &dyn SessionStore, session: &Session) -> Result<Outcome, TestCaseError> {
    let mut written = session.clone();
    let result = store.upsert(&mut written).await;
    let back = store
        .get(&written.id, &written.user_id, &written.session_type)
        .await
        .map_err(|e| TestCaseError::fail(format!("get failed: {e}")))?;
    match result {
        Ok(()) => {
            let Some(back) = back else {
                return Err(TestCaseError::fail("accepted, then not found"));
            };
            prop_assert_eq!(&back.extra_payload, &written.extra_payload);
            prop_assert_eq!(back.lock_version, written.lock_version);
            prop_assert_eq!(back.lock_version, 1);
            Ok(Outcome::Accepted)
        }
        Err(StoreError::InvalidInput(message)) => {
            prop_assert!(back.is_none(), "refused ({message}), yet stored");
            prop_assert_eq!(written.lock_version, 0);
            let limit = limit_named(&message)
                .ok_or_else(|| TestCaseError::fail(format!("names no limit: {message}")))?;
            Ok(Outcome::Refused(limit))
        }
        Err(other) => Err(TestCaseError::fail(format!("unexpected error: {other}"))),
    }
}

/// A store on `server` writing `format`, under a key prefix of its own (the
/// stores upsert the same sessions).
async fn redis_store(
    server: &TestServer,
    prefix: &str,
    format: PayloadFormat,
    keys: MapKeys,
) -> RedisStore {
    let config = RedisStoreConfig::new(server.url(), test_key())
        .key_prefix(prefix)
        .payload_format(format)
        .charon_map_keys(keys)
        .max_session_size(MAX_SESSION_SIZE);
    RedisStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
}

/// Whatever upsert accepts, get returns; whatever it refuses is refused
/// with InvalidInput naming the limit and stores nothing: on LocalStore
/// and Redis 8 in the compact format and in Charon's (binary and atom map
/// keys). LocalStore and the compact RedisStore decide alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_accepts_exactly_what_get_returns() {
    let server = TestServer::start(Flavor::Redis);
    let stores: Vec<(&str, Box<dyn SessionStore>)> = vec![
        (
            "local",
            Box::new(LocalStore::with_max_session_size(MAX_SESSION_SIZE)),
        ),
        (
            "redis8 compact",
            Box::new(
                redis_store(
                    &server,
                    "compact",
                    PayloadFormat::Compact,
                    MapKeys::Binaries,
                )
                .await,
            ),
        ),
        (
            "redis8 charon",
            Box::new(
                redis_store(&server, "charon", PayloadFormat::Charon, MapKeys::Binaries).await,
            ),
        ),
        (
            "redis8 charon atom keys",
            Box::new(redis_store(&server, "atoms", PayloadFormat::Charon, MapKeys::Atoms).await),
        ),
    ];
    // Filled from inside the property (a `Fn`), shrinking steps included.
    let tally: RefCell<BTreeMap<(&str, Outcome), u32>> = RefCell::default();
    let deep_accepted: RefCell<BTreeMap<&str, usize>> = RefCell::default();

    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    });
    let result = runner.run(&payload(), |payload| {
        let mut session = Session::new_login("round-trip", Duration::from_secs(3600));
        session.extra_payload = payload.extra_payload();
        let outcomes = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let mut outcomes = Vec::new();
                for (name, store) in &stores {
                    let outcome = try_store(store.as_ref(), &session)
                        .await
                        .map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
                    outcomes.push((*name, outcome));
                }
                Ok::<_, TestCaseError>(outcomes)
            })
        })?;
        prop_assert_eq!(
            &outcomes[0].1,
            &outcomes[1].1,
            "LocalStore and the compact RedisStore decide alike"
        );
        for (name, outcome) in outcomes {
            if outcome == Outcome::Accepted {
                let mut deep_accepted = deep_accepted.borrow_mut();
                let deepest = deep_accepted.entry(name).or_default();
                *deepest = (*deepest).max(payload.levels.len());
            }
            *tally.borrow_mut().entry((name, outcome)).or_default() += 1;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (tally, deep_accepted) = (tally.into_inner(), deep_accepted.into_inner());

    eprintln!(
        "FIGURES round_trip::upsert_accepts_exactly_what_get_returns [redis8]: {CASES} cases, \
         max_session_size {MAX_SESSION_SIZE}; outcomes {tally:?}; deepest spine accepted \
         {deep_accepted:?}; accepted but not read back: 0"
    );
    // The property is not vacuous: every store accepted deep payloads and
    // refused both for depth and for size; Charon's atom keys refused keys
    // no atom can hold.
    for (name, _) in &stores {
        for outcome in [
            Outcome::Accepted,
            Outcome::Refused("depth"),
            Outcome::Refused("size"),
        ] {
            assert!(
                tally.get(&(*name, outcome.clone())).copied().unwrap_or(0) > 0,
                "{name}: no case ended {outcome:?}: {tally:?}"
            );
        }
        assert!(deep_accepted[name] >= 118, "{name}: {deep_accepted:?}");
    }
    assert!(
        tally
            .get(&("redis8 charon atom keys", Outcome::Refused("atom")))
            .copied()
            .unwrap_or(0)
            > 0,
        "{tally:?}"
    );
}
