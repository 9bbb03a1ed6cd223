//! `charon-sessions stats`: what the store holds under a key prefix.
//!
//! Walks the keys with `SCAN <cursor> MATCH <prefix>.* COUNT <n>` (keys seen
//! twice by `SCAN` are counted once), showing an indicatif progress spinner
//! on stderr when it is a terminal; then, pipelined per batch of keys,
//! `HKEYS <key>` (session fields are counted exactly: every field that is
//! not an `l.` lock field) and `MEMORY USAGE <key> SAMPLES 0` (bytes the
//! server attributes to the key, summed; when the user may not run it, no
//! byte figure is given rather than an estimate). A key under the prefix
//! that is not a hash `<prefix>.<user_id>.<session_type>` is counted as
//! "other". Reads only; needs no base secret (values are not verified, so a
//! value signed with another key still counts as a session).
//!
//! JSON (`--json`), one object on stdout:
//!
//! ```json
//! {"key_prefix": "charon_", "keys": 12, "hashes": 11, "other_keys": 1,
//!  "users": 5, "sessions": 9, "lock_fields": 9,
//!  "sessions_per_user": [{"bucket": "1", "users": 3}, {"bucket": "2", "users": 1},
//!                        {"bucket": "3-5", "users": 1}, {"bucket": "6-10", "users": 0},
//!                        {"bucket": "11+", "users": 0}],
//!  "bytes": 10432, "bytes_method": "MEMORY USAGE per key, summed",
//!  "types": {"full": {"hashes": 5, "users": 5, "sessions": 7, "bytes": 8000}}}
//! ```
//!
//! `users` counts distinct user ids with at least one session, over all
//! types; the histogram counts each such user once with the sum of their
//! sessions over all types. `bytes` is `null` when `MEMORY USAGE` was
//! refused; the per-type `bytes` too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::time::Duration;

use charon_sessions::layout;
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use redis::Value;
use redis::aio::MultiplexedConnection;
use serde::Serialize;

use crate::admin;
use crate::store_args::ConnectionArgs;

/// Options of `charon-sessions stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    /// COUNT hint of each SCAN call (keys examined per call).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    scan_count: u32,

    /// Print JSON for scripts instead of tables.
    #[arg(long)]
    json: bool,
}

/// Upper bounds of the sessions-per-user buckets, and their names.
const BUCKETS: [(u64, &str); 5] = [
    (1, "1"),
    (2, "2"),
    (5, "3-5"),
    (10, "6-10"),
    (u64::MAX, "11+"),
];

const MEMORY_METHOD: &str = "MEMORY USAGE per key, summed";
const NO_MEMORY_METHOD: &str = "not available: MEMORY USAGE refused to this user";

/// The `--json` output; see the module documentation.
#[derive(Debug, Serialize)]
struct Stats {
    key_prefix: String,
    keys: u64,
    hashes: u64,
    other_keys: u64,
    users: u64,
    sessions: u64,
    lock_fields: u64,
    sessions_per_user: Vec<Bucket>,
    bytes: Option<u64>,
    bytes_method: &'static str,
    types: BTreeMap<String, TypeStats>,
}

/// One bar of the sessions-per-user histogram.
#[derive(Debug, Serialize)]
struct Bucket {
    bucket: &'static str,
    users: u64,
}

/// What one session type holds.
#[derive(Debug, Default, Serialize)]
struct TypeStats {
    hashes: u64,
    users: u64,
    sessions: u64,
    bytes: Option<u64>,
}

/// Running totals while the keys are walked.
#[derive(Debug, Default)]
struct Tally {
    keys: u64,
    hashes: u64,
    other_keys: u64,
    lock_fields: u64,
    /// Sessions per user id, all types together.
    per_user: HashMap<String, u64>,
    per_type: BTreeMap<String, TypeStats>,
    /// Sum of MEMORY USAGE; `None` once it was refused.
    bytes: Option<u64>,
}

/// `(user_id, session_type)` of a key `<prefix>.<user_id>.<session_type>`:
/// the type is after the last dot (types have none), the user id is all
/// between, dots included.
fn split_key<'a>(key: &'a str, key_prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = key.strip_prefix(key_prefix)?.strip_prefix('.')?;
    let (user, kind) = rest.rsplit_once('.')?;
    let valid = charon_sessions::validate::user_id(user).is_ok()
        && charon_sessions::validate::session_type(kind).is_ok();
    valid.then_some((user, kind))
}

/// Runs `charon-sessions stats`.
pub async fn run(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let mut raw = admin::raw_connection(&args.connection, "stats").await?;
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed} SCAN: {pos} keys under the prefix, {msg}",
        )
        .expect("a valid progress template"),
    );
    progress.enable_steady_tick(Duration::from_millis(120));

    let pattern = format!("{}.*", args.connection.key_prefix);
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut tally = Tally {
        bytes: Some(0),
        ..Tally::default()
    };
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(args.scan_count)
            .query_async(&mut raw)
            .await?;
        let fresh: Vec<Vec<u8>> = batch
            .into_iter()
            .filter(|k| seen.insert(k.clone()))
            .collect();
        inspect(&mut raw, &args.connection.key_prefix, &fresh, &mut tally).await?;
        progress.set_position(tally.keys);
        progress.set_message(format!(
            "{} sessions in {} hashes",
            tally.per_user.values().sum::<u64>(),
            tally.hashes
        ));
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    progress.finish_and_clear();

    let stats = finish(args.connection.key_prefix.clone(), tally);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print_tables(&stats);
    }
    Ok(ExitCode::SUCCESS)
}

