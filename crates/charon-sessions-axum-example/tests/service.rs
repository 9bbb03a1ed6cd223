//! The service binary end to end over HTTP: started on a free port, once
//! against a real Redis 8 and once on its in-memory store, driven through
//! logins on two devices, refreshes (with a replay inside the grace
//! window), parallel refreshes with one token, device listing, a logout of
//! one device, logout everywhere and `/metrics`; refresh-token reuse after
//! the grace window and tokens with a wrong `jti`; request metrics under
//! invented HTTP methods; weak base secrets refused at start.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use charon_sessions_testkit::{Flavor, TestServer};
use reqwest::StatusCode;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_charon-sessions-axum-example");

/// Every variable the service reads, cleared so the caller's environment
/// cannot leak into a test.
const SERVICE_VARS: &[&str] = &[
    "BIND",
    "REDIS_URL",
    "CHARON_BASE_SECRET",
    "CHARON_ALLOW_WEAK_SECRET",
    "JWT_SECRET",
    "ACCESS_TOKEN_TTL_SECS",
    "REFRESH_TTL_SECS",
    "TOKEN_LEEWAY_SECS",
    "ROTATION_GRACE_SECS",
];

/// A running service process, killed on drop. Its log (stderr) goes to a
/// file that failing assertions print.
struct Service {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts the service on `127.0.0.1:0` with `envs` and waits for the line
    /// announcing its address. No leeway and a 2 s grace window, so the test
    /// can step out of the window quickly.
    fn start(envs: &[(&str, &str)]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("service.log");
        let mut command = Command::new(BIN);
        command.args(["--bind", "127.0.0.1:0"]);
        for var in SERVICE_VARS {
            command.env_remove(var);
        }
        command
            .env("RUST_LOG", "info")
            .env("TOKEN_LEEWAY_SECS", "0")
            .env("ROTATION_GRACE_SECS", "2")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = command.spawn().expect("run the service binary");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(address) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the service did not announce its address (stdout {line:?}); log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Service {
            base: address.to_owned(),
            child,
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the flow checks on the Redis side, when there is one.
struct RedisSide {
    conn: redis::Connection,
}

impl RedisSide {
    fn exists(&mut self, key: &str) -> bool {
        redis::cmd("EXISTS")
            .arg(key)
            .query::<i64>(&mut self.conn)
            .unwrap()
            == 1
    }

    fn fields(&mut self, key: &str) -> i64 {
        redis::cmd("HLEN").arg(key).query(&mut self.conn).unwrap()
    }
}

/// A base secret of 32 bytes or more, as the service demands.
const BASE_SECRET: &str = "axum example test base secret, 32 bytes or more";

/// The JWT secret of the tests that forge tokens.
const JWT_SECRET: &str = "axum example test JWT secret";

/// The JSON claims inside a JWT (not verified: the service does that).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The `jti` of the refresh token in a token-pair answer.
fn jti(pair: &Value) -> Value {
    claims(pair["refresh_token"].as_str().unwrap())["jti"].clone()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the service answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

async fn login(http: &reqwest::Client, service: &Service, user: &str) -> Value {
    let (status, body) = send(
        http.post(service.url("/login"))
            .json(&serde_json::json!({ "user_id": user })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", service.log());
    body
}

async fn refresh(http: &reqwest::Client, service: &Service, token: &str) -> (StatusCode, Value) {
    send(
        http.post(service.url("/refresh"))
            .json(&serde_json::json!({ "refresh_token": token })),
    )
    .await
}

async fn sessions(http: &reqwest::Client, service: &Service, access: &str) -> Vec<Value> {
    let (status, body) = send(http.get(service.url("/sessions")).bearer_auth(access)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["sessions"].as_array().unwrap().clone()
}

fn lock_version(sessions: &[Value], id: &Value) -> u64 {
    let session = sessions
        .iter()
        .find(|s| &s["id"] == id)
        .unwrap_or_else(|| panic!("session {id} not listed in {sessions:?}"));
    session["lock_version"].as_u64().unwrap()
}

/// The whole flow against a started service; `redis` checks the keys when
/// the service runs on Redis.
async fn whole_flow(service: &Service, mut redis: Option<RedisSide>) {
    let http = reqwest::Client::new();
    // A dot in the user id: the key stays unambiguous.
    let user = "alice.example";
    let key = format!("charon_.{user}.full");

    // Two devices log in.
    let phone = login(&http, service, user).await;
    let laptop = login(&http, service, user).await;
    assert_ne!(phone["session_id"], laptop["session_id"]);
    assert_eq!(phone["token_type"], "Bearer");
    let refresh_claims = claims(phone["refresh_token"].as_str().unwrap());
    assert_eq!(refresh_claims["sid"], phone["session_id"]);
    assert_eq!(refresh_claims["sub"], user);
    assert_eq!(refresh_claims["styp"], "full");
    assert_eq!(refresh_claims["typ"], "refresh");
    assert!((refresh_claims["iat"].as_i64().unwrap() - now()).abs() <= 5);
    assert_eq!(refresh_claims["exp"], phone["refresh_expires_at"]);
    assert!(
        refresh_claims["jti"]
            .as_str()
            .is_some_and(|j| !j.is_empty())
    );
    let access_claims = claims(phone["access_token"].as_str().unwrap());
    assert!(access_claims.get("jti").is_none(), "{access_claims}");
    if let Some(r) = redis.as_mut() {
        assert!(r.exists(&key), "{key} after login");
        assert_eq!(
            r.fields(&key),
            4,
            "two sessions, each a value and a lock field"
        );
    }

    // Wrong tokens are refused without touching the session.
    let phone_access = phone["access_token"].as_str().unwrap();
    let (status, body) = refresh(&http, service, phone_access).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &"invalid_token".into())
    );
    let (status, _) = refresh(&http, service, "not-a-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = send(http.get(service.url("/sessions")).bearer_auth("nope")).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &"invalid_token".into())
    );

    // The devices, as the phone sees them.
    let listed = sessions(&http, service, phone_access).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    for s in &listed {
        for field in [
            "id",
            "created_at",
            "refreshed_at",
            "refresh_expires_at",
            "expires_at",
        ] {
            assert!(s.get(field).is_some(), "{field} missing in {s}");
        }
        assert_eq!(s["lock_version"], 1);
        assert_eq!(s["current"], s["id"] == phone["session_id"]);
        assert!(s.get("refresh_token_id").is_none(), "{s}");
    }

    // A refresh rotates the refresh token id (the jti).
    let first = phone["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = refresh(&http, service, &first).await;
    assert_eq!(status, StatusCode::OK, "{second}\n{}", service.log());
    assert_ne!(jti(&second), refresh_claims["jti"], "{second}");
    // Inside the 2 s grace window the first token still works (a parallel
    // request of the same client), and its answer is of the same
    // generation. What happens after the window: `reuse_after_grace`.
    let (status, third) = refresh(&http, service, &first).await;
    assert_eq!(status, StatusCode::OK, "{third}\n{}", service.log());
    assert_eq!(jti(&third), jti(&second));

    // Parallel refreshes with one token: each wins or loses the race
    // cleanly, none is logged out, and each win bumped the lock version.
    let laptop_access = laptop["access_token"].as_str().unwrap();
    let before = lock_version(
        &sessions(&http, service, laptop_access).await,
        &phone["session_id"],
    );
    let token = third["refresh_token"].as_str().unwrap();
    let results =
        futures_util::future::join_all((0..4).map(|_| refresh(&http, service, token))).await;
    let mut wins = 0;
    let mut latest = None;
    for (status, body) in &results {
        match *status {
            StatusCode::OK => {
                wins += 1;
                latest = Some(body["refresh_token"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["error"], "conflict", "{body}");
                assert!(
                    body["message"]
                        .as_str()
                        .unwrap()
                        .contains("concurrent refresh"),
                    "{body}"
                );
            }
            other => panic!(
                "parallel refresh answered {other}: {body}\n{}",
                service.log()
            ),
        }
    }
    assert!(wins >= 1, "{results:?}");
    let after = lock_version(
        &sessions(&http, service, laptop_access).await,
        &phone["session_id"],
    );
    assert_eq!(after, before + wins, "{results:?}");
    eprintln!(
        "parallel refreshes: {wins} of 4 won, {} conflicts",
        4 - wins
    );

    // The phone logs the laptop out.
    let (status, _) = send(
        http.delete(service.url(&format!(
            "/sessions/{}",
            laptop["session_id"].as_str().unwrap()
        )))
        .bearer_auth(phone_access),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let listed = sessions(&http, service, phone_access).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], phone["session_id"]);
    let (status, body) = refresh(&http, service, laptop["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &"session_not_found".into())
    );
    if let Some(r) = redis.as_mut() {
        assert_eq!(r.fields(&key), 2, "one session left");
    }

    // Logout everywhere.
    let (status, _) = send(
        http.post(service.url("/logout-all"))
            .bearer_auth(phone_access),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(sessions(&http, service, phone_access).await.is_empty());
    let (status, body) = refresh(&http, service, &latest.unwrap()).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &"session_not_found".into())
    );
    if let Some(r) = redis.as_mut() {
        assert!(!r.exists(&key), "{key} after logout-all");
    }

    // The request counter, in Prometheus text format.
    let response = http.get(service.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let logins = text
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{")
                && l.contains(r#"route="/login""#)
                && l.contains(r#"method="POST""#)
                && l.contains(r#"status="200""#)
        })
        .unwrap_or_else(|| panic!("no login counter in /metrics:\n{text}"));
    assert!(logins.ends_with(" 2"), "{logins}");
    assert!(text.contains(r#"route="/sessions/{id}""#), "{text}");
    assert!(text.contains("http_request_duration_seconds"), "{text}");
}

/// The whole flow on Redis 8; the user's hash appears at login, shrinks
/// with a device logout and is gone after logout everywhere.
#[tokio::test]
async fn whole_flow_on_redis8() {
    let server = TestServer::start(Flavor::Redis);
    let service = Service::start(&[
        ("REDIS_URL", server.url().as_str()),
        ("CHARON_BASE_SECRET", BASE_SECRET),
    ]);
    assert!(
        service.log().contains("RedisStore on Redis 8"),
        "{}",
        service.log()
    );
    let conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    whole_flow(&service, Some(RedisSide { conn })).await;
    let log = service.log();
    assert!(!log.contains(BASE_SECRET), "{log}");
}

/// The same flow without `REDIS_URL`: the in-memory store.
#[tokio::test]
async fn whole_flow_on_local_store() {
    let service = Service::start(&[]);
    assert!(service.log().contains("LocalStore"), "{}", service.log());
    whole_flow(&service, None).await;
}

/// `REDIS_URL` without a base secret is refused at start, naming the
/// missing variable.
#[test]
fn redis_without_base_secret_is_refused() {
    let port = charon_sessions_testkit::free_port();
    let mut command = Command::new(BIN);
    for var in SERVICE_VARS {
        command.env_remove(var);
    }
    let out = command
        .args(["--bind", "127.0.0.1:0"])
        .env("REDIS_URL", format!("redis://127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("CHARON_BASE_SECRET"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing may be announced");
}

/// The counter `name` without labels in `/metrics`, 0 when not rendered.
async fn counter(http: &reqwest::Client, service: &Service, name: &str) -> u64 {
    let text = http
        .get(service.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Refresh-token reuse, as a thief and a victim holding the same token
/// would cause it. Two tabs refresh with the login token within the grace
/// window and both succeed; their answers share one generation, so after
/// the window either answer's token refreshes (no false alarm). A token
/// superseded by that refresh, presented after the window, answers 401
/// `token_reused` and revokes the session: then the newest token and the
/// reused one both get 401 `session_not_found`, the session is gone from
/// the store, `refresh_token_reuse_total` counts one, and the service logs
/// a warning that shows no token.
async fn reuse_after_grace(service: &Service, mut redis: Option<RedisSide>) {
    let http = reqwest::Client::new();
    let user = "mallory.victim";
    let key = format!("charon_.{user}.full");
    let login = login(&http, service, user).await;
    let sid = login["session_id"].as_str().unwrap().to_owned();
    let login_token = login["refresh_token"].as_str().unwrap();

    // Two tabs refresh with the login token within the grace window.
    let (status, tab1) = refresh(&http, service, login_token).await;
    assert_eq!(status, StatusCode::OK, "{tab1}\n{}", service.log());
    let (status, tab2) = refresh(&http, service, login_token).await;
    assert_eq!(status, StatusCode::OK, "{tab2}\n{}", service.log());
    assert_eq!(jti(&tab1), jti(&tab2), "one generation");
    assert_ne!(jti(&tab1), jti(&login));

    // After the window, the first tab's token (the answer the client may
    // have kept) still refreshes: it is current.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let superseded = tab1["refresh_token"].as_str().unwrap();
    let (status, newest) = refresh(&http, service, superseded).await;
    assert_eq!(status, StatusCode::OK, "{newest}\n{}", service.log());
    assert_ne!(jti(&newest), jti(&tab1));
    // The second tab's token, of the same generation, within the new window.
    let (status, body) = refresh(&http, service, tab2["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", service.log());
    assert_eq!(
        counter(&http, service, "refresh_token_reuse_total").await,
        0
    );

    // The superseded token again, after the window: reuse.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = refresh(&http, service, superseded).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &"token_reused".into()),
        "{body}\n{}",
        service.log()
    );
    let newest_token = newest["refresh_token"].as_str().unwrap();
    for (token, whose) in [(newest_token, "the newest"), (superseded, "the reused")] {
        let (status, body) = refresh(&http, service, token).await;
        assert_eq!(
            (status, &body["error"]),
            (StatusCode::UNAUTHORIZED, &"session_not_found".into()),
            "{whose} token: {body}"
        );
    }
    let access = newest["access_token"].as_str().unwrap();
    assert!(
        sessions(&http, service, access)
            .await
            .iter()
            .all(|s| s["id"] != sid.as_str()),
        "the session is revoked"
    );
    if let Some(r) = redis.as_mut() {
        assert!(!r.exists(&key), "{key} after the reuse");
    }
    assert_eq!(
        counter(&http, service, "refresh_token_reuse_total").await,
        1
    );

    let log = service.log();
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("refresh token reuse"))
        .unwrap_or_else(|| panic!("no reuse warning in the log:\n{log}"));
    assert!(warning.contains(&sid), "{warning}");
    for token in [superseded, newest_token, login_token] {
        assert!(!log.contains(token), "a token reached the log:\n{log}");
    }
    for pair in [&login, &tab1, &newest] {
        let id = jti(pair);
        assert!(
            !log.contains(id.as_str().unwrap()),
            "a jti reached the log:\n{log}"
        );
    }
    eprintln!(
        "refresh token reuse: two tabs within the grace window both refreshed; \
         the superseded token after it answered token_reused, then both tokens \
         session_not_found; refresh_token_reuse_total 1"
    );
}

/// Refresh-token reuse on Redis 8: the user's hash is gone after it.
#[tokio::test]
async fn refresh_token_reuse_revokes_the_session_on_redis8() {
    let server = TestServer::start(Flavor::Redis);
    let service = Service::start(&[
        ("REDIS_URL", server.url().as_str()),
        ("CHARON_BASE_SECRET", BASE_SECRET),
    ]);
    let conn = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    reuse_after_grace(&service, Some(RedisSide { conn })).await;
}

/// Refresh-token reuse on the in-memory store.
#[tokio::test]
async fn refresh_token_reuse_revokes_the_session_on_local_store() {
    let service = Service::start(&[]);
    reuse_after_grace(&service, None).await;
}

/// A refresh token signed with the service's own JWT secret and fresh by
/// every other claim (session, user, type, issue time) but whose `jti` is
/// not the session's gets 401 `token_reused` and revokes the session; one
/// without a `jti` is 401 `invalid_token` and changes nothing.
#[tokio::test]
async fn a_refresh_token_with_a_wrong_jti_is_refused() {
    let service = Service::start(&[("JWT_SECRET", JWT_SECRET)]);
    let http = reqwest::Client::new();
    let pair = login(&http, &service, "alice").await;
    let genuine = pair["refresh_token"].as_str().unwrap();
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap();
    let forge = |claims: &Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &key,
        )
        .unwrap()
    };
    // The forging works: the genuine claims, re-signed, are accepted.
    let (status, body) = refresh(&http, &service, &forge(&claims(genuine))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let genuine = body["refresh_token"].as_str().unwrap().to_owned();

    let mut no_jti = claims(&genuine);
    no_jti.as_object_mut().unwrap().remove("jti");
    let (status, body) = refresh(&http, &service, &forge(&no_jti)).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &"invalid_token".into()),
        "{body}"
    );

    let mut wrong = claims(&genuine);
    wrong["jti"] = "Aaaaaaaaaaaaaaaaaaaaaa".into();
    wrong["iat"] = now().into();
    let (status, body) = refresh(&http, &service, &forge(&wrong)).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &"token_reused".into()),
        "{body}"
    );
    let (status, body) = refresh(&http, &service, &genuine).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &"session_not_found".into()),
        "{body}"
    );
}

/// Fifty requests with invented HTTP methods (`X` and eight random
/// letters) add at most one series to each request metric: the methods are
/// labelled `other`.
#[tokio::test]
async fn invented_http_methods_add_at_most_one_series() {
    let service = Service::start(&[]);
    let http = reqwest::Client::new();
    let series = |text: &str, prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    let scrape = || async {
        http.get(service.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // The first scrape's own series appear in the second.
    scrape().await;
    let before = scrape().await;
    let mut random = [0u8; 50 * 8];
    getrandom::fill(&mut random).unwrap();
    for letters in random.chunks(8) {
        let name: String = std::iter::once('X')
            .chain(letters.iter().map(|b| char::from(b'A' + b % 26)))
            .collect();
        let method = reqwest::Method::from_bytes(name.as_bytes()).unwrap();
        let response = http
            .request(method, service.url("/sessions"))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_client_error(),
            "{name}: {}",
            response.status()
        );
    }
    let after = scrape().await;
    let mut added = Vec::new();
    for prefix in [
        "http_requests_total{",
        "http_request_duration_seconds_count{",
    ] {
        let new = series(&after, prefix) - series(&before, prefix);
        assert!(new <= 1, "{new} new {prefix}...}} series:\n{after}");
        added.push(new);
    }
    assert!(after.contains(r#"method="other""#), "{after}");
    eprintln!(
        "50 invented methods: {} new http_requests_total series, {} new \
         http_request_duration_seconds series",
        added[0], added[1]
    );
}

/// Runs the service with `envs` expecting it to refuse to start; its
/// stderr.
fn refused_start(envs: &[(&str, &str)]) -> String {
    let mut command = Command::new(BIN);
    for var in SERVICE_VARS {
        command.env_remove(var);
    }
    let out = command
        .args(["--bind", "127.0.0.1:0"])
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started with {envs:?}: {stderr}");
    assert!(out.stdout.is_empty(), "nothing may be announced: {envs:?}");
    assert!(
        stderr.contains("head -c 32 /dev/urandom | base64"),
        "{envs:?}: {stderr}"
    );
    stderr
}

/// A base secret shorter than 32 bytes (9 or 31) is refused at start, with
/// `REDIS_URL` or without, unless `CHARON_ALLOW_WEAK_SECRET` allows it; an
/// empty one (`CHARON_BASE_SECRET=`, an unset template variable) even then.
/// The refusal says how to generate one and never shows the secret. With
/// the permission a short one works on Redis 8, and so does one of exactly
/// 32 bytes without it.
#[tokio::test]
async fn weak_base_secrets_are_refused_at_start() {
    let server = TestServer::start(Flavor::Redis);
    let url = server.url();
    let short = "change-me";
    let secret_31 = "0123456789abcdefghijklmnopqrstu";
    let secret_32 = "0123456789abcdefghijklmnopqrstuv";
    let mut refusals = 0;
    for secret in [short, secret_31] {
        for envs in [
            &[("REDIS_URL", url.as_str()), ("CHARON_BASE_SECRET", secret)][..],
            &[("CHARON_BASE_SECRET", secret)],
            &[
                ("REDIS_URL", url.as_str()),
                ("CHARON_BASE_SECRET", secret),
                ("CHARON_ALLOW_WEAK_SECRET", "0"),
            ],
        ] {
            let stderr = refused_start(envs);
            assert!(stderr.contains("shorter than 32"), "{stderr}");
            assert!(stderr.contains("CHARON_ALLOW_WEAK_SECRET=1"), "{stderr}");
            assert!(!stderr.contains(secret), "{stderr}");
            refusals += 1;
        }
    }
    for envs in [
        &[("REDIS_URL", url.as_str()), ("CHARON_BASE_SECRET", "")][..],
        &[
            ("REDIS_URL", url.as_str()),
            ("CHARON_BASE_SECRET", ""),
            ("CHARON_ALLOW_WEAK_SECRET", "1"),
        ],
    ] {
        let stderr = refused_start(envs);
        assert!(stderr.contains("CHARON_BASE_SECRET is empty"), "{stderr}");
        refusals += 1;
    }

    let http = reqwest::Client::new();
    for envs in [
        &[
            ("REDIS_URL", url.as_str()),
            ("CHARON_BASE_SECRET", short),
            ("CHARON_ALLOW_WEAK_SECRET", "1"),
        ][..],
        &[
            ("REDIS_URL", url.as_str()),
            ("CHARON_BASE_SECRET", secret_32),
        ],
    ] {
        let service = Service::start(envs);
        assert!(service.log().contains("RedisStore"), "{}", service.log());
        login(&http, &service, "alice").await;
    }
    eprintln!(
        "weak base secrets: {refusals} starts refused; a weak one allowed and 32 bytes accepted"
    );
}
