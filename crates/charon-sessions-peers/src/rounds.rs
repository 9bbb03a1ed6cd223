//! The stores' measured phases in interleaved rounds: every store is
//! connected and seeded first, then each round gives every store one
//! slice of `duration / rounds`, in store order in even rounds and in
//! reverse order in odd ones (ABBA), so that a machine whose speed drifts
//! during the run weighs on every store alike. A store's figures are the
//! sum of its slices.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cpu_time::ProcessTime;

use crate::driver::{self, LoadConfig, Worker};
use crate::probe::{Probe, SessionBytes};
use crate::report::StoreReport;
use crate::stats::Stats;
use crate::stores::Contender;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store taking part in the rounds, whatever its type.
pub trait Entrant: Send {
    /// Runs one measured slice of `length`, adding to the store's figures.
    fn run_slice<'a>(
        &'a mut self,
        length: Duration,
        probe: &'a mut Probe,
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Deletes the store's sessions, closes it and reports its figures.
    fn finish(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<StoreReport>>;
}

/// A store with its workers and the figures of its slices so far.
struct Prepared<C: Contender> {
    name: &'static str,
    client: String,
    store: Arc<C>,
    config: LoadConfig,
    /// `None` only while a slice runs.
    workers: Option<Vec<Worker<C::Handle>>>,
    connections: u64,
    bytes: SessionBytes,
    stats: Stats,
    elapsed: Duration,
    client_cpu: Duration,
    server_cpu_s: f64,
    first_errors: Vec<String>,
}

/// Seeds `store` (its workers' first logins, not measured) and measures
/// one session's bytes; `connections` is what it opened on the server.
pub async fn prepare<C: Contender>(
    name: &'static str,
    client: String,
    store: C,
    config: LoadConfig,
    probe: &mut Probe,
    connections_before: u64,
) -> anyhow::Result<Box<dyn Entrant>> {
    let store = Arc::new(store);
    let workers = driver::seed(&store, &config)
        .await
        .with_context(|| format!("{name}: seeding"))?;
    let connections = probe
        .connected_clients()
        .await?
        .saturating_sub(connections_before);
    let (key, field) = store.location(&workers[0].user, &workers[0].handles[0]);
    let bytes = probe.session_bytes(&key, field.as_deref()).await?;
    Ok(Box::new(Prepared {
        name,
        client,
        store,
        config,
        workers: Some(workers),
        connections,
        bytes,
        stats: Stats::new(),
        elapsed: Duration::ZERO,
        client_cpu: Duration::ZERO,
        server_cpu_s: 0.0,
        first_errors: Vec::new(),
    }))
}

impl<C: Contender> Entrant for Prepared<C> {
    fn run_slice<'a>(
        &'a mut self,
        length: Duration,
        probe: &'a mut Probe,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let workers = self.workers.take().expect("no slice is running");
            let config = LoadConfig {
                duration: length,
                ..self.config.clone()
            };
            let server_before = probe.server_cpu_seconds().await?;
            let client_before = ProcessTime::now();
            let outcome = driver::run(&self.store, &config, workers)
                .await
                .with_context(|| format!("{}: a measured slice", self.name))?;
            self.client_cpu += client_before.elapsed();
            self.server_cpu_s += probe.server_cpu_seconds().await? - server_before;
            self.stats.merge(&outcome.stats);
            self.elapsed += outcome.elapsed;
            for error in outcome.first_errors {
                if self.first_errors.len() < 3 {
                    self.first_errors.push(error);
                }
            }
            self.workers = Some(outcome.workers);
            Ok(())
        })
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, anyhow::Result<StoreReport>> {
        Box::pin(async move {
            let this = *self;
            let mut report = StoreReport::new(
                this.name,
                this.client,
                this.connections,
                &this.stats,
                this.elapsed.as_secs_f64(),
                this.bytes,
                this.first_errors,
            );
            let operations = this.stats.total().count().max(1) as f64;
            report.client_cpu_us_per_op = this.client_cpu.as_secs_f64() * 1e6 / operations;
            report.server_cpu_us_per_op = this.server_cpu_s * 1e6 / operations;
            let workers = this.workers.expect("no slice is running");
            driver::clean_up(&this.store, workers)
                .await
                .with_context(|| format!("{}: deleting the sessions", this.name))?;
            match Arc::try_unwrap(this.store) {
                Ok(store) => store.close().await,
                Err(_) => unreachable!("every worker has finished"),
            }
            Ok(report)
        })
    }
}

/// Runs `rounds` rounds of one slice per entrant, ABBA order.
pub async fn run(
    entrants: &mut [Box<dyn Entrant>],
    duration: Duration,
    rounds: u32,
    probe: &mut Probe,
) -> anyhow::Result<()> {
    let slice = duration / rounds;
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..entrants.len()).collect()
        } else {
            (0..entrants.len()).rev().collect()
        };
        for i in order {
            entrants[i].run_slice(slice, probe).await?;
        }
    }
    Ok(())
}
