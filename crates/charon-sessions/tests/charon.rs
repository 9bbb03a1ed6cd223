//! Charon's payload format against a real Erlang runtime (Debian's
//! erlang-base and erlang-crypto, Erlang/OTP 25, driven through
//! `charon_sessions_testkit::Erlang`) and a real Redis 8.
//!
//! Erlang builds `%Charon.Models.Session{}` terms, signs them with the key
//! it derives from the shared base secret as Charon does
//! (`crypto:pbkdf2_hmac`, `crypto:mac/4`), and reads back what the store
//! wrote; the tests write Erlang's values into Redis with `HSETEX` exactly as
//! Charon's function does, and refresh through a function library that
//! follows Charon 4.3's lock rule (loaded next to the store's own).

mod common;

use std::time::Duration;

use charon_sessions::signing::SigningKey;
use charon_sessions::{
    MapKeys, PayloadFormat, RedisStore, RedisStoreConfig, Session, SessionStore, StoreError,
    UserIdKind,
};
use charon_sessions_testkit::erlang::binary;
use charon_sessions_testkit::{Erlang, Flavor, TestServer};
use redis::aio::MultiplexedConnection;
use serde_json::json;

use common::raw::{hexpiretime, hget, hgetall, hset, raw};

/// The base secret both services derive their signing key from.
const BASE_SECRET: &[u8] = b"the base secret the Elixir and the Rust service share";

/// An Erlang runtime with `K` bound to Charon's signing key, a Redis 8, and
/// a store writing Charon's format.
struct Both {
    erl: Erlang,
    server: TestServer,
    store: RedisStore,
    conn: MultiplexedConnection,
}

async fn both(map_keys: MapKeys) -> Both {
    let server = TestServer::start(Flavor::Redis);
    let store = charon_store(&server, map_keys).await;
    let mut erl = Erlang::start();
    erl.eval(&format!("K = charon_peer:key({}).", binary(BASE_SECRET)));
    let conn = raw(&server).await;
    Both {
        erl,
        server,
        store,
        conn,
    }
}

async fn charon_store(server: &TestServer, map_keys: MapKeys) -> RedisStore {
    let key = SigningKey::from_base_secret(BASE_SECRET).unwrap();
    let config = RedisStoreConfig::new(server.url(), key)
        .payload_format(PayloadFormat::Charon)
        .charon_map_keys(map_keys);
    RedisStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.log()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// An Erlang expression for a `%Charon.Models.Session{}`: `user` and
/// `expires` and `extra` are Erlang expressions.
fn erl_session(id: &str, user: &str, kind: &str, now: i64, expires: &str, extra: &str) -> String {
    format!(
        "charon_peer:session(#{{id => <<\"{id}\">>, user_id => {user}, type => {kind}, \
         created_at => {now}, expires_at => {expires}, refresh_expires_at => {}, \
         refresh_token_id => <<\"rt-{id}\">>, refreshed_at => {now}, tokens_fresh_from => {now}, \
         prev_tokens_fresh_from => {}, lock_version => 0, extra_payload => {extra}}})",
        now + 3600,
        now - 60
    )
}

/// Writes a signed value as Charon's `opt_lock_upsert` function does, and
/// as Charon's own tests insert sessions: `HSETEX key EXAT exp FIELDS 2
/// sid value l.sid lock`.
async fn charon_insert(
    conn: &mut MultiplexedConnection,
    key: &str,
    sid: &str,
    value: &[u8],
    lock: u64,
    exat: i64,
) {
    let written: i64 = redis::cmd("HSETEX")
        .arg(key)
        .arg("EXAT")
        .arg(exat)
        .arg("FIELDS")
        .arg(2)
        .arg(sid)
        .arg(value)
        .arg(format!("l.{sid}"))
        .arg(lock)
        .query_async(conn)
        .await
        .expect("HSETEX");
    assert_eq!(written, 1);
}

async fn keys(conn: &mut MultiplexedConnection) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(conn)
        .await
        .expect("KEYS");
    keys.sort();
    keys
}

/// A function library with Charon 4.3's lock rule (`opt_lock_upsert`:
/// writes unless a lock field exists whose value plus one differs from the
/// new lock version; answers `CONFLICT` or the `HSETEX` reply), named as
/// Charon names its library for version 4.3.0, written from that rule for
/// these tests.
const CHARON_RULE_LIBRARY: &str = r"#!lua name=charon_redis_store___V__
local function opt_lock_upsert(keys, args)
  local stored = redis.call('HGET', keys[1], args[2])
  if stored and tonumber(stored) + 1 ~= tonumber(args[3]) then
    return 'CONFLICT'
  end
  return redis.call('HSETEX', keys[1], 'EXAT', args[5], 'FIELDS', 2, args[1], args[4], args[2], args[3])
end
redis.register_function('opt_lock_upsert___V__', opt_lock_upsert)
";

/// Loads the Charon-rule library; returns the function's name.
async fn load_charon_library(erl: &mut Erlang, conn: &mut MultiplexedConnection) -> String {
    let version = erl.term("charon_peer:library_version().");
    let code = CHARON_RULE_LIBRARY.replace("__V__", &version);
    let name: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(code)
        .query_async(conn)
        .await
        .expect("FUNCTION LOAD of the Charon-rule library");
    assert_eq!(name, format!("charon_redis_store_{version}"));
    format!("opt_lock_upsert_{version}")
}

/// Charon's upsert call: `FCALL opt_lock_upsert_<v> 1 key sid l.sid lock value exp`.
async fn charon_fcall(
    conn: &mut MultiplexedConnection,
    function: &str,
    key: &str,
    sid: &str,
    lock: u64,
    value: &[u8],
    exat: i64,
) -> redis::Value {
    redis::cmd("FCALL")
        .arg(function)
        .arg(1)
        .arg(key)
        .arg(sid)
        .arg(format!("l.{sid}"))
        .arg(lock)
        .arg(value)
        .arg(exat)
        .query_async(conn)
        .await
        .expect("FCALL of Charon's upsert")
}

