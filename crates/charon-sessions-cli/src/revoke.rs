//! `charon-sessions revoke`: delete one session (log out one device).
//!
//! Runs `HEXISTS <key> <session id>` to tell whether the session existed,
//! then [`SessionStore::delete`] (`HDEL <key> <session id> l.<session id>`).
//! Revoking a session that does not exist is not an error: the command says
//! so and exits 0. Needs no base secret: nothing is verified.

use std::process::ExitCode;

use charon_sessions::SessionStore as _;
use charon_sessions::layout;
use clap::Args;

use crate::admin;
use crate::store_args::ConnectionArgs;

/// Options of `charon-sessions revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    connection: ConnectionArgs,

    /// The user the session belongs to.
    #[arg(long, value_name = "USER_ID", value_parser = admin::parse_user_id,
          allow_hyphen_values = true)]
    user: String,

    /// The session to revoke.
    #[arg(long, value_name = "SESSION_ID", value_parser = admin::parse_session_id,
          allow_hyphen_values = true)]
    session: String,

    /// Session type.
    #[arg(long = "type", value_name = "TYPE", default_value = charon_sessions::Session::DEFAULT_TYPE,
          value_parser = admin::parse_session_type, allow_hyphen_values = true)]
    session_type: String,
}

/// Runs `charon-sessions revoke`.
pub async fn run(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    let store = admin::open_store(&args.connection, "revoke", None).await?;
    let mut raw = admin::raw_connection(&args.connection, "revoke").await?;
    let hash = layout::hash_key(&args.connection.key_prefix, &args.user, &args.session_type);
    let existed: bool = redis::cmd("HEXISTS")
        .arg(&hash)
        .arg(&args.session)
        .query_async(&mut raw)
        .await?;
    store
        .delete(&args.session, &args.user, &args.session_type)
        .await?;
    if existed {
        println!(
            "revoked session {} of user {:?}, type {:?}",
            args.session, args.user, args.session_type
        );
    } else {
        println!(
            "no session {} of user {:?}, type {:?}: nothing to revoke",
            args.session, args.user, args.session_type
        );
    }
    Ok(ExitCode::SUCCESS)
}
