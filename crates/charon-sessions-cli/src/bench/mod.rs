//! `charon-sessions bench`: closed-loop load on a real server, the store
//! against the bare Redis commands it is made of.
//!
//! A run seeds `users × sessions_per_user` sessions ([`dataset`]), then
//! `concurrency` tasks draw operations from the mix ([`mix`]) and run them
//! back to back for the duration ([`driver`]) against the store or, with
//! `--baseline`, first against the bare commands on the same pool
//! ([`target`]), while `CLIENT LIST` counts the connections
//! ([`connections`]). The figures are printed as tables and written as JSON
//! ([`report`]); a sweep over concurrencies can be charted ([`chart`]).

mod chart;
mod connections;
mod cpu;
mod dataset;
mod driver;
mod mix;
mod report;
mod target;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use charon_sessions::RedisStore;
use clap::Args;

use self::connections::Sampler;
use self::cpu::{CpuMark, CpuUse};
use self::dataset::DataSet;
use self::driver::{PhaseSpec, run_loop};
use self::mix::{Mix, Op};
use self::report::{BenchReport, ConnectionReport, PhaseReport, RunReport, Settings};
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

    /// Measured seconds per phase.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    duration: f64,

    /// Unmeasured seconds of load before each phase.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    warmup: f64,

    /// Users seeded before each phase (user ids `charon-bench-<n>`); at
    /// least the concurrency, since each operation holds one user.
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

    /// Connections the store's pool keeps open (`RedisStoreConfig::pool_size`);
    /// defaults to the store's default, 10 (plus up to 5 overflow
    /// connections under load).
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pool_size: Option<u64>,

    /// First run the bare Redis commands each operation is made of (HGET,
    /// FCALL with a precomputed value, HGETALL, HDEL) at the same
    /// concurrency on the same pool, and report the store as a ratio of it.
    #[arg(long)]
    baseline: bool,

    /// Write every figure to this file as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Instead of one run: at each of these concurrencies, run `get` alone
    /// and `upsert` alone, baseline then store.
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
}

