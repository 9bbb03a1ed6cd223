//! `charon-sessions check`: is this server, and this Redis user, fit to run
//! the store?
//!
//! One line per check, `ok`, `FAIL` or `--` (could not be inspected with
//! this user's rights, or not needed); exits 1 when any check fails.
//!
//! | check | how |
//! |---|---|
//! | server | [`RedisStore::connect`] without loading functions: `HELLO`, kind and version |
//! | hash field expiration | `COMMAND INFO hsetex` (else implied by the version) |
//! | function library | `FUNCTION LIST LIBRARYNAME charon_sessions_*`: this version's library, and others (older versions, other deployments) |
//! | ACL, per command of the store's rule ([`RedisStoreConfig::acl_commands`] for this URL, or for a cluster when `HELLO` says the node is in cluster mode), then `READONLY`, `ROLE` and `WAIT`, which only some configurations need (`--` when refused) | `ACL WHOAMI`, then `ACL DRYRUN <user> <command> <args on a key under the prefix>`; when the user may not run those, the command itself with arguments that change nothing (see [`probe`]) |
//! | latency | `PING` several times: min, median and max round trip in ms |

use std::process::ExitCode;
use std::time::{Duration, Instant};

use charon_sessions::layout;
use charon_sessions::signing::SigningKey;
use charon_sessions::{RedisStore, RedisStoreConfig};
use clap::Args;
use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::admin;
use crate::store_args::ConnectionArgs;
use crate::usage::UsageError;

/// Options of `charon-sessions check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    /// Round trips for the latency figures: PINGs, or HGETs of a random
    /// key for a user that may not PING.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pings: u32,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Fail,
    /// Not inspectable with this user's rights, or not needed here.
    Skipped,
}

/// Prints the check lines and remembers whether one failed.
#[derive(Debug, Default)]
struct Report {
    failed: usize,
}

impl Report {
    fn line(&mut self, status: Status, name: &str, detail: &str) {
        let mark = match status {
            Status::Ok => "ok",
            Status::Fail => {
                self.failed += 1;
                "FAIL"
            }
            Status::Skipped => "--",
        };
        println!("{mark:<4}  {name:<24}  {detail}");
    }
}

/// Runs `charon-sessions check`.
pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut report = Report::default();
    let mut raw = match admin::raw_connection(&args.connection, "check").await {
        Ok(raw) => raw,
        Err(e) if e.is::<UsageError>() => return Err(e),
        Err(e) => {
            report.line(Status::Fail, "connect", &format!("{e:#}"));
            return Ok(ExitCode::FAILURE);
        }
    };

    let server_ok = match admin::open_store(&args.connection, "check", None).await {
        Ok(store) => {
            let detail = format!(
                "{} (needs {})",
                store.server(),
                charon_sessions::ServerInfo::REQUIRED
            );
            report.line(Status::Ok, "server", &detail);
            true
        }
        Err(e) => {
            report.line(Status::Fail, "server", &format!("{e:#}"));
            false
        }
    };
    hash_field_expiration(&mut raw, server_ok, &mut report).await;
    function_library(&mut raw, &mut report).await;
    // A key under the prefix that cannot exist, for commands run to test
    // a right (see `probe`).
    let probe_key = layout::hash_key(
        &args.connection.key_prefix,
        &format!(
            "charon-sessions-check-{}",
            charon_sessions::Session::new_id()
        ),
        "probe",
    );
    acl(&mut raw, &args.connection, &probe_key, &mut report).await;
    latency(&mut raw, args.pings, &probe_key, &mut report).await;

    if report.failed == 0 {
        println!("all checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} check(s) FAILED", report.failed);
        Ok(ExitCode::FAILURE)
    }
}

