//! Decoding Charon's payload format (Erlang terms), through a real Redis 8:
//! mutated terms are rejected or read exactly, and terms built to hurt a
//! decoder are skipped quickly.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use charon_sessions::signing;
use charon_sessions::{
    MapKeys, PayloadFormat, RedisStore, RedisStoreConfig, Session, SessionStore, codec,
};
use charon_sessions_testkit::{Flavor, TestServer};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;

use crate::common::raw::{hget, key_of, raw};
use crate::common::{login, redis_store, test_key};
use crate::proptest_cases::{block_on, flushall, runner};
use crate::strategies::{mutation, session};

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
