//! Server-side login sessions in Redis 8 / Valkey 9, a port of the Redis
//! session store of [Charon](https://hex.pm/packages/charon), the Elixir
//! auth library.
//!
//! Every login creates a [`Session`]; every refresh re-reads it, checks it,
//! rotates the refresh token and writes it back with optimistic locking, so
//! that of two racing refreshes exactly one wins. A user's sessions of one
//! type are kept together, so "show my devices" and "log out everywhere" are
//! one command each.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::time::Duration;
//! use charon_sessions::{LocalStore, Session, SessionStore};
//!
//! let store = LocalStore::new(); // or RedisStore::connect(config).await?
//! let ttl = Duration::from_secs(30 * 24 * 3600);
//!
//! // Login.
//! let mut session = Session::new_login("alice", ttl);
//! store.upsert(&mut session).await?;
//!
//! // Refresh: read, rotate, write back; a concurrent refresh would conflict.
//! let mut current = store.get(&session.id, "alice", "full").await?.expect("just stored");
//! current.rotate_refresh_token(ttl);
//! store.upsert(&mut current).await?;
//!
//! // Devices, then log out everywhere.
//! assert_eq!(store.get_all("alice", "full").await?.len(), 1);
//! store.delete_all("alice", "full").await?;
//! assert!(store.get_all("alice", "full").await?.is_empty());
//! # Ok::<(), charon_sessions::StoreError>(())
//! # }).unwrap();
//! ```
//!
//! # What is where
//!
//! A store validates its arguments ([`validate`]), seals a session into a
//! stored value or opens one it read ([`stored`], over [`codec`] and
//! [`signing`]), runs one Redis command, and reports through
//! [`telemetry`].
//!
//! * [`Session`]: the record; [`validate`]: the rules of its ids, times
//!   and lock versions.
//! * [`SessionStore`]: the contract; [`StoreError`] ([`error`]);
//!   [`SessionLimit`] and the size limit ([`limit`]).
//! * [`stored`]: a session sealed into a stored value (encoded, signed)
//!   and opened back (verified, decoded, checked), for every store.
//! * [`codec`]: session ⇄ bytes in the compact format (default) or
//!   Charon's Erlang terms ([`PayloadFormat`]); [`signing`]: HMAC-SHA256
//!   and key derivation.
//! * [`layout`]: where a session lives in Redis (hash key, fields).
//! * [`telemetry`]: tracing spans and metrics of every operation.
//! * [`LocalStore`]: in memory, same semantics.
//! * [`RedisStore`]: configuration ([`RedisStoreConfig`]), the
//!   Lua function library, the least-privilege ACL rule
//!   ([`RedisStoreConfig::acl_rule`]), the server check ([`ServerInfo`]),
//!   the topology (one server, Redis Cluster or Sentinel, through redis-rs)
//!   and the shared, pipelined connections ([`PoolState`]).
//!
//! # Requirements
//!
//! A Tokio runtime. Redis >= 8.0 or Valkey >= 9.0 (hash field expiration,
//! `HSETEX`); [`RedisStore::connect`] refuses older servers. Connections
//! speak RESP3; `rediss://` uses rustls with ring.
//!
//! # Features
//!
//! Additive cargo features, as redis-rs has; without a feature, its API
//! items do not exist.
//!
//! | feature | default | brings |
//! |---|---|---|
//! | `tls` | yes | `rediss://` URLs: rustls with ring, verifying the server against the system's roots or `RedisStoreConfig::tls_root_certificate`; client certificates (`tls_client_certificate`). Without it, no rustls is built and a `rediss://` URL is a [`StoreError::InvalidInput`] |
//! | `cluster` | no | Redis Cluster: `RedisStoreConfig::cluster`, `read_from_replicas` (redis-rs's `cluster-async`) |
//! | `sentinel` | no | Redis Sentinel: `RedisStoreConfig::sentinel`, `sentinel_node_credentials` (redis-rs's `sentinel`) |
//! | `unstable-raw` | no | raw commands on the store's connections (`RedisStore::run_command`, `upsert_command`, `UpsertCommand`) for this project's benchmark and tools: no semver promise |
//!
//! ```toml
//! # Sentinel, and TLS by default.
//! charon-sessions = { path = "crates/charon-sessions", features = ["sentinel"] }
//! ```
//!
//! With `default-features = false`, one server without TLS: no rustls in
//! the dependency tree.
//!
//! # Redis layout
//!
//! One hash per user and session type, `<key prefix>.<user_id>.<session_type>`
//! (default prefix `charon_`), holding field `<session_id>` (the signed
//! session) and field `l.<session_id>` (its lock version), both expiring at
//! the session's `refresh_expires_at` through hash field expiration. Each
//! operation is one Redis command: `HGET`, `FCALL`, `HDEL`, `HGETALL`, `DEL`.

#![deny(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod codec;
pub mod error;
mod etf;
pub mod layout;
pub mod limit;
mod local;
mod redis;
mod session;
pub mod signing;
mod store;
pub mod stored;
pub mod telemetry;
pub mod validate;

pub use crate::codec::{MapKeys, PayloadFormat};
pub use crate::error::StoreError;
pub use crate::limit::SessionLimit;
pub use crate::local::LocalStore;
pub use crate::redis::RedisStore;
pub use crate::redis::config::RedisStoreConfig;
pub use crate::redis::connections::PoolState;
#[cfg(feature = "unstable-raw")]
pub use crate::redis::raw::UpsertCommand;
pub use crate::redis::server::{ServerInfo, ServerKind};
pub use crate::session::{Session, UserIdKind};
pub use crate::store::SessionStore;

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn store_handles_are_send_and_sync() {
        assert_send_sync::<super::RedisStore>();
        assert_send_sync::<super::LocalStore>();
        assert_send_sync::<super::RedisStoreConfig>();
        assert_send_sync::<super::StoreError>();
        assert_send_sync::<std::sync::Arc<dyn super::SessionStore>>();
        assert_send_sync::<Box<dyn super::SessionStore>>();
    }
}

/// The README's code examples, compiled as doc tests so they stay true
/// (they use every feature).
#[cfg(all(doctest, feature = "tls", feature = "cluster", feature = "sentinel"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// The guide's code examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../GUIDE.md")]
struct GuideDoctests;
