//! [`TestCluster`]: a Redis 8 cluster of three primaries, each with one
//! replica, on loopback ports.

use std::time::{Duration, Instant};

use crate::cli::{redis_cli, redis_cli_binary};
use crate::{Flavor, TestServer};

/// Milliseconds without an answer after which the other nodes consider a
/// node failed and its replica takes over (`cluster-node-timeout`).
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// A 3-primary, 3-replica Redis cluster (`--cluster-enabled yes`, persistence
/// off, `cluster-node-timeout` `NODE_TIMEOUT_MS`), created with
/// `redis-cli --cluster create … --cluster-replicas 1`. Every node is killed
/// when the cluster is dropped; when that happens during a panic, the tail
/// of every node's log is printed.
#[derive(Debug)]
pub struct TestCluster {
    /// The six nodes, in creation order (redis-cli makes the first three
    /// the primaries).
    nodes: Vec<TestServer>,
}

impl TestCluster {
    /// Starts six nodes, creates the cluster and waits until every node
    /// reports `cluster_state:ok` with all 16 384 slots served and knows all
    /// six nodes.
    ///
    /// # Panics
    ///
    /// When a node does not start, `redis-cli --cluster create` fails, or
    /// the cluster is not ok within 30 s (with the node logs).
    pub fn start() -> TestCluster {
        let timeout = NODE_TIMEOUT_MS.to_string();
        let nodes: Vec<TestServer> = (0..6)
            .map(|_| {
                TestServer::start_with(
                    Flavor::Redis,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-node-timeout",
                        &timeout,
                        "--cluster-config-file",
                        "nodes.conf",
                        // A replica of a dead primary takes over at once,
                        // however long ago it last heard from it.
                        "--cluster-replica-validity-factor",
                        "0",
                    ],
                )
            })
            .collect();
        let cluster = TestCluster { nodes };
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = std::process::Command::new(redis_cli_binary())
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_until_ok(Duration::from_secs(30));
        cluster
    }

    /// Waits until every running node reports `cluster_state:ok`, all slots
    /// ok and all six nodes known, and every primary has its replica in sync.
    ///
    /// # Panics
    ///
    /// When that does not happen within `timeout` (with the node logs).
    pub fn wait_until_ok(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let all_ok = self.running().all(|node| {
                let info = redis_cli(node.port(), &["CLUSTER", "INFO"]).unwrap_or_default();
                let replication =
                    redis_cli(node.port(), &["INFO", "replication"]).unwrap_or_default();
                // A primary's replica has finished its first sync, or this
                // is a replica whose link is up.
                let synced = (replication.contains("role:master")
                    && replication.contains("connected_slaves:1")
                    && replication.contains("state=online"))
                    || replication.contains("master_link_status:up");
                let ok = info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && info.contains("cluster_known_nodes:6")
                    && synced;
                let info = format!("{info}{replication}");
                if !ok {
                    last = format!("node {}: {info}", node.port());
                }
                ok
            });
            if all_ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "cluster not ok after {timeout:?}; last CLUSTER INFO: {last}\n{}",
            self.logs()
        );
    }

    fn running(&self) -> impl Iterator<Item = &TestServer> {
        self.nodes.iter().filter(|n| n.ping())
    }

    /// `redis://127.0.0.1:<port>` of every node: the seed URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(TestServer::url).collect()
    }

    /// All six nodes.
    pub fn nodes(&self) -> &[TestServer] {
        &self.nodes
    }

    /// Node `i` (to kill or restart it).
    pub fn node_mut(&mut self, i: usize) -> &mut TestServer {
        &mut self.nodes[i]
    }

    /// Indices of the nodes that are primaries now (`ROLE` says `master`).
    pub fn primaries(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                redis_cli(n.port(), &["ROLE"]).is_some_and(|r| r.starts_with("master"))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Index of the replica of primary `primary` (by `CLUSTER NODES`).
    ///
    /// # Panics
    ///
    /// When it has none.
    pub fn replica_of(&self, primary: usize) -> usize {
        let id = redis_cli(self.nodes[primary].port(), &["CLUSTER", "MYID"])
            .unwrap_or_default()
            .trim()
            .to_owned();
        self.nodes
            .iter()
            .position(|n| {
                redis_cli(n.port(), &["ROLE"]).is_some_and(|r| {
                    r.starts_with("slave")
                        && r.lines().nth(2).map(str::trim)
                            == Some(&self.nodes[primary].port().to_string())
                })
            })
            .unwrap_or_else(|| panic!("primary {primary} ({id}) has no replica"))
    }

    /// The last 40 lines of every node's log.
    pub fn logs(&self) -> String {
        node_logs(&self.nodes)
    }
}

/// The tail of each server's log, headed by its port.
pub(crate) fn node_logs(nodes: &[TestServer]) -> String {
    nodes
        .iter()
        .map(|n| {
            let log = n.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            format!("--- node 127.0.0.1:{} ---\n{tail}\n", n.port())
        })
        .collect()
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("cluster node logs:\n{}", self.logs());
        }
        // Each TestServer kills its process when dropped.
    }
}
