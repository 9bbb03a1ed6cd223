//! Signing: `verify` never panics on arbitrary bytes and rejects every
//! truncation, bit flip or appended bytes of a signed session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use charon_sessions::signing::{self, SigningKey};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::common::test_key;
use crate::proptest_cases::runner;
use crate::strategies::{mutation, session};

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

/// Charon's url-safe variant of a value signed by [`signing::sign`]:
/// `signed_u64.` ++ base64url(MAC) ++ `.` ++ payload.
pub(crate) fn to_base64_variant(signed: &[u8]) -> Vec<u8> {
    let (mac, rest) = signed[signing::SIGNED_PREFIX.len()..].split_at(signing::MAC_LEN);
    let mut out = signing::SIGNED_BASE64_PREFIX.to_vec();
    out.extend_from_slice(URL_SAFE_NO_PAD.encode(mac).as_bytes());
    out.extend_from_slice(rest);
    out
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
        let payload = crate::common::legacy_json(&session);
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
