//! Running the built `charon-sessions` binary from the tests, with none of
//! the store or secret settings the CLI reads from the environment, so
//! that the shell running the tests cannot change what a test runs.

#![allow(dead_code)]

use std::process::Command;

/// The environment variables the CLI takes its store and secret from.
const SETTINGS: [&str; 5] = [
    "CHARON_REDIS_URL",
    "CHARON_REDIS_CLUSTER",
    "CHARON_REDIS_SENTINEL",
    "CHARON_BASE_SECRET",
    "CHARON_ALLOW_WEAK_SECRET",
];

/// `charon-sessions <args>`, inheriting none of [`SETTINGS`].
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_charon-sessions"));
    command.args(args);
    for name in SETTINGS {
        command.env_remove(name);
    }
    command
}

/// What a run of the binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Whether it exited with status 0.
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// Its standard output, then its standard error.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `charon-sessions <args>` to its end with `env` set (and none of
/// the other settings).
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = command(args)
        .envs(env.iter().copied())
        .output()
        .expect("run charon-sessions");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
