//! `redis-cli`, for the few things a test needs beyond its own client:
//! creating a cluster and asking nodes and sentinels about their state.

use std::path::PathBuf;
use std::process::Command;

use crate::Flavor;

/// The `redis-cli` binary: `REDIS_CLI_BIN` when set, else the `redis-cli`
/// next to the Redis server binary (`scripts/provision-redis` builds both
/// into one directory), else `redis-cli` on `PATH`.
///
/// # Panics
///
/// When none of these exists.
pub fn redis_cli_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REDIS_CLI_BIN") {
        return PathBuf::from(path);
    }
    let next_to_server = Flavor::Redis.binary().with_file_name("redis-cli");
    if next_to_server.is_file() {
        return next_to_server;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("redis-cli"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "no redis-cli found: set REDIS_CLI_BIN, or put redis-cli next to \
                 the Redis server binary (scripts/provision-redis does)"
            )
        })
}

/// Runs `redis-cli -h 127.0.0.1 -p <port> <args>` and returns its standard
/// output (an error reply comes back as text, as redis-cli prints it), or
/// `None` when the server could not be reached.
pub fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new(redis_cli_binary())
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.starts_with("Could not connect") {
        return None;
    }
    Some(text)
}
