//! Interleaved rounds: with a baseline, the measured time of each target is
//! cut into `rounds` slices of `duration / rounds`, run alternately in ABBA
//! order (round 1 baseline then store, round 2 store then baseline, …) so
//! that a machine drifting between faster and slower regimes weighs on
//! both targets alike, and neither always goes first. Each target's slices
//! are added up ([`Totals`]); each round's store/baseline throughput ratio
//! shows how much the machine drifted ([`Spread`]).
//!
//! With an odd number of rounds the baseline goes first once more than the
//! store (e.g. 3 rounds: baseline first in rounds 1 and 3, the store in
//! round 2), so a drift is balanced only with an even number; odd counts
//! are allowed all the same, and 1 round measures each target in one
//! stretch, baseline first.

use serde::Serialize;

use super::connections::Observed;
use super::cpu::CpuUse;
use super::driver::PhaseOutcome;

/// What a slice or a round runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The bare commands.
    Baseline,
    /// The store.
    Store,
}

impl Side {
    /// `"baseline"` or `"store"`, as the reports name the targets.
    pub fn name(self) -> &'static str {
        match self {
            Side::Baseline => "baseline",
            Side::Store => "store",
        }
    }
}

/// The order of the two targets in round `round` (0-based): baseline
/// first in even rounds, store first in odd ones (ABBA).
pub fn order(round: usize) -> [Side; 2] {
    if round.is_multiple_of(2) {
        [Side::Baseline, Side::Store]
    } else {
        [Side::Store, Side::Baseline]
    }
}

/// What one measured slice of one target saw.
pub struct Slice {
    /// The closed loop's latencies, errors and elapsed time.
    pub outcome: PhaseOutcome,
    /// Connections counted by `CLIENT LIST` during the slice; `None` when
    /// they could not be counted.
    pub observed: Option<Observed>,
    /// CPU time of client and server during the slice.
    pub cpu: CpuUse,
}

impl Slice {
    /// Successful operations per measured second.
    pub fn ops_per_s(&self) -> f64 {
        let secs = self.outcome.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.outcome.count() as f64 / secs
        } else {
            0.0
        }
    }
}

/// One target's slices added up.
pub struct Totals {
    /// Histograms merged, counts and errors added, elapsed times summed.
    pub outcome: PhaseOutcome,
    /// Most connections seen in any slice, samples and failed samples
    /// added; `None` when no slice was counted.
    pub observed: Option<Observed>,
    /// CPU time summed over the slices.
    pub cpu: CpuUse,
}

impl Totals {
    /// No slice yet.
    pub fn new() -> Totals {
        Totals {
            outcome: PhaseOutcome::empty(),
            observed: None,
            cpu: CpuUse::ZERO,
        }
    }

    /// Adds one slice.
    pub fn add(&mut self, slice: &Slice) {
        self.outcome.merge(&slice.outcome);
        self.cpu = self.cpu.add(slice.cpu);
        self.observed = match (self.observed, slice.observed) {
            (Some(a), Some(b)) => Some(Observed {
                max: a.max.max(b.max),
                samples: a.samples + b.samples,
                failed: a.failed + b.failed,
            }),
            (a, b) => a.or(b),
        };
    }
}

/// Lowest, median and highest of the per-round ratios.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Lowest.
    pub min: f64,
    /// Median (the mean of the two middle values for an even count).
    pub median: f64,
    /// Highest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Spread {
            min: sorted[0],
            median,
            max: sorted[n - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rounds_alternate_abba() {
        let firsts: Vec<Side> = (0..4).map(|r| order(r)[0]).collect();
        assert_eq!(
            firsts,
            [Side::Baseline, Side::Store, Side::Baseline, Side::Store]
        );
        let sequence: Vec<Side> = (0..2).flat_map(order).collect();
        assert_eq!(
            sequence,
            [Side::Baseline, Side::Store, Side::Store, Side::Baseline]
        );
    }

    #[test]
    fn spread_of_odd_even_and_no_values() {
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(
            Spread::of(&[0.9, 0.7, 0.8]),
            Some(Spread {
                min: 0.7,
                median: 0.8,
                max: 0.9
            })
        );
        assert_eq!(
            Spread::of(&[1.0, 0.5, 0.75, 0.25]),
            Some(Spread {
                min: 0.25,
                median: 0.625,
                max: 1.0
            })
        );
    }

    fn slice(ms: u64, latencies_ns: &[u64], error: Option<&str>, observed: Option<usize>) -> Slice {
        let mut outcome = PhaseOutcome::empty();
        outcome.elapsed = Duration::from_millis(ms);
        for &ns in latencies_ns {
            outcome.ops[0].latency.record(ns).unwrap();
        }
        if let Some(e) = error {
            outcome.ops[1].errors = 1;
            outcome.ops[1].first_error = Some(e.to_owned());
        }
        Slice {
            outcome,
            observed: observed.map(|max| Observed {
                max,
                samples: 2,
                failed: 1,
            }),
            cpu: CpuUse {
                client_s: 0.25,
                server_s: Some(0.5),
            },
        }
    }

    #[test]
    fn totals_merge_slices() {
        let a = slice(500, &[1_000, 2_000], None, Some(7));
        let b = slice(250, &[3_000], Some("first"), None);
        let c = slice(250, &[4_000], Some("second"), Some(5));
        assert_eq!(a.ops_per_s(), 4.0);
        let mut totals = Totals::new();
        for s in [&a, &b, &c] {
            totals.add(s);
        }
        assert_eq!(totals.outcome.elapsed, Duration::from_secs(1));
        assert_eq!(totals.outcome.count(), 4);
        let get = &totals.outcome.ops[0].latency;
        assert_eq!(get.len(), 4);
        assert!(get.equivalent(get.min(), 1_000), "{}", get.min());
        assert!(get.equivalent(get.max(), 4_000), "{}", get.max());
        assert_eq!(totals.outcome.ops[1].errors, 2);
        assert_eq!(totals.outcome.ops[1].first_error.as_deref(), Some("first"));
        let observed = totals.observed.unwrap();
        assert_eq!((observed.max, observed.samples, observed.failed), (7, 4, 2));
        assert_eq!(totals.cpu.client_s, 0.75);
        assert_eq!(totals.cpu.server_s, Some(1.5));
    }
}
