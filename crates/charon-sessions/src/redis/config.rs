//! [`RedisStoreConfig`]: where the server is, how values are signed, and how
//! the connection pool behaves. Setters follow bb8's builder style; the
//! cross-field checks run at [`RedisStore::connect`](crate::RedisStore::connect).

use std::fmt;
use std::time::Duration;

use crate::session::validate_key_prefix;
use crate::signing::SigningKey;
use crate::store::{DEFAULT_MAX_SESSION_SIZE, StoreError};

/// The default key prefix, Charon's.
pub const DEFAULT_KEY_PREFIX: &str = "charon_";

/// Configuration of a [`RedisStore`](crate::RedisStore).
///
/// ```
/// use std::time::Duration;
/// use charon_sessions::RedisStoreConfig;
/// use charon_sessions::signing::SigningKey;
///
/// let config = RedisStoreConfig::new("redis://127.0.0.1:6379/0", SigningKey::from_bytes(&[7; 32]))
///     .key_prefix("myapp")
///     .pool_size(20)
///     .checkout_timeout(Duration::from_secs(1));
/// // Neither the signing key nor a password in the URL is ever shown.
/// assert!(format!("{config:?}").contains("<redacted>"));
/// ```
#[derive(Clone)]
pub struct RedisStoreConfig {
    pub(crate) url: String,
    pub(crate) signing_key: SigningKey,
    pub(crate) key_prefix: String,
    pub(crate) pool_size: usize,
    pub(crate) pool_max_overflow: usize,
    pub(crate) checkout_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) max_session_size: usize,
    pub(crate) verification_keys: Vec<SigningKey>,
    pub(crate) register_functions: bool,
    pub(crate) record_user_ids: bool,
    pub(crate) tls_root_certificate: Option<Vec<u8>>,
    pub(crate) tls_client_certificate: Option<(Vec<u8>, Vec<u8>)>,
}

impl RedisStoreConfig {
    /// A configuration for the server at `url`, signing with `signing_key`.
    ///
    /// URL forms: `redis://[user][:password@]host[:port][/db]`,
    /// `rediss://…` (TLS, verified against the system's root certificates)
    /// and `redis+unix:///path/to/socket[?db=N&user=U&pass=P]`.
    pub fn new(url: impl Into<String>, signing_key: SigningKey) -> RedisStoreConfig {
        RedisStoreConfig {
            url: url.into(),
            signing_key,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            pool_size: 10,
            pool_max_overflow: 5,
            checkout_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            max_session_size: DEFAULT_MAX_SESSION_SIZE,
            verification_keys: Vec::new(),
            register_functions: true,
            record_user_ids: true,
            tls_root_certificate: None,
            tls_client_certificate: None,
        }
    }

    /// Prefix of every key the store uses: keys are
    /// `<prefix>.<user_id>.<session_type>`. `[A-Za-z0-9_:-]`, 1–64 bytes.
    ///
    /// Defaults to `"charon_"`, Charon's own.
    #[must_use]
    pub fn key_prefix(mut self, key_prefix: impl Into<String>) -> Self {
        self.key_prefix = key_prefix.into();
        self
    }

