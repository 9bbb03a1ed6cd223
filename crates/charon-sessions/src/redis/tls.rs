//! TLS to one server (`rediss://`, and the primaries Sentinel names) with
//! a rustls configuration of the store's own: ring as an explicit crypto
//! provider, the configured CA (or the system's roots) and client
//! certificate. The process-wide default provider is neither read nor
//! installed, so an application remains free to install its own at any
//! time.
//!
//! redis-rs builds its TLS configuration from the process default, and a
//! library that installed one would make the application's own
//! installation fail; here the stream is encrypted by tokio-rustls and
//! handed to redis-rs as an already-connected stream. (A cluster's
//! connections, and the connections to the sentinels themselves, are still
//! opened by redis-rs: see [`install_default_provider`].)

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::StoreError;

/// How to reach servers over TLS: the connector with the store's
/// configuration.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// The configuration verifying servers against `root_pem` (PEM
    /// certificates; `None`: the system's root certificates) and
    /// presenting `client` (certificate chain and private key, PEM), with
    /// ring as its crypto provider.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for certificates or a key that do not
    /// parse, or no usable system root certificate.
    pub(crate) fn new(
        root_pem: Option<&[u8]>,
        client: Option<(&[u8], &[u8])>,
    ) -> Result<Tls, StoreError> {
        let invalid = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::InvalidInput(format!("TLS: {what}: {e}"))
        };
        let mut roots = rustls::RootCertStore::empty();
        match root_pem {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| invalid("the root certificate", &e))?;
                    roots
                        .add(cert)
                        .map_err(|e| invalid("the root certificate", &e))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        if roots.is_empty() {
            return Err(StoreError::InvalidInput(
                "TLS: no root certificate to verify the server with".to_owned(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("protocol versions", &e))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| invalid("the client certificate", &e))?;
                // Never show the key's parse error: it may quote the key.
                let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| {
                    StoreError::InvalidInput(
                        "TLS: the client private key is not a PEM private key".to_owned(),
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| invalid("the client certificate", &e))?
            }
        };
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Opens a TLS connection to `host:port` (at most `connect_timeout` for
    /// TCP, TLS and the Redis handshake together), applies `tcp` to the
    /// socket, and runs redis-rs's multiplexed connection over it with
    /// `config` (its driver spawned on the current runtime).
    ///
    /// # Errors
    ///
    /// The connection's failure as redis-rs reports it: I/O errors (a
    /// certificate that does not verify among them), authentication.
    pub(crate) async fn connect(
        &self,
        host: &str,
        port: u16,
        redis: &redis::RedisConnectionInfo,
        tcp: &redis::io::tcp::TcpSettings,
        config: AsyncConnectionConfig,
        connect_timeout: Duration,
    ) -> Result<MultiplexedConnection, RedisError> {
        let connect = async {
            let stream = TcpStream::connect((host, port)).await?;
            apply_tcp_settings(&stream, tcp)?;
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = self.connector.connect(name, stream).await?;
            let (connection, driver) =
                MultiplexedConnection::new_with_config(redis, stream, config).await?;
            tokio::spawn(driver);
            Ok::<_, RedisError>(connection)
        };
        tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| {
                RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting over TLS timed out",
                ))
            })?
    }
}

/// The keepalive and user timeout of `tcp` on `stream`, as redis-rs sets
/// them on the sockets it opens.
fn apply_tcp_settings(
    stream: &TcpStream,
    tcp: &redis::io::tcp::TcpSettings,
) -> std::io::Result<()> {
    let socket = redis::io::tcp::socket2::SockRef::from(stream);
    stream.set_nodelay(tcp.nodelay())?;
    if let Some(keepalive) = tcp.keepalive() {
        socket.set_tcp_keepalive(keepalive)?;
    }
    #[cfg(target_os = "linux")]
    socket.set_tcp_user_timeout(tcp.user_timeout())?;
    Ok(())
}

/// Makes ring rustls's process-wide default provider, unless the
/// application installed one: redis-rs builds the TLS configuration of a
/// cluster's connections and of the connections to the sentinels from the
/// process default, and rustls cannot pick one by itself when an
/// application enables more than one. Only for those; an application that
/// installs its own provider must do so before connecting such a store.
#[cfg(any(feature = "cluster", feature = "sentinel"))]
pub(crate) fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
