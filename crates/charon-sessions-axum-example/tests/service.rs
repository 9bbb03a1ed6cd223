//! The service binary end to end over HTTP: started on a free port, once
//! against a real Redis 8 and once on its in-memory store, driven through
//! logins on two devices, refreshes (with a replay inside and after the
//! grace window), parallel refreshes with one token, device listing, a
//! logout of one device, logout everywhere and `/metrics`; weak base
//! secrets refused at start.

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

/// The JSON claims inside a JWT (not verified: the service does that).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
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

    // Refresh one second after the login, so that the new generation starts
    // in a later second than the login token's.
    let first = phone["refresh_token"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, second) = refresh(&http, service, &first).await;
    assert_eq!(status, StatusCode::OK, "{second}\n{}", service.log());
    assert_ne!(second["refresh_token"], phone["refresh_token"]);
    // Inside the 2 s grace window the first token still works (a parallel
    // request of the same client)...
    let (status, third) = refresh(&http, service, &first).await;
    assert_eq!(status, StatusCode::OK, "{third}\n{}", service.log());
    // ...after it, it is stale.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = refresh(&http, service, &first).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &"stale_token".into()),
        "{body}"
    );

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