/// `HKEYS` and `MEMORY USAGE` for a batch of keys, in one pipeline.
async fn inspect(
    raw: &mut MultiplexedConnection,
    key_prefix: &str,
    keys: &[Vec<u8>],
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let mut parsed = Vec::with_capacity(keys.len());
    for key in keys {
        tally.keys += 1;
        match std::str::from_utf8(key)
            .ok()
            .and_then(|k| split_key(k, key_prefix))
        {
            Some((user, kind)) => parsed.push((key, user.to_owned(), kind.to_owned())),
            None => tally.other_keys += 1,
        }
    }
    if parsed.is_empty() {
        return Ok(());
    }
    let with_memory = tally.bytes.is_some();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (key, _, _) in &parsed {
        pipe.cmd("HKEYS").arg(key);
        if with_memory {
            pipe.cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0);
        }
    }
    let replies: Vec<redis::RedisResult<Value>> = pipe.query_async(raw).await?;
    let per_key = if with_memory { 2 } else { 1 };
    for ((_, user, kind), replies) in parsed.into_iter().zip(replies.chunks(per_key)) {
        let fields = match &replies[0] {
            Ok(Value::Array(fields)) => fields,
            // WRONGTYPE: a key under the prefix that is not a hash.
            Ok(_) | Err(_) => {
                tally.other_keys += 1;
                continue;
            }
        };
        if fields.is_empty() {
            // Expired or deleted since SCAN returned it.
            continue;
        }
        let sessions = fields
            .iter()
            .filter(|f| !matches!(f, Value::BulkString(b) if layout::is_lock_field(b)))
            .count() as u64;
        tally.hashes += 1;
        tally.lock_fields += fields.len() as u64 - sessions;
        let bytes = match replies.get(1) {
            Some(Ok(Value::Int(n))) => u64::try_from(*n).ok(),
            _ => None,
        };
        if with_memory && bytes.is_none() {
            // Refused (NOPERM) or unknown: give no byte figure at all
            // rather than a partial sum.
            tally.bytes = None;
        }
        if let (Some(total), Some(b)) = (tally.bytes.as_mut(), bytes) {
            *total += b;
        }
        let of_type = tally.per_type.entry(kind).or_insert_with(|| TypeStats {
            bytes: Some(0),
            ..TypeStats::default()
        });
        of_type.hashes += 1;
        of_type.sessions += sessions;
        if sessions > 0 {
            of_type.users += 1;
        }
        of_type.bytes = of_type.bytes.zip(bytes).map(|(a, b)| a + b);
        if sessions > 0 {
            *tally.per_user.entry(user).or_default() += sessions;
        }
    }
    Ok(())
}

fn finish(key_prefix: String, tally: Tally) -> Stats {
    let mut histogram = [0u64; BUCKETS.len()];
    for &sessions in tally.per_user.values() {
        let bucket = BUCKETS
            .iter()
            .position(|(upper, _)| sessions <= *upper)
            .unwrap_or(BUCKETS.len() - 1);
        histogram[bucket] += 1;
    }
    let mut types = tally.per_type;
    if tally.bytes.is_none() {
        for t in types.values_mut() {
            t.bytes = None;
        }
    }
    Stats {
        key_prefix,
        keys: tally.keys,
        hashes: tally.hashes,
        other_keys: tally.other_keys,
        users: tally.per_user.len() as u64,
        sessions: tally.per_user.values().sum(),
        lock_fields: tally.lock_fields,
        sessions_per_user: BUCKETS
            .iter()
            .zip(histogram)
            .map(|((_, name), users)| Bucket {
                bucket: name,
                users,
            })
            .collect(),
        bytes: tally.bytes,
        bytes_method: if tally.bytes.is_some() {
            MEMORY_METHOD
        } else {
            NO_MEMORY_METHOD
        },
        types,
    }
}

fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    table
}

fn bytes_text(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "n/a".to_owned(), |b| b.to_string())
}

fn print_tables(stats: &Stats) {
    println!(
        "key prefix {:?}: {} key(s), {} session hash(es) (user + type), {} other key(s)",
        stats.key_prefix, stats.keys, stats.hashes, stats.other_keys
    );
    println!(
        "users: {}, sessions: {} (lock fields: {})",
        stats.users, stats.sessions, stats.lock_fields
    );
    println!(
        "bytes used: {} ({})",
        bytes_text(stats.bytes),
        stats.bytes_method
    );
    let mut histogram = new_table(&["sessions per user", "users"]);
    for b in &stats.sessions_per_user {
        histogram.add_row(vec![b.bucket.to_owned(), b.users.to_string()]);
    }
    println!("{histogram}");
    if !stats.types.is_empty() {
        let mut types = new_table(&["session type", "hashes", "users", "sessions", "bytes"]);
        for (name, t) in &stats.types {
            types.add_row(vec![
                name.clone(),
                t.hashes.to_string(),
                t.users.to_string(),
                t.sessions.to_string(),
                bytes_text(t.bytes),
            ]);
        }
        println!("{types}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_first_and_last_dot() {
        assert_eq!(split_key("p.alice.full", "p"), Some(("alice", "full")));
        assert_eq!(split_key("p.a.b.c.oauth2", "p"), Some(("a.b.c", "oauth2")));
        assert_eq!(split_key("p.alice", "p"), None);
        assert_eq!(split_key("px.alice.full", "p"), None);
        assert_eq!(split_key("p.alice.fu?ll", "p"), None);
    }
}