/// Sessions Erlang built and signed as Charon 4.3 does, in both atom
/// encodings (OTP 25's default `ATOM_EXT` and `SMALL_ATOM_UTF8_EXT`) and
/// compressed, with string, integer and big-integer user ids, infinite and
/// finite expiry and a rich `extra_payload` (atoms, binaries, integers of
/// every size, floats, lists, a charlist, tuples, nested maps, a
/// `DateTime` struct, an integer key, a Latin-1 atom), written with
/// `HSETEX` as Charon's function does: the store's `get` and `get_all` read
/// them with every field as Charon stored it (`get(sid, "42", type)` finds
/// integer user 42 at `charon_.42.full`), `upsert` refreshes them, and
/// Erlang reads the refreshed sessions back `=:=` equal to what it expects
/// (the untouched `extra_payload` included) and byte for byte what its own
/// `term_to_binary` writes; `delete` removes session and lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erlang_written_sessions_are_read_refreshed_and_deleted() {
    let mut t = both(MapKeys::Binaries).await;
    let now = Session::now();
    let later = (now + 7200).to_string();
    let cases = [
        // (sid, Erlang user id, user id as the store gets it, kind, expires, extra, encoder)
        (
            "sa",
            "<<\"alice\">>",
            "alice",
            UserIdKind::String,
            "infinite",
            "#{}",
            "charon_peer:encode",
        ),
        (
            "sb",
            "42",
            "42",
            UserIdKind::Integer,
            later.as_str(),
            "charon_peer:rich_payload()",
            "charon_peer:encode_default",
        ),
        (
            "sc",
            "42",
            "42",
            UserIdKind::Integer,
            "infinite",
            "charon_peer:rich_payload()",
            "(fun(T) -> term_to_binary(T, [compressed]) end)",
        ),
        (
            "sd",
            "1 bsl 70",
            "1180591620717411303424",
            UserIdKind::Integer,
            "infinite",
            "#{<<\"device\">> => <<\"phone\">>}",
            "charon_peer:encode",
        ),
    ];
    for (sid, user, _, _, expires, extra, encoder) in &cases {
        let value = t.erl.bytes(&format!(
            "S_{sid} = charon_peer:for_upsert({}), charon_peer:sign({encoder}(S_{sid}), K).",
            erl_session(sid, user, "full", now, expires, extra)
        ));
        let key = format!(
            "charon_.{}.full",
            cases.iter().find(|c| c.0 == *sid).unwrap().2
        );
        // As Charon's upsert stores a new session: lock version 1.
        charon_insert(&mut t.conn, &key, sid, &value, 1, now + 3600).await;
    }
    // The compressed and the ATOM_EXT forms are what they claim to be.
    let sb = hget(&mut t.conn, "charon_.42.full", "sb").await.unwrap();
    assert_eq!(&sb[40..42], [0x83, 0x74], "uncompressed map");
    assert!(sb.windows(3).any(|w| w == [100, 0, 10]), "ATOM_EXT atoms");
    let sc = hget(&mut t.conn, "charon_.42.full", "sc").await.unwrap();
    assert_eq!(&sc[40..42], [0x83, 80], "compressed term");

    for (sid, _, user, kind, expires, _, _) in &cases {
        let s = t
            .store
            .get(sid, user, "full")
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("session {sid} of {user} not read"));
        assert_eq!(
            (s.id.as_str(), s.user_id.as_str(), s.user_id_kind),
            (*sid, *user, *kind)
        );
        assert_eq!(s.session_type, "full");
        assert_eq!(s.refresh_token_id, format!("rt-{sid}"));
        assert_eq!(
            (
                s.created_at,
                s.refreshed_at,
                s.tokens_fresh_from,
                s.prev_tokens_fresh_from
            ),
            (now, now, now, now - 60)
        );
        assert_eq!(s.refresh_expires_at, now + 3600);
        assert_eq!(s.expires_at, expires.parse().ok());
        assert_eq!(s.lock_version, 1);
    }
    let sb = t.store.get("sb", "42", "full").await.unwrap().unwrap();
    let p = &sb.extra_payload;
    assert_eq!(p["role"], json!("admin"));
    assert_eq!(p["ip"], json!("2001:db8::1"));
    assert_eq!(p["count"], json!(42));
    assert_eq!(p["big"], json!("1208925819614629174706176"));
    assert_eq!(p["negative"], json!(-(1i64 << 40)));
    assert_eq!(p["ratio"], json!(0.1));
    assert_eq!(p["pi"], json!(std::f64::consts::PI));
    assert_eq!((&p["nothing"], &p["yes"]), (&json!(null), &json!(true)));
    assert_eq!(p["scopes"], json!(["read", "write"]));
    assert_eq!(p["charlist"], json!([97, 98, 99]));
    assert_eq!(p["point"], json!([1, 2.5, "z"]));
    assert_eq!(
        p["nested"],
        json!({"deep": {"level": 3, "list": [1, [2, [3]]]}})
    );
    assert_eq!(p["signed_in_at"]["__struct__"], json!("Elixir.DateTime"));
    assert_eq!(p["signed_in_at"]["microsecond"], json!([123456, 6]));
    assert_eq!(p["raw"], json!([255, 0, 1]));
    assert_eq!(p["1"], json!("integer key"));
    assert_eq!(p["café"], json!("latin-1 atom"));
    assert_eq!(p["unicode"], json!("用户"));
    assert_eq!((&p["empty"], &p["nil_list"]), (&json!({}), &json!([])));

    let mut all = t.store.get_all("42", "full").await.unwrap();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["sb", "sc"]
    );
    // A binary "42" user id at the same key is another user for Charon,
    // and for the store the same address: it is returned too (the owner
    // check compares the digits).
    assert_eq!(all[0], sb);

    // Refresh each in Rust, then let Erlang read it as Charon does.
    for (sid, user, store_user, _, _, _, _) in &cases {
        let mut s = t.store.get(sid, store_user, "full").await.unwrap().unwrap();
        s.rotate_refresh_token(Duration::from_secs(1800));
        t.store.upsert(&mut s).await.unwrap();
        assert_eq!(s.lock_version, 2);
        let key = format!("charon_.{store_user}.full");
        let value = hget(&mut t.conn, &key, sid).await.unwrap();
        let checks = t.erl.term(&format!(
            "G_{sid} = charon_peer:charon_get({}, <<\"{sid}\">>, {user}, full, K, {now}), \
             E_{sid} = S_{sid}#{{lock_version := 2, refresh_token_id := <<\"{}\">>, \
             tokens_fresh_from := {}, prev_tokens_fresh_from := {}, refreshed_at := {}, \
             refresh_expires_at := {}}}, {{ok, D_{sid}}} = charon_peer:verify({}, K), \
             {{G_{sid} =:= E_{sid}, \
             maps:get(extra_payload, G_{sid}) =:= maps:get(extra_payload, S_{sid}), \
             D_{sid} =:= charon_peer:encode(E_{sid})}}.",
            binary(&value),
            s.refresh_token_id,
            s.tokens_fresh_from,
            s.prev_tokens_fresh_from,
            s.refreshed_at,
            s.refresh_expires_at,
            binary(&value),
        ));
        assert_eq!(checks, "{true,true,true}", "session {sid}");
        let lock = hget(&mut t.conn, &key, &format!("l.{sid}")).await.unwrap();
        assert_eq!(lock, b"2");
    }

    t.store.delete("sb", "42", "full").await.unwrap();
    let left = hgetall(&mut t.conn, "charon_.42.full").await;
    let left: Vec<&[u8]> = left.keys().map(Vec::as_slice).collect();
    assert_eq!(left, [&b"l.sc"[..], b"sc"]);
}

