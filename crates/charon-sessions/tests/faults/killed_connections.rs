//! Client connections killed under load (`CLIENT KILL` every 100 ms for
//! 2 s): no wrong result, no hang, and broken connections are replaced.

use std::time::Duration;

use charon_sessions_testkit::{Flavor, TestServer};

use crate::common::raw::{kill_other_clients, raw};
use crate::figures::{Kinds, Phases, assert_recovered, count_ops, delta_ms, ms, samples};
use crate::load::{LATENCY_BOUND, TASKS, start_load, stop_load, store_under_load};

/// While 32 tasks run the mixed load (~3 s), every 100 ms for 2 s
/// `CLIENT KILL TYPE normal SKIPME yes` drops every store connection; no
/// result is ever wrong, no call hangs or exceeds command_timeout +
/// checkout_timeout + 1 s, and from 1 s after the killing stopped every
/// call succeeds (broken pooled connections were replaced).
pub(crate) async fn killed_connections_under_load(flavor: Flavor) {
    let server = TestServer::start(flavor);
    let store = store_under_load(&server).await;
    let mut conn = raw(&server).await;

    let (shared, tasks) = start_load(&store);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kills_from = shared.t0.elapsed();
    let mut kills = 0;
    let mut killed_clients = 0;
    while shared.t0.elapsed() < kills_from + Duration::from_secs(2) {
        let n = kill_other_clients(&mut conn).await;
        kills += 1;
        killed_clients += n;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kills_until = shared.t0.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = stop_load(&shared, tasks).await;
    let stop_at = shared.t0.elapsed();
    let recovered_from = kills_until + Duration::from_secs(1);

    let calls = &report.calls;
    let phases = Phases::split(calls, kills_from, recovered_from);
    let Phases {
        before,
        during,
        after,
        last_failure,
        conflicts,
        max_latency,
        hung,
    } = &phases;

    eprintln!(
        "FIGURES killed_connections_under_load {flavor:?}: {TASKS} tasks, {:.1}s of load, \
         {kills} CLIENT KILLs over {} dropping {killed_clients} connections; calls {} ({}); \
         failed {}; before the kills {} failed of {}; while killing (to kills end+1s) {} failed \
         of {}; after (from kills end+1s) {} failed of {}; conflicts {conflicts} (after an \
         ambiguous failed write); wrong results {}; max latency {} (bound {}); hung {hung}; \
         kills end→last failure {}",
        stop_at.as_secs_f64(),
        ms(kills_until - kills_from),
        calls.len(),
        count_ops(calls),
        Kinds::of(calls),
        Kinds::of(before.iter().copied()).total(),
        before.len(),
        Kinds::of(during.iter().copied()),
        during.len(),
        Kinds::of(after.iter().copied()),
        after.len(),
        report.wrong.len(),
        ms(*max_latency),
        ms(LATENCY_BOUND),
        last_failure.map_or("none".into(), |t| delta_ms(kills_until, t)),
    );
    eprintln!("  error samples:\n{}", samples(&report));

    assert!(killed_clients > 0, "CLIENT KILL dropped connections");
    assert_recovered(
        &report,
        &phases,
        LATENCY_BOUND,
        kills_until,
        "the last CLIENT KILL",
    );
}
