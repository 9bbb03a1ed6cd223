//! Secrets and rights, on real Redis 8 / Valkey 9 servers: signing-key
//! rotation, a least-privilege ACL user, TLS with a throw-away CA plus AUTH,
//! and secrets kept out of `Debug` output, errors and logs.

mod common;

use std::io::Write;

use charon_sessions::signing::{self, SigningKey};
use charon_sessions::{RedisStore, RedisStoreConfig, Session, SessionStore, StoreError};
use charon_sessions_testkit::{Flavor, TestServer, free_port};
use redis::aio::MultiplexedConnection;

use common::raw::{Captured, raw, raw_url};
use common::{HOUR, login};

async fn connect(config: RedisStoreConfig) -> RedisStore {
    RedisStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

async fn raw_value(conn: &mut MultiplexedConnection, session: &Session) -> Vec<u8> {
    let key = format!("charon_.{}.{}", session.user_id, session.session_type);
    redis::cmd("HGET")
        .arg(key)
        .arg(&session.id)
        .query_async(conn)
        .await
        .unwrap()
}

on_both_servers!(
    key_rotation_reads_old_values_and_writes_with_the_new_key,
    least_privilege_user_runs_the_store_and_nothing_else,
    tls_with_custom_ca_and_password,
    mutual_tls_with_a_client_certificate,
);

/// A full signing-key rotation: sessions written under the old key stay
/// readable while the old key is a verification key; each refresh re-signs
/// with the new key; once all have refreshed the old key can go.
async fn key_rotation_reads_old_values_and_writes_with_the_new_key(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let mut conn = raw(&server).await;
    let old = SigningKey::from_bytes(b"old key old key old key old key!").unwrap();
    let new = SigningKey::from_bytes(b"new key new key new key new key!").unwrap();

    let before = connect(RedisStoreConfig::new(server.url(), old.clone())).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut s = login("alice");
        before.upsert(&mut s).await.unwrap();
        sessions.push(s);
    }

    // Deploy with the new key, the old one still accepted.
    let during = connect(
        RedisStoreConfig::new(server.url(), new.clone()).verification_keys(vec![old.clone()]),
    )
    .await;
    let new_only = connect(RedisStoreConfig::new(server.url(), new.clone())).await;
    assert_eq!(during.get_all("alice", "full").await.unwrap().len(), 3);
    assert!(new_only.get_all("alice", "full").await.unwrap().is_empty());

    // Refreshing migrates a session to the new key.
    for (i, s) in sessions.iter_mut().enumerate() {
        let mut read = during.get(&s.id, "alice", "full").await.unwrap().unwrap();
        read.rotate_refresh_token(HOUR);
        during.upsert(&mut read).await.unwrap();
        *s = read;
        let value = raw_value(&mut conn, s).await;
        assert!(
            signing::verify(&value, &new).is_ok(),
            "signed with the new key"
        );
        assert_eq!(
            signing::verify(&value, &old),
            Err(signing::SignatureError::Mismatch),
            "no longer valid under the old key"
        );
        assert_eq!(
            new_only.get_all("alice", "full").await.unwrap().len(),
            i + 1
        );
    }

    // All migrated: the old key can be dropped; the old-key store sees nothing.
    let mut all = new_only.get_all("alice", "full").await.unwrap();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    sessions.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(all, sessions);
    assert!(before.get_all("alice", "full").await.unwrap().is_empty());
}

async fn acl(conn: &mut MultiplexedConnection, args: &[&str]) -> redis::RedisResult<redis::Value> {
    redis::cmd("ACL").arg(args).query_async(conn).await
}

/// `rule`'s parts except `drop`, appended to `args`.
fn args_without<'a>(rule: &'a str, drop: &str, args: &mut Vec<&'a str>) {
    args.extend(rule.split(' ').filter(|part| *part != drop));
}

fn is_noperm(result: redis::RedisResult<redis::Value>) -> bool {
    matches!(result, Err(e) if e.code() == Some("NOPERM"))
}

