//! `charon-sessions functions`: the store's Redis function library, for
//! deployments where the application's Redis user may not load functions.
//!
//! `load` registers the library with an admin account; `acl` prints the ACL
//! rule for a least-privilege application user; `prune` lists (and with
//! `--apply` deletes) the store's libraries of other versions on a server;
//! `show` prints the Lua code.

use std::process::ExitCode;

use anyhow::Context as _;
use charon_sessions::signing::SigningKey;
use charon_sessions::{RedisStore, RedisStoreConfig};
use clap::{Args, Subcommand};

/// Options of `charon-sessions functions`. Not `Debug`: the URL may hold a
/// password.
#[derive(Args)]
pub struct FunctionsArgs {
    #[command(subcommand)]
    command: FunctionsCommand,
}

/// The one server an admin subcommand works on, and how to reach it.
#[derive(Args)]
struct AdminServer {
    /// Redis URL of an admin account, e.g. redis://admin:pw@host:6379
    #[arg(
        long,
        value_name = "URL",
        env = "CHARON_REDIS_URL",
        hide_env_values = true
    )]
    redis: String,
    /// CA certificate (PEM file) to verify a rediss:// server against,
    /// instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    tls_ca_file: Option<std::path::PathBuf>,
}

impl AdminServer {
    /// The configuration of an admin connection to one server, with the CA
    /// certificate from `tls_ca_file`. The signing key plays no part in
    /// managing functions: a random one.
    fn config(self) -> anyhow::Result<RedisStoreConfig> {
        let mut config = RedisStoreConfig::new(self.redis, SigningKey::generate());
        if let Some(path) = self.tls_ca_file {
            let pem =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            config = config.tls_root_certificate(pem);
        }
        Ok(config)
    }
}

#[derive(Subcommand)]
enum FunctionsCommand {
    /// Load (or replace) the function library on a server, with an account
    /// allowed to run FUNCTION LOAD.
    Load {
        #[command(flatten)]
        server: AdminServer,
    },
    /// Print the ACL rule for an application user that can run the store
    /// (its keys and commands only, no FUNCTION LOAD), for the store's
    /// topology, database and options.
    Acl {
        /// Key prefix the application's store uses.
        #[arg(long, value_name = "PREFIX", default_value = charon_sessions::RedisStoreConfig::DEFAULT_KEY_PREFIX)]
        key_prefix: String,
        /// User name to put in the printed ACL SETUSER command.
        #[arg(long, value_name = "NAME", default_value = "charon_app")]
        user: String,
        /// The store runs on one server, in this database (the number in
        /// its URL): the rule allows SELECT of that database only.
        #[arg(long, value_name = "N", default_value_t = 0, conflicts_with_all = ["cluster", "sentinel"])]
        db: u32,
        /// The store runs on a Redis Cluster (RedisStoreConfig::cluster).
        #[arg(long, conflicts_with = "sentinel")]
        cluster: bool,
        /// The store finds its primary through Redis Sentinel
        /// (RedisStoreConfig::sentinel); create the user on every data node.
        #[arg(long)]
        sentinel: bool,
        /// The cluster store reads from replicas (read_from_replicas).
        #[arg(long, requires = "cluster", conflicts_with = "sentinel")]
        read_from_replicas: bool,
        /// The store waits for replicas after each upsert (wait_for_replicas).
        #[arg(long)]
        wait_for_replicas: bool,
    },
    /// List this store's function libraries of other versions on one server
    /// (FUNCTION LIST); with --apply, delete them (FUNCTION DELETE). Never
    /// touches the current version's library, Charon's own
    /// (charon_redis_store_*) or any other library. On a cluster, run it on
    /// each primary.
    Prune {
        #[command(flatten)]
        server: AdminServer,
        /// Delete the libraries found; without it only print them (a dry
        /// run). Delete only once no store of those versions runs any more:
        /// one that loads its functions itself would load its library again.
        #[arg(long)]
        apply: bool,
    },
    /// Print the library's name and Lua source.
    Show,
}

/// Runs `charon-sessions functions …`.
pub async fn run(args: FunctionsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        FunctionsCommand::Load { server } => {
            let config = server.config()?;
            let server = RedisStore::load_function_library(&config)
                .await
                .context("cannot load the function library")?;
            println!(
                "loaded function library {} on {server}",
                RedisStore::function_library_name()
            );
        }
        FunctionsCommand::Acl {
            key_prefix,
            user,
            db,
            cluster,
            sentinel,
            read_from_replicas,
            wait_for_replicas,
        } => {
            // The rule depends on the topology's kind and the database, not
            // on the addresses: these stand in for the deployment's.
            let key = SigningKey::generate();
            let mut config = if cluster {
                RedisStoreConfig::cluster(["redis://127.0.0.1"], key)
            } else if sentinel {
                RedisStoreConfig::sentinel(["redis://127.0.0.1"], "primary", key)
            } else {
                RedisStoreConfig::new(format!("redis://127.0.0.1/{db}"), key)
            };
            config = config
                .key_prefix(key_prefix)
                .register_functions(false)
                .read_from_replicas(read_from_replicas);
            if wait_for_replicas {
                // Any count and timeout: only whether WAIT is sent matters.
                config = config.wait_for_replicas(1, std::time::Duration::from_secs(1));
            }
            let rule = config.acl_rule()?;
            let nodes = if cluster {
                "on every node of the cluster"
            } else if sentinel {
                "on every data node (the sentinels keep their own users)"
            } else {
                "on the server"
            };
            println!("{rule}");
            eprintln!(
                "\nUse it as:  ACL SETUSER {user} on resetpass >PASSWORD {rule}\n\
                 {nodes}, and start the store with RedisStoreConfig::register_functions(false), after\n\
                 `charon-sessions functions load --redis <admin URL>` on every deploy of a new version."
            );
            if db != 0 {
                eprintln!(
                    "Redis ACLs have no per-database rights, and every connection starts in database 0:\n\
                     the user can reach keys under the prefix in databases 0 and {db}. On Valkey 9, append\n\
                     `resetdbs db={db}` to keep it to database {db}."
                );
            }
        }
        FunctionsCommand::Prune { server, apply } => {
            let config = server.config()?;
            let (server, libraries) = RedisStore::prune_function_libraries(&config, apply)
                .await
                .context("cannot prune the function libraries")?;
            let current = RedisStore::function_library_name();
            if libraries.is_empty() {
                println!(
                    "no function libraries of other versions on {server} (current: {current})"
                );
            } else {
                let verb = if apply { "deleted" } else { "would delete" };
                for name in &libraries {
                    println!("{verb} {name}");
                }
                if apply {
                    eprintln!(
                        "deleted {} function libraries of other versions on {server}; kept {current}",
                        libraries.len()
                    );
                } else {
                    eprintln!(
                        "dry run: nothing deleted on {server}; run again with --apply to delete \
                         these {} libraries (kept: {current})",
                        libraries.len()
                    );
                }
            }
        }
        FunctionsCommand::Show => {
            println!("-- library {}", RedisStore::function_library_name());
            print!("{}", RedisStore::function_library_code());
        }
    }
    Ok(ExitCode::SUCCESS)
}