fn is_noperm(e: &redis::RedisError) -> bool {
    e.code() == Some("NOPERM")
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

/// `COMMAND INFO hsetex`: one entry, nil when the server has no such command.
async fn hash_field_expiration(
    raw: &mut MultiplexedConnection,
    server_ok: bool,
    report: &mut Report,
) {
    let name = "hash field expiration";
    let reply: redis::RedisResult<Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("hsetex")
        .query_async(raw)
        .await;
    match reply {
        Ok(Value::Array(entries)) if entries.first().is_some_and(|e| *e != Value::Nil) => {
            report.line(Status::Ok, name, "HSETEX known (COMMAND INFO hsetex)");
        }
        Ok(_) => report.line(Status::Fail, name, "the server has no HSETEX command"),
        Err(e) if is_noperm(&e) && server_ok => report.line(
            Status::Ok,
            name,
            "implied by the server version (COMMAND INFO refused to this user)",
        ),
        Err(e) => report.line(
            Status::Skipped,
            name,
            &format!("cannot inspect: COMMAND INFO failed: {e}"),
        ),
    }
}

/// The text of field `name` of a map reply (a RESP3 map, or a RESP2 flat
/// array of name/value pairs).
fn field(reply: &Value, name: &str) -> Option<String> {
    reply
        .as_map_iter()?
        .find(|(k, _)| text(k).as_deref() == Some(name))
        .and_then(|(_, v)| text(v))
}

/// The `library_name` of every library in a `FUNCTION LIST` reply (RESP3
/// maps, or RESP2 flat arrays of name/value pairs).
fn library_names(reply: &Value) -> Vec<String> {
    let Value::Array(libraries) = reply else {
        return Vec::new();
    };
    libraries
        .iter()
        .filter_map(|library| field(library, "library_name"))
        .collect()
}

/// `FUNCTION LIST LIBRARYNAME charon_sessions_*`: this version's library
/// must be loaded; other ones are listed as older versions (or other
/// deployments' versions).
async fn function_library(raw: &mut MultiplexedConnection, report: &mut Report) {
    let name = "function library";
    let wanted = RedisStore::function_library_name();
    let reply: redis::RedisResult<Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg("charon_sessions_*")
        .query_async(raw)
        .await;
    let libraries = match reply {
        Ok(reply) => library_names(&reply),
        Err(e) => {
            report.line(
                Status::Skipped,
                name,
                &format!("cannot inspect: FUNCTION LIST failed: {e}"),
            );
            return;
        }
    };
    let mut others: Vec<&str> = libraries
        .iter()
        .map(String::as_str)
        .filter(|l| *l != wanted && l.starts_with("charon_sessions_"))
        .collect();
    others.sort_unstable();
    let others = if others.is_empty() {
        String::new()
    } else {
        format!("; other versions loaded: {}", others.join(", "))
    };
    if libraries.iter().any(|l| l == wanted) {
        report.line(
            Status::Ok,
            name,
            &format!("{wanted} loaded (this version){others}"),
        );
    } else {
        report.line(
            Status::Fail,
            name,
            &format!(
                "{wanted} (this version) not loaded{others}: run `charon-sessions functions load`, \
                 or connect a store with register_functions(true)"
            ),
        );
    }
}

/// Arguments for `command` (as in [`RedisStoreConfig::acl_commands`]) that
/// are safe to run for real: they read or delete a key that cannot exist
/// (`probe_key`, random, under the prefix), select the database the store
/// selects anyway, read or set nothing that outlives this check's
/// connection (`CLUSTER SLOTS`, `ROLE`, `READONLY`, `WAIT 0 1`…), or fail
/// inside the command after the ACL check has passed (`HSETEX … FIELDS 0`,
/// `FCALL` of a function that does not exist; `ASKING` and `READONLY` on a
/// server not in cluster mode).
/// `None` for a command with no such form.
fn probe(command: &str, probe_key: &str) -> Option<Vec<String>> {
    if let Some(db) = command.strip_prefix("select|") {
        return Some(vec!["SELECT".to_owned(), db.to_owned()]);
    }
    let words: &[&str] = match command {
        "hget" => &["HGET", probe_key, "probe"],
        "hgetall" => &["HGETALL", probe_key],
        "hdel" => &["HDEL", probe_key, "probe"],
        "hlen" => &["HLEN", probe_key],
        "hkeys" => &["HKEYS", probe_key],
        "hexpiretime" => &["HEXPIRETIME", probe_key, "FIELDS", "1", "probe"],
        "del" => &["DEL", probe_key],
        "fcall" => &["FCALL", "charon_sessions_check_probe", "1", probe_key],
        "hsetex" => &["HSETEX", probe_key, "FIELDS", "0", "probe", "probe"],
        "client|setinfo" => &["CLIENT", "SETINFO", "LIB-NAME", "redis-rs"],
        // Read-only, or flags that last for the next command (ASKING) or
        // for this check's own connection (READONLY: reads a replica may
        // serve); WAIT for no replica returns at once.
        "cluster|slots" => &["CLUSTER", "SLOTS"],
        "ping" => &["PING"],
        "asking" => &["ASKING"],
        "readonly" => &["READONLY"],
        "role" => &["ROLE"],
        "wait" => &["WAIT", "0", "1"],
        _ => return None,
    };
    Some(words.iter().map(|w| (*w).to_owned()).collect())
}

/// Why a refused command may not matter here; `None` when it is required.
fn not_needed(command: &str) -> Option<&'static str> {
    match command {
        "client|setinfo" => Some("optional: redis-rs ignores the refusal"),
        "readonly" => Some("needed only with read_from_replicas"),
        "wait" => Some("needed only with wait_for_replicas"),
        "role" => Some("needed only when the store finds this server through Sentinel"),
        _ => None,
    }
}

