//! Values signed with the store's own key but not a session of this
//! address (arbitrary bytes or JSON, real sessions of another field, user
//! or type): only decoding and the address check stand between them and
//! the caller, and they are never returned.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use charon_sessions::signing;
use charon_sessions::{Session, SessionStore, codec};
use charon_sessions_testkit::{Flavor, TestServer};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::common::raw::{key_of, raw};
use crate::common::{redis_store, test_key};
use crate::proptest_cases::{block_on, flushall, runner};
use crate::stored_values::oracle;
use crate::strategies::{json_value, session};

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
                crate::common::legacy_json(&session)
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
