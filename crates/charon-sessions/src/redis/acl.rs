//! The least-privilege ACL rule for an application's Redis user, exact for
//! one [`RedisStoreConfig`]: its key prefix, topology, database and options.
//!
//! The store needs `HGET`, `HGETALL`, `HDEL`, `DEL` and `FCALL` on its own
//! keys, and the commands the upsert function runs (Redis checks them
//! against the caller's rights: `HSETEX`, and `HLEN`, `HKEYS`,
//! `HEXPIRETIME` for the session limit). It needs no right to load
//! functions when an admin loads the library
//! ([`RedisStore::load_function_library`](crate::RedisStore::load_function_library)),
//! and no `INFO`: the version check reads `HELLO`, which every user may run.

use super::config::{RedisStoreConfig, Topology};
use super::url::parse_url;
use crate::error::StoreError;
use crate::validate;

impl RedisStoreConfig {
    /// The commands every configuration needs, as ACL `+` rules without the
    /// `+`; [`RedisStoreConfig::acl_commands`] adds what the topology, the
    /// database and the options need.
    pub const REQUIRED_COMMANDS: &'static [&'static str] = &[
        "hget",
        "hgetall",
        "hdel",
        "del",
        "fcall",
        // Run by the upsert function: Redis checks the commands a function
        // runs against the caller's rights. HLEN, HKEYS and HEXPIRETIME keep a
        // user within the session limit.
        "hsetex",
        "hlen",
        "hkeys",
        "hexpiretime",
        // redis-rs names itself at connect; refusals are ignored, but allowing
        // it keeps the server's ACL log clean.
        "client|setinfo",
    ];

    /// The commands a least-privilege user needs to run a store with this
    /// configuration, as ACL `+` rules without the `+`, lower case:
    ///
    /// | command | when | why |
    /// |---|---|---|
    /// | `hget`, `hgetall`, `hdel`, `del`, `fcall` | always | the operations |
    /// | `hsetex`, `hlen`, `hkeys`, `hexpiretime` | always | the upsert function runs them under the caller's rights (the last three for the session limit) |
    /// | `client\|setinfo` | always | redis-rs names its connections (a refusal is ignored) |
    /// | `select\|<db>` | one server, URL naming database `db` ≠ 0 | redis-rs selects it at connect: that database only |
    /// | `cluster\|slots` | cluster (`cluster` feature) | redis-rs learns the slot map from it |
    /// | `ping` | cluster | redis-rs checks its node connections with it |
    /// | `asking` | cluster | follows `ASK` redirections while a slot migrates |
    /// | `readonly` | cluster with `read_from_replicas` | lets replicas serve the reads |
    /// | `role` | Sentinel (`sentinel` feature) | redis-rs checks that the node the sentinels name is a primary |
    /// | `wait` | [`wait_for_replicas`](Self::wait_for_replicas) | sent after each upsert |
    ///
    /// `HELLO` and `AUTH` need no right. `select|<db>` is a first-argument
    /// rule: deprecated upstream, honoured by Redis 8 and Valkey 9.
    ///
    /// # Errors
    ///
    /// As [`acl_rule`](Self::acl_rule).
    pub fn acl_commands(&self) -> Result<Vec<String>, StoreError> {
        validate::key_prefix(&self.key_prefix)?;
        if self.register_functions {
            return Err(StoreError::InvalidInput(
                "acl rule: register_functions(true) needs FUNCTION LOAD, which would let the \
                 application replace the code every client of the library runs; set \
                 register_functions(false) and load the library with an admin account \
                 (RedisStore::load_function_library or `charon-sessions functions load`)"
                    .to_owned(),
            ));
        }
        let mut commands: Vec<String> = Self::REQUIRED_COMMANDS
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        match &self.topology {
            Topology::Single { url } => {
                let db = parse_url(url, "url")?.redis_settings().db();
                if db != 0 {
                    commands.push(format!("select|{db}"));
                }
            }
            #[cfg(feature = "cluster")]
            Topology::Cluster { .. } => {
                commands.extend(["cluster|slots", "ping", "asking"].map(str::to_owned));
                if self.read_from_replicas {
                    commands.push("readonly".to_owned());
                }
            }
            #[cfg(feature = "sentinel")]
            Topology::Sentinel { .. } => commands.push("role".to_owned()),
        }
        if self.wait_for_replicas.is_some() {
            commands.push("wait".to_owned());
        }
        Ok(commands)
    }

    /// The ACL rule for a user that can run a store with this configuration
    /// and nothing else: its keys only (`~<prefix>.*`), no channels, no
    /// selectors, only the [`acl_commands`](Self::acl_commands), which
    /// depend on the topology, the database in the URL and the options; no
    /// `FUNCTION LOAD`, no `INFO`, no `SELECT` of another database.
    ///
    /// Use it as `ACL SETUSER <user> on resetpass ><password> <rule>` (the
    /// rule takes away whatever the user could do before; `resetpass` drops
    /// old passwords), on every node that serves the store: ACL users are
    /// neither replicated nor shared across a cluster, so on each node of a
    /// cluster and each data node behind Sentinel (the sentinels keep their
    /// own users).
    ///
    /// Redis ACLs have no per-database rights: a key pattern holds in every
    /// database, and every connection starts in database 0. A user of a
    /// store in database `N` can thus reach keys under the prefix in
    /// databases 0 and `N`, and no other. On Valkey 9, append
    /// `resetdbs db=<N>` to keep it to `N` alone (Redis refuses that rule).
    ///
    /// ```
    /// use charon_sessions::RedisStoreConfig;
    /// use charon_sessions::signing::SigningKey;
    ///
    /// let config = RedisStoreConfig::new("redis://app@10.0.0.5:6379/2", SigningKey::generate())
    ///     .key_prefix("myapp")
    ///     .register_functions(false);
    /// let rule = config.acl_rule().unwrap();
    /// assert!(rule.starts_with("resetkeys ~myapp.* resetchannels clearselectors -@all +hget"));
    /// assert!(rule.ends_with("+client|setinfo +select|2"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for an invalid key prefix, a URL that
    /// does not parse, or [`register_functions(true)`](Self::register_functions)
    /// (the default), which no least-privilege user can run: it needs
    /// `FUNCTION LOAD`.
    pub fn acl_rule(&self) -> Result<String, StoreError> {
        let commands = self.acl_commands()?;
        // The prefix allows no glob characters ([A-Za-z0-9_:-]), so it is its
        // own pattern.
        let mut rule = format!(
            "resetkeys ~{}.* resetchannels clearselectors -@all",
            self.key_prefix
        );
        for command in commands {
            rule.push_str(" +");
            rule.push_str(&command);
        }
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::signing::SigningKey;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32]).unwrap()
    }

    fn commands(config: RedisStoreConfig) -> Vec<String> {
        config
            .key_prefix("myapp")
            .register_functions(false)
            .acl_commands()
            .unwrap()
    }

    const BASE: [&str; 10] = [
        "hget",
        "hgetall",
        "hdel",
        "del",
        "fcall",
        "hsetex",
        "hlen",
        "hkeys",
        "hexpiretime",
        "client|setinfo",
    ];

    #[test]
    fn one_server_gets_its_commands_and_no_others() {
        let single = |url: &str| commands(RedisStoreConfig::new(url, key()));
        assert_eq!(single("redis://127.0.0.1:6379"), BASE);
        assert_eq!(single("redis://127.0.0.1:6379/0"), BASE);
        let mut db2 = BASE.to_vec();
        db2.push("select|2");
        assert_eq!(single("redis://u:p@127.0.0.1:6379/2"), db2);
        assert_eq!(single("redis+unix:///tmp/r.sock?db=2"), db2);
        let mut wait = BASE.to_vec();
        wait.push("wait");
        assert_eq!(
            commands(
                RedisStoreConfig::new("redis://127.0.0.1", key())
                    .wait_for_replicas(1, Duration::from_millis(100))
            ),
            wait
        );
    }

    #[cfg(feature = "cluster")]
    #[test]
    fn a_cluster_gets_its_commands_and_no_others() {
        let cluster = || RedisStoreConfig::cluster(["redis://127.0.0.1:7000"], key());
        let mut expected = BASE.to_vec();
        expected.extend(["cluster|slots", "ping", "asking"]);
        assert_eq!(commands(cluster()), expected);
        expected.push("readonly");
        assert_eq!(commands(cluster().read_from_replicas(true)), expected);
        expected.push("wait");
        assert_eq!(
            commands(
                cluster()
                    .read_from_replicas(true)
                    .wait_for_replicas(1, Duration::from_millis(100))
            ),
            expected
        );
    }

    #[cfg(feature = "sentinel")]
    #[test]
    fn sentinel_gets_its_commands_and_no_others() {
        let sentinel = || RedisStoreConfig::sentinel(["redis://127.0.0.1:26379"], "p", key());
        let mut expected = BASE.to_vec();
        expected.push("role");
        assert_eq!(commands(sentinel()), expected);
        // read_from_replicas is a cluster option: nothing more behind Sentinel.
        #[cfg(feature = "cluster")]
        assert_eq!(commands(sentinel().read_from_replicas(true)), expected);
    }

    #[test]
    fn the_rule_confines_keys_and_lists_the_commands() {
        let config = RedisStoreConfig::new("redis://127.0.0.1/3", key())
            .key_prefix("myapp")
            .register_functions(false)
            .wait_for_replicas(1, Duration::from_millis(100));
        assert_eq!(
            config.acl_rule().unwrap(),
            "resetkeys ~myapp.* resetchannels clearselectors -@all +hget +hgetall +hdel +del \
             +fcall +hsetex +hlen +hkeys +hexpiretime +client|setinfo +select|3 +wait"
        );
    }

    #[test]
    fn refuses_what_no_least_privilege_user_can_run() {
        let msg = |c: RedisStoreConfig| c.acl_rule().unwrap_err().to_string();
        let config = || RedisStoreConfig::new("redis://127.0.0.1", key());
        assert!(msg(config()).contains("register_functions(false)"));
        assert!(msg(config().register_functions(false).key_prefix("a.b")).contains("key_prefix"));
        let bad = RedisStoreConfig::new("http://u:hunter2@x", key()).register_functions(false);
        let shown = msg(bad);
        assert!(shown.contains("not a valid Redis URL"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