/// Sessions the store writes in Charon's format, from Rust: Erlang verifies
/// the signature with the key it derives itself, `binary_to_term` gives
/// `=:=` the `%Charon.Models.Session{}` it builds from the same fields
/// (binary or atom map keys as configured, integer user ids as integers),
/// and its own `term_to_binary(…, [{minor_version, 2}])` of that struct is
/// byte for byte the stored payload. A value in the compact format makes
/// Charon's `binary_to_term` raise, which is why the format exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_written_sessions_are_charons_bytes() {
    let mut t = both(MapKeys::Binaries).await;
    let atoms = charon_store(&t.server, MapKeys::Atoms).await;
    let ttl = Duration::from_secs(3600);

    let mut alice = Session::new_login("alice", ttl);
    alice.expires_at = Some(alice.refresh_expires_at + 86_400);
    alice.extra_payload = json!({
        "device": "laptop", "n": 1.5, "tags": ["a", "b"], "none": null, "ok": true,
        "meta": {"x": 1, "y": [-70000, 18446744073709551615u64]}
    })
    .as_object()
    .unwrap()
    .clone();
    let mut integer = Session::new_login_integer(42, ttl);
    integer.session_type = "oauth2".into();
    let mut atom_keys = alice.clone();
    atom_keys.id = "atom-keys".into();

    let binary_payload = "#{<<\"device\">> => <<\"laptop\">>, <<\"n\">> => 1.5, \
        <<\"tags\">> => [<<\"a\">>, <<\"b\">>], <<\"none\">> => nil, <<\"ok\">> => true, \
        <<\"meta\">> => #{<<\"x\">> => 1, <<\"y\">> => [-70000, 18446744073709551615]}}";
    let atom_payload = "#{device => <<\"laptop\">>, n => 1.5, tags => [<<\"a\">>, <<\"b\">>], \
        none => nil, ok => true, meta => #{x => 1, y => [-70000, 18446744073709551615]}}";
    // (session, its user id in Erlang, as `~w` prints it, extra_payload, store)
    let alice_w = "<<97,108,105,99,101>>";
    for (i, (session, erl_user, printed_user, extra, via)) in [
        (
            &mut alice,
            "<<\"alice\">>",
            alice_w,
            binary_payload,
            &t.store,
        ),
        (&mut integer, "42", "42", "#{}", &t.store),
        (
            &mut atom_keys,
            "<<\"alice\">>",
            alice_w,
            atom_payload,
            &atoms,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        via.upsert(session).await.unwrap();
        let key = format!("charon_.{}.{}", session.user_id, session.session_type);
        let value = hget(&mut t.conn, &key, &session.id).await.unwrap();
        let expires = session
            .expires_at
            .map_or_else(|| "infinite".to_owned(), |e| e.to_string());
        let expected = format!(
            "charon_peer:session(#{{id => <<\"{}\">>, user_id => {erl_user}, type => {}, \
             created_at => {}, expires_at => {expires}, refresh_expires_at => {}, \
             refresh_token_id => <<\"{}\">>, refreshed_at => {}, tokens_fresh_from => {}, \
             prev_tokens_fresh_from => {}, lock_version => 1, extra_payload => {extra}}})",
            session.id,
            session.session_type,
            session.created_at,
            session.refresh_expires_at,
            session.refresh_token_id,
            session.refreshed_at,
            session.tokens_fresh_from,
            session.prev_tokens_fresh_from,
        );
        let erlang_bytes = t
            .erl
            .bytes(&format!("E{i} = {expected}, charon_peer:encode(E{i})."));
        let checks = t.erl.term(&format!(
            "{{ok, D{i}}} = charon_peer:verify({}, K), T{i} = binary_to_term(D{i}), \
             {{T{i} =:= E{i}, D{i} =:= charon_peer:encode(E{i}), maps:get(user_id, T{i})}}.",
            binary(&value)
        ));
        assert_eq!(
            checks,
            format!("{{true,true,{printed_user}}}"),
            "session {}",
            session.id
        );
        let stored_payload = &value[40..];
        assert_eq!(
            hex(stored_payload),
            hex(&erlang_bytes),
            "session {}",
            session.id
        );
        if i == 1 {
            eprintln!(
                "BYTES integer user 42, type oauth2:\n  Erlang term_to_binary(E, [{{minor_version, 2}}]): {}\n  store payload:                                  {}",
                hex(&erlang_bytes),
                hex(stored_payload)
            );
        }
    }

    // Charon cannot read the compact format: binary_to_term raises.
    let compact = RedisStore::connect(RedisStoreConfig::new(
        t.server.url(),
        SigningKey::from_base_secret(BASE_SECRET).unwrap(),
    ))
    .await
    .unwrap();
    let mut bob = Session::new_login("bob", ttl);
    compact.upsert(&mut bob).await.unwrap();
    let value = hget(&mut t.conn, "charon_.bob.full", &bob.id)
        .await
        .unwrap();
    let err = t
        .erl
        .try_eval(&format!(
            "charon_peer:charon_get({}, <<\"{}\">>, <<\"bob\">>, full, K, 0).",
            binary(&value),
            bob.id
        ))
        .unwrap_err();
    assert!(err.contains("badarg"), "{err}");
}

