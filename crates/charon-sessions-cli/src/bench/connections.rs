//! Counting the store's connections during a phase: a connection of its
//! own, outside the pool, runs `CLIENT LIST` every 100 ms and counts the
//! redis-rs clients (`lib-name=redis-rs`, which redis-rs sets on every
//! connection) other than itself. The highest count is compared with what
//! the pool promises, `pool_size + pool_max_overflow`.
//!
//! Other redis-rs clients of the same server would be counted too: run
//! the benchmark against a server of its own.

use std::time::Duration;

use anyhow::Context as _;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Time between two `CLIENT LIST` samples.
const PERIOD: Duration = Duration::from_millis(100);

/// What the sampler saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    /// Most redis-rs connections seen at once, the sampler's own excluded.
    pub max: usize,
    /// `CLIENT LIST` replies read.
    pub samples: usize,
    /// `CLIENT LIST` calls that failed (e.g. timed out under load); they
    /// are skipped.
    pub failed: usize,
}

/// A running sampler; [`finish`](Sampler::finish) stops it.
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Observed>,
}

impl Sampler {
    /// Connects to `url` and starts sampling.
    pub async fn start(url: &str) -> anyhow::Result<Sampler> {
        let client = redis::Client::open(url).context("connection sampler: the Redis URL")?;
        // A loaded server or client may take a while to answer; a slow
        // sample is still a sample.
        let config =
            AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(5)));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .context("connection sampler: connecting")?;
        let own_id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await
            .context("connection sampler: CLIENT ID")?;
        // One sample before returning, so that a refused CLIENT LIST is
        // reported up front.
        let first = count(&mut conn, own_id).await?;
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut observed = Observed {
                max: first,
                samples: 1,
                failed: 0,
            };
            let mut tick = tokio::time::interval(PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return observed,
                    _ = tick.tick() => match count(&mut conn, own_id).await {
                        Ok(n) => {
                            observed.max = observed.max.max(n);
                            observed.samples += 1;
                        }
                        Err(_) => observed.failed += 1,
                    },
                }
            }
        });
        Ok(Sampler { stop, task })
    }

    /// Stops sampling and returns what was seen.
    pub async fn finish(self) -> anyhow::Result<Observed> {
        let _ = self.stop.send(());
        Ok(self.task.await?)
    }
}

/// redis-rs connections in one `CLIENT LIST`, `own_id` excluded.
async fn count(conn: &mut MultiplexedConnection, own_id: i64) -> anyhow::Result<usize> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .context("connection sampler: CLIENT LIST")?;
    Ok(count_clients(&list, own_id))
}

/// Lines of a `CLIENT LIST` reply with `lib-name=redis-rs` and an id other
/// than `own_id`.
fn count_clients(list: &str, own_id: i64) -> usize {
    let own = format!("id={own_id}");
    list.lines()
        .filter(|line| {
            let mut fields = line.split(' ');
            let id = fields.next().unwrap_or_default();
            id != own && line.split(' ').any(|f| f == "lib-name=redis-rs")
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::count_clients;

    #[test]
    fn counts_redis_rs_clients_but_not_itself() {
        let list = "\
id=3 addr=127.0.0.1:1 laddr=127.0.0.1:6379 fd=8 name= age=1 cmd=client|list lib-name=redis-rs lib-ver=1.0
id=4 addr=127.0.0.1:2 laddr=127.0.0.1:6379 fd=9 name= age=1 cmd=hget lib-name=redis-rs lib-ver=1.0
id=5 addr=127.0.0.1:3 laddr=127.0.0.1:6379 fd=10 name= age=1 cmd=fcall lib-name=redis-rs lib-ver=1.0
id=6 addr=127.0.0.1:4 laddr=127.0.0.1:6379 fd=11 name= age=1 cmd=monitor lib-name= lib-ver=
";
        assert_eq!(count_clients(list, 3), 2);
        assert_eq!(count_clients(list, 99), 3);
    }
}
