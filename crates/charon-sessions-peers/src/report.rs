//! The figures of a run: tables for the terminal and the `--json` file.

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use crate::mix::OpKind;
use crate::probe::SessionBytes;
use crate::stats::{KindStats, Stats};

/// Printed beside the figures: the peers do less per operation.
pub const LESS_WORK_NOTE: &str = "\
The peers do less work per operation than charon-sessions: no optimistic locking \
(their save is a plain SET XX: the last writer silently wins, where charon-sessions' \
Redis function checks a lock field and refuses a stale write), no per-user index (one \
string key per session: no \"list my devices\" or \"log out everywhere\"), no signature \
(charon-sessions HMAC-signs every value and verifies it, and the owner, on every read), \
and a key TTL instead of a per-field expiry on two hash fields (HSETEX).";

/// One operation kind's figures.
#[derive(Debug, Serialize)]
pub struct KindReport {
    /// The kind.
    pub kind: OpKind,
    /// Successful operations.
    pub count: u64,
    /// Failed operations (errors, or a session not found).
    pub errors: u64,
    /// Successful operations per second of the measured phase.
    pub ops_per_sec: f64,
    /// Median latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile latency, microseconds.
    pub p99_us: u64,
}

impl KindReport {
    fn new(kind: OpKind, stats: &KindStats, seconds: f64) -> KindReport {
        KindReport {
            kind,
            count: stats.count(),
            errors: stats.errors,
            ops_per_sec: stats.count() as f64 / seconds,
            p50_us: stats.quantile_us(0.50),
            p99_us: stats.quantile_us(0.99),
        }
    }
}

/// One store's figures.
#[derive(Debug, Serialize)]
pub struct StoreReport {
    /// The store's short name (`charon`, `tower`, `actix`, `actix-single`).
    pub name: String,
    /// The crate and how it reaches Redis.
    pub client: String,
    /// Client connections the store opened on the server, counted after
    /// its seeding (`INFO clients`, above those open before it connected).
    pub connections: u64,
    /// Length of the measured phase, seconds.
    pub elapsed_s: f64,
    /// All successful operations per second.
    pub ops_per_sec: f64,
    /// `ops_per_sec` divided by charon-sessions' (when it ran).
    pub ratio_to_charon: Option<f64>,
    /// All failed operations.
    pub errors: u64,
    /// All kinds together: median latency, microseconds.
    pub p50_us: u64,
    /// All kinds together: 99th percentile latency, microseconds.
    pub p99_us: u64,
    /// Per kind.
    pub kinds: Vec<KindReport>,
    /// What one freshly logged-in session occupies.
    pub bytes: SessionBytes,
    /// This process's CPU time (user + system) over the store's slices,
    /// per successful operation, microseconds.
    pub client_cpu_us_per_op: f64,
    /// The server's CPU time (`INFO cpu`) over the store's slices, per
    /// successful operation, microseconds.
    pub server_cpu_us_per_op: f64,
    /// The first error messages, if any.
    pub first_errors: Vec<String>,
}

impl StoreReport {
    /// Builds the report from a run's statistics.
    pub fn new(
        name: &str,
        client: String,
        connections: u64,
        stats: &Stats,
        elapsed_s: f64,
        bytes: SessionBytes,
        first_errors: Vec<String>,
    ) -> StoreReport {
        let total = stats.total();
        StoreReport {
            name: name.to_owned(),
            client,
            connections,
            elapsed_s,
            ops_per_sec: total.count() as f64 / elapsed_s,
            ratio_to_charon: None,
            errors: total.errors,
            p50_us: total.quantile_us(0.50),
            p99_us: total.quantile_us(0.99),
            kinds: OpKind::ALL
                .into_iter()
                .map(|kind| KindReport::new(kind, stats.kind(kind), elapsed_s))
                .collect(),
            bytes,
            client_cpu_us_per_op: 0.0,
            server_cpu_us_per_op: 0.0,
            first_errors,
        }
    }
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `redis_version` of the server.
    pub server_version: String,
    /// Whether the binary started the server itself (else `--redis`).
    pub server_started_here: bool,
    /// CPUs the machine offers to this process.
    pub cpus: usize,
    /// Workers per store.
    pub concurrency: usize,
    /// Requested length of each store's measured phase, seconds, in total
    /// over the rounds.
    pub duration_s: f64,
    /// Interleaved rounds the phases were split into.
    pub rounds: u32,
    /// The operation mix.
    pub mix: String,
    /// Connections each store was given (`--pool`); `None`: each store's
    /// documented default.
    pub pool: Option<usize>,
    /// Sessions each worker logged in before the measured phase.
    pub sessions_per_worker: usize,
    /// Per store, in the order they ran.
    pub stores: Vec<StoreReport>,
    /// What the peers do not do.
    pub note: &'static str,
}

