//! Running `proptest` cases against a real server: a runner that writes no
//! failure files, a way to await inside a case, a clean server per case,
//! and sessions in a comparable order.

use charon_sessions::Session;
use proptest::test_runner::{Config, TestRunner};
use redis::aio::MultiplexedConnection;

/// A proptest runner running `cases` cases, writing no failure files.
pub(crate) fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 512,
        ..Config::default()
    })
}

/// Runs `fut` to completion from inside a proptest case (a synchronous
/// closure) on the test's multi-threaded runtime.
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(fut))
}

/// Empties the server's data (not its functions): each proptest case, and
/// each shrinking step, starts from nothing.
pub(crate) async fn flushall(conn: &mut MultiplexedConnection) {
    redis::cmd("FLUSHALL")
        .query_async::<()>(conn)
        .await
        .expect("FLUSHALL");
}

/// `sessions` in the order of their ids, to compare them as sets.
pub(crate) fn sorted(mut sessions: Vec<Session>) -> Vec<Session> {
    sessions.sort_by(|a, b| a.id.cmp(&b.id));
    sessions
}
