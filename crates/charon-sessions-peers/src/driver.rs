//! The closed-loop load: `concurrency` workers, each with its own user and
//! sessions, run operations back to back for a fixed time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::task::JoinSet;

use crate::mix::{Mix, OpKind};
use crate::stats::Stats;
use crate::stores::Contender;

/// How the load runs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Workers, each running one operation at a time.
    pub concurrency: usize,
    /// How long the measured phase lasts.
    pub duration: Duration,
    /// The operation mix.
    pub mix: Mix,
    /// Sessions each worker logs in before the measured phase (at least 1).
    pub sessions_per_worker: usize,
    /// Makes the user ids unique to this run and store.
    pub user_prefix: String,
}

/// One worker's user and the handles of its sessions.
pub struct Worker<H> {
    /// The user id all its sessions belong to.
    pub user: String,
    /// Its sessions, logins append to it.
    pub handles: Vec<H>,
}

/// What the measured phase produced.
pub struct LoadOutcome<H> {
    /// Latencies and errors of the measured phase.
    pub stats: Stats,
    /// From the start of the measured phase until the last worker finished.
    pub elapsed: Duration,
    /// The workers' sessions, for inspection and clean-up.
    pub workers: Vec<Worker<H>>,
    /// The first error messages (at most three), for the operator.
    pub first_errors: Vec<String>,
}

/// Logs in every worker's first sessions (not measured).
///
/// # Errors
///
/// The first failed login.
pub async fn seed<C: Contender>(
    store: &Arc<C>,
    config: &LoadConfig,
) -> anyhow::Result<Vec<Worker<C::Handle>>> {
    let mut set = JoinSet::new();
    for index in 0..config.concurrency {
        let store = Arc::clone(store);
        let user = format!("{}-{index}", config.user_prefix);
        let count = config.sessions_per_worker.max(1);
        set.spawn(async move {
            let mut handles = Vec::with_capacity(count);
            for _ in 0..count {
                handles.push(store.login(&user).await.context("seeding a login")?);
            }
            anyhow::Ok((index, Worker { user, handles }))
        });
    }
    let mut workers: Vec<(usize, Worker<C::Handle>)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        workers.push(joined??);
    }
    workers.sort_by_key(|(index, _)| *index);
    Ok(workers.into_iter().map(|(_, worker)| worker).collect())
}

/// Runs the measured phase: each worker picks a kind by the mix and one of
/// its sessions at random, until `config.duration` has passed (operations
/// under way then still finish and count).
pub async fn run<C: Contender>(
    store: &Arc<C>,
    config: &LoadConfig,
    workers: Vec<Worker<C::Handle>>,
) -> anyhow::Result<LoadOutcome<C::Handle>> {
    let start = Instant::now();
    let deadline = start + config.duration;
    let mut set = JoinSet::new();
    for (index, worker) in workers.into_iter().enumerate() {
        let store = Arc::clone(store);
        let mix = config.mix;
        set.spawn(async move {
            let (stats, worker, errors) = work(&*store, mix, deadline, worker).await;
            (index, stats, worker, errors)
        });
    }
    let mut stats = Stats::new();
    let mut first_errors = Vec::new();
    let mut finished = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (index, worker_stats, worker, errors) = joined?;
        stats.merge(&worker_stats);
        for error in errors {
            if first_errors.len() < 3 {
                first_errors.push(error);
            }
        }
        finished.push((index, worker));
    }
    let elapsed = start.elapsed();
    finished.sort_by_key(|(index, _)| *index);
    Ok(LoadOutcome {
        stats,
        elapsed,
        workers: finished.into_iter().map(|(_, worker)| worker).collect(),
        first_errors,
    })
}

/// One worker's loop.
async fn work<C: Contender>(
    store: &C,
    mix: Mix,
    deadline: Instant,
    mut worker: Worker<C::Handle>,
) -> (Stats, Worker<C::Handle>, Vec<String>) {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let mut stats = Stats::new();
    let mut errors = Vec::new();
    let user = worker.user.clone();
    while Instant::now() < deadline {
        let kind = mix.pick(rng.random_range(0..mix.total()));
        let index = rng.random_range(0..worker.handles.len());
        let started = Instant::now();
        let result = match kind {
            OpKind::Login => store.login(&user).await.map(|handle| {
                worker.handles.push(handle);
            }),
            OpKind::Refresh => store
                .refresh(&user, &worker.handles[index])
                .await
                .map(|handle| worker.handles[index] = handle),
            OpKind::Read => store.read(&user, &worker.handles[index]).await,
        };
        match result {
            Ok(()) => stats.record(kind, started.elapsed()),
            Err(error) => {
                stats.record_error(kind);
                if errors.len() < 3 {
                    errors.push(format!("{}: {error:#}", kind.name()));
                }
            }
        }
    }
    (stats, worker, errors)
}

/// Deletes every worker's sessions, `concurrency` deletes at a time.
///
/// # Errors
///
/// The first failed delete.
pub async fn clean_up<C: Contender>(
    store: &Arc<C>,
    workers: Vec<Worker<C::Handle>>,
) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    for worker in workers {
        let store = Arc::clone(store);
        set.spawn(async move {
            for handle in &worker.handles {
                store.delete(&worker.user, handle).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = set.join_next().await {
        joined??;
    }
    Ok(())
}
