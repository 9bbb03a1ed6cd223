//! Counting the store's connections during a phase: a connection of its
//! own, outside the store, names itself [`SAMPLER_NAME`] (`CLIENT SETNAME`),
//! runs `CLIENT LIST` every 100 ms and counts the redis-rs clients
//! (`lib-name=redis-rs`, which redis-rs sets on every connection) not so
//! named. The highest count is compared with what the store promises,
//! `pool_size` (plus `replica_wait_connections` with `wait_for_replicas`).
//!
//! Each measured slice starts a sampler of its own; the previous slice's
//! sampler connection may still be closing on the server when the next
//! one takes its first sample. Excluding by name rather than by the
//! sampler's own id leaves out every sampler, itself included, so none is
//! ever counted as a store connection.
//!
//! Other redis-rs clients of the same server would be counted too: run
//! the benchmark against a server of its own.

use std::time::Duration;

use anyhow::Context as _;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The client name every sampler connection gives itself; clients of
/// this name are not counted.
pub const SAMPLER_NAME: &str = "charon-bench-sampler";

/// Time between two `CLIENT LIST` samples.
const PERIOD: Duration = Duration::from_millis(100);

/// What the sampler saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observed {
    /// Most redis-rs connections seen at once, samplers excluded.
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
    /// Connects to `url`, names the connection [`SAMPLER_NAME`] and starts
    /// sampling.
    ///
    /// # Errors
    ///
    /// When the URL is invalid, the connection fails, or `CLIENT SETNAME`
    /// or the first `CLIENT LIST` is refused.
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
        let () = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(SAMPLER_NAME)
            .query_async(&mut conn)
            .await
            .context("connection sampler: CLIENT SETNAME")?;
        // One sample before returning, so that a refused CLIENT LIST is
        // reported up front.
        let first = count(&mut conn).await?;
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
                    _ = tick.tick() => match count(&mut conn).await {
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

/// redis-rs connections in one `CLIENT LIST`, samplers excluded.
async fn count(conn: &mut MultiplexedConnection) -> anyhow::Result<usize> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .context("connection sampler: CLIENT LIST")?;
    Ok(count_clients(&list))
}

/// Lines of a `CLIENT LIST` reply (one client a line, space-separated
/// `key=value` fields) with `lib-name=redis-rs` and a name other than
/// [`SAMPLER_NAME`].
fn count_clients(list: &str) -> usize {
    list.lines()
        .filter(|line| {
            let field = |key: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            };
            field("lib-name") == Some("redis-rs") && field("name") != Some(SAMPLER_NAME)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::count_clients;

    /// The sampler itself (id 7) and the previous slice's sampler, still
    /// closing (id 3), are left out, as are clients of other libraries (6,
    /// 9); the redis-rs clients 4, 5 and 8 count (8's name only starts
    /// like the sampler's).
    #[test]
    fn counts_redis_rs_clients_but_no_sampler() {
        let list = "\
id=3 addr=127.0.0.1:1 laddr=127.0.0.1:6379 fd=8 name=charon-bench-sampler age=1 cmd=client|list lib-name=redis-rs lib-ver=1.8.1
id=4 addr=127.0.0.1:2 laddr=127.0.0.1:6379 fd=9 name= age=1 cmd=hget lib-name=redis-rs lib-ver=1.8.1
id=5 addr=127.0.0.1:3 laddr=127.0.0.1:6379 fd=10 name= age=1 cmd=fcall lib-name=redis-rs lib-ver=1.8.1
id=6 addr=127.0.0.1:4 laddr=127.0.0.1:6379 fd=11 name= age=1 cmd=monitor lib-name= lib-ver=
id=7 addr=127.0.0.1:5 laddr=127.0.0.1:6379 fd=12 name=charon-bench-sampler age=0 cmd=client|list lib-name=redis-rs lib-ver=1.8.1
id=8 addr=127.0.0.1:6 laddr=127.0.0.1:6379 fd=13 name=charon-bench-sampler-2 age=0 cmd=hget lib-name=redis-rs lib-ver=1.8.1
id=9 addr=127.0.0.1:7 laddr=127.0.0.1:6379 fd=14 name=charon-bench-sampler age=0 cmd=client|list lib-name=jedis lib-ver=5
";
        assert_eq!(count_clients(list), 3);
        // The name is what leaves them out: unnamed, both samplers count.
        let unnamed = list.replace("name=charon-bench-sampler ", "name= ");
        assert_eq!(count_clients(&unnamed), 5);
        assert_eq!(count_clients(""), 0);
    }
}
