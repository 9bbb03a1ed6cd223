//! The session stores under test, each behind the same three operations.
//!
//! Every store keeps the same application data for a session: the fields a
//! refresh-token service needs (those of a charon-sessions `Session`) plus
//! the same ~200-byte application payload ([`crate::payload`]). A refresh
//! always reads the session, rotates its refresh token id and writes the
//! whole session back, as an application on each store would.

use std::future::Future;

pub mod actix;
pub mod charon;
pub mod tower;

/// One session store driven by the load loop.
///
/// A failed operation, and a read or refresh that finds no session where
/// one was stored, is an `Err`.
pub trait Contender: Send + Sync + 'static {
    /// What a worker keeps to find a session again.
    type Handle: Clone + Send + Sync + 'static;

    /// Logs `user` in: stores a new session.
    fn login(&self, user: &str) -> impl Future<Output = anyhow::Result<Self::Handle>> + Send;

    /// Reads the session, rotates its refresh token and stores it again;
    /// returns the handle to use from now on.
    fn refresh(
        &self,
        user: &str,
        handle: &Self::Handle,
    ) -> impl Future<Output = anyhow::Result<Self::Handle>> + Send;

    /// Reads the session.
    fn read(
        &self,
        user: &str,
        handle: &Self::Handle,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Deletes the session (clean-up after the run, not measured).
    fn delete(
        &self,
        user: &str,
        handle: &Self::Handle,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// The Redis key holding the session and, for a hash, the field.
    fn location(&self, user: &str, handle: &Self::Handle) -> (String, Option<String>);

    /// Closes the store's connections.
    fn close(self) -> impl Future<Output = ()> + Send;
}
