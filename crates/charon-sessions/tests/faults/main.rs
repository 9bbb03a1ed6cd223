//! `RedisStore` under faults, against real servers started by each test
//! (never a mock): a server restart without persistence (the function
//! library and all data are lost), SIGKILL and restart under load, client
//! connections killed under load, and a server too old to use. What the
//! connection model itself guarantees (replacement, limits, timeouts) is in
//! `tests/connections.rs`.
//!
//! The load tests run 32 tasks, each owning one user and one session id, so
//! that every result can be checked: a task remembers which stored states
//! are possible for its session (the last one written or read, plus the
//! effects of calls that failed and may or may not have happened, plus
//! "absent" once the server lost its data) and counts as a *wrong result*
//! any read outside that set, any upsert that succeeded although the stored
//! lock version cannot have matched, and any conflict that cannot have
//! happened. Each load test prints one `FIGURES` line (see with
//! `--no-capture`) and asserts zero wrong results.
//!
//! The scenarios, one module each:
//! - [`library_lost`]: the function library lost by a restart is loaded
//!   again, once;
//! - [`restart`]: SIGKILL and restart under load;
//! - [`killed_connections`]: client connections killed under load;
//! - [`too_old`]: Redis 7 is refused and left untouched.
//!
//! What they share: [`load`] (the 32 tasks), [`model`] (what a task knows
//! its session may be), [`figures`] (the `FIGURES` line and the checks on
//! it) and [`server`] (the test's own look at the server).

#[path = "../common/mod.rs"]
mod common;

mod figures;
mod killed_connections;
mod library_lost;
mod load;
mod model;
mod restart;
mod server;
mod too_old;

use killed_connections::killed_connections_under_load;
use library_lost::function_library_lost_by_restart_is_registered_once;
use restart::restart_under_load;

/// Expands each behaviour into a `#[tokio::test]` per server: the `both`
/// list on Redis 8 and Valkey 9, the `redis_only` list on Redis 8 only.
macro_rules! fault_tests {
    (both: [$($both:ident),* $(,)?], redis_only: [$($only:ident),* $(,)?] $(,)?) => {
        mod redis8 {
            use charon_sessions_testkit::Flavor;
            $(
                #[doc = concat!("`", stringify!($both), "` on Redis 8 (see that function).")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $both() {
                    super::$both(Flavor::Redis).await;
                }
            )*
            $(
                #[doc = concat!("`", stringify!($only), "` on Redis 8 (see that function).")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $only() {
                    super::$only(Flavor::Redis).await;
                }
            )*
        }
        mod valkey9 {
            use charon_sessions_testkit::Flavor;
            $(
                #[doc = concat!("`", stringify!($both), "` on Valkey 9 (see that function).")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $both() {
                    super::$both(Flavor::Valkey).await;
                }
            )*
        }
    };
}

fault_tests!(
    both: [
        function_library_lost_by_restart_is_registered_once,
        killed_connections_under_load,
    ],
    redis_only: [restart_under_load],
);
