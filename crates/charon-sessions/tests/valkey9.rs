//! The behavioural suite on RedisStore on a real Valkey 9 server.

mod common;

charon_sessions_testkit::store_suite!(common::valkey9);
