//! The behavioural suite on RedisStore on a real Redis 8 server.

mod common;

charon_sessions_testkit::store_suite!(common::redis8);
