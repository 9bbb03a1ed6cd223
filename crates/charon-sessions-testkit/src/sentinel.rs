//! [`TestSentinel`]: a Redis 8 primary, its replica and three sentinels
//! watching them, on loopback ports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cli::redis_cli;
use crate::cluster::node_logs;
use crate::{Flavor, TestServer};

/// The name the sentinels know the primary by.
pub const PRIMARY_NAME: &str = "charon";

/// Milliseconds without an answer after which a sentinel considers the
/// primary down (`down-after-milliseconds`).
pub const DOWN_AFTER_MS: u64 = 1000;

/// One primary, one replica (`--replicaof`) and three sentinels
/// (`redis-server <conf> --sentinel`, quorum 2, `down-after-milliseconds`
/// `DOWN_AFTER_MS`, `failover-timeout` 3 s) monitoring the primary as
/// `PRIMARY_NAME`. Everything is killed when dropped; when that happens
/// during a panic, the tail of every log is printed.
#[derive(Debug)]
pub struct TestSentinel {
    /// The data nodes: index 0 starts as the primary, 1 as its replica.
    nodes: Vec<TestServer>,
    /// The three sentinels.
    sentinels: Vec<TestServer>,
}

impl TestSentinel {
    /// Starts the primary, the replica and the sentinels, and waits until
    /// the replica is in sync and every sentinel sees the replica, the
    /// other sentinels and a quorum (`SENTINEL CKQUORUM`).
    ///
    /// # Panics
    ///
    /// When a process does not start, or the setup is not ready within
    /// 30 s (with the logs).
    pub fn start() -> TestSentinel {
        let primary = TestServer::start(Flavor::Redis);
        let primary_port = primary.port().to_string();
        let replica =
            TestServer::start_with(Flavor::Redis, &["--replicaof", "127.0.0.1", &primary_port]);
        let primary_port = primary.port();
        let sentinels = (0..3)
            .map(|_| {
                TestServer::start_configured(Flavor::Redis, &["--sentinel"], |port, dir| {
                    Some(sentinel_config(port, dir, primary_port))
                })
            })
            .collect();
        let setup = TestSentinel {
            nodes: vec![primary, replica],
            sentinels,
        };
        setup.wait_until_ready(Duration::from_secs(30));
        setup
    }

    /// Waits until the current primary has a replica in sync and every
    /// sentinel knows the replica, both other sentinels and a quorum.
    ///
    /// # Panics
    ///
    /// When that does not happen within `timeout` (with the logs).
    pub fn wait_until_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.readiness() {
                Ok(()) => return,
                Err(why) => last = why,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "sentinel setup not ready after {timeout:?}: {last}\n{}",
            self.logs()
        );
    }

    fn readiness(&self) -> Result<(), String> {
        let primary = self.primary().ok_or("no primary known to the sentinels")?;
        let info = redis_cli(self.nodes[primary].port(), &["INFO", "replication"])
            .ok_or("primary unreachable")?;
        if !info.contains("connected_slaves:1") || !info.contains("state=online") {
            return Err(format!("replica not in sync: {info}"));
        }
        for s in &self.sentinels {
            let primary_state =
                redis_cli(s.port(), &["SENTINEL", "MASTER", PRIMARY_NAME]).unwrap_or_default();
            let field = |name: &str| {
                let lines: Vec<&str> = primary_state.lines().collect();
                lines
                    .iter()
                    .position(|l| l.trim() == name)
                    .and_then(|i| lines.get(i + 1))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            if field("num-slaves") != "1" || field("num-other-sentinels") != "2" {
                return Err(format!(
                    "sentinel {} does not see all: {primary_state}",
                    s.port()
                ));
            }
            let quorum =
                redis_cli(s.port(), &["SENTINEL", "CKQUORUM", PRIMARY_NAME]).unwrap_or_default();
            if !quorum.starts_with("OK") {
                return Err(format!("sentinel {}: {quorum}", s.port()));
            }
        }
        Ok(())
    }

    /// The name the sentinels monitor the primary by.
    pub fn primary_name(&self) -> &'static str {
        PRIMARY_NAME
    }

    /// `redis://127.0.0.1:<port>` of each sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(TestServer::url).collect()
    }

    /// Index (0 or 1) of the data node the first reachable sentinel names
    /// as the primary (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    pub fn primary(&self) -> Option<usize> {
        let port = self.sentinels.iter().find_map(|s| {
            let reply = redis_cli(
                s.port(),
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", PRIMARY_NAME],
            )?;
            reply.lines().nth(1)?.trim().parse::<u16>().ok()
        })?;
        self.nodes.iter().position(|n| n.port() == port)
    }

    /// The data nodes: 0 started as the primary, 1 as its replica.
    pub fn nodes(&self) -> &[TestServer] {
        &self.nodes
    }

    /// Data node `i` (to kill or restart it).
    pub fn node_mut(&mut self, i: usize) -> &mut TestServer {
        &mut self.nodes[i]
    }

    /// The last 40 lines of every data node's and sentinel's log.
    pub fn logs(&self) -> String {
        format!("{}{}", node_logs(&self.nodes), node_logs(&self.sentinels))
    }
}

/// Writes `sentinel.conf` (a sentinel rewrites its own configuration, so
/// it must be a file of its own) and returns its path.
fn sentinel_config(port: u16, dir: &Path, primary_port: u16) -> PathBuf {
    let path = dir.join("sentinel.conf");
    let text = format!(
        "port {port}\n\
         sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary_port} 2\n\
         sentinel down-after-milliseconds {PRIMARY_NAME} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {PRIMARY_NAME} 3000\n\
         sentinel parallel-syncs {PRIMARY_NAME} 1\n"
    );
    std::fs::write(&path, text).expect("write sentinel.conf");
    path
}

impl Drop for TestSentinel {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("sentinel setup logs:\n{}", self.logs());
        }
    }
}
