//! A user with 10 000 sessions: one get_all returns them all, each exactly
//! as stored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use charon_sessions::{SessionLimit, SessionStore};
use charon_sessions_testkit::{Flavor, TestServer};
use serde_json::json;

use crate::common::raw::{key_of, raw};
use crate::common::{login, redis_store_with_limit};
use crate::on_both_servers;

on_both_servers!(
    /// get_all of a user with 10 000 sessions returns all 10 000.
    get_all_returns_ten_thousand_sessions,
);

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