// ---------------------------------------------------------------------------
// Charon's own test suite (test/charon/session_store/redis_store_test.exs,
// v4.3.0), as behaviour of this store on PayloadFormat::Charon
// ---------------------------------------------------------------------------

/// Charon's `@user_session`: id "a", user 426, refresh window `TTL`.
const TTL: i64 = 60;

/// Binds `U` in Erlang to Charon's `@user_session` and returns the same
/// session as the store reads it.
fn user_session(erl: &mut Erlang, now: i64) -> Session {
    erl.eval(&format!(
        "U = charon_peer:session(#{{id => <<\"a\">>, user_id => 426, created_at => {now}, \
         expires_at => infinite, refresh_expires_at => {}, refresh_token_id => <<\"b\">>, \
         refreshed_at => {now}, tokens_fresh_from => {now}}}), ok.",
        now + TTL
    ));
    {
        let mut s = Session::default();
        s.id = "a".into();
        s.user_id = "426".into();
        s.user_id_kind = UserIdKind::Integer;
        s.created_at = now;
        s.expires_at = None;
        s.refresh_expires_at = now + TTL;
        s.refreshed_at = now;
        s.refresh_token_id = "b".into();
        s.tokens_fresh_from = now;
        s.prev_tokens_fresh_from = 0;
        s
    }
}

/// Charon's test `insert/1`: the Erlang session `expr`, serialized and
/// signed as Charon does, written with `HSETEX` at its key with its lock.
async fn insert(erl: &mut Erlang, conn: &mut MultiplexedConnection, expr: &str) {
    let value = erl.bytes(&format!(
        "charon_peer:sign(charon_peer:encode_default({expr}), K)."
    ));
    let user = erl.term(&format!("maps:get(user_id, {expr})."));
    let kind = erl.term(&format!("maps:get(type, {expr})."));
    let lock: u64 = erl
        .term(&format!("maps:get(lock_version, {expr})."))
        .parse()
        .unwrap();
    let id = erl.bytes(&format!("maps:get(id, {expr})."));
    let exp: i64 = erl
        .term(&format!("maps:get(refresh_expires_at, {expr})."))
        .parse()
        .unwrap();
    let id = String::from_utf8(id).unwrap();
    charon_insert(
        conn,
        &format!("charon_.{user}.{kind}"),
        &id,
        &value,
        lock,
        exp,
    )
    .await;
}

/// The signed value Charon writes for the Erlang session `expr`.
fn charon_value(erl: &mut Erlang, expr: &str) -> Vec<u8> {
    erl.bytes(&format!("charon_peer:sign(charon_peer:encode({expr}), K)."))
}

/// Deletes the lock field of `sid` (which must exist), as Charon's tests do
/// to show what happens without one.
async fn drop_lock(conn: &mut MultiplexedConnection, key: &str, sid: &str) {
    let deleted: i64 = redis::cmd("HDEL")
        .arg(key)
        .arg(format!("l.{sid}"))
        .query_async(conn)
        .await
        .expect("HDEL");
    assert_eq!(deleted, 1);
}

async fn flushdb(conn: &mut MultiplexedConnection) {
    redis::cmd("FLUSHDB")
        .query_async::<()>(conn)
        .await
        .expect("FLUSHDB");
}

/// Charon's `describe "get/4"`: nil when not found or of another type; the
/// deserialized session; the session also when its lock field is gone; nil
/// for an unsigned value, a value with a wrong signature, and a validly
/// signed session of another user in this user's hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charon_suite_get() {
    let mut t = both(MapKeys::Atoms).await;
    let now = Session::now();
    let expected = user_session(&mut t.erl, now);
    let get = || t.store.get("a", "426", "full");

    assert_eq!(get().await.unwrap(), None, "not found");
    insert(&mut t.erl, &mut t.conn, "U#{type := oauth2}").await;
    assert_eq!(get().await.unwrap(), None, "other type");
    insert(&mut t.erl, &mut t.conn, "U").await;
    assert_eq!(get().await.unwrap(), Some(expected.clone()), "deserialized");

    flushdb(&mut t.conn).await;
    insert(&mut t.erl, &mut t.conn, "U#{lock_version := 100}").await;
    drop_lock(&mut t.conn, "charon_.426.full", "a").await;
    let without_lock = {
        let mut s = expected.clone();
        s.lock_version = 100;
        s
    };
    assert_eq!(get().await.unwrap(), Some(without_lock), "lock not found");

    let unsigned = t.erl.bytes("charon_peer:encode_default(U).");
    flushdb(&mut t.conn).await;
    hset(&mut t.conn, "charon_.426.full", b"a", &unsigned).await;
    assert_eq!(get().await.unwrap(), None, "unsigned");
    let forged = [&b"signed."[..], &[7; 32], b".", &unsigned].concat();
    hset(&mut t.conn, "charon_.426.full", b"a", &forged).await;
    assert_eq!(get().await.unwrap(), None, "invalid signature");
    let other_user = charon_value(&mut t.erl, "U#{user_id := 427}");
    hset(&mut t.conn, "charon_.426.full", b"a", &other_user).await;
    assert_eq!(get().await.unwrap(), None, "mismatching properties");
    // A binary "426" is another user for Charon; the store, addressed by
    // the digits, takes it as this user's (see GUIDE.md).
    let binary_user = charon_value(&mut t.erl, "U#{user_id := <<\"426\">>}");
    hset(&mut t.conn, "charon_.426.full", b"a", &binary_user).await;
    let read = get().await.unwrap().unwrap();
    assert_eq!(read.user_id_kind, UserIdKind::String);
}