/// The ACL rule from `RedisStoreConfig::acl_rule` is enough to run every
/// store operation with `register_functions(false)` after an admin loaded
/// the library, and the user can neither touch keys outside the prefix nor
/// load functions.
async fn least_privilege_user_runs_the_store_and_nothing_else(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let mut admin = raw(&server).await;
    // The user existed before with broader rights (a selector reaching other
    // keys): the rule must take them away.
    acl(
        &mut admin,
        &["SETUSER", "app", "on", ">old-pw", "(+get ~other*)"],
    )
    .await
    .unwrap();
    let app_url = format!("redis://app:app-pw@127.0.0.1:{}", server.port());
    let rule = RedisStoreConfig::new(app_url.clone(), common::test_key())
        .key_prefix("myapp")
        .register_functions(false)
        .acl_rule()
        .unwrap();
    let mut args = vec!["SETUSER", "app", "on", "resetpass", ">app-pw"];
    args.extend(rule.split(' '));
    acl(&mut admin, &args).await.unwrap();

    // Without the library loaded and without the right to load it, connect
    // with register_functions(true) is refused by the server.
    let refused = RedisStore::connect(
        RedisStoreConfig::new(app_url.clone(), common::test_key()).key_prefix("myapp"),
    )
    .await
    .expect_err("the app user may not FUNCTION LOAD");
    assert!(matches!(refused, StoreError::Auth(_)), "{refused:?}");

    let admin_config = RedisStoreConfig::new(server.url(), common::test_key());
    RedisStore::load_function_library(&admin_config)
        .await
        .unwrap();
    let store = connect(
        RedisStoreConfig::new(app_url.clone(), common::test_key())
            .key_prefix("myapp")
            .register_functions(false),
    )
    .await;
    let mut a = login("alice");
    let mut b = login("alice");
    store.upsert(&mut a).await.unwrap();
    store.upsert(&mut b).await.unwrap();
    let mut read = store.get(&a.id, "alice", "full").await.unwrap().unwrap();
    read.rotate_refresh_token(HOUR);
    store.upsert(&mut read).await.unwrap();
    assert_eq!(store.get_all("alice", "full").await.unwrap().len(), 2);
    store.delete(&b.id, "alice", "full").await.unwrap();
    store.delete_all("alice", "full").await.unwrap();
    assert!(store.get_all("alice", "full").await.unwrap().is_empty());

    // What the app user may not do.
    redis::cmd("SET")
        .arg("other.key")
        .arg("x")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let mut app = raw_url(&app_url).await;
    let attempts: Vec<(&str, redis::Cmd)> = vec![
        (
            "GET outside the prefix",
            redis::cmd("GET").arg("other.key").clone(),
        ),
        (
            "SET outside the prefix",
            redis::cmd("SET").arg("other.key").arg("y").clone(),
        ),
        (
            "HGETALL outside the prefix",
            redis::cmd("HGETALL").arg("charon_.alice.full").clone(),
        ),
        (
            "DEL outside the prefix",
            redis::cmd("DEL").arg("other.key").clone(),
        ),
        ("KEYS", redis::cmd("KEYS").arg("*").clone()),
        (
            "FUNCTION LOAD",
            redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(RedisStore::function_library_code())
                .clone(),
        ),
        (
            "FUNCTION FLUSH",
            redis::cmd("FUNCTION").arg("FLUSH").clone(),
        ),
        ("FLUSHALL", redis::cmd("FLUSHALL").clone()),
        (
            "CONFIG SET",
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory")
                .arg("1")
                .clone(),
        ),
    ];
    let old_password =
        redis::Client::open(format!("redis://app:old-pw@127.0.0.1:{}", server.port()))
            .unwrap()
            .get_multiplexed_async_connection()
            .await;
    assert!(old_password.is_err(), "resetpass drops the old password");
    for (what, cmd) in attempts {
        let result = cmd.query_async::<redis::Value>(&mut app).await;
        assert!(
            is_noperm(result.clone()),
            "{what} must be refused, got {result:?}"
        );
    }
    let untouched: String = redis::cmd("GET")
        .arg("other.key")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(untouched, "x");

    // A user missing a right the function needs (HSETEX) gets Auth, not a
    // generic server error, and nothing is written.
    let mut no_hsetex = vec!["SETUSER", "nohsetex", "on", ">pw2"];
    args_without(&rule, "+hsetex", &mut no_hsetex);
    acl(&mut admin, &no_hsetex).await.unwrap();
    let weak = connect(
        RedisStoreConfig::new(
            format!("redis://nohsetex:pw2@127.0.0.1:{}", server.port()),
            common::test_key(),
        )
        .key_prefix("myapp")
        .register_functions(false),
    )
    .await;
    let mut d = login("alice");
    match weak.upsert(&mut d).await {
        Err(e @ StoreError::Auth(_)) => assert!(!e.is_unavailable()),
        other => panic!("expected Auth for the missing HSETEX right, got {other:?}"),
    }
    assert_eq!(weak.get(&d.id, "alice", "full").await.unwrap(), None);

    // If the library goes missing, the restricted store says so clearly
    // instead of trying to load it.
    redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let mut c = login("alice");
    match store.upsert(&mut c).await {
        Err(StoreError::FunctionLibraryMissing(name)) => {
            assert_eq!(name, RedisStore::function_library_name())
        }
        other => panic!("expected FunctionLibraryMissing, got {other:?}"),
    }
    assert_eq!(c.lock_version, 0);
}