/// The commands to check on a node, in the order shown: the rule for a
/// store on `url` (a cluster's when the node is in cluster mode), then
/// what only some configurations add ([`not_needed`] says when).
fn commands_to_check(
    url: &str,
    key_prefix: &str,
    cluster_mode: bool,
) -> Result<Vec<String>, charon_sessions::StoreError> {
    let least_privilege =
        |config: RedisStoreConfig| config.key_prefix(key_prefix).register_functions(false);
    let key = SigningKey::generate;
    // The count and timeout do not change the rule.
    let wait = Duration::from_secs(1);
    let (rule, fullest) = if cluster_mode {
        let cluster = || least_privilege(RedisStoreConfig::cluster([url], key()));
        (
            cluster(),
            cluster()
                .read_from_replicas(true)
                .wait_for_replicas(1, wait),
        )
    } else {
        (
            least_privilege(RedisStoreConfig::new(url, key())),
            least_privilege(RedisStoreConfig::sentinel([url], "primary", key()))
                .wait_for_replicas(1, wait),
        )
    };
    let mut commands = rule.acl_commands()?;
    for command in fullest.acl_commands()? {
        if !commands.contains(&command) {
            commands.push(command);
        }
    }
    Ok(commands)
}

/// Whether the server says (`HELLO`, which every user may run) that it
/// runs in cluster mode.
async fn in_cluster_mode(raw: &mut MultiplexedConnection) -> bool {
    let hello: redis::RedisResult<Value> = redis::cmd("HELLO").query_async(raw).await;
    hello.is_ok_and(|reply| field(&reply, "mode").as_deref() == Some("cluster"))
}

/// Whether this connection's user may run each command a store may need
/// on this node, on a key under the prefix: the rule for a store on this
/// URL (least-privilege: no function loading; on a node in cluster mode,
/// the cluster's rule), then the commands only some configurations need,
/// `--` when refused.
async fn acl(
    raw: &mut MultiplexedConnection,
    connection: &ConnectionArgs,
    probe_key: &str,
    report: &mut Report,
) {
    let cluster_mode = in_cluster_mode(raw).await;
    let commands = admin::redis_url(connection, "check").and_then(|url| {
        Ok(commands_to_check(
            url,
            &connection.key_prefix,
            cluster_mode,
        )?)
    });
    let commands = match commands {
        Ok(commands) => commands,
        Err(e) => {
            report.line(Status::Fail, "acl", &format!("no rule for this URL: {e:#}"));
            return;
        }
    };
    let whoami: Option<String> = redis::cmd("ACL").arg("WHOAMI").query_async(raw).await.ok();
    for command in &commands {
        let name = format!("acl {command}");
        let Some(words) = probe(command, probe_key) else {
            report.line(
                Status::Skipped,
                &name,
                "cannot inspect: no harmless form of this command known",
            );
            continue;
        };
        let verdict = match &whoami {
            Some(user) => dry_run(raw, user, &words).await,
            None => None,
        };
        let (allowed, how) = match verdict {
            Some((allowed, why)) => (Some(allowed), why),
            None => run_probe(raw, &words).await,
        };
        match (allowed, not_needed(command)) {
            (Some(true), _) => report.line(Status::Ok, &name, &format!("allowed ({how})")),
            (Some(false), Some(why)) => {
                report.line(Status::Skipped, &name, &format!("refused ({how}); {why}"));
            }
            (Some(false), None) => {
                report.line(Status::Fail, &name, &format!("refused: {how}"));
            }
            (None, _) => report.line(Status::Skipped, &name, &how),
        }
    }
}

/// `ACL DRYRUN <user> <words…>`: `Some((allowed, explanation))`, or `None`
/// when this user may not run `ACL DRYRUN`.
async fn dry_run(
    raw: &mut MultiplexedConnection,
    user: &str,
    words: &[String],
) -> Option<(bool, String)> {
    let reply: Value = redis::cmd("ACL")
        .arg("DRYRUN")
        .arg(user)
        .arg(words)
        .query_async(raw)
        .await
        .ok()?;
    let answer = text(&reply)?;
    if answer == "OK" {
        Some((true, format!("ACL DRYRUN as {user}")))
    } else {
        Some((false, format!("{answer} (ACL DRYRUN)")))
    }
}

