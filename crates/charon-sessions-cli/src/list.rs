//! `charon-sessions list`: one user's sessions of one type, as a table or
//! as JSON.
//!
//! The sessions are read with [`SessionStore::get_all`] (`HGETALL`), which
//! verifies every value's signature with the key derived from the base
//! secret and drops what does not verify. To tell an empty list from a wrong
//! base secret, the stored session fields are counted too (`HKEYS` on the
//! raw connection); the values themselves are never printed.
//!
//! JSON (`--json`), one object on stdout:
//!
//! ```json
//! {"user_id": "alice", "session_type": "full", "key": "charon_.alice.full",
//!  "sessions": [{"id": "…", "created_at": 1764442489, "refreshed_at": 1764442489,
//!                "refresh_expires_at": 1767034489, "expires_at": null, "lock_version": 1,
//!                "payload_format": "compact", "user_id_kind": null}],
//!  "unverified": 0}
//! ```
//!
//! Times are unix seconds; `expires_at` is `null` for a session without an
//! absolute end; `payload_format` is the format the session is stored in
//! (`compact`, `charon` or `json`, read from its payload's first byte with
//! `HMGET`, verified with the same keys as the sessions) and `user_id_kind`
//! whether the user id is an `integer` (in any format: the compact one
//! records it too) or a `string` (a binary in Charon's format; `null` for
//! the compact and JSON formats, which do not record a string kind, and
//! older releases did not record either); `unverified` counts stored
//! sessions that were not shown because they failed verification (wrong
//! base secret, tampered or expired value). Sessions are sorted by
//! `created_at`, then `id`. With `--payload-format charon`, a note on
//! stderr counts the sessions an Elixir Charon service cannot read yet
//! (stored in another format; a store writing Charon's format rewrites each
//! at its next refresh).

use std::process::ExitCode;

use charon_sessions::layout;
use charon_sessions::signing::{self, SigningKey};
use charon_sessions::{Session, SessionStore as _, UserIdKind, codec};
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use crate::admin;
use crate::store_args::{Format, StoreArgs};

/// Options of `charon-sessions list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// The user whose sessions to list.
    #[arg(long, value_name = "USER_ID", value_parser = admin::parse_user_id,
          allow_hyphen_values = true)]
    user: String,

    /// Session type.
    #[arg(long = "type", value_name = "TYPE", default_value = charon_sessions::Session::DEFAULT_TYPE,
          value_parser = admin::parse_session_type, allow_hyphen_values = true)]
    session_type: String,

    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    json: bool,
}

/// The `--json` output.
#[derive(Debug, Serialize)]
struct Listing<'a> {
    user_id: &'a str,
    session_type: &'a str,
    key: &'a str,
    sessions: Vec<Row<'a>>,
    unverified: usize,
}

/// One session in the `--json` output: no value, no refresh token id.
#[derive(Debug, Serialize)]
struct Row<'a> {
    id: &'a str,
    created_at: i64,
    refreshed_at: i64,
    refresh_expires_at: i64,
    expires_at: Option<i64>,
    lock_version: u64,
    /// `compact`, `charon`, `json`, or `null` when the value changed since
    /// it was listed.
    payload_format: Option<&'static str>,
    /// `integer`, `string`, or `null` when the stored format does not say.
    user_id_kind: Option<&'static str>,
}

impl<'a> Row<'a> {
    fn new(s: &'a Session, payload_format: Option<&'static str>) -> Row<'a> {
        Row {
            id: &s.id,
            created_at: s.created_at,
            refreshed_at: s.refreshed_at,
            refresh_expires_at: s.refresh_expires_at,
            expires_at: s.expires_at,
            lock_version: s.lock_version,
            payload_format,
            user_id_kind: match (s.user_id_kind, payload_format) {
                (UserIdKind::Integer, _) => Some("integer"),
                // Only Charon's format tells a string user id from one
                // whose kind was never recorded.
                (_, Some("charon")) => Some("string"),
                _ => None,
            },
        }
    }
}

/// The format of a stored, signed value: the first byte of its payload,
/// once it verifies under one of `keys` (those the store reads with).
fn format_of(value: &[u8], keys: &[SigningKey]) -> Option<&'static str> {
    match *signing::verify_with_any(value, keys).ok()?.first()? {
        codec::FORMAT_MSGPACK => Some("compact"),
        codec::FORMAT_TERM => Some("charon"),
        codec::FORMAT_JSON => Some("json"),
        _ => None,
    }
}

/// Runs `charon-sessions list`.
pub async fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    let key = args.store.secret.signing_key("list")?;
    // Every key the store verifies with (the CLI takes no verification
    // keys: the signing key alone), so that a listed session's format is
    // read from a value that verifies as the session did.
    let keys = [key.clone()];
    let store = admin::open_store(&args.store.connection, "list", Some(key)).await?;
    let mut raw = admin::raw_connection(&args.store.connection, "list").await?;
    let hash = layout::hash_key(
        &args.store.connection.key_prefix,
        &args.user,
        &args.session_type,
    );

    let mut sessions = store.get_all(&args.user, &args.session_type).await?;
    sessions.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    // Read after get_all: a session created in between is counted as
    // stored but was not listed; the warning says "at the time of reading".
    let fields: Vec<Vec<u8>> = redis::cmd("HKEYS").arg(&hash).query_async(&mut raw).await?;
    let stored = fields.iter().filter(|f| !layout::is_lock_field(f)).count();
    let unverified = stored.saturating_sub(sessions.len());
    let formats: Vec<Option<&'static str>> = if sessions.is_empty() {
        Vec::new()
    } else {
        let mut hmget = redis::cmd("HMGET");
        hmget.arg(&hash);
        for s in &sessions {
            hmget.arg(&s.id);
        }
        let values: Vec<Option<Vec<u8>>> = hmget.query_async(&mut raw).await?;
        values
            .iter()
            .map(|v| v.as_deref().and_then(|v| format_of(v, &keys)))
            .collect()
    };

    if args.json {
        let listing = Listing {
            user_id: &args.user,
            session_type: &args.session_type,
            key: &hash,
            sessions: sessions
                .iter()
                .zip(&formats)
                .map(|(s, format)| Row::new(s, *format))
                .collect(),
            unverified,
        };
        println!("{}", serde_json::to_string_pretty(&listing)?);
    } else {
        println!(
            "{} session(s) of user {:?}, type {:?} (key {:?})",
            sessions.len(),
            args.user,
            args.session_type,
            hash
        );
        if !sessions.is_empty() {
            println!("{}", table(&sessions));
        }
    }
    let not_charon = formats.iter().filter(|f| **f != Some("charon")).count();
    if args.store.payload_format == Format::Charon && not_charon > 0 {
        eprintln!(
            "note: {not_charon} listed session(s) are stored in a format an Elixir Charon service \
             cannot read; a store writing Charon's format rewrites each at its next refresh"
        );
    }
    if unverified > 0 {
        eprintln!(
            "warning: {unverified} stored session(s) failed verification and are not shown: \
             wrong base secret, or values tampered with or written with another signing key"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn table(sessions: &[Session]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "session id",
            "created",
            "last refreshed",
            "refresh expiry",
            "absolute expiry",
            "lock version",
        ]);
    for s in sessions {
        table.add_row(vec![
            s.id.clone(),
            admin::show_time(s.created_at),
            admin::show_time(s.refreshed_at),
            admin::show_time(s.refresh_expires_at),
            s.expires_at
                .map_or_else(|| "never".to_owned(), admin::show_time),
            s.lock_version.to_string(),
        ]);
    }
    table
}
