//! The figures of a benchmark: what `--json` writes, and the tables
//! printed to stdout. Latencies are in microseconds, throughput in
//! operations per second.

use std::collections::BTreeMap;

use comfy_table::{CellAlignment, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use super::cpu::CpuUse;
use super::driver::{OpStats, PhaseOutcome};
use super::mix::Op;
use super::rounds::{Side, Spread};

/// Everything one invocation measured (the `--json` file).
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// `"charon-sessions bench"`.
    pub tool: &'static str,
    /// Version of the charon-sessions crates.
    pub version: &'static str,
    /// The server, e.g. `"Redis 8.0.2"`.
    pub server: String,
    /// How the runs were made.
    pub settings: Settings,
    /// Most connections the store opens: `pool_size` (plus
    /// `replica_wait_connections` with `wait_for_replicas`).
    pub max_connections: usize,
    /// Shared connections the store opened at connect (`pool_size`).
    pub pool_size: usize,
    /// Most operations in flight (`max_in_flight`).
    pub max_in_flight: usize,
    /// One entry per concurrency (and, in a sweep, per operation).
    pub runs: Vec<RunReport>,
}

/// The options of the invocation.
#[derive(Debug, Serialize)]
pub struct Settings {
    /// Measured seconds per target (baseline, store) and run, in total
    /// over its rounds.
    pub duration_s: f64,
    /// Unmeasured seconds of load on each target before its first round.
    pub warmup_s: f64,
    /// Interleaved rounds of baseline and store per run (ABBA order), each
    /// `duration_s / rounds` long; 1 without a baseline (the store is
    /// measured in one stretch).
    pub rounds: usize,
    /// Users seeded per target and run (the store's `charon-bench-<n>`,
    /// the baseline's `charon-bench-b-<n>`).
    pub users: usize,
    /// Sessions per user.
    pub sessions_per_user: usize,
    /// Whether the bare-command baseline ran.
    pub baseline: bool,
    /// Whether this was a control run (`--control`): the `store` figures
    /// are then those of the bare commands on the store's data set.
    pub control: bool,
    /// The concurrencies of `--sweep`, empty without it.
    pub sweep: Vec<usize>,
}

/// The store (and the baseline) at one concurrency and mix.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// Tasks running operations at once.
    pub concurrency: usize,
    /// The mix, as `--mix` takes it.
    pub mix: String,
    /// The bare commands, when `--baseline` was given.
    pub baseline: Option<PhaseReport>,
    /// The store.
    pub store: PhaseReport,
    /// Per operation: store ops/s divided by baseline ops/s.
    pub ratio: BTreeMap<&'static str, f64>,
    /// All operations together: store ops/s divided by baseline ops/s;
    /// `None` without a baseline.
    pub total_ratio: Option<f64>,
    /// Per round, in order: the store's ops/s divided by the baseline's
    /// in that round's two slices (all operations together); empty
    /// without a baseline.
    pub ratio_per_round: Vec<f64>,
    /// Lowest, median and highest of `ratio_per_round`.
    pub ratio_spread: Option<Spread>,
    /// Every measured slice in the order it ran: with a baseline two per
    /// round in ABBA order (baseline, store, store, baseline, …); without,
    /// the store's one.
    pub slices: Vec<SliceReport>,
}

/// One measured slice: one target's part of one round.
#[derive(Debug, Clone, Serialize)]
pub struct SliceReport {
    /// The round, from 1.
    pub round: usize,
    /// `"store"` or `"baseline"`.
    pub target: &'static str,
    /// Measured seconds.
    pub elapsed_s: f64,
    /// Successful operations of all kinds.
    pub total_ops: u64,
    /// `total_ops / elapsed_s`.
    pub ops_per_s: f64,
    /// Failed operations of all kinds.
    pub errors: u64,
}

/// One target (baseline or store), its rounds added up.
#[derive(Debug, Serialize)]
pub struct PhaseReport {
    /// `"store"` or `"baseline"`.
    pub target: &'static str,
    /// Measured seconds, summed over the rounds.
    pub elapsed_s: f64,
    /// Successful operations of all kinds.
    pub total_ops: u64,
    /// `total_ops / elapsed_s`.
    pub ops_per_s: f64,
    /// Failed operations of all kinds.
    pub errors: u64,
    /// Per operation in the mix, keyed by name.
    pub operations: BTreeMap<&'static str, OpReport>,
    /// Connections seen during the measured slices (the most in any).
    pub connections: ConnectionReport,
    /// CPU time of this process during the phase, microseconds per
    /// operation (failed ones and re-creations after a delete included).
    pub client_cpu_us_per_op: f64,
    /// CPU time of the server during the phase (`INFO cpu`), microseconds
    /// per operation; `None` when it could not be read.
    pub server_cpu_us_per_op: Option<f64>,
}

