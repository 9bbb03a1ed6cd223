//! Latency histograms and error counts per operation kind.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::mix::OpKind;

/// What one worker (or, merged, one whole run) measured for one kind.
#[derive(Debug, Clone)]
pub struct KindStats {
    /// Latencies of the successful operations, in microseconds.
    latencies: Histogram<u64>,
    /// Operations that returned an error (or did not find their session).
    pub errors: u64,
}

impl KindStats {
    fn new() -> KindStats {
        KindStats {
            // 1 µs to 1 min with 3 significant digits.
            latencies: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
            errors: 0,
        }
    }

    /// Successful operations.
    pub fn count(&self) -> u64 {
        self.latencies.len()
    }

    /// The latency at `quantile` (0.0..=1.0), in microseconds.
    pub fn quantile_us(&self, quantile: f64) -> u64 {
        self.latencies.value_at_quantile(quantile)
    }
}

/// Statistics for each operation kind.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Indexed by [`OpKind::index`].
    kinds: [KindStats; 3],
}

impl Stats {
    /// Empty statistics.
    pub fn new() -> Stats {
        Stats {
            kinds: [KindStats::new(), KindStats::new(), KindStats::new()],
        }
    }

    /// Records one successful operation of `kind` that took `latency`.
    pub fn record(&mut self, kind: OpKind, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.kinds[kind.index()]
            .latencies
            .saturating_record(micros.max(1));
    }

    /// Records one failed operation of `kind`.
    pub fn record_error(&mut self, kind: OpKind) {
        self.kinds[kind.index()].errors += 1;
    }

    /// Adds another worker's statistics to these.
    pub fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.kinds.iter_mut().zip(&other.kinds) {
            mine.latencies
                .add(&theirs.latencies)
                .expect("histograms with the same bounds");
            mine.errors += theirs.errors;
        }
    }

    /// The statistics of one kind.
    pub fn kind(&self, kind: OpKind) -> &KindStats {
        &self.kinds[kind.index()]
    }

    /// All kinds together.
    pub fn total(&self) -> KindStats {
        let mut total = KindStats::new();
        for kind in &self.kinds {
            total
                .latencies
                .add(&kind.latencies)
                .expect("histograms with the same bounds");
            total.errors += kind.errors;
        }
        total
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}