/// Charon's `describe "upsert/3"`: stores session (with lock version 1,
/// byte for byte OTP 25's `term_to_binary(S, [{minor_version, 2}])` of
/// Charon's struct), lock and field expiry; separates by type;
/// updates an existing session and its expiry (an `extra_payload` of
/// `%{new: "key"}` with atom keys); sets no expiry on the key; skips an
/// already-expired session; optimistic locking against the input session;
/// get-then-upsert passes. And the one rule that differs: a refresh of a
/// session whose lock field is gone is refused (Charon's function writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charon_suite_upsert() {
    let mut t = both(MapKeys::Atoms).await;
    let now = Session::now();
    let exp = now + TTL;
    let user_session = user_session(&mut t.erl, now);
    let key = "charon_.426.full";

    // Stores session, lock and exp.
    let mut s = user_session.clone();
    t.store.upsert(&mut s).await.unwrap();
    let stored = hget(&mut t.conn, key, "a").await.unwrap();
    assert_eq!(stored, charon_value(&mut t.erl, "U#{lock_version := 1}"));
    assert_eq!(hget(&mut t.conn, key, "l.a").await.unwrap(), b"1");
    assert_eq!(
        hexpiretime(&mut t.conn, key, &["a", "l.a"]).await,
        [exp, exp]
    );
    // Does not set the key's expiry.
    let ttl: i64 = redis::cmd("TTL")
        .arg(key)
        .query_async(&mut t.conn)
        .await
        .unwrap();
    assert_eq!(ttl, -1);

    // Implements optimistic locking with respect to the input session.
    let mut again = user_session.clone();
    assert!(matches!(
        t.store.upsert(&mut again).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(hget(&mut t.conn, key, "a").await.unwrap(), stored);
    assert_eq!(hget(&mut t.conn, key, "l.a").await.unwrap(), b"1");
    assert_eq!(
        hexpiretime(&mut t.conn, key, &["a", "l.a"]).await,
        [exp, exp]
    );

    // Updates the existing session and the expirations.
    let mut update = {
        let mut s = user_session.clone();
        s.lock_version = 1;
        s.refresh_expires_at = exp + 10;
        s
    };
    update.extra_payload.insert("new".into(), json!("key"));
    t.store.upsert(&mut update).await.unwrap();
    assert_eq!(
        hexpiretime(&mut t.conn, key, &["a", "l.a"]).await,
        [exp + 10, exp + 10]
    );
    let value = hget(&mut t.conn, key, "a").await.unwrap();
    let matched = t.erl.term(&format!(
        "{{ok, Up}} = charon_peer:verify({}, K), \
         case binary_to_term(Up) of #{{extra_payload := #{{new := <<\"key\">>}}}} -> true; _ -> false end.",
        binary(&value)
    ));
    assert_eq!(matched, "true");

    // Get-update passes optimistic locking.
    let mut read = t.store.get("a", "426", "full").await.unwrap().unwrap();
    t.store.upsert(&mut read).await.unwrap();
    assert_eq!(read.lock_version, 3);

    // Separates by type.
    let mut oauth2 = {
        let mut s = user_session.clone();
        s.session_type = "oauth2".into();
        s
    };
    t.store.upsert(&mut oauth2).await.unwrap();
    let full = hget(&mut t.conn, key, "a").await.unwrap();
    let other = hget(&mut t.conn, "charon_.426.oauth2", "a").await.unwrap();
    assert_ne!(full, other);

    // Skips an already-expired session.
    flushdb(&mut t.conn).await;
    let mut dead = {
        let mut s = user_session.clone();
        s.refreshed_at = now + 10_000;
        s
    };
    t.store.upsert(&mut dead).await.unwrap();
    assert!(keys(&mut t.conn).await.is_empty());

    // The one rule that differs: with its lock field gone, Charon's
    // function writes a refresh (and would bring a deleted session back);
    // this store refuses it.
    let function = load_charon_library(&mut t.erl, &mut t.conn).await;
    insert(&mut t.erl, &mut t.conn, "U#{lock_version := 5}").await;
    drop_lock(&mut t.conn, key, "a").await;
    let mut refresh = t.store.get("a", "426", "full").await.unwrap().unwrap();
    assert_eq!(refresh.lock_version, 5);
    refresh.rotate_refresh_token(Duration::from_secs(60));
    assert!(matches!(
        t.store.upsert(&mut refresh).await,
        Err(StoreError::Conflict)
    ));
    let value = charon_value(&mut t.erl, "U#{lock_version := 6}");
    let reply = charon_fcall(&mut t.conn, &function, key, "a", 6, &value, exp).await;
    assert_eq!(reply, redis::Value::Int(1), "Charon's rule writes");
    assert_eq!(hget(&mut t.conn, key, "l.a").await.unwrap(), b"6");
}

/// Charon's `describe "delete/4"`: ok when not found; deletes session and
/// lock and leaves the other session; the key is gone with its last
/// session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charon_suite_delete() {
    let mut t = both(MapKeys::Atoms).await;
    user_session(&mut t.erl, Session::now());
    t.store.delete("a", "426", "full").await.unwrap();
    insert(&mut t.erl, &mut t.conn, "U").await;
    insert(&mut t.erl, &mut t.conn, "U#{id := <<\"b\">>}").await;
    t.store.delete("b", "426", "full").await.unwrap();
    let mut values: Vec<Vec<u8>> = hgetall(&mut t.conn, "charon_.426.full")
        .await
        .into_values()
        .collect();
    values.sort();
    let a = t
        .erl
        .bytes("charon_peer:sign(charon_peer:encode_default(U), K).");
    assert_eq!(values, [b"0".to_vec(), a]);
    t.store.delete("a", "426", "full").await.unwrap();
    assert!(keys(&mut t.conn).await.is_empty());
}

