//! The closed loop: `concurrency` Tokio tasks, each drawing an operation
//! from the mix, running it, and starting the next as soon as it returns,
//! until the time is up. Latencies go into one HdrHistogram per operation
//! (nanoseconds, 3 significant digits) shared by the tasks behind a mutex:
//! a histogram holds tens of thousands of counters, too many to give each
//! task its own at high concurrency, and an uncontended lock per operation
//! costs far less than the round trip. A progress bar on stderr shows the
//! loop (target, concurrency, mix, round).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use super::dataset::DataSet;
use super::mix::Mix;
use super::target::Target;

/// Shortest latency the histograms tell apart from zero, nanoseconds.
const MIN_LATENCY_NS: u64 = 100;

/// Longest latency the histograms hold (longer ones are clamped).
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// How one phase runs.
#[derive(Debug, Clone)]
pub struct PhaseSpec {
    /// Tasks running operations at once.
    pub concurrency: usize,
    /// Unmeasured load before the measurement.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Which operations, how often.
    pub mix: Mix,
}

/// What one operation did during the measured time.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latencies of the successful operations, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Operations that failed.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            latency: Histogram::new_with_bounds(MIN_LATENCY_NS, MAX_LATENCY_NS, 3)
                .expect("valid histogram bounds"),
            errors: 0,
            first_error: None,
        }
    }

    /// Successful operations.
    pub fn count(&self) -> u64 {
        self.latency.len()
    }

    /// Adds `other`'s latencies and errors to these; the first error kept
    /// is this one's, if any.
    pub fn merge(&mut self, other: &OpStats) {
        self.latency
            .add(&other.latency)
            .expect("histograms of the same bounds");
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// The outcome of one closed loop, or of several added up.
#[derive(Debug, Clone)]
pub struct PhaseOutcome {
    /// From the start until the last task stopped (summed over loops).
    pub elapsed: Duration,
    /// Per operation, indexed by [`Op::index`].
    pub ops: [OpStats; 4],
}

impl PhaseOutcome {
    /// Nothing measured yet: no time, no operation.
    pub fn empty() -> PhaseOutcome {
        PhaseOutcome {
            elapsed: Duration::ZERO,
            ops: std::array::from_fn(|_| OpStats::new()),
        }
    }

    /// Successful operations of all kinds.
    pub fn count(&self) -> u64 {
        self.ops.iter().map(OpStats::count).sum()
    }

    /// Failed operations of all kinds.
    pub fn errors(&self) -> u64 {
        self.ops.iter().map(|o| o.errors).sum()
    }

    /// Adds `other` (a later loop on the same target): elapsed times
    /// summed, histograms merged, errors counted, the first error kept.
    pub fn merge(&mut self, other: &PhaseOutcome) {
        self.elapsed += other.elapsed;
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            mine.merge(theirs);
        }
    }
}

/// Runs the closed loop of `spec` against `target` on `data` for
/// `duration` (the warm-up or the measurement), showing `label` on the
/// progress bar.
pub async fn run_loop(
    target: &Target,
    data: &Arc<DataSet>,
    spec: &PhaseSpec,
    duration: Duration,
    label: String,
) -> anyhow::Result<PhaseOutcome> {
    let started = Instant::now();
    let end = started + duration;
    let done = Arc::new(AtomicU64::new(0));

    let progress = progress_bar(duration, label);
    let ticker = tokio::spawn({
        let progress = progress.clone();
        let done = Arc::clone(&done);
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                progress.set_position(started.elapsed().as_millis() as u64);
                progress.set_message(format!("{} operations", done.load(Ordering::Relaxed)));
            }
        }
    });

    let stats: Arc<Mutex<[OpStats; 4]>> =
        Arc::new(Mutex::new(std::array::from_fn(|_| OpStats::new())));
    let tasks: Vec<_> = (0..spec.concurrency)
        .map(|n| {
            let target = target.clone();
            let data = Arc::clone(data);
            let done = Arc::clone(&done);
            let stats = Arc::clone(&stats);
            let mix = spec.mix;
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(n as u64 + 1);
                let total = mix.total();
                while Instant::now() < end {
                    let op = mix.pick(rng.u32(..total));
                    let mut user = data.lock_any(&mut rng).await;
                    let result = target.run(op, &mut user, &mut rng).await;
                    drop(user);
                    done.fetch_add(1, Ordering::Relaxed);
                    let mut stats = stats.lock().unwrap_or_else(PoisonError::into_inner);
                    record(&mut stats[op.index()], result);
                }
                Instant::now()
            })
        })
        .collect();

    let mut last = end;
    for task in tasks {
        last = last.max(task.await?);
    }
    ticker.abort();
    progress.finish_and_clear();
    let ops = std::mem::replace(
        &mut *stats.lock().unwrap_or_else(PoisonError::into_inner),
        std::array::from_fn(|_| OpStats::new()),
    );
    Ok(PhaseOutcome {
        elapsed: last.duration_since(started),
        ops,
    })
}

fn record(stats: &mut OpStats, result: Result<Duration, String>) {
    match result {
        Ok(latency) => {
            let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
            stats.latency.saturating_record(ns.max(MIN_LATENCY_NS));
        }
        Err(e) => {
            stats.errors += 1;
            if stats.first_error.is_none() {
                stats.first_error = Some(e);
            }
        }
    }
}

fn progress_bar(total: Duration, label: String) -> ProgressBar {
    let progress = ProgressBar::new(total.as_millis() as u64);
    progress.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {elapsed:>3} {msg}")
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    progress.set_prefix(label);
    progress
}
