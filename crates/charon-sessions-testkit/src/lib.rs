//! Test support: real `redis-server` / `valkey-server` processes on free
//! loopback ports, stopped when dropped, a real Erlang runtime
//! ([`Erlang`]) for the tests of Charon's payload format, and the
//! behavioural suite every `SessionStore` must pass ([`suite`],
//! [`store_suite!`]).
//!
//! The binaries come from `REDIS_SERVER_BIN` / `VALKEY_SERVER_BIN` (set by
//! `scripts/test`, which provisions them), else from `PATH` when new enough.
//! When neither has one, starting a server panics with a message saying how
//! to get one: a test that needs Redis never skips.
//!
//! Each server runs with persistence off (`--save "" --appendonly no`), its
//! files and log in a temporary directory; when a test panics, the server
//! log can be read with [`TestServer::log`].

#![deny(missing_docs, missing_debug_implementations)]

mod cli;
mod cluster;
pub mod erlang;
mod netns;
mod sentinel;
pub mod suite;

pub use cli::redis_cli;
pub use cluster::TestCluster;
pub use erlang::Erlang;
pub use netns::PartitionedServer;
pub use sentinel::TestSentinel;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server implementation to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Redis >= 8 (`REDIS_SERVER_BIN`, or `redis-server` on `PATH`).
    Redis,
    /// Valkey >= 9 (`VALKEY_SERVER_BIN`, or `valkey-server` on `PATH`).
    Valkey,
    /// Debian 12's Redis 7.0 (`REDIS7_SERVER_BIN`, or a `redis-server` 7 on
    /// `PATH`): too old for the store, which must refuse it.
    Redis7,
}

impl Flavor {
    fn env_var(self) -> &'static str {
        match self {
            Flavor::Redis => "REDIS_SERVER_BIN",
            Flavor::Valkey => "VALKEY_SERVER_BIN",
            Flavor::Redis7 => "REDIS7_SERVER_BIN",
        }
    }

    fn binary_name(self) -> &'static str {
        match self {
            Flavor::Redis | Flavor::Redis7 => "redis-server",
            Flavor::Valkey => "valkey-server",
        }
    }

    /// The major versions this flavour stands for.
    fn majors(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Flavor::Redis => 8..=u32::MAX,
            Flavor::Valkey => 9..=u32::MAX,
            Flavor::Redis7 => 7..=7,
        }
    }

    fn wanted(self) -> String {
        match self {
            Flavor::Redis7 => "redis-server 7".to_owned(),
            _ => format!("{} >= {}", self.binary_name(), self.majors().start()),
        }
    }

    fn fits(self, binary: &Path) -> bool {
        major_version(binary).is_some_and(|m| self.majors().contains(&m))
    }

    /// The server binary to run.
    ///
    /// # Panics
    ///
    /// When the environment variable names an unusable binary, or when it is
    /// unset and no new-enough binary is on `PATH`.
    pub fn binary(self) -> PathBuf {
        if let Some(path) = std::env::var_os(self.env_var()) {
            let path = PathBuf::from(path);
            assert!(
                self.fits(&path),
                "{}={} is not a {}",
                self.env_var(),
                path.display(),
                self.wanted()
            );
            return path;
        }
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(self.binary_name()))
                .find(|p| self.fits(p))
        });
        on_path.unwrap_or_else(|| {
            panic!(
                "no {} found: run the tests with scripts/test (it provides one), \
                 or set {} to a suitable binary",
                self.wanted(),
                self.env_var()
            )
        })
    }
}

/// The major version a server binary reports with `--version`.
pub fn major_version(binary: &Path) -> Option<u32> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    v.split('.').next()?.parse().ok()
}

/// A running server process on `127.0.0.1`, killed (and waited for) on drop.
#[derive(Debug)]
pub struct TestServer {
    flavor: Flavor,
    binary: PathBuf,
    port: u16,
    extra_args: Vec<String>,
    /// A configuration file passed as the first argument (sentinels need
    /// one they can rewrite).
    config_file: Option<PathBuf>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl TestServer {
    /// Starts a server of `flavor` on a free port and waits until it answers.
    ///
    /// # Panics
    ///
    /// When no binary can be had, or the server does not come up within 10 s
    /// (the panic message carries the server log).
    pub fn start(flavor: Flavor) -> TestServer {
        Self::start_with(flavor, &[])
    }

    /// Like [`start`](Self::start), with extra `--option value` arguments
    /// (e.g. `["--requirepass", "pw"]`).
    pub fn start_with(flavor: Flavor, extra_args: &[&str]) -> TestServer {
        Self::start_configured(flavor, extra_args, |_, _| None)
    }

    /// Like [`start_with`](Self::start_with); `config` is called with the
    /// chosen port and the server's directory and may write a configuration
    /// file there, whose path then comes first on the command line.
    pub fn start_configured(
        flavor: Flavor,
        extra_args: &[&str],
        config: impl Fn(u16, &Path) -> Option<PathBuf>,
    ) -> TestServer {
        let binary = flavor.binary();
        // Another process may take the port between probing it and the server
        // binding it: try a few ports.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = tempfile::Builder::new()
                .prefix("charon-sessions-test-")
                .tempdir()
                .expect("create a temporary directory");
            let mut server = TestServer {
                flavor,
                binary: binary.clone(),
                port,
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
                config_file: config(port, dir.path()),
                dir,
                child: None,
            };
            if server.spawn_and_wait() {
                return server;
            }
            last_log = server.log();
        }
        panic!(
            "{} did not start on a loopback port after 5 attempts; last log:\n{last_log}",
            binary.display()
        );
    }

    fn spawn_and_wait(&mut self) -> bool {
        let log = self.log_path();
        let mut cmd = Command::new(&self.binary);
        if let Some(file) = &self.config_file {
            cmd.arg(file);
        }
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                eprintln!("{} exited early with {status}", self.binary.display());
                self.child = None;
                return false;
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// Whether the server answers `PING` with `PONG` (not refused, not
    /// loading). Sends `AUTH` first when started with `--requirepass`.
    pub fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut request = Vec::new();
        if let Some(pw) = self.arg_value("--requirepass") {
            request.extend_from_slice(
                format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pw}\r\n", pw.len()).as_bytes(),
            );
        }
        request.extend_from_slice(b"PING\r\n");
        if stream.write_all(&request).is_err() {
            return false;
        }
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        let mut answered_pong = false;
        let expected = if self.arg_value("--requirepass").is_some() {
            2
        } else {
            1
        };
        for _ in 0..expected {
            line.clear();
            if reader.read_line(&mut line).is_err() {
                return false;
            }
            answered_pong = line.starts_with("+PONG");
        }
        let _ = stream.shutdown(Shutdown::Both);
        answered_pong
    }

    fn arg_value(&self, name: &str) -> Option<&str> {
        let i = self.extra_args.iter().position(|a| a == name)?;
        self.extra_args.get(i + 1).map(String::as_str)
    }

    /// Which server this is.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's working directory (a temporary directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server log so far (for panic messages).
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Kills the server with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill));
    /// it comes back empty, since persistence is off.
    ///
    /// # Panics
    ///
    /// When it does not come up within 10 s.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.spawn_and_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "server did not restart on port {}:\n{}",
            self.port,
            self.log()
        );
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}
