//! The behavioural suite on RedisStore on a real Valkey 9 server.

mod common;

store_suite!(common::valkey9);
