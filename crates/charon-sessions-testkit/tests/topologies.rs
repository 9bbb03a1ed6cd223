//! The testkit's cluster and sentinel setups come up as promised and go
//! away when dropped.

use charon_sessions_testkit::{TestCluster, TestSentinel, redis_cli};

/// Three primaries serving all slots, each with a replica; the ports are
/// free again after the drop.
#[test]
fn cluster_has_three_primaries_with_replicas() {
    let cluster = TestCluster::start();
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    for p in primaries {
        let r = cluster.replica_of(p);
        assert_ne!(r, p);
    }
    let ports: Vec<u16> = cluster.nodes().iter().map(|n| n.port()).collect();
    drop(cluster);
    for port in ports {
        assert!(redis_cli(port, &["PING"]).is_none(), "node {port} still up");
    }
}

/// The sentinels name node 0 as the primary of a replicated pair.
#[test]
fn sentinel_setup_names_the_primary() {
    let setup = TestSentinel::start();
    assert_eq!(setup.primary(), Some(0));
    assert_eq!(setup.sentinel_urls().len(), 3);
}
