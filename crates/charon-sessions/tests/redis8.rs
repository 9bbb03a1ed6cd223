//! The behavioural suite on RedisStore on a real Redis 8 server.

mod common;

store_suite!(common::redis8);
