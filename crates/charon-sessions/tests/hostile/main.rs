//! Hostile input, against real servers: arbitrary and tampered signed values
//! (property tests with `proptest`, the stored ones through a real Redis 8),
//! oversized sessions and a user with 10 000 sessions, and user ids built to
//! steer keys into other users' hashes.
//!
//! Each test prints one `FIGURE` line (operations tried, succeeded or
//! accepted, refused or conflicting, wrong results) for RELIABILITY.md;
//! wrong results are asserted to be 0. Property tests run their strategy
//! with a `proptest` `TestRunner` inside a tokio test, so that the cases can
//! drive a real server; no failure files are written.
//!
//! The scenarios, one module each:
//! - [`signatures`]: arbitrary bytes and every mutation of a signed value
//!   are rejected by `verify`;
//! - [`stored_values`]: arbitrary values stored in a session's place read as
//!   absent, never as an error;
//! - [`foreign_payloads`]: validly signed payloads of another field, user or
//!   type are rejected;
//! - [`charon_terms`]: mutated and hostile Erlang terms (Charon's payload
//!   format) are rejected or skipped;
//! - [`floats`]: numbers in application data come back exactly;
//! - [`sizes`]: sessions over the size limit are refused before any call;
//! - [`many_sessions`]: a user with 10 000 sessions;
//! - [`steering`]: user ids cannot steer keys into other users' hashes.
//!
//! What they share: [`proptest_cases`] (running cases against a real
//! server) and [`strategies`] (arbitrary user ids, JSON, sessions and
//! mutations).

#[path = "../common/mod.rs"]
mod common;

mod charon_terms;
mod floats;
mod foreign_payloads;
mod many_sessions;
mod proptest_cases;
mod signatures;
mod sizes;
mod steering;
mod stored_values;
mod strategies;
