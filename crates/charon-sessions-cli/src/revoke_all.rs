//! `charon-sessions revoke-all`: delete all of a user's sessions of one
//! type (log out everywhere).
//!
//! Counts the session fields first (`HKEYS <key>`, lock fields left out),
//! then runs [`SessionStore::delete_all`] (`DEL <key>`). Exits 0 also when
//! the user had no session. Needs no base secret: nothing is verified.

use std::process::ExitCode;

use charon_sessions::SessionStore as _;
use charon_sessions::layout;
use clap::Args;

use crate::admin;
use crate::store_args::ConnectionArgs;

/// Options of `charon-sessions revoke-all`.
#[derive(Debug, Args)]
pub struct RevokeAllArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    /// The user whose sessions to revoke.
    #[arg(long, value_name = "USER_ID", value_parser = admin::parse_user_id,
          allow_hyphen_values = true)]
    user: String,

    /// Session type.
    #[arg(long = "type", value_name = "TYPE", default_value = charon_sessions::Session::DEFAULT_TYPE,
          value_parser = admin::parse_session_type, allow_hyphen_values = true)]
    session_type: String,
}

/// Runs `charon-sessions revoke-all`.
pub async fn run(args: RevokeAllArgs) -> anyhow::Result<ExitCode> {
    let store = admin::open_store(&args.connection, "revoke-all", None).await?;
    let mut raw = admin::raw_connection(&args.connection, "revoke-all").await?;
    let hash = layout::hash_key(&args.connection.key_prefix, &args.user, &args.session_type);
    let fields: Vec<Vec<u8>> = redis::cmd("HKEYS").arg(&hash).query_async(&mut raw).await?;
    let sessions = fields.iter().filter(|f| !layout::is_lock_field(f)).count();
    store.delete_all(&args.user, &args.session_type).await?;
    println!(
        "revoked {sessions} session(s) of user {:?}, type {:?}",
        args.user, args.session_type
    );
    Ok(ExitCode::SUCCESS)
}