/// A throw-away CA, a server certificate for 127.0.0.1 / localhost and a
/// client certificate.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

fn throwaway_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    // A subject of its own: with the CA's (rcgen's default name), OpenSSL
    // would take it for self-signed.
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "charon-sessions test client");
    let client_cert = client_params.signed_by(&client_key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// A server of `flavor` with a TLS port whose certificate comes from
/// `pki`'s CA, requiring client certificates when `clients` is "yes", and
/// that port.
fn tls_server(
    flavor: Flavor,
    pki: &Pki,
    dir: &std::path::Path,
    clients: &str,
) -> (TestServer, u16) {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ca, cert, key) = (
        write("ca.pem", &pki.ca_pem),
        write("server.pem", &pki.cert_pem),
        write("server.key", &pki.key_pem),
    );
    let tls_port = free_port();
    let server = TestServer::start_with(
        flavor,
        &[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            clients,
            "--requirepass",
            "tls-pw",
        ],
    );
    (server, tls_port)
}

/// `rediss://` with a password against a TLS-enabled server whose
/// certificate comes from a throw-away CA: works with that CA configured,
/// fails without it, and fails with a wrong password.
async fn tls_with_custom_ca_and_password(flavor: Flavor) {
    let pki = throwaway_pki();
    let dir = tempfile::tempdir().unwrap();
    let (server, tls_port) = tls_server(flavor, &pki, dir.path(), "no");
    let url = format!("rediss://:tls-pw@127.0.0.1:{tls_port}");

    let store = connect(
        RedisStoreConfig::new(url.clone(), common::test_key())
            .tls_root_certificate(pki.ca_pem.as_bytes()),
    )
    .await;
    let mut s = login("alice");
    store.upsert(&mut s).await.unwrap();
    assert_eq!(store.get(&s.id, "alice", "full").await.unwrap(), Some(s));
    // The store's TLS has a crypto provider of its own: the process-wide
    // default, which the application may want to install, is left alone.
    assert!(
        rustls::crypto::CryptoProvider::get_default().is_none(),
        "connecting over TLS installed a process-wide crypto provider"
    );
    // The connection really is TLS: the plain port shows the data too, and
    // the TLS port refuses plain text.
    let mut plain = raw_url(&format!("redis://:tls-pw@127.0.0.1:{}", server.port())).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut plain)
        .await
        .unwrap();
    assert_eq!(keys, vec!["charon_.alice.full".to_owned()]);
    let plain_on_tls = redis::Client::open(format!("redis://:tls-pw@127.0.0.1:{tls_port}"))
        .unwrap()
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(std::time::Duration::from_secs(1)))
                .set_response_timeout(Some(std::time::Duration::from_secs(1))),
        )
        .await;
    assert!(plain_on_tls.is_err());

    // Without the CA the server's certificate is not trusted.
    let untrusted = RedisStore::connect(RedisStoreConfig::new(url.clone(), common::test_key()))
        .await
        .expect_err("certificate from an unknown CA");
    assert!(
        matches!(untrusted, StoreError::Connection(_)),
        "{untrusted:?}"
    );

    // A wrong password is refused, and never shown.
    let wrong = RedisStore::connect(
        RedisStoreConfig::new(
            format!("rediss://:not-the-pw@127.0.0.1:{tls_port}"),
            common::test_key(),
        )
        .tls_root_certificate(pki.ca_pem.as_bytes()),
    )
    .await
    .expect_err("wrong password");
    let shown = format!("{wrong} {wrong:?}");
    assert!(!shown.contains("not-the-pw"), "{shown}");
}

