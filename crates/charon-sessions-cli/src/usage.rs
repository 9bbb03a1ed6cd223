//! A mistake in how a command was called, which `main` prints like clap's
//! own errors and ends with clap's exit status.

use std::fmt;

/// A mistake in how the command was called: printed like clap's errors and
/// exits with status 2, as clap does for its own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Exit status of a usage error, as clap's.
pub const USAGE_EXIT: u8 = 2;