/// Charon's `describe "get_all/3"`: empty when there is nothing; only the
/// user's unexpired, validly signed sessions of the requested type (not an
/// unsigned one, an expired one, another user's or another type's); a
/// session whose lock field is gone is still listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charon_suite_get_all() {
    let mut t = both(MapKeys::Atoms).await;
    let now = Session::now();
    let expected = user_session(&mut t.erl, now);
    assert!(t.store.get_all("426", "full").await.unwrap().is_empty());

    let key = "charon_.426.full";
    insert(&mut t.erl, &mut t.conn, "U").await;
    let unsigned = t
        .erl
        .bytes("charon_peer:encode_default(U#{id := <<\"b\">>}).");
    hset(&mut t.conn, key, b"b", &unsigned).await;
    let expired = charon_value(
        &mut t.erl,
        &format!("U#{{id := <<\"c\">>, refresh_expires_at := {}}}", now - 5),
    );
    hset(&mut t.conn, key, b"c", &expired).await;
    let other_user = charon_value(&mut t.erl, "U#{id := <<\"d\">>, user_id := 427}");
    hset(&mut t.conn, key, b"d", &other_user).await;
    let wrong_type = charon_value(&mut t.erl, "U#{id := <<\"e\">>, type := wrong}");
    hset(&mut t.conn, key, b"e", &wrong_type).await;
    assert_eq!(
        t.store.get_all("426", "full").await.unwrap(),
        std::slice::from_ref(&expected)
    );

    flushdb(&mut t.conn).await;
    insert(&mut t.erl, &mut t.conn, "U#{lock_version := 100}").await;
    drop_lock(&mut t.conn, key, "a").await;
    let without_lock = {
        let mut s = expected;
        s.lock_version = 100;
        s
    };
    assert_eq!(
        t.store.get_all("426", "full").await.unwrap(),
        [without_lock]
    );
}

/// Charon's `describe "delete_all/3"`: works without keys and with a hash
/// holding only a lock field; removes the user's sessions of the requested
/// type and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charon_suite_delete_all() {
    let mut t = both(MapKeys::Atoms).await;
    user_session(&mut t.erl, Session::now());
    t.store.delete_all("426", "full").await.unwrap();
    assert!(keys(&mut t.conn).await.is_empty());
    hset(&mut t.conn, "charon_.426.full", b"l.a", b"12").await;
    t.store.delete_all("426", "full").await.unwrap();
    assert!(keys(&mut t.conn).await.is_empty());

    insert(&mut t.erl, &mut t.conn, "U").await;
    assert_eq!(keys(&mut t.conn).await, ["charon_.426.full"]);
    insert(&mut t.erl, &mut t.conn, "U#{type := oauth2}").await;
    insert(&mut t.erl, &mut t.conn, "U#{user_id := 427}").await;
    t.store.delete_all("426", "full").await.unwrap();
    assert_eq!(
        keys(&mut t.conn).await,
        ["charon_.426.oauth2", "charon_.427.full"]
    );
}

// ---------------------------------------------------------------------------
// Both services on one server
// ---------------------------------------------------------------------------