    /// Connections the pool opens at connect and keeps open, even when idle.
    /// At least 1.
    ///
    /// Defaults to 10.
    #[must_use]
    pub fn pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
    }

    /// Extra connections the pool may open when all
    /// [`pool_size`](Self::pool_size) connections are busy; each is closed
    /// again after [`idle_timeout`](Self::idle_timeout) unused. The pool
    /// never holds more than `pool_size + pool_max_overflow` connections.
    ///
    /// Defaults to 5.
    #[must_use]
    pub fn pool_max_overflow(mut self, pool_max_overflow: usize) -> Self {
        self.pool_max_overflow = pool_max_overflow;
        self
    }

    /// How long an operation waits for a free pooled connection before it
    /// fails with [`StoreError::PoolTimeout`]. When the pool has room and
    /// opens a new connection instead, that may take up to
    /// [`connect_timeout`](Self::connect_timeout) more.
    ///
    /// Defaults to 5 seconds.
    #[must_use]
    pub fn checkout_timeout(mut self, checkout_timeout: Duration) -> Self {
        self.checkout_timeout = checkout_timeout;
        self
    }

    /// How long an overflow connection may sit unused before it is closed.
    /// Connections up to [`pool_size`](Self::pool_size) are kept.
    ///
    /// Defaults to 60 seconds. The pool checks four times per idle timeout
    /// (at most every 15 s), so a connection may live up to that much longer.
    #[must_use]
    pub fn idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// How long opening one connection (TCP, TLS, AUTH, SELECT) may take.
    ///
    /// Defaults to 2 seconds.
    #[must_use]
    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// How long one command may wait for its reply before it fails with
    /// [`StoreError::Connection`] (and the connection is replaced).
    ///
    /// Defaults to 2 seconds.
    #[must_use]
    pub fn command_timeout(mut self, command_timeout: Duration) -> Self {
        self.command_timeout = command_timeout;
        self
    }

    /// Largest encoded session, in bytes; a bigger one is refused with
    /// [`StoreError::InvalidInput`] before anything is sent.
    ///
    /// Defaults to 65 536 (64 KiB).
    #[must_use]
    pub fn max_session_size(mut self, max_session_size: usize) -> Self {
        self.max_session_size = max_session_size;
        self
    }

    /// Older signing keys still accepted when reading, for key rotation.
    ///
    /// Every write signs with the signing key given to [`new`](Self::new);
    /// a stored value is accepted when it verifies under that key or any of
    /// these (tried in order). Sessions thus migrate to the new key as they
    /// refresh; drop an old key once its longest refresh window has passed.
    ///
    /// Defaults to none.
    #[must_use]
    pub fn verification_keys(mut self, verification_keys: Vec<SigningKey>) -> Self {
        self.verification_keys = verification_keys;
        self
    }

    /// Whether [`connect`](crate::RedisStore::connect) registers the function
    /// library (`FUNCTION LOAD REPLACE`) and re-registers it when the server
    /// has lost it.
    ///
    /// Turn it off to run with an ACL user that may not load functions; load
    /// the library beforehand with an admin account, with
    /// [`RedisStore::load_function_library`](crate::RedisStore::load_function_library)
    /// or `charon-sessions functions load`. An upsert that then finds the
    /// library missing fails with [`StoreError::FunctionLibraryMissing`].
    ///
    /// Defaults to `true`.
    #[must_use]
    pub fn register_functions(mut self, register_functions: bool) -> Self {
        self.register_functions = register_functions;
        self
    }

    /// Whether the store's tracing spans carry the `user_id` field, and
    /// its warnings about rejected values name the key (which contains the
    /// user id). Turn it off when user ids are personal data that must not
    /// reach logs; spans then carry only the operation and session type.
    /// See [`telemetry`](crate::telemetry).
    ///
    /// Defaults to `true`.
    #[must_use]
    pub fn record_user_ids(mut self, record_user_ids: bool) -> Self {
        self.record_user_ids = record_user_ids;
        self
    }

    /// A CA certificate (PEM) to verify the server's TLS certificate against,
    /// instead of the system's root certificates. Used with `rediss://` URLs.
    ///
    /// Defaults to none (the system's roots).
    #[must_use]
    pub fn tls_root_certificate(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificate = Some(pem.into());
        self
    }

    /// A client certificate and its private key (both PEM) for mutual TLS.
    /// The key is never shown in `Debug` output.
    ///
    /// Defaults to none.
    #[must_use]
    pub fn tls_client_certificate(
        mut self,
        certificate_pem: impl Into<Vec<u8>>,
        private_key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client_certificate = Some((certificate_pem.into(), private_key_pem.into()));
        self
    }

    /// The redis-rs client for this configuration.
    ///
    /// Connections speak RESP3, whatever the URL says: it is what lets
    /// redis-rs tell the pool that an idle connection's socket closed.
    pub(crate) fn client(&self) -> Result<redis::Client, StoreError> {
        use redis::IntoConnectionInfo as _;
        let invalid = |e: redis::RedisError| {
            StoreError::InvalidInput(format!(
                "url {} is not a valid Redis URL: {e}",
                redacted_url(&self.url)
            ))
        };
        let info = self.url.as_str().into_connection_info().map_err(invalid)?;
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let info = info.set_redis_settings(resp3);
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            // redis-rs builds its TLS configuration from rustls's process-wide
            // crypto provider, which rustls cannot pick by itself when an
            // application enables more than one: make it ring unless the
            // application installed one already.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        if self.tls_root_certificate.is_none() && self.tls_client_certificate.is_none() {
            return redis::Client::open(info).map_err(invalid);
        }
        let certificates = redis::TlsCertificates {
            client_tls: self.tls_client_certificate.as_ref().map(|(cert, key)| {
                redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }
            }),
            root_cert: self.tls_root_certificate.clone(),
        };
        redis::Client::build_with_tls(info, certificates).map_err(invalid)
    }

    /// The cross-field checks `connect` runs first.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        validate_key_prefix(&self.key_prefix)?;
        let invalid = |msg: &str| Err(StoreError::InvalidInput(msg.to_owned()));
        if self.pool_size == 0 {
            return invalid("pool_size must be at least 1");
        }
        if self.pool_size.checked_add(self.pool_max_overflow).is_none() {
            return invalid("pool_size + pool_max_overflow is too large");
        }
        for (name, value) in [
            ("checkout_timeout", self.checkout_timeout),
            ("connect_timeout", self.connect_timeout),
            ("command_timeout", self.command_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return invalid(&format!("{name} must be greater than zero"));
            }
        }
        if self.max_session_size == 0 {
            return invalid("max_session_size must be greater than zero");
        }
        Ok(())
    }
}

