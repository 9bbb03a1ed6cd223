//! Fidelity of application data: floating-point numbers in extra_payload
//! come back exactly as stored.

use charon_sessions::SessionStore;
use charon_sessions_testkit::{Flavor, TestServer};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::json;

use crate::common::raw::{hget, key_of, raw};
use crate::common::{login, redis_store};
use crate::proptest_cases::runner;

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