/// Erlang (with Charon's upsert rule, its function library loaded next to
/// the store's) and the store refresh the same three sessions in turn, six
/// rounds: a string user's and an integer user's created in Rust, and one
/// created by Erlang with a rich `extra_payload`. Lock versions continue
/// across both sides (1 to 7); in every round a stale copy is written
/// again, from Rust (`Conflict`) or from Erlang (`CONFLICT`), and refused;
/// each side reads the other's writes; the Erlang session's
/// `extra_payload` is `=:=` equal at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erlang_and_rust_refresh_the_same_sessions_in_turn() {
    let mut t = both(MapKeys::Binaries).await;
    let function = load_charon_library(&mut t.erl, &mut t.conn).await;
    let libraries: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(&mut t.conn)
        .await
        .unwrap();
    let listed = format!("{libraries:?}");
    assert!(
        listed.contains("charon_redis_store_")
            && listed.contains(RedisStore::function_library_name()),
        "{listed}"
    );

    let now = Session::now();
    let ttl = Duration::from_secs(3600);
    let mut alice = Session::new_login("alice", ttl);
    alice.extra_payload.insert("device".into(), json!("laptop"));
    t.store.upsert(&mut alice).await.unwrap();
    let mut integer = Session::new_login_integer(42, ttl);
    t.store.upsert(&mut integer).await.unwrap();
    // Created by Erlang: Charon's upsert of a new session (lock 0 -> 1).
    let created = t.erl.bytes(&format!(
        "R0 = charon_peer:for_upsert({}), charon_peer:sign(charon_peer:encode_default(R0), K).",
        erl_session(
            "rich",
            "7",
            "full",
            now,
            "infinite",
            "charon_peer:rich_payload()"
        )
    ));
    let reply = charon_fcall(
        &mut t.conn,
        &function,
        "charon_.7.full",
        "rich",
        1,
        &created,
        now + 3600,
    )
    .await;
    assert_eq!(reply, redis::Value::Int(1));

    // (session id, user id for the store, user id in Erlang)
    let sessions = [
        (alice.id.clone(), "alice", "<<\"alice\">>"),
        (integer.id.clone(), "42", "42"),
        ("rich".to_owned(), "7", "7"),
    ];
    for round in 0..6u64 {
        let lock = round + 1;
        for (n, (sid, user, erl_user)) in sessions.iter().enumerate() {
            let key = format!("charon_.{user}.full");
            if round % 2 == 0 {
                let mut s = t.store.get(sid, user, "full").await.unwrap().unwrap();
                assert_eq!(s.lock_version, lock, "round {round}, {sid}");
                let mut stale = s.clone();
                s.rotate_refresh_token(ttl);
                t.store.upsert(&mut s).await.unwrap();
                assert_eq!(s.lock_version, lock + 1);
                stale.rotate_refresh_token(ttl);
                assert!(matches!(
                    t.store.upsert(&mut stale).await,
                    Err(StoreError::Conflict)
                ));
            } else {
                let value = hget(&mut t.conn, &key, sid).await.unwrap();
                let read = t.erl.term(&format!(
                    "P_{round}_{n} = charon_peer:charon_get({}, <<\"{sid}\">>, {erl_user}, full, K, {now}), \
                     maps:get(lock_version, P_{round}_{n}).",
                    binary(&value)
                ));
                assert_eq!(read, lock.to_string(), "round {round}, {sid}");
                let refreshed = t.erl.bytes(&format!(
                    "N_{round}_{n} = charon_peer:for_upsert(charon_peer:refresh(P_{round}_{n}, {now}, 3600)), \
                     charon_peer:sign(charon_peer:encode_default(N_{round}_{n}), K)."
                ));
                // The same stale copy, refreshed again: refused.
                let stale = t.erl.bytes(&format!(
                    "charon_peer:sign(charon_peer:encode_default(charon_peer:for_upsert(\
                     charon_peer:refresh(P_{round}_{n}, {now}, 3600))), K)."
                ));
                for (value, expected) in [
                    (refreshed, redis::Value::Int(1)),
                    (stale, redis::Value::BulkString(b"CONFLICT".to_vec())),
                ] {
                    let reply = charon_fcall(
                        &mut t.conn,
                        &function,
                        &key,
                        sid,
                        lock + 1,
                        &value,
                        now + 3600,
                    )
                    .await;
                    assert_eq!(reply, expected, "round {round}, {sid}");
                }
            }
            let stored_lock = hget(&mut t.conn, &key, &format!("l.{sid}")).await.unwrap();
            assert_eq!(stored_lock, (lock + 1).to_string().as_bytes());
        }
    }
    let s = t.store.get("rich", "7", "full").await.unwrap().unwrap();
    assert_eq!((s.lock_version, s.user_id_kind), (7, UserIdKind::Integer));
    let value = hget(&mut t.conn, "charon_.7.full", "rich").await.unwrap();
    let same = t.erl.term(&format!(
        "maps:get(extra_payload, charon_peer:charon_get({}, <<\"rich\">>, 7, full, K, {now})) \
         =:= charon_peer:rich_payload().",
        binary(&value)
    ));
    assert_eq!(same, "true");
}

// ---------------------------------------------------------------------------
// What the store writes reads back, on both sides
// ---------------------------------------------------------------------------

/// A session Erlang wrote with `extra_payload` `#{a => 1, <<"a">> => 2,
/// other => 3, role => admin, raw => <<255, 0, 1>>, nil => 4}`, changed in
/// Rust (`other`, `role` set to the string "true", `raw` to the bytes [1,
/// 2, 255]) and written back: Erlang reads both `a` keys and `nil` as they
/// were, `role` as the binary `<<"true">>` (an atom `true` would read back
/// as a boolean) and `raw` as a binary; the store reads back what it set.
/// And a map set from Rust with `MapKeys::Atoms` whose key is "nil" is
/// `#{nil => 1}` in Erlang and `{"nil": 1}` back in Rust (not "null").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_values_keep_their_erlang_keys_and_types() {
    let mut t = both(MapKeys::Binaries).await;
    let now = Session::now();
    let extra =
        "#{a => 1, <<\"a\">> => 2, other => 3, role => admin, raw => <<255, 0, 1>>, nil => 4}";
    let value = t.erl.bytes(&format!(
        "X0 = charon_peer:for_upsert({}), charon_peer:sign(charon_peer:encode_default(X0), K).",
        erl_session("x", "<<\"xavier\">>", "full", now, "infinite", extra)
    ));
    charon_insert(
        &mut t.conn,
        "charon_.xavier.full",
        "x",
        &value,
        1,
        now + 3600,
    )
    .await;
    let mut s = t.store.get("x", "xavier", "full").await.unwrap().unwrap();
    assert_eq!(
        serde_json::Value::Object(s.extra_payload.clone()),
        json!({"a": 2, "other": 3, "role": "admin", "raw": [255, 0, 1], "nil": 4})
    );
    s.extra_payload.insert("other".into(), json!(5));
    s.extra_payload.insert("role".into(), json!("true"));
    s.extra_payload.insert("raw".into(), json!([1, 2, 255]));
    let set = s.extra_payload.clone();
    t.store.upsert(&mut s).await.unwrap();
    let stored = hget(&mut t.conn, "charon_.xavier.full", "x").await.unwrap();
    let same = t.erl.term(&format!(
        "maps:get(extra_payload, charon_peer:charon_get({}, <<\"x\">>, <<\"xavier\">>, full, K, {now})) \
         =:= #{{a => 1, <<\"a\">> => 2, other => 5, role => <<\"true\">>, raw => <<1, 2, 255>>, nil => 4}}.",
        binary(&stored)
    ));
    assert_eq!(same, "true");
    let back = t.store.get("x", "xavier", "full").await.unwrap().unwrap();
    assert_eq!(back.extra_payload, set);

    let atoms = charon_store(&t.server, MapKeys::Atoms).await;
    let mut n = Session::new_login("nina", Duration::from_secs(3600));
    n.extra_payload.insert("nil".into(), json!(1));
    atoms.upsert(&mut n).await.unwrap();
    let stored = hget(&mut t.conn, "charon_.nina.full", &n.id).await.unwrap();
    let same = t.erl.term(&format!(
        "maps:get(extra_payload, charon_peer:charon_get({}, <<\"{}\">>, <<\"nina\">>, full, K, {now})) \
         =:= #{{nil => 1}}.",
        binary(&stored),
        n.id
    ));
    assert_eq!(same, "true");
    let back = atoms.get(&n.id, "nina", "full").await.unwrap().unwrap();
    assert_eq!(back.extra_payload, n.extra_payload);
}