/// One operation in one phase.
#[derive(Debug, Serialize)]
pub struct OpReport {
    /// The Redis command it is made of.
    pub command: &'static str,
    /// Successful operations.
    pub count: u64,
    /// `count` per measured second.
    pub ops_per_s: f64,
    /// Latency percentiles and extremes, microseconds.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Slowest.
    pub max_us: f64,
    /// Failed operations.
    pub errors: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
}

/// Connections observed with `CLIENT LIST` during a phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ConnectionReport {
    /// Most store connections seen at once; `None` when `CLIENT LIST`
    /// could not be run.
    pub max_observed: Option<usize>,
    /// `CLIENT LIST` samples taken (every 100 ms).
    pub samples: usize,
    /// `CLIENT LIST` calls that failed (e.g. timed out) and were skipped.
    pub failed_samples: usize,
    /// What the store promises at most: `pool_size` (plus
    /// `replica_wait_connections` with `wait_for_replicas`).
    pub promised: usize,
}

impl PhaseReport {
    /// The report of a phase's outcome; operations with weight 0 are left out.
    pub fn new(
        target: &'static str,
        outcome: &PhaseOutcome,
        weighted: impl Fn(Op) -> bool,
        connections: ConnectionReport,
        cpu: CpuUse,
    ) -> PhaseReport {
        let secs = outcome.elapsed.as_secs_f64();
        let operations: BTreeMap<_, _> = Op::ALL
            .into_iter()
            .filter(|op| weighted(*op))
            .map(|op| (op.name(), op_report(op, &outcome.ops[op.index()], secs)))
            .collect();
        let total_ops: u64 = operations.values().map(|o| o.count).sum();
        let errors: u64 = operations.values().map(|o| o.errors).sum();
        let per_op = |s: f64| s * 1e6 / (total_ops + errors).max(1) as f64;
        PhaseReport {
            target,
            elapsed_s: secs,
            total_ops,
            ops_per_s: total_ops as f64 / secs,
            errors,
            operations,
            connections,
            client_cpu_us_per_op: per_op(cpu.client_s),
            server_cpu_us_per_op: cpu.server_s.map(per_op),
        }
    }
}

fn op_report(op: Op, stats: &OpStats, secs: f64) -> OpReport {
    let h = &stats.latency;
    let us = |ns: u64| ns as f64 / 1000.0;
    let empty = h.is_empty();
    let at = |q: f64| {
        if empty {
            0.0
        } else {
            us(h.value_at_quantile(q))
        }
    };
    OpReport {
        command: op.command(),
        count: stats.count(),
        ops_per_s: stats.count() as f64 / secs,
        mean_us: if empty { 0.0 } else { h.mean() / 1000.0 },
        p50_us: at(0.50),
        p99_us: at(0.99),
        p999_us: at(0.999),
        max_us: if empty { 0.0 } else { us(h.max()) },
        errors: stats.errors,
        first_error: stats.first_error.clone(),
    }
}

impl RunReport {
    /// Pairs a store phase with its baseline and computes the ratios, per
    /// round from `slices` (in the order they ran).
    pub fn new(
        concurrency: usize,
        mix: String,
        baseline: Option<PhaseReport>,
        store: PhaseReport,
        slices: Vec<SliceReport>,
    ) -> RunReport {
        let mut ratio = BTreeMap::new();
        if let Some(base) = &baseline {
            for (name, op) in &store.operations {
                if let Some(b) = base.operations.get(name)
                    && b.ops_per_s > 0.0
                {
                    ratio.insert(*name, op.ops_per_s / b.ops_per_s);
                }
            }
        }
        let total_ratio = baseline
            .as_ref()
            .filter(|b| b.ops_per_s > 0.0)
            .map(|b| store.ops_per_s / b.ops_per_s);
        let ratio_per_round = ratios_per_round(&slices);
        let ratio_spread = Spread::of(&ratio_per_round);
        RunReport {
            concurrency,
            mix,
            baseline,
            store,
            ratio,
            total_ratio,
            ratio_per_round,
            ratio_spread,
            slices,
        }
    }

    /// The line under the table: the overall ratio and the spread of the
    /// per-round ratios; `None` without a baseline.
    pub fn ratio_line(&self) -> Option<String> {
        let total = self.total_ratio?;
        let mut line = format!("store/baseline, all operations: {:.1} %", total * 100.0);
        if let Some(s) = &self.ratio_spread {
            line += &format!(
                " (per round: min {:.1} %, median {:.1} %, max {:.1} % over {} rounds)",
                s.min * 100.0,
                s.median * 100.0,
                s.max * 100.0,
                self.ratio_per_round.len()
            );
        }
        Some(line)
    }

