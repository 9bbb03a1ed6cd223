//! The figures of a load test (failures by kind, latencies, operation
//! counts) and the checks every load test makes on them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::load::{Call, LoadReport, Op, Outcome};

/// Failures by kind among `calls`.
pub(crate) struct Kinds(BTreeMap<Outcome, usize>);

impl Kinds {
    pub(crate) fn of<'a>(calls: impl IntoIterator<Item = &'a Call>) -> Kinds {
        let mut map = BTreeMap::new();
        for c in calls {
            if c.outcome.failed() {
                *map.entry(c.outcome).or_insert(0) += 1;
            }
        }
        Kinds(map)
    }

    pub(crate) fn total(&self) -> usize {
        self.0.values().sum()
    }
}

impl fmt::Display for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.total())?;
        if !self.0.is_empty() {
            let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k:?} {n}")).collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Signed milliseconds from `from` to `to`.
pub(crate) fn delta_ms(from: Duration, to: Duration) -> String {
    if to >= from {
        format!("+{}ms", (to - from).as_millis())
    } else {
        format!("-{}ms", (from - to).as_millis())
    }
}

pub(crate) fn max_took<'a>(calls: impl IntoIterator<Item = &'a Call>) -> Duration {
    calls.into_iter().map(Call::took).max().unwrap_or_default()
}

pub(crate) fn count_ops(calls: &[Call]) -> String {
    let mut map: BTreeMap<Op, usize> = BTreeMap::new();
    for c in calls {
        *map.entry(c.op).or_insert(0) += 1;
    }
    map.iter()
        .map(|(op, n)| format!("{op:?} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn assert_no_wrong_results(report: &LoadReport) {
    assert!(
        report.wrong.is_empty(),
        "{} wrong results, first ones:\n{}",
        report.wrong.len(),
        report
            .wrong
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

pub(crate) fn samples(report: &LoadReport) -> String {
    report
        .samples
        .iter()
        .map(|(k, v)| format!("  {k:?}: {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fails, listing up to 10 of them with the report's error samples, when
/// any of `after` (the calls started 1 s or more after `since`, the
/// moment `what` happened) failed.
fn assert_none_failed(after: &[&Call], since: Duration, what: &str, report: &LoadReport) {
    let failed: Vec<String> = after
        .iter()
        .filter(|c| c.outcome.failed())
        .take(10)
        .map(|c| {
            format!(
                "{:?} {:?} started {} after {what}, took {}",
                c.op,
                c.outcome,
                delta_ms(since, c.start),
                ms(c.took())
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "calls started 1 s or more after {what} failed ({} in all):\n{}\nerror samples:\n{}",
        Kinds::of(after.iter().copied()),
        failed.join("\n"),
        samples(report)
    );
}

/// The calls of a load split around a fault: those that ended before it
/// began (`fault_at`), those from then until `recovered_from`, and those
/// started from `recovered_from` on; with the figures every fault scenario
/// prints.
pub(crate) struct Phases<'a> {
    pub(crate) before: Vec<&'a Call>,
    pub(crate) during: Vec<&'a Call>,
    pub(crate) after: Vec<&'a Call>,
    /// When the last failed call ended.
    pub(crate) last_failure: Option<Duration>,
    pub(crate) conflicts: usize,
    pub(crate) max_latency: Duration,
    pub(crate) hung: usize,
}

impl<'a> Phases<'a> {
    pub(crate) fn split(calls: &'a [Call], fault_at: Duration, recovered_from: Duration) -> Self {
        Phases {
            before: calls.iter().filter(|c| c.end < fault_at).collect(),
            during: calls
                .iter()
                .filter(|c| c.end >= fault_at && c.start < recovered_from)
                .collect(),
            after: calls.iter().filter(|c| c.start >= recovered_from).collect(),
            last_failure: calls
                .iter()
                .filter(|c| c.outcome.failed())
                .map(|c| c.end)
                .max(),
            conflicts: calls
                .iter()
                .filter(|c| c.outcome == Outcome::Conflict)
                .count(),
            max_latency: max_took(calls),
            hung: calls.iter().filter(|c| c.outcome == Outcome::Hung).count(),
        }
    }
}

/// What every fault scenario asserts once its fault is over: no wrong
/// result, no hung call, none slower than `bound`, and calls started 1 s
/// or more after `since` (the moment `what` happened), none of them
/// failed.
pub(crate) fn assert_recovered(
    report: &LoadReport,
    phases: &Phases<'_>,
    bound: Duration,
    since: Duration,
    what: &str,
) {
    assert_no_wrong_results(report);
    assert_eq!(phases.hung, 0, "calls hung");
    assert!(
        phases.max_latency <= bound,
        "a call took {} (bound {})",
        ms(phases.max_latency),
        ms(bound)
    );
    assert!(!phases.after.is_empty(), "calls after {what}");
    assert_none_failed(&phases.after, since, what, report);
}
