//! `charon-sessions bench`: closed-loop load on a real server, the store
//! against the bare Redis commands it is made of.
//!
//! A run seeds `users × sessions_per_user` sessions ([`dataset`]), then
//! `concurrency` tasks draw operations from the mix ([`mix`]) and run them
//! back to back for the duration ([`driver`]) against the store or, with
//! `--baseline`, also against the bare commands on the same connections
//! ([`target`]), while `CLIENT LIST` counts the connections
//! ([`connections`]) and the CPU time of both sides is read ([`cpu`]).
//! With a baseline, each target gets a data set of its own on disjoint
//! users, is warmed up once, and the two are measured in interleaved
//! rounds in ABBA order ([`rounds`]), so that a drifting machine weighs
//! on both alike. A control run (`--control`) puts the bare commands on
//! both sides, to check the method itself. The figures are printed as
//! tables and written as JSON ([`report`]); a sweep over concurrencies
//! can be charted ([`chart`]).

mod chart;
mod connections;
mod cpu;
mod dataset;
mod driver;
mod mix;
mod report;
mod rounds;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use charon_sessions::{PoolState, RedisStore};
use clap::Args;

use self::connections::{Observed, Sampler};
use self::cpu::CpuMark;
use self::dataset::{BASELINE_USERS, DataSet, STORE_USERS};
use self::driver::{PhaseSpec, run_loop};
use self::mix::{Mix, Op};
use self::report::{BenchReport, ConnectionReport, PhaseReport, RunReport, Settings, SliceReport};
use self::rounds::{Side, Slice, Totals};
use self::target::Target;
use crate::store_args::StoreArgs;

/// Options of `charon-sessions bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// Tasks running operations at once (closed loop: each starts its next
    /// operation when the last returns).
    #[arg(long, value_name = "TASKS", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    concurrency: u64,

    /// Measured seconds per target (store, and baseline), in total over
    /// the rounds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    duration: f64,

    /// Unmeasured seconds of load on each target before its first round.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    warmup: f64,

    /// With `--baseline` (and in `--sweep`): measure baseline and store in
    /// this many interleaved rounds of `duration / N` each, in ABBA order
    /// (baseline then store, store then baseline, …). With an odd N the
    /// baseline goes first once more than the store (1 round: baseline,
    /// then store, each in one stretch); an even N balances the order.
    /// Ignored without a baseline: the store is then measured in one
    /// stretch.
    #[arg(long, value_name = "N", default_value_t = 6,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    rounds: u64,

    /// Users seeded per target (the store's ids `charon-bench-<n>`, the
    /// baseline's `charon-bench-b-<n>`); at least the concurrency, since
    /// each operation holds one user.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    users: u64,

    /// Sessions seeded per user.
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    sessions_per_user: u64,

    /// Operation weights; deleted sessions are created again, so the data
    /// set keeps its size.
    #[arg(
        long,
        value_name = "OP=WEIGHT,...",
        default_value = "get=70,upsert=25,get_all=4,delete=1"
    )]
    mix: Mix,

    /// Shared connections the store opens (`RedisStoreConfig::pool_size`);
    /// defaults to the store's default.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pool_size: Option<u64>,

    /// Most operations in flight (`RedisStoreConfig::max_in_flight`);
    /// defaults to the store's default.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    max_in_flight: Option<u64>,

    /// Also run the bare Redis commands each operation is made of (HGET,
    /// FCALL with a precomputed value, HGETALL, HDEL) at the same
    /// concurrency on the same connections, interleaved with the store in
    /// `--rounds` rounds, and report the store as a ratio of it.
    #[arg(long)]
    baseline: bool,

    /// A check of the method (an A/A run): with `--baseline`, the `store`
    /// side runs the bare commands too, on its own data set, in the same
    /// interleaved rounds. Its ratio is what the method and the machine
    /// make of two identical loops: 100 % when the method is fair, and its
    /// spread over repeated runs is the machine's noise.
    #[arg(long, requires = "baseline", conflicts_with = "sweep")]
    control: bool,

    /// Write every figure to this file as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Instead of one run: at each of these concurrencies, run `get` alone
    /// and `upsert` alone, baseline and store in `--rounds` rounds.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',',
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    sweep: Option<Vec<u64>>,

    /// With `--sweep`: draw throughput and p99 against concurrency, store
    /// vs baseline, for get and upsert, into this SVG file.
    #[arg(long, value_name = "FILE.svg", requires = "sweep")]
    chart: Option<PathBuf>,
}