/// Whatever upsert accepts in Charon's format, get returns (and Erlang
/// reads); whatever get would refuse, upsert refuses first with
/// `InvalidInput` naming the limit, writing nothing: `extra_payload` nested
/// so that its deepest value sits at level 128 counted as decoding counts
/// (the struct is level 0) is written and read back, one level more is
/// refused; a payload over MAX_TERM_BYTES (1 MiB) is refused even with a
/// `max_session_size` of 4 MiB. The compact format keeps the same rule at
/// its own depth limit (one level less).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_refuses_what_get_would_not_read() {
    let mut t = both(MapKeys::Binaries).await;
    let nested = |maps: usize| {
        // {"d": {"d": … 1}}, `maps` maps inside extra_payload: the leaf is
        // at level maps + 2.
        let mut value = json!(1);
        for _ in 0..maps {
            value = json!({ "d": value });
        }
        let mut s = Session::new_login("deep", Duration::from_secs(3600));
        s.extra_payload.insert("d".into(), value);
        s
    };
    let max = charon_sessions::codec::MAX_TERM_DEPTH;
    let mut deepest = nested(max - 2);
    t.store.upsert(&mut deepest).await.unwrap();
    let back = t
        .store
        .get(&deepest.id, "deep", "full")
        .await
        .unwrap()
        .expect("the deepest accepted session reads back");
    assert_eq!(back.extra_payload, deepest.extra_payload);
    let stored = hget(&mut t.conn, "charon_.deep.full", &deepest.id)
        .await
        .unwrap();
    let read = t.erl.term(&format!(
        "is_map(charon_peer:charon_get({}, <<\"{}\">>, <<\"deep\">>, full, K, 0)).",
        binary(&stored),
        deepest.id
    ));
    assert_eq!(read, "true");

    let mut too_deep = nested(max - 1);
    let err = t.store.upsert(&mut too_deep).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("deeper than 128"), "{err}");
    assert_eq!(too_deep.lock_version, 0);
    assert!(
        hget(&mut t.conn, "charon_.deep.full", &too_deep.id)
            .await
            .is_none()
    );

    // The compact format, whose decoder counts its record array too: the
    // deepest value it reads back is one level less.
    let compact = RedisStore::connect(RedisStoreConfig::new(
        t.server.url(),
        SigningKey::from_base_secret(BASE_SECRET).unwrap(),
    ))
    .await
    .unwrap();
    let mut deepest = nested(max - 3);
    compact.upsert(&mut deepest).await.unwrap();
    let back = compact.get(&deepest.id, "deep", "full").await.unwrap();
    assert_eq!(back.map(|s| s.extra_payload), Some(deepest.extra_payload));
    let mut too_deep = nested(max - 2);
    let err = compact.upsert(&mut too_deep).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("deeper than 126"), "{err}");
    assert!(
        hget(&mut t.conn, "charon_.deep.full", &too_deep.id)
            .await
            .is_none()
    );

    let key = SigningKey::from_base_secret(BASE_SECRET).unwrap();
    let roomy = RedisStore::connect(
        RedisStoreConfig::new(t.server.url(), key)
            .payload_format(PayloadFormat::Charon)
            .max_session_size(4 << 20),
    )
    .await
    .unwrap();
    let mut big = Session::new_login("big", Duration::from_secs(3600));
    big.extra_payload.insert(
        "blob".into(),
        json!("x".repeat(charon_sessions::codec::MAX_TERM_BYTES)),
    );
    let err = roomy.upsert(&mut big).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("MAX_TERM_BYTES"), "{err}");
    assert!(
        hget(&mut t.conn, "charon_.big.full", &big.id)
            .await
            .is_none()
    );
}

/// An integer user's session written in the compact format (slot 13 holds
/// its user id kind), read and refreshed by a store writing Charon's
/// format, keeps its integer user id: Erlang finds `user_id` `42`, an
/// integer, as Charon compares it. Integer user ids that are not positive
/// (Charon's `pos_integer`) are refused by upsert with `InvalidInput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integer_user_ids_survive_the_compact_format() {
    let mut t = both(MapKeys::Binaries).await;
    let compact = RedisStore::connect(RedisStoreConfig::new(
        t.server.url(),
        SigningKey::from_base_secret(BASE_SECRET).unwrap(),
    ))
    .await
    .unwrap();
    let mut s = Session::new_login_integer(42, Duration::from_secs(3600));
    compact.upsert(&mut s).await.unwrap();
    let stored = hget(&mut t.conn, "charon_.42.full", &s.id).await.unwrap();
    assert_eq!(stored[40], charon_sessions::codec::FORMAT_MSGPACK);

    let mut read = t.store.get(&s.id, "42", "full").await.unwrap().unwrap();
    assert_eq!(read.user_id_kind, UserIdKind::Integer);
    read.rotate_refresh_token(Duration::from_secs(3600));
    t.store.upsert(&mut read).await.unwrap();
    let stored = hget(&mut t.conn, "charon_.42.full", &s.id).await.unwrap();
    assert_eq!(stored[40], charon_sessions::codec::FORMAT_TERM);
    let user = t.erl.term(&format!(
        "maps:get(user_id, charon_peer:charon_get({}, <<\"{}\">>, 42, full, K, 0)).",
        binary(&stored),
        s.id
    ));
    assert_eq!(user, "42");

    for not_positive in [0, -7] {
        for store in [&compact, &t.store] {
            let mut s = Session::new_login_integer(not_positive, Duration::from_secs(3600));
            let err = store.upsert(&mut s).await.unwrap_err();
            assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
            assert!(err.to_string().contains("positive"), "{err}");
        }
    }
    assert_eq!(keys(&mut t.conn).await, ["charon_.42.full"]);
}