/// Runs the harmless form of the command: `Some(false)` for a NOPERM reply
/// (the right is missing), `Some(true)` for any other reply, errors
/// included (they come from the command itself, after the ACL check
/// passed), `None` when no reply came (connection lost, timeout).
async fn run_probe(raw: &mut MultiplexedConnection, words: &[String]) -> (Option<bool>, String) {
    let mut cmd = redis::cmd(&words[0]);
    cmd.arg(&words[1..]);
    match cmd.query_async::<Value>(raw).await {
        Err(e) if is_noperm(&e) => (Some(false), format!("{e} (probed)")),
        Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
            (None, format!("cannot inspect: no reply to the probe: {e}"))
        }
        _ => (
            Some(true),
            "probed: ACL DRYRUN not available to this user".to_owned(),
        ),
    }
}

/// `PING` `count` times, one after the other; when this user may not run
/// `PING` (the least-privilege rule does not allow it), `HGET` of the probe
/// key, also one round trip that touches no data.
async fn latency(
    raw: &mut MultiplexedConnection,
    count: u32,
    probe_key: &str,
    report: &mut Report,
) {
    let name = "latency";
    let mut command = redis::cmd("PING");
    let mut command_name = "PING";
    if let Err(e) = command.query_async::<Value>(raw).await {
        if !is_noperm(&e) {
            report.line(Status::Fail, name, &format!("PING failed: {e}"));
            return;
        }
        command = redis::cmd("HGET");
        command.arg(probe_key).arg("probe");
        command_name = "HGET (PING refused to this user)";
    }
    let mut samples = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let start = Instant::now();
        if let Err(e) = command.query_async::<Value>(raw).await {
            report.line(Status::Fail, name, &format!("{command_name} failed: {e}"));
            return;
        }
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    let median = if samples.len() % 2 == 1 {
        samples[samples.len() / 2]
    } else {
        (samples[samples.len() / 2 - 1] + samples[samples.len() / 2]) / 2.0
    };
    report.line(
        Status::Ok,
        name,
        &format!(
            "round trip over {count} × {command_name}: min {:.3} ms, median {median:.3} ms, max {:.3} ms",
            samples[0],
            samples[samples.len() - 1]
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_checked_has_a_probe() {
        for (url, cluster_mode) in [
            ("redis://127.0.0.1", false),
            ("redis://127.0.0.1/5", false),
            ("redis://127.0.0.1", true),
        ] {
            let commands = commands_to_check(url, "p", cluster_mode).unwrap();
            for command in &commands {
                assert!(probe(command, "p.k.t").is_some(), "{command}");
            }
        }
        assert_eq!(probe("select|5", "p.k.t").unwrap(), ["SELECT", "5"]);
    }

    #[test]
    fn checks_the_rule_then_what_some_configurations_add() {
        let base = charon_sessions::RedisStoreConfig::REQUIRED_COMMANDS;
        let single = commands_to_check("redis://127.0.0.1/5", "p", false).unwrap();
        assert_eq!(single[..base.len()], *base);
        assert_eq!(single[base.len()..], ["select|5", "role", "wait"]);
        let cluster = commands_to_check("redis://127.0.0.1", "p", true).unwrap();
        assert_eq!(
            cluster[base.len()..],
            ["cluster|slots", "ping", "asking", "readonly", "wait"]
        );
        for command in single.iter().chain(&cluster) {
            let optional = ["readonly", "wait", "role", "client|setinfo"];
            assert_eq!(
                not_needed(command).is_some(),
                optional.contains(&command.as_str())
            );
        }
    }

    #[test]
    fn reads_library_names_from_resp2_and_resp3() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let resp3 = Value::Array(vec![Value::Map(vec![
            (bulk("library_name"), bulk("charon_sessions_a")),
            (bulk("engine"), bulk("LUA")),
        ])]);
        let resp2 = Value::Array(vec![Value::Array(vec![
            bulk("library_name"),
            bulk("charon_sessions_b"),
        ])]);
        assert_eq!(library_names(&resp3), ["charon_sessions_a"]);
        assert_eq!(library_names(&resp2), ["charon_sessions_b"]);
    }
}
