//! Keys cannot be steered: user ids full of separators, glob and hash-tag
//! characters, control characters and look-alikes each get their own key;
//! nobody sees or deletes another user's sessions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use charon_sessions::{Session, SessionStore, StoreError};
use charon_sessions_testkit::{Flavor, TestServer};
use redis::aio::MultiplexedConnection;

use crate::common::raw::{exists, hgetall, key_of, raw};
use crate::common::{login, redis_store};
use crate::on_both_servers;
use crate::proptest_cases::sorted;

on_both_servers!(
    /// User ids full of separators, glob and hash-tag characters, control
    /// characters and look-alikes each get their own key; nobody sees or
    /// deletes another user's sessions.
    keys_cannot_be_steered,
);

/// Every key on the server (`KEYS *`; the test servers are small).
async fn all_keys(conn: &mut MultiplexedConnection) -> BTreeSet<Vec<u8>> {
    redis::cmd("KEYS")
        .arg("*")
        .query_async(conn)
        .await
        .expect("KEYS")
}

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
