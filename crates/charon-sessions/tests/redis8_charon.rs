//! The behavioural suite on RedisStore writing Charon's payload format
//! (`PayloadFormat::Charon`) on a real Redis 8 server.

mod common;

charon_sessions_testkit::store_suite!(common::redis8_charon);
