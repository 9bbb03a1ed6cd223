//! The behavioural suite on LocalStore.

mod common;

charon_sessions_testkit::store_suite!(common::local);