/// The URL with any password replaced by `<redacted>`.
pub(crate) fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("<redacted>"));
            }
            let has_secret_query = parsed
                .query_pairs()
                .any(|(k, _)| k == "pass" || k == "password");
            if has_secret_query {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k == "pass" || k == "password" {
                            "<redacted>".to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL, redacted>".to_owned(),
    }
}

impl fmt::Debug for RedisStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreConfig")
            .field("url", &redacted_url(&self.url))
            .field("signing_key", &self.signing_key)
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("pool_max_overflow", &self.pool_max_overflow)
            .field("checkout_timeout", &self.checkout_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("max_session_size", &self.max_session_size)
            .field("verification_keys", &self.verification_keys)
            .field("register_functions", &self.register_functions)
            .field("record_user_ids", &self.record_user_ids)
            .field(
                "tls_root_certificate",
                &self.tls_root_certificate.as_ref().map(|_| "<PEM>"),
            )
            .field(
                "tls_client_certificate",
                &self
                    .tls_client_certificate
                    .as_ref()
                    .map(|_| "<PEM, key redacted>"),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> RedisStoreConfig {
        RedisStoreConfig::new(url, SigningKey::from_bytes(b"k"))
    }

    #[test]
    fn defaults() {
        let c = config("redis://127.0.0.1");
        assert_eq!(c.key_prefix, "charon_");
        assert_eq!((c.pool_size, c.pool_max_overflow), (10, 5));
        assert_eq!(c.checkout_timeout, Duration::from_secs(5));
        assert_eq!(c.max_session_size, 65_536);
        c.check().unwrap();
    }

    #[test]
    fn debug_redacts_passwords() {
        for url in [
            "redis://user:hunter2@127.0.0.1:6379/2",
            "rediss://:hunter2@example.com",
            "redis+unix:///tmp/redis.sock?db=1&pass=hunter2",
        ] {
            let shown = format!("{:?}", config(url));
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        let shown = format!("{:?}", config("redis://user:hunter2@127.0.0.1:6379/2"));
        assert!(
            shown.contains("user") && shown.contains("6379/2"),
            "{shown}"
        );
    }

    #[test]
    fn cross_field_checks() {
        let msg = |c: RedisStoreConfig| c.check().unwrap_err().to_string();
        assert!(msg(config("redis://x").pool_size(0)).contains("pool_size"));
        assert!(
            msg(config("redis://x").pool_max_overflow(usize::MAX)).contains("pool_max_overflow")
        );
        assert!(msg(config("redis://x").key_prefix("a.b")).contains("key_prefix"));
        assert!(
            msg(config("redis://x").checkout_timeout(Duration::ZERO)).contains("checkout_timeout")
        );
        assert!(msg(config("redis://x").max_session_size(0)).contains("max_session_size"));
    }
}
