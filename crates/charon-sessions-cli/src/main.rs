//! `charon-sessions`: the command-line tool of charon-sessions.
//!
//! One subcommand per file (or directory): `demo` (a day of a small service
//! against a store), `functions` (the Redis function library and the
//! least-privilege ACL rule), `bench` (closed-loop load, store against the
//! bare Redis commands), and the admin commands `list`, `revoke`,
//! `revoke-all`, `check` and `stats` (what they share is in `admin.rs`).
//! Options shared by every subcommand that opens a store live in
//! `store_args.rs`, those of the base secret in `secret.rs`, and the usage
//! error (exit status 2) in `usage.rs`.
//!
//! Exit status: 0 on success, 1 when the command failed (or, for `check`,
//! `demo` and `bench`, found a failure), 2 for a usage error (clap's, a
//! missing `--redis` or base secret, or a base secret too short to be safe).

mod admin;
mod bench;
mod check;
mod demo;
mod functions;
mod list;
mod revoke;
mod revoke_all;
mod secret;
mod stats;
mod store_args;
mod usage;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Server-side login sessions in Redis 8 / Valkey 9.
#[derive(Parser)]
#[command(name = "charon-sessions", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Play a day of a small service (logins, refreshes, a refresh race,
    /// device listing, logouts, an expiry) against a store and check every
    /// step; exits non-zero if any step misbehaves.
    Demo(demo::DemoArgs),
    /// Manage the store's Redis function library: show its source, load it
    /// with an admin account, print the ACL rule for a least-privilege
    /// application user, prune the libraries of other versions.
    Functions(functions::FunctionsArgs),
    /// List a user's sessions of one type (needs the base secret to verify
    /// them): a table, or JSON with --json.
    List(list::ListArgs),
    /// Revoke (delete) one session of a user.
    Revoke(revoke::RevokeArgs),
    /// Revoke all of a user's sessions of one type (log out everywhere).
    RevokeAll(revoke_all::RevokeAllArgs),
    /// Check a server and Redis user for the store: version, hash field
    /// expiration, function library, ACL rights, latency; exits non-zero if
    /// any check fails.
    Check(check::CheckArgs),
    /// Count sessions and users under the key prefix (SCAN): histogram of
    /// sessions per user, per-type breakdown, bytes used.
    Stats(stats::StatsArgs),
    /// Measure the store under closed-loop load (a real server with
    /// --redis, else the in-memory store):
    /// throughput and latency per operation, optionally as a ratio of the
    /// bare Redis commands (--baseline), across concurrencies (--sweep).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of the
    // output goes away (`charon-sessions stats --json | head`) instead of
    // panicking on the broken pipe.
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal at start-up, before
    // any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the Tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Functions(args) => functions::run(args).await,
            Command::List(args) => list::run(args).await,
            Command::Revoke(args) => revoke::run(args).await,
            Command::RevokeAll(args) => revoke_all::run(args).await,
            Command::Check(args) => check::run(args).await,
            Command::Stats(args) => stats::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) if e.is::<usage::UsageError>() => {
            eprintln!("error: {e:#}");
            ExitCode::from(usage::USAGE_EXIT)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
