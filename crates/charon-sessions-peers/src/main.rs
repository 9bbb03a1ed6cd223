//! `charon-sessions-peers`: the same login/refresh/read loop, at the same
//! concurrency and for the same time, against the same Redis server in one
//! run, through charon-sessions' `RedisStore` and through the Redis session
//! stores a Rust user would otherwise pick — tower-sessions'
//! (`tower-sessions-redis-store`) and actix-session's (`RedisSessionStore`,
//! pooled and with its default single connection) — then a table per store
//! and the throughput ratio to charon-sessions.
//!
//! Layout:
//! - `mix`: the operation kinds and `--mix`;
//! - `payload`: the application data every store keeps for a session;
//! - `stores`: the stores behind one `Contender` trait, one file each;
//! - `driver`: seeding, the closed loop and the clean-up;
//! - `rounds`: the stores' slices in interleaved rounds;
//! - `stats`: latency histograms and error counts;
//! - `probe`: a plain connection to look at the server;
//! - `report`: the tables and the `--json` document.

mod driver;
mod mix;
mod payload;
mod probe;
mod report;
mod rounds;
mod stats;
mod stores;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use charon_sessions_testkit::{Flavor, TestServer};
use clap::{Parser, ValueEnum};

use crate::driver::LoadConfig;
use crate::mix::Mix;
use crate::probe::Probe;
use crate::report::Report;
use crate::stores::actix::{Actix, Connection};
use crate::stores::charon::Charon;
use crate::stores::tower::{TOWER_POOL, Tower};

/// Benchmarks charon-sessions against tower-sessions' and actix-session's
/// Redis stores: the same login/refresh/read loop against one server.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Redis server to use (Redis >= 8.0 or Valkey >= 9.0); without it a
    /// redis-server is started on a free loopback port (REDIS_SERVER_BIN or
    /// redis-server on PATH).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Workers per store, each running one operation at a time.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// Seconds of measured load per store (e.g. 10, 2.5 or 10s), in total
    /// over the rounds.
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    duration: Duration,
    /// The measured load is split into this many rounds; each round runs
    /// every store for `duration / rounds`, in `--stores` order in even
    /// rounds and in reverse order in odd ones, so that a drifting machine
    /// weighs on all stores alike.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Relative weights of the operations.
    #[arg(long, default_value = "read=70,refresh=25,login=5")]
    mix: Mix,
    /// Connections each store gets; without it, each store is configured
    /// as its documentation recommends (charon-sessions: its defaults;
    /// tower-sessions: a fred pool of 6; actix-session pooled: deadpool-redis'
    /// default size).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pool: Option<u32>,
    /// Sessions each worker logs in before the measured phase.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    sessions_per_worker: u32,
    /// Stores to run, in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "charon,tower,actix,actix-single"
    )]
    stores: Vec<StoreName>,
    /// Also write the figures to this file as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// A store to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreName {
    /// charon-sessions' RedisStore.
    Charon,
    /// tower-sessions-redis-store over a fred pool.
    Tower,
    /// actix-session's RedisSessionStore over a deadpool-redis pool.
    Actix,
    /// actix-session's RedisSessionStore with its default single connection.
    ActixSingle,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let number = text.trim().trim_end_matches('s');
    let seconds: f64 = number
        .parse()
        .map_err(|e| format!("`{text}`: seconds expected ({e})"))?;
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err(format!("`{text}`: between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = match args.redis {
        Some(_) => None,
        None => Some(TestServer::start(Flavor::Redis)),
    };
    let url = match (&args.redis, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.url(),
        (None, None) => unreachable!("a server is started when no URL is given"),
    };
    let mut probe = Probe::connect(&url).await?;
    let pool = args.pool.map(|p| p as usize);
    let run_id = charon_sessions::Session::new_id();
    let mut report = Report {
        server_version: probe.server_version().await?,
        server_started_here: server.is_some(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        concurrency: args.concurrency as usize,
        duration_s: args.duration.as_secs_f64(),
        rounds: args.rounds,
        mix: args.mix.to_string(),
        pool,
        sessions_per_worker: args.sessions_per_worker as usize,
        stores: Vec::new(),
        note: report::LESS_WORK_NOTE,
    };
    let mut entrants = Vec::new();
    for name in &args.stores {
        let config = LoadConfig {
            concurrency: args.concurrency as usize,
            duration: args.duration,
            mix: args.mix,
            sessions_per_worker: args.sessions_per_worker as usize,
            user_prefix: format!("peers-{run_id}-{name:?}"),
        };
        // Each store's connections are counted above those already open.
        let before = probe.connected_clients().await?;
        eprintln!("connecting and seeding {name:?} ...");
        let entrant = match name {
            StoreName::Charon => {
                let store = Charon::connect(&url, pool).await?;
                let client = store.describe();
                rounds::prepare("charon", client, store, config, &mut probe, before).await?
            }
            StoreName::Tower => {
                let size = pool.unwrap_or(TOWER_POOL);
                let client = format!("tower-sessions-redis-store, fred Pool of {size}");
                let store = Tower::connect(&url, size).await?;
                rounds::prepare("tower", client, store, config, &mut probe, before).await?
            }
            StoreName::Actix => {
                let store = Actix::connect(&url, Connection::Pooled(pool)).await?;
                let client = format!(
                    "actix-session RedisSessionStore, deadpool-redis pool of {}",
                    store.pool_size().unwrap_or_default()
                );
                rounds::prepare("actix", client, store, config, &mut probe, before).await?
            }
            StoreName::ActixSingle => {
                let client = "actix-session RedisSessionStore, one ConnectionManager (its default)"
                    .to_owned();
                let store = Actix::connect(&url, Connection::Single).await?;
                rounds::prepare("actix-single", client, store, config, &mut probe, before).await?
            }
        };
        entrants.push(entrant);
    }
    eprintln!(
        "running {} rounds of {:?} per store ...",
        args.rounds,
        args.duration / args.rounds
    );
    rounds::run(&mut entrants, args.duration, args.rounds, &mut probe).await?;
    for entrant in entrants {
        report.stores.push(entrant.finish().await?);
    }
    report.fill_ratios();
    println!("{}", report.render());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    drop(server);
    Ok(())
}