/// One measured combination.
struct Plan {
    concurrency: usize,
    mix: Mix,
    baseline: bool,
    /// The `store` side runs the bare commands too (`--control`).
    control: bool,
}

/// Runs the benchmark; `Ok(FAILURE)` when any operation failed.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let setup = Setup::from_args(&args)?;
    let (store, url) = connect(&args).await?;
    let pool = store.pool_state();
    print_header(&args, &setup, &store, &pool);
    let runs = run_plans(&store, url.as_deref(), &setup).await?;
    let report = bench_report(&args, setup, &store, &pool, runs);
    write_files(&args, &report)?;
    Ok(exit_code(&report))
}

/// What the options ask for, checked before any server is contacted: the
/// phases' lengths, the data sets' sizes and the plans to measure.
struct Setup {
    duration: Duration,
    warmup: Duration,
    sizes: Sizes,
    /// The concurrencies of `--sweep` (empty: one run).
    sweep: Vec<usize>,
    plans: Vec<Plan>,
    /// Whether any plan measures the bare commands too.
    with_baseline: bool,
}

impl Setup {
    fn from_args(args: &BenchArgs) -> anyhow::Result<Setup> {
        let seconds = |name: &str, s: f64| {
            if s.is_finite() && (0.0..=86_400.0).contains(&s) {
                Ok(Duration::from_secs_f64(s))
            } else {
                bail!("--{name} must be between 0 and 86400 seconds")
            }
        };
        let duration = seconds("duration", args.duration)?;
        let warmup = seconds("warmup", args.warmup)?;
        if duration.is_zero() {
            bail!("--duration must be above 0");
        }
        let sizes = Sizes {
            users: args.users as usize,
            sessions_per_user: args.sessions_per_user as usize,
            rounds: args.rounds as usize,
        };
        let sweep: Vec<usize> = args
            .sweep
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c as usize)
            .collect();
        let plans = plans(args, &sweep);
        let with_baseline = plans.iter().any(|p| p.baseline);
        if with_baseline && duration / (sizes.rounds as u32) < Duration::from_millis(10) {
            bail!("--duration / --rounds must leave at least 10 ms per round");
        }
        let most = plans.iter().map(|p| p.concurrency).max().unwrap_or(1);
        if sizes.users < most {
            bail!(
                "--users ({}) must be at least the concurrency ({most}): each operation holds one user",
                sizes.users
            );
        }
        Ok(Setup {
            duration,
            warmup,
            sizes,
            sweep,
            plans,
            with_baseline,
        })
    }
}

/// One plan of the options' concurrency and mix or, with `--sweep`, `get`
/// alone and `upsert` alone with a baseline at each of its concurrencies.
fn plans(args: &BenchArgs, sweep: &[usize]) -> Vec<Plan> {
    if sweep.is_empty() {
        return vec![Plan {
            concurrency: args.concurrency as usize,
            mix: args.mix,
            baseline: args.baseline,
            control: args.control,
        }];
    }
    sweep
        .iter()
        .flat_map(|&concurrency| {
            [Op::Get, Op::Upsert].map(|op| Plan {
                concurrency,
                mix: format!("{op}=1").parse().expect("a one-operation mix"),
                baseline: true,
                control: false,
            })
        })
        .collect()
}

