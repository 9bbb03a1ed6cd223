//! The service's options: command-line flags, each also read from an
//! environment variable. Secrets are best given through the environment (a
//! flag is visible to other users in the process list); `Debug` hides them.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use charon_sessions::signing::MIN_BASE_SECRET_LEN;
use clap::Parser;
use clap::builder::FalseyValueParser;

/// An example refresh-token service on axum, storing its sessions with
/// charon-sessions (Redis 8 / Valkey 9 when `REDIS_URL` is set, else in
/// memory).
#[derive(Parser)]
#[command(name = "charon-sessions-axum-example", version, about)]
pub struct Config {
    /// Address to listen on. Port 0 picks a free port; the bound address is
    /// printed on stdout as `listening on http://ADDR`.
    #[arg(long, env = "BIND", default_value = "127.0.0.1:3000")]
    pub bind: SocketAddr,

    /// Redis 8 / Valkey 9 URL (redis://, rediss://, redis+unix://); without
    /// it the sessions live in this process's memory (LocalStore).
    #[arg(long, value_name = "URL", env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Base secret the store's signing key is derived from (PBKDF2, as
    /// Charon does): at least 32 bytes (`head -c 32 /dev/urandom | base64`),
    /// see --allow-weak-secret. Required with `REDIS_URL`: every instance of
    /// the service must share it.
    #[arg(
        long,
        value_name = "SECRET",
        env = "CHARON_BASE_SECRET",
        hide_env_values = true
    )]
    pub base_secret: Option<String>,

    /// Accept a base secret shorter than 32 bytes (a demo): without this
    /// such a secret is refused at start, since whoever guesses it and can
    /// write to Redis forges every session. An empty one is refused
    /// regardless.
    #[arg(
        long,
        env = "CHARON_ALLOW_WEAK_SECRET",
        value_parser = FalseyValueParser::new()
    )]
    pub allow_weak_secret: bool,

    /// Secret the access and refresh tokens are signed with (HS256). Without
    /// it a random one is drawn at start, so tokens die with the process.
    #[arg(
        long,
        value_name = "SECRET",
        env = "JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// Lifetime of an access token, in seconds.
    #[arg(long, value_name = "SECS", env = "ACCESS_TOKEN_TTL_SECS", default_value_t = 15 * 60)]
    pub access_ttl_secs: u64,

    /// Refresh window of a session, in seconds: a session not refreshed for
    /// this long is dropped by the store.
    #[arg(long, value_name = "SECS", env = "REFRESH_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub refresh_ttl_secs: u64,

    /// Clock-skew allowance of the tokens' `exp` check, in seconds (the
    /// instances' clocks differ a little).
    #[arg(
        long,
        value_name = "SECS",
        env = "TOKEN_LEEWAY_SECS",
        default_value_t = 2
    )]
    pub leeway_secs: u64,

    /// Grace window after a rotation, in seconds: while the last rotation is
    /// younger than this, the refresh token it superseded is accepted too,
    /// so that parallel refreshes of one client are not logged out; after
    /// it, that token revokes the session (see `freshness.rs`).
    #[arg(
        long,
        value_name = "SECS",
        env = "ROTATION_GRACE_SECS",
        default_value_t = 5
    )]
    pub grace_secs: u64,
}

impl Config {
    /// The base secret, if given.
    ///
    /// # Errors
    ///
    /// When it is empty (an unset template variable, say), or shorter than
    /// [`MIN_BASE_SECRET_LEN`] bytes without `allow_weak_secret`; the error
    /// says how to generate a good one.
    pub fn base_secret(&self) -> anyhow::Result<Option<&str>> {
        const HOW_TO_GENERATE: &str = "generate one of at least 32 random bytes with \
            `head -c 32 /dev/urandom | base64`";
        let Some(secret) = self.base_secret.as_deref() else {
            return Ok(None);
        };
        if secret.is_empty() {
            bail!(
                "CHARON_BASE_SECRET is empty (an unset variable in a template?), so anyone could \
                 derive its signing key and forge every session; {HOW_TO_GENERATE}"
            );
        }
        if secret.len() < MIN_BASE_SECRET_LEN && !self.allow_weak_secret {
            bail!(
                "CHARON_BASE_SECRET is {} bytes long, shorter than {MIN_BASE_SECRET_LEN}: whoever \
                 guesses it can forge every session; {HOW_TO_GENERATE}, or set \
                 CHARON_ALLOW_WEAK_SECRET=1 if a weak one is meant, for a demo",
                secret.len()
            );
        }
        Ok(Some(secret))
    }

    /// [`access_ttl_secs`](Self::access_ttl_secs) as a duration.
    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.access_ttl_secs)
    }

    /// [`refresh_ttl_secs`](Self::refresh_ttl_secs) as a duration.
    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_ttl_secs)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("redis_url", &set(&self.redis_url))
            .field("base_secret", &set(&self.base_secret))
            .field("allow_weak_secret", &self.allow_weak_secret)
            .field("jwt_secret", &set(&self.jwt_secret))
            .field("access_ttl_secs", &self.access_ttl_secs)
            .field("refresh_ttl_secs", &self.refresh_ttl_secs)
            .field("leeway_secs", &self.leeway_secs)
            .field("grace_secs", &self.grace_secs)
            .finish()
    }
}