    /// The table of this run: one row per operation and phase.
    pub fn table(&self) -> Table {
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header([
                "operation",
                "measured",
                "count",
                "ops/s",
                "p50 µs",
                "p99 µs",
                "p99.9 µs",
                "errors",
                "vs baseline",
            ]);
        for (name, op) in &self.store.operations {
            if let Some(base) = &self.baseline
                && let Some(b) = base.operations.get(name)
            {
                table.add_row(row(name, b.command, b, String::new()));
            }
            let ratio = self
                .ratio
                .get(name)
                .map(|r| format!("{:.1} %", r * 100.0))
                .unwrap_or_default();
            table.add_row(row(name, "store", op, ratio));
        }
        for column in table.column_iter_mut().skip(2) {
            column.set_cell_alignment(CellAlignment::Right);
        }
        table
    }
}

/// Per round that measured both targets (in round order), the store's
/// ops/s divided by the baseline's; rounds whose baseline did nothing are
/// left out.
fn ratios_per_round(slices: &[SliceReport]) -> Vec<f64> {
    let last = slices.iter().map(|s| s.round).max().unwrap_or(0);
    (1..=last)
        .filter_map(|round| {
            let of = |side: Side| {
                slices
                    .iter()
                    .find(|s| s.round == round && s.target == side.name())
                    .map(|s| s.ops_per_s)
            };
            let base = of(Side::Baseline).filter(|b| *b > 0.0)?;
            Some(of(Side::Store)? / base)
        })
        .collect()
}

fn row(name: &str, what: &str, op: &OpReport, ratio: String) -> Vec<String> {
    vec![
        name.to_owned(),
        what.to_owned(),
        op.count.to_string(),
        format!("{:.0}", op.ops_per_s),
        format!("{:.0}", op.p50_us),
        format!("{:.0}", op.p99_us),
        format!("{:.0}", op.p999_us),
        op.errors.to_string(),
        ratio,
    ]
}

/// The summary table of a sweep: per concurrency and operation, store and
/// baseline throughput, their ratio, and p99 latencies.
pub fn sweep_table(runs: &[RunReport]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "concurrency",
            "operation",
            "baseline ops/s",
            "store ops/s",
            "store/baseline",
            "per round min–max",
            "baseline p99 µs",
            "store p99 µs",
            "client CPU µs/op baseline → store",
            "max connections",
            "errors",
        ]);
    for run in runs {
        for (name, op) in &run.store.operations {
            let base = run.baseline.as_ref().and_then(|b| b.operations.get(name));
            let max_conn = [
                run.baseline
                    .as_ref()
                    .and_then(|b| b.connections.max_observed),
                run.store.connections.max_observed,
            ]
            .into_iter()
            .flatten()
            .max();
            table.add_row(vec![
                run.concurrency.to_string(),
                (*name).to_owned(),
                base.map(|b| format!("{:.0}", b.ops_per_s))
                    .unwrap_or_default(),
                format!("{:.0}", op.ops_per_s),
                run.ratio
                    .get(name)
                    .map(|r| format!("{:.1} %", r * 100.0))
                    .unwrap_or_default(),
                run.ratio_spread
                    .map(|s| format!("{:.1}–{:.1} %", s.min * 100.0, s.max * 100.0))
                    .unwrap_or_default(),
                base.map(|b| format!("{:.0}", b.p99_us)).unwrap_or_default(),
                format!("{:.0}", op.p99_us),
                format!(
                    "{} → {:.1}",
                    run.baseline
                        .as_ref()
                        .map_or("?".to_owned(), |b| format!("{:.1}", b.client_cpu_us_per_op)),
                    run.store.client_cpu_us_per_op
                ),
                max_conn.map(|m| m.to_string()).unwrap_or("?".into()),
                (op.errors + base.map_or(0, |b| b.errors)).to_string(),
            ]);
        }
    }
    for column in table.column_iter_mut().skip(2) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(round: usize, target: &'static str, ops_per_s: f64) -> SliceReport {
        SliceReport {
            round,
            target,
            elapsed_s: 1.0,
            total_ops: ops_per_s as u64,
            ops_per_s,
            errors: 0,
        }
    }

    #[test]
    fn ratio_per_round_pairs_the_slices_of_each_round() {
        let slices = [
            slice(1, "baseline", 100.0),
            slice(1, "store", 80.0),
            slice(2, "store", 45.0),
            slice(2, "baseline", 50.0),
            slice(3, "baseline", 0.0),
            slice(3, "store", 10.0),
        ];
        assert_eq!(ratios_per_round(&slices), [0.8, 0.9]);
        assert!(ratios_per_round(&[slice(1, "store", 10.0)]).is_empty());
        assert!(ratios_per_round(&[]).is_empty());
    }
}
