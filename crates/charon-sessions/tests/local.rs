//! The behavioural suite on LocalStore.

mod common;

store_suite!(common::local);
