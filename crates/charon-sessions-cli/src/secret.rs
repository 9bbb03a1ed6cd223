//! The base secret the signing key is derived from: `--base-secret` /
//! `CHARON_BASE_SECRET`, `--base-secret-file` and `--allow-weak-secret`,
//! for the commands that read or write session values (`demo`, `bench`,
//! `list`).
//!
//! A base secret shorter than [`MIN_BASE_SECRET_LEN`] bytes is refused as a
//! usage error unless `--allow-weak-secret` says a weak one is meant: the
//! signing key is only as hard to guess as the secret, and whoever guesses
//! it and can write to Redis forges every user's session. An empty one is
//! refused even then (`CHARON_BASE_SECRET=` from an unset template
//! variable, say).

use anyhow::Context as _;
use charon_sessions::signing::{MIN_BASE_SECRET_LEN, SigningKey};
use clap::Args;
use clap::builder::FalseyValueParser;

use crate::usage::UsageError;

/// How to make a good base secret, for the refusals.
const HOW_TO_GENERATE: &str = "generate one of at least 32 random bytes with \
    `head -c 32 /dev/urandom | base64`";

/// Where the base secret comes from. `Debug` hides the secret.
#[derive(Args)]
pub struct SecretArgs {
    /// Base secret the signing key is derived from (PBKDF2, as Charon does):
    /// at least 32 bytes (`head -c 32 /dev/urandom | base64`), see
    /// --allow-weak-secret. Prefer the environment variable: a command-line
    /// argument is visible to other users in the process list. Without it,
    /// a random key is used and the sessions cannot be read by any other
    /// process.
    #[arg(
        long,
        value_name = "SECRET",
        env = "CHARON_BASE_SECRET",
        hide_env_values = true
    )]
    pub base_secret: Option<String>,

    /// File holding the base secret (one trailing newline is ignored);
    /// takes precedence over --base-secret and CHARON_BASE_SECRET.
    #[arg(long, value_name = "FILE")]
    pub base_secret_file: Option<std::path::PathBuf>,

    /// Accept a base secret shorter than 32 bytes (a demo, a test): without
    /// this such a secret is refused, since anyone who guesses it can forge
    /// every session. An empty one is refused regardless.
    #[arg(
        long,
        env = "CHARON_ALLOW_WEAK_SECRET",
        value_parser = FalseyValueParser::new()
    )]
    pub allow_weak_secret: bool,
}

impl std::fmt::Debug for SecretArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretArgs")
            .field(
                "base_secret",
                &self.base_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("base_secret_file", &self.base_secret_file)
            .field("allow_weak_secret", &self.allow_weak_secret)
            .finish()
    }
}

/// A base secret strong enough to use (or a weak one that was asked for).
pub struct BaseSecret(String);

impl BaseSecret {
    /// The signing key derived from it (PBKDF2, as Charon does).
    pub fn signing_key(&self) -> anyhow::Result<SigningKey> {
        Ok(SigningKey::from_base_secret(self.0.as_bytes())?)
    }
}

impl SecretArgs {
    /// The base secret: the contents of `--base-secret-file` (less one
    /// trailing newline), else `--base-secret` / `CHARON_BASE_SECRET`;
    /// `None` when none is given.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not UTF-8; a [`UsageError`] when
    /// the secret is empty, or shorter than [`MIN_BASE_SECRET_LEN`] bytes
    /// without `--allow-weak-secret`.
    pub fn base_secret(&self) -> anyhow::Result<Option<BaseSecret>> {
        let (secret, source) = match &self.base_secret_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the base secret file {}", path.display())
                })?;
                let secret = text
                    .strip_suffix('\n')
                    .map(|s| s.strip_suffix('\r').unwrap_or(s))
                    .unwrap_or(&text)
                    .to_owned();
                (secret, format!("the base secret file {}", path.display()))
            }
            None => match &self.base_secret {
                Some(secret) => (
                    secret.clone(),
                    "the base secret (CHARON_BASE_SECRET or --base-secret)".to_owned(),
                ),
                None => return Ok(None),
            },
        };
        check_strength(&secret, &source, self.allow_weak_secret)?;
        Ok(Some(BaseSecret(secret)))
    }

    /// The signing key derived from the base secret, for `command`, which
    /// verifies stored sessions; a [`UsageError`] when no base secret is
    /// given, or a weak one (see [`base_secret`](Self::base_secret)).
    pub fn signing_key(&self, command: &str) -> anyhow::Result<SigningKey> {
        match self.base_secret()? {
            Some(secret) => secret.signing_key(),
            None => Err(UsageError(format!(
                "`{command}` needs the base secret (CHARON_BASE_SECRET, --base-secret-file FILE or \
                 --base-secret) to verify the stored sessions' signatures"
            ))
            .into()),
        }
    }
}

/// Refuses an empty `secret`, and one shorter than [`MIN_BASE_SECRET_LEN`]
/// bytes unless `allow_weak`, as a [`UsageError`] naming `source`.
fn check_strength(secret: &str, source: &str, allow_weak: bool) -> Result<(), UsageError> {
    if secret.is_empty() {
        return Err(UsageError(format!(
            "{source} is empty (an unset variable in a template?), so anyone could derive \
             its signing key and forge every session; {HOW_TO_GENERATE}"
        )));
    }
    if secret.len() < MIN_BASE_SECRET_LEN && !allow_weak {
        return Err(UsageError(format!(
            "{source} is {} bytes long, shorter than {MIN_BASE_SECRET_LEN}: whoever guesses it can \
             forge every session; {HOW_TO_GENERATE}, or pass --allow-weak-secret \
             (CHARON_ALLOW_WEAK_SECRET=1) if a weak one is meant, for a demo",
            secret.len()
        )));
    }
    Ok(())
}