/// Mutual TLS: a server that requires client certificates accepts the
/// store with its client certificate, and refuses it without one; a URL
/// asking not to verify the server is refused before connecting.
async fn mutual_tls_with_a_client_certificate(flavor: Flavor) {
    let pki = throwaway_pki();
    let dir = tempfile::tempdir().unwrap();
    let (_server, tls_port) = tls_server(flavor, &pki, dir.path(), "yes");
    let url = format!("rediss://:tls-pw@127.0.0.1:{tls_port}");
    let config = || {
        RedisStoreConfig::new(url.clone(), common::test_key())
            .tls_root_certificate(pki.ca_pem.as_bytes())
    };

    let store = connect(config().tls_client_certificate(
        pki.client_cert_pem.as_bytes(),
        pki.client_key_pem.as_bytes(),
    ))
    .await;
    let mut s = login("alice");
    store.upsert(&mut s).await.unwrap();
    assert_eq!(store.get(&s.id, "alice", "full").await.unwrap(), Some(s));

    let refused = RedisStore::connect(config())
        .await
        .expect_err("no client certificate");
    assert!(matches!(refused, StoreError::Connection(_)), "{refused:?}");

    let insecure = RedisStore::connect(
        RedisStoreConfig::new(format!("{url}/#insecure"), common::test_key())
            .tls_root_certificate(pki.ca_pem.as_bytes()),
    )
    .await
    .expect_err("#insecure");
    assert!(
        matches!(&insecure, StoreError::InvalidInput(m) if m.contains("#insecure")),
        "{insecure:?}"
    );

    let bad_key = RedisStore::connect(config().tls_client_certificate(
        pki.client_cert_pem.as_bytes(),
        b"-----BEGIN PRIVATE KEY-----\nSECRET-KEY-BYTES\n-----END PRIVATE KEY-----\n".as_slice(),
    ))
    .await
    .expect_err("a private key that does not parse");
    let shown = format!("{bad_key} {bad_key:?}");
    assert!(matches!(bad_key, StoreError::InvalidInput(_)), "{shown}");
    assert!(!shown.contains("SECRET-KEY-BYTES"), "{shown}");
}

/// `Debug` of keys, configurations, stores and errors shows no key bytes,
/// no password and no client private key.
#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let key = SigningKey::from_bytes(b"KEYBYTES-KEYBYTES-KEYBYTES-KEYBY").unwrap();
    let config = RedisStoreConfig::new("redis://user:PASSWORD-123@127.0.0.1:1/0", key.clone())
        .verification_keys(vec![
            SigningKey::from_bytes(b"OLDKEY-OLDKEY-OLDKEY").unwrap(),
        ])
        .tls_client_certificate("CERT", "PRIVATE-KEY-PEM");
    let port = free_port();
    let err = RedisStore::connect(RedisStoreConfig::new(
        format!("redis://user:PASSWORD-123@127.0.0.1:{port}"),
        key.clone(),
    ))
    .await
    .unwrap_err();
    let shown = format!("{key:?} {key:#?} {config:?} {config:#?} {err} {err:?}");
    for secret in ["KEYBYTES", "OLDKEY", "PASSWORD-123", "PRIVATE-KEY-PEM"] {
        assert!(!shown.contains(secret), "{secret} shown in: {shown}");
    }
    assert!(shown.contains("<redacted>"));
}

/// With the store's logging at TRACE, a run of all
/// operations, a conflict, a function reload and rejected values logs
/// neither session values, refresh token ids nor the signing key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_session_values_or_keys() {
    let captured = Captured::default();
    let subscriber = captured.subscriber();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start(Flavor::Redis);
    let mut conn = raw(&server).await;
    let store = connect(RedisStoreConfig::new(server.url(), common::test_key())).await;
    let mut s = login("alice");
    s.extra_payload
        .insert("secret".into(), serde_json::json!("PAYLOAD-MARKER-0042"));
    store.upsert(&mut s).await.unwrap();
    let mut stale = s.clone();
    let mut read = store.get(&s.id, "alice", "full").await.unwrap().unwrap();
    read.rotate_refresh_token(HOUR);
    store.upsert(&mut read).await.unwrap();
    assert!(store.upsert(&mut stale).await.unwrap_err().is_conflict());
    redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    store.upsert(&mut read).await.unwrap();
    // A value signed with another key and one naming another session id.
    let forged = signing::sign(
        &charon_sessions::codec::encode(&read),
        &SigningKey::from_bytes(b"forger").unwrap(),
    );
    redis::cmd("HSET")
        .arg("charon_.alice.full")
        .arg("forged")
        .arg(forged)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.get("forged", "alice", "full").await.unwrap(), None);
    assert_eq!(store.get_all("alice", "full").await.unwrap().len(), 1);
    store.delete_all("alice", "full").await.unwrap();

    let log = captured.text();
    assert!(
        log.contains("registering it again"),
        "the reload is logged: {log}"
    );
    assert!(log.contains("ignoring invalid stored session"), "{log}");
    for secret in [
        "PAYLOAD-MARKER-0042",
        s.refresh_token_id.as_str(),
        read.refresh_token_id.as_str(),
        "signed.",
        "0123456789abcdef",
    ] {
        assert!(!log.contains(secret), "log shows {secret:?}:\n{log}");
    }
}