/// Opens the store the options name, with `--pool-size` and
/// `--max-in-flight`, and gives the URL of the server to sample
/// connections and server CPU on: in a cluster or behind sentinels they
/// are spread over several nodes and are not reported.
async fn connect(args: &BenchArgs) -> anyhow::Result<(RedisStore, Option<String>)> {
    let Some((mut config, topology)) = args.store.redis_config()? else {
        bail!(
            "bench needs a Redis server: --redis URL (or CHARON_REDIS_URL), --cluster or --sentinel"
        );
    };
    let url = args
        .store
        .connection
        .redis
        .clone()
        .filter(|_| topology == "one server");
    if let Some(size) = args.pool_size {
        config = config.pool_size(size as usize);
    }
    if let Some(limit) = args.max_in_flight {
        config = config.max_in_flight(limit as usize);
    }
    let store = RedisStore::connect(config)
        .await
        .context("cannot open the Redis store")?;
    Ok((store, url))
}

/// The line saying what is measured, on what.
fn print_header(args: &BenchArgs, setup: &Setup, store: &RedisStore, pool: &PoolState) {
    let Sizes {
        users,
        sessions_per_user,
        rounds,
    } = setup.sizes;
    println!(
        "charon-sessions bench on {} (key prefix {:?}): {} shared connections, at most {} \
         operations in flight; \
         {users} users × {sessions_per_user} sessions per target; {:.1} s measured per target \
         after {:.1} s warm-up{}",
        store.server(),
        args.store.connection.key_prefix,
        pool.connections,
        pool.max_in_flight,
        setup.duration.as_secs_f64(),
        setup.warmup.as_secs_f64(),
        if setup.with_baseline {
            format!(", baseline and store interleaved in {rounds} rounds")
        } else {
            String::new()
        },
    );
    if args.control {
        println!(
            "control run (--control): the store side runs the bare commands too, on its own \
             data set; a fair method gives 100 % up to the machine's noise"
        );
    }
}

/// Measures every plan in turn; prints each run's tables or, in a sweep,
/// one table of them all at the end.
async fn run_plans(
    store: &RedisStore,
    url: Option<&str>,
    setup: &Setup,
) -> anyhow::Result<Vec<RunReport>> {
    let mut runs = Vec::new();
    for plan in &setup.plans {
        let spec = PhaseSpec {
            concurrency: plan.concurrency,
            warmup: setup.warmup,
            duration: setup.duration,
            mix: plan.mix,
        };
        let measured = measure(store, url, plan, &spec, &setup.sizes).await?;
        let figures = run_report(store, plan, measured);
        if setup.sweep.is_empty() {
            print_run(&figures);
        }
        runs.push(figures);
    }
    if !setup.sweep.is_empty() {
        println!("\nsweep: get alone and upsert alone at each concurrency:");
        println!("{}", report::sweep_table(&runs));
    }
    Ok(runs)
}

/// The figures of one plan, each side's operations weighted in its mix.
fn run_report(store: &RedisStore, plan: &Plan, m: Measured) -> RunReport {
    let weighted = |op: Op| plan.mix.weight(op) > 0;
    let report = |side: Side, totals: &Totals| {
        PhaseReport::new(
            side.name(),
            &totals.outcome,
            weighted,
            connection_report(store, totals.observed),
            totals.cpu,
        )
    };
    RunReport::new(
        plan.concurrency,
        plan.mix.to_string(),
        m.baseline.as_ref().map(|t| report(Side::Baseline, t)),
        report(Side::Store, &m.store),
        m.slices,
    )
}

/// One run's table of figures, its ratio to the baseline and its totals.
fn print_run(figures: &RunReport) {
    println!(
        "\nconcurrency {}, mix {}, {:.2} s measured:",
        figures.concurrency, figures.mix, figures.store.elapsed_s
    );
    println!("{}", figures.table());
    if let Some(line) = figures.ratio_line() {
        println!("{line}");
    }
    print_totals(figures);
}