/// Runs the benchmark; `Ok(FAILURE)` when any operation failed.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
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
    let users = args.users as usize;
    let sessions_per_user = args.sessions_per_user as usize;
    let sweep: Vec<usize> = args
        .sweep
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c as usize)
        .collect();
    let plans: Vec<Plan> = if sweep.is_empty() {
        vec![Plan {
            concurrency: args.concurrency as usize,
            mix: args.mix,
            baseline: args.baseline,
        }]
    } else {
        sweep
            .iter()
            .flat_map(|&concurrency| {
                [Op::Get, Op::Upsert].map(|op| Plan {
                    concurrency,
                    mix: format!("{op}=1").parse().expect("a one-operation mix"),
                    baseline: true,
                })
            })
            .collect()
    };
    let most = plans.iter().map(|p| p.concurrency).max().unwrap_or(1);
    if users < most {
        bail!(
            "--users ({users}) must be at least the concurrency ({most}): each operation holds one user"
        );
    }

    let Some((mut config, topology)) = args.store.redis_config()? else {
        bail!(
            "bench needs a Redis server: --redis URL (or CHARON_REDIS_URL), --cluster or --sentinel"
        );
    };
    // Connections and server CPU are sampled on the one server; in a
    // cluster or behind sentinels they are spread over several nodes and
    // are not reported.
    let url = args
        .store
        .redis
        .clone()
        .filter(|_| topology == "one server");
    if let Some(size) = args.pool_size {
        config = config.pool_size(size as usize);
    }
    let store = RedisStore::connect(config)
        .await
        .context("cannot open the Redis store")?;
    let pool = store.pool_state();
    println!(
        "charon-sessions bench on {} (key prefix {:?}): pool of {} connections, at most {}; \
         {users} users × {sessions_per_user} sessions; {:.1} s measured after {:.1} s warm-up per phase",
        store.server(),
        args.store.key_prefix,
        pool.connections,
        pool.max_connections,
        duration.as_secs_f64(),
        warmup.as_secs_f64(),
    );

    let mut runs = Vec::new();
    for plan in &plans {
        let spec = PhaseSpec {
            concurrency: plan.concurrency,
            warmup,
            duration,
            mix: plan.mix,
        };
        let weighted = |op: Op| plan.mix.weight(op) > 0;
        let baseline = if plan.baseline {
            let target = Target::Baseline(store.clone());
            let m = phase(
                &store,
                url.as_deref(),
                &target,
                &spec,
                users,
                sessions_per_user,
            )
            .await?;
            Some(PhaseReport::new(
                target.name(),
                &m.outcome,
                weighted,
                m.connections,
                m.cpu,
            ))
        } else {
            None
        };
        let target = Target::Store(store.clone());
        let m = phase(
            &store,
            url.as_deref(),
            &target,
            &spec,
            users,
            sessions_per_user,
        )
        .await?;
        let store_report =
            PhaseReport::new(target.name(), &m.outcome, weighted, m.connections, m.cpu);
        let run = RunReport::new(
            plan.concurrency,
            plan.mix.to_string(),
            baseline,
            store_report,
        );
        if sweep.is_empty() {
            println!(
                "\nconcurrency {}, mix {}, {:.2} s measured:",
                run.concurrency, run.mix, run.store.elapsed_s
            );
            println!("{}", run.table());
            print_totals(&run);
        }
        runs.push(run);
    }
    if !sweep.is_empty() {
        println!("\nsweep: get alone and upsert alone at each concurrency:");
        println!("{}", report::sweep_table(&runs));
    }

    let report = BenchReport {
        tool: "charon-sessions bench",
        version: env!("CARGO_PKG_VERSION"),
        server: store.server().to_string(),
        settings: Settings {
            duration_s: duration.as_secs_f64(),
            warmup_s: warmup.as_secs_f64(),
            users,
            sessions_per_user,
            baseline: plans.iter().any(|p| p.baseline),
            sweep,
        },
        pool_max_connections: pool.max_connections,
        pool_size: pool.connections,
        runs,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    if let Some(path) = &args.chart {
        chart::draw(&report.runs, path)?;
        println!("chart written to {}", path.display());
    }

    let errors: u64 = report
        .runs
        .iter()
        .flat_map(|r| std::iter::once(&r.store).chain(&r.baseline))
        .map(|p| p.errors)
        .sum();
    if errors > 0 {
        eprintln!("error: {errors} operations failed (see the errors column)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What one phase measured.
struct Measured {
    outcome: driver::PhaseOutcome,
    connections: ConnectionReport,
    cpu: CpuUse,
}

/// Seeds a fresh data set, warms up, then runs the measured loop while
/// counting connections and CPU time.
async fn phase(
    store: &RedisStore,
    url: Option<&str>,
    target: &Target,
    spec: &PhaseSpec,
    users: usize,
    sessions_per_user: usize,
) -> anyhow::Result<Measured> {
    let prepare = matches!(target, Target::Baseline(_));
    let data = Arc::new(DataSet::seed(store, users, sessions_per_user, prepare).await?);
    let label = format!("{} c={} {}", target.name(), spec.concurrency, spec.mix);
    if !spec.warmup.is_zero() {
        run_loop(target, &data, spec, spec.warmup, format!("{label} warm-up")).await?;
    }
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
    let outcome = run_loop(target, &data, spec, spec.duration, label).await?;
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
    Ok(Measured {
        outcome,
        connections: ConnectionReport {
            max_observed: observed.map(|o| o.max),
            samples: observed.map_or(0, |o| o.samples),
            failed_samples: observed.map_or(0, |o| o.failed),
            promised: store.pool_state().max_connections,
        },
        cpu,
    })
}

fn print_totals(run: &RunReport) {
    let line = |p: &PhaseReport| {
        let conns = match p.connections.max_observed {
            Some(max) => format!(
                "at most {max} connections seen ({} CLIENT LIST samples; the pool promises at most {})",
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
    if let Some(base) = &run.baseline {
        line(base);
    }
    line(&run.store);
}
