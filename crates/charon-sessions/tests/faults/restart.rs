//! SIGKILL and restart under load: failures during the outage only, no
//! wrong result, no hang, and every call succeeds again soon after.

use std::sync::atomic::Ordering;
use std::time::Duration;

use charon_sessions_testkit::{Flavor, TestServer};

use crate::figures::{Kinds, Phases, assert_recovered, count_ops, delta_ms, max_took, ms, samples};
use crate::load::{Call, LATENCY_BOUND, TASKS, start_load, stop_load, store_under_load};

/// 32 tasks run a steady mix of all five operations; after ~1 s the server
/// is SIGKILLed and ~3 s later restarted empty on the same port; the load
/// goes on ~3 s more. Every call returns (Ok or Err) within the command
/// timeout plus the checkout timeout plus 1 s, none hangs, no result is wrong (a read after
/// the restart may find the session absent, an update may conflict, but
/// nothing older or foreign ever comes back), and every call started from
/// 1 s after the server was back succeeds.
pub(crate) async fn restart_under_load(flavor: Flavor) {
    let mut server = TestServer::start(flavor);
    let store = store_under_load(&server).await;

    let (shared, tasks) = start_load(&store);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kill_at = shared.t0.elapsed();
    server.kill();
    shared.data_lost.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let back_at = shared.t0.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = stop_load(&shared, tasks).await;
    let stop_at = shared.t0.elapsed();
    let recovered_from = back_at + Duration::from_secs(1);

    let calls = &report.calls;
    let phases = Phases::split(calls, kill_at, recovered_from);
    let Phases {
        before,
        during: outage,
        after,
        last_failure,
        conflicts,
        max_latency,
        hung,
    } = &phases;
    let failed_outage: Vec<&Call> = outage
        .iter()
        .copied()
        .filter(|c| c.outcome.failed())
        .collect();
    let answered_new_server = calls
        .iter()
        .filter(|c| c.start >= kill_at && !c.outcome.failed())
        .map(|c| c.end)
        .min();

    eprintln!(
        "FIGURES restart_under_load {flavor:?}: {TASKS} tasks, {:.1}s of load, calls {} ({}); \
         failed {}; before kill {} failed of {}; during outage {} failed of {} \
         (outage {} from SIGKILL to restart done; max latency of a failed call {}); \
         after recovery (from restart+1s) {} failed of {}; conflicts {conflicts} (legitimate after \
         the data loss); wrong results {}; max latency of any call {} (bound {}); hung {hung}; \
         restart→first success {}; restart→last failure {}",
        stop_at.as_secs_f64(),
        calls.len(),
        count_ops(calls),
        Kinds::of(calls),
        Kinds::of(before.iter().copied()).total(),
        before.len(),
        Kinds::of(outage.iter().copied()),
        outage.len(),
        ms(back_at - kill_at),
        ms(max_took(failed_outage.iter().copied())),
        Kinds::of(after.iter().copied()),
        after.len(),
        report.wrong.len(),
        ms(*max_latency),
        ms(LATENCY_BOUND),
        answered_new_server.map_or("never".into(), |t| delta_ms(back_at, t)),
        last_failure.map_or("none".into(), |t| delta_ms(back_at, t)),
    );
    eprintln!("  error samples:\n{}", samples(&report));

    assert_eq!(
        Kinds::of(before.iter().copied()).total(),
        0,
        "failures before the kill"
    );
    assert!(
        !failed_outage.is_empty(),
        "the outage must show as failures"
    );
    assert_recovered(
        &report,
        &phases,
        LATENCY_BOUND,
        back_at,
        "the server was back",
    );
    drop(server);
}