impl Report {
    /// Fills each store's ratio to charon-sessions' throughput.
    pub fn fill_ratios(&mut self) {
        let charon = self
            .stores
            .iter()
            .find(|store| store.name == "charon")
            .map(|store| store.ops_per_sec);
        for store in &mut self.stores {
            store.ratio_to_charon = charon
                .filter(|&ops| ops > 0.0)
                .map(|ops| store.ops_per_sec / ops);
        }
    }

    /// The tables for the terminal: one per store, then the comparison.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for store in &self.stores {
            let mut table =
                new_table(&["operation", "count", "ops/s", "p50 ms", "p99 ms", "errors"]);
            for kind in &store.kinds {
                table.add_row(row(
                    kind.kind.name(),
                    kind.count,
                    kind.ops_per_sec,
                    kind.p50_us,
                    kind.p99_us,
                    kind.errors,
                ));
            }
            let total: u64 = store.kinds.iter().map(|kind| kind.count).sum();
            table.add_row(row(
                "all",
                total,
                store.ops_per_sec,
                store.p50_us,
                store.p99_us,
                store.errors,
            ));
            out.push_str(&format!(
                "{} — {}, {} connections\n{table}\n",
                store.name, store.client, store.connections
            ));
            for error in &store.first_errors {
                out.push_str(&format!("  error: {error}\n"));
            }
            out.push('\n');
        }
        let mut table = new_table(&[
            "store",
            "ops/s",
            "vs charon",
            "p99 ms",
            "client µs/op",
            "server µs/op",
            "errors",
            "conns",
            "key B",
            "value B",
        ]);
        for store in &self.stores {
            let bytes = store.bytes;
            table.add_row(vec![
                Cell::new(&store.name),
                Cell::new(format!("{:.0}", store.ops_per_sec)).set_alignment(CellAlignment::Right),
                Cell::new(
                    store
                        .ratio_to_charon
                        .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}")),
                )
                .set_alignment(CellAlignment::Right),
                Cell::new(millis(store.p99_us)).set_alignment(CellAlignment::Right),
                Cell::new(format!("{:.1}", store.client_cpu_us_per_op))
                    .set_alignment(CellAlignment::Right),
                Cell::new(format!("{:.1}", store.server_cpu_us_per_op))
                    .set_alignment(CellAlignment::Right),
                Cell::new(store.errors).set_alignment(CellAlignment::Right),
                Cell::new(store.connections).set_alignment(CellAlignment::Right),
                Cell::new(bytes.key).set_alignment(CellAlignment::Right),
                Cell::new(if bytes.field > 0 {
                    format!(
                        "{} (+ field {}, lock {})",
                        bytes.value, bytes.field, bytes.lock_field
                    )
                } else {
                    bytes.value.to_string()
                })
                .set_alignment(CellAlignment::Right),
            ]);
        }
        out.push_str(&format!(
            "Redis {}, {} CPUs, concurrency {}, {} s per store in {} interleaved rounds, mix {}, {}\n{table}\n\n{LESS_WORK_NOTE}\n",
            self.server_version,
            self.cpus,
            self.concurrency,
            self.duration_s,
            self.rounds,
            self.mix,
            match self.pool {
                Some(pool) => format!("{pool} connections each"),
                None => "each store as its documentation recommends".to_owned(),
            }
        ));
        out
    }
}

fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    table
}

fn row(name: &str, count: u64, ops: f64, p50_us: u64, p99_us: u64, errors: u64) -> Vec<Cell> {
    vec![
        Cell::new(name),
        Cell::new(count).set_alignment(CellAlignment::Right),
        Cell::new(format!("{ops:.0}")).set_alignment(CellAlignment::Right),
        Cell::new(millis(p50_us)).set_alignment(CellAlignment::Right),
        Cell::new(millis(p99_us)).set_alignment(CellAlignment::Right),
        Cell::new(errors).set_alignment(CellAlignment::Right),
    ]
}

fn millis(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}