/// Every figure of the benchmark, as `--json` writes it.
fn bench_report(
    args: &BenchArgs,
    setup: Setup,
    store: &RedisStore,
    pool: &PoolState,
    runs: Vec<RunReport>,
) -> BenchReport {
    BenchReport {
        tool: "charon-sessions bench",
        version: env!("CARGO_PKG_VERSION"),
        server: store.server().to_string(),
        settings: Settings {
            duration_s: setup.duration.as_secs_f64(),
            warmup_s: setup.warmup.as_secs_f64(),
            rounds: if setup.with_baseline {
                setup.sizes.rounds
            } else {
                1
            },
            users: setup.sizes.users,
            sessions_per_user: setup.sizes.sessions_per_user,
            baseline: setup.with_baseline,
            control: args.control,
            sweep: setup.sweep,
        },
        max_connections: pool.max_connections,
        pool_size: pool.connections,
        max_in_flight: pool.max_in_flight,
        runs,
    }
}

/// Writes the `--json` figures and the `--chart`, when asked for.
fn write_files(args: &BenchArgs, report: &BenchReport) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    if let Some(path) = &args.chart {
        chart::draw(&report.runs, path)?;
        println!("chart written to {}", path.display());
    }
    Ok(())
}

/// `FAILURE`, said on standard error, when any operation failed.
fn exit_code(report: &BenchReport) -> ExitCode {
    let errors: u64 = report
        .runs
        .iter()
        .flat_map(|r| std::iter::once(&r.store).chain(&r.baseline))
        .map(|p| p.errors)
        .sum();
    if errors > 0 {
        eprintln!("error: {errors} operations failed (see the errors column)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// How big the data sets are and how the measured time is cut.
struct Sizes {
    users: usize,
    sessions_per_user: usize,
    /// Interleaved rounds with a baseline (1 without).
    rounds: usize,
}

/// What one plan measured: each target's slices added up, and each slice
/// in the order it ran.
struct Measured {
    baseline: Option<Totals>,
    store: Totals,
    slices: Vec<SliceReport>,
}

/// What `side` runs: the store's operations on the store side, the bare
/// commands on the baseline side and, in a control run, on both.
fn target_of(store: &RedisStore, side: Side, control: bool) -> Target {
    match side {
        Side::Store if !control => Target::Store(store.clone()),
        _ => Target::Baseline(store.clone()),
    }
}

/// Seeds a fresh data set per target on disjoint users, warms each up
/// once, then runs the measured slices: with a baseline, `rounds` rounds
/// of one baseline and one store slice in ABBA order; without, one store
/// slice of the whole duration.
async fn measure(
    store: &RedisStore,
    url: Option<&str>,
    plan: &Plan,
    spec: &PhaseSpec,
    sizes: &Sizes,
) -> anyhow::Result<Measured> {
    let sides: &[Side] = if plan.baseline {
        &[Side::Baseline, Side::Store]
    } else {
        &[Side::Store]
    };
    let rounds = if plan.baseline { sizes.rounds } else { 1 };
    let data = seed_data_sets(store, plan, sides, sizes).await?;
    let data_of = |side: Side| {
        data.iter()
            .find(|(s, _)| *s == side)
            .map(|(_, d)| Arc::clone(d))
            .expect("a data set per measured side")
    };
    let label = |side: Side| format!("{} c={} {}", side.name(), spec.concurrency, spec.mix);
    if !spec.warmup.is_zero() {
        for &side in sides {
            let target = target_of(store, side, plan.control);
            let label = format!("{} warm-up", label(side));
            run_loop(&target, &data_of(side), spec, spec.warmup, label).await?;
        }
    }

    let length = spec.duration / rounds as u32;
    let mut baseline = plan.baseline.then(Totals::new);
    let mut store_totals = Totals::new();
    let mut slices = Vec::new();
    for round in 0..rounds {
        for side in rounds::order(round) {
            if !sides.contains(&side) {
                continue;
            }
            let target = target_of(store, side, plan.control);
            let label = format!("{} round {}/{rounds}", label(side), round + 1);
            let slice =
                measure_slice(store, url, &target, &data_of(side), spec, length, label).await?;
            slices.push(SliceReport {
                round: round + 1,
                target: side.name(),
                elapsed_s: slice.outcome.elapsed.as_secs_f64(),
                total_ops: slice.outcome.count(),
                ops_per_s: slice.ops_per_s(),
                errors: slice.outcome.errors(),
            });
            match side {
                Side::Baseline => {
                    if let Some(totals) = baseline.as_mut() {
                        totals.add(&slice);
                    }
                }
                Side::Store => store_totals.add(&slice),
            }
        }
    }
    Ok(Measured {
        baseline,
        store: store_totals,
        slices,
    })
}

/// A fresh data set for each of `sides`, on users of its own.
async fn seed_data_sets(
    store: &RedisStore,
    plan: &Plan,
    sides: &[Side],
    sizes: &Sizes,
) -> anyhow::Result<Vec<(Side, Arc<DataSet>)>> {
    let mut data = Vec::new();
    for &side in sides {
        let prefix = match side {
            Side::Baseline => BASELINE_USERS,
            Side::Store => STORE_USERS,
        };
        // The bare commands replay prepared ones.
        let prepare = matches!(target_of(store, side, plan.control), Target::Baseline(_));
        let seeded =
            DataSet::seed(store, prefix, sizes.users, sizes.sessions_per_user, prepare).await?;
        data.push((side, Arc::new(seeded)));
    }
    Ok(data)
}

/// Runs one measured slice of `length` on `target` while counting
/// connections and CPU time.
async fn measure_slice(
    store: &RedisStore,
    url: Option<&str>,
    target: &Target,
    data: &Arc<DataSet>,
    spec: &PhaseSpec,
    length: Duration,
    label: String,
) -> anyhow::Result<Slice> {
    let sampler = match url {
        None => None,
        Some(url) => match Sampler::start(url).await {
            Ok(sampler) => Some(sampler),
            Err(e) => {
                eprintln!("warning: connections not counted: {e:#}");
                None
            }
        },
    };
    let cpu = CpuMark::now(store).await;
    let outcome = run_loop(target, data, spec, length, label).await?;
    let cpu = cpu.elapsed(store).await;
    let observed = match sampler {
        Some(sampler) => match sampler.finish().await {
            Ok(observed) => Some(observed),
            Err(e) => {
                eprintln!("warning: connection count failed: {e:#}");
                None
            }
        },
        None => None,
    };
    Ok(Slice {
        outcome,
        observed,
        cpu,
    })
}

fn connection_report(store: &RedisStore, observed: Option<Observed>) -> ConnectionReport {
    ConnectionReport {
        max_observed: observed.map(|o| o.max),
        samples: observed.map_or(0, |o| o.samples),
        failed_samples: observed.map_or(0, |o| o.failed),
        promised: store.pool_state().max_connections,
    }
}

fn print_totals(figures: &RunReport) {
    let line = |p: &PhaseReport| {
        let conns = match p.connections.max_observed {
            Some(max) => format!(
                "at most {max} connections seen ({} CLIENT LIST samples; the store promises at most {})",
                p.connections.samples, p.connections.promised
            ),
            None => "connections not counted".to_owned(),
        };
        let server = p
            .server_cpu_us_per_op
            .map_or("?".to_owned(), |us| format!("{us:.1}"));
        println!(
            "{:>8}: {:.0} ops/s in total, {} errors; CPU per operation: client {:.1} µs, \
             server {server} µs; {conns}",
            p.target, p.ops_per_s, p.errors, p.client_cpu_us_per_op
        );
    };
    if let Some(base) = &figures.baseline {
        line(base);
    }
    line(&figures.store);
}
