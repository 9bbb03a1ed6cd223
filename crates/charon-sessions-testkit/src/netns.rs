//! A server behind a network link the test can cut: a `redis-server` in a
//! Linux network namespace of its own, reachable from the test over a veth
//! pair. Cutting the link (the namespace's end set down) makes the server
//! vanish without a word: no FIN, no RST, packets to it are dropped, as
//! when a host dies or a network partitions. Needs iproute2's `ip` and root
//! (or `sudo` without a password).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Flavor;

/// A server in a network namespace, on a link that can be cut; the
/// namespace (with its veth pair) is deleted and the server killed on drop.
#[derive(Debug)]
pub struct PartitionedServer {
    namespace: String,
    /// The namespace's end of the veth pair.
    inner_link: String,
    /// The server's address, `10.X.Y.2`.
    address: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// `program`, through `sudo -n` unless this process runs as root.
fn privileged(program: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    if root {
        Command::new(program)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.args(["-n", program]);
        cmd
    }
}

/// Runs `ip` with `args` and returns its output, panicking with its error
/// output when it fails.
fn ip(args: &[&str]) -> String {
    let out = privileged("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes the namespaces (and kills their processes) that test processes
/// no longer running left behind, for example when they were killed.
fn remove_stale_namespaces() {
    for line in ip(&["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name.strip_prefix("charon-") else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        for leftover in ip(&["netns", "pids", name]).split_whitespace() {
            let _ = privileged("kill").args(["-9", leftover]).status();
        }
        let _ = privileged("ip").args(["netns", "del", name]).status();
    }
}

impl PartitionedServer {
    /// Creates the namespace and the link, starts a server of `flavor` in it
    /// and waits until it answers from the test's side.
    ///
    /// # Panics
    ///
    /// Without root or `ip`, or when the server does not come up in 10 s.
    pub fn start(flavor: Flavor) -> PartitionedServer {
        let binary: PathBuf = flavor.binary();
        let id = std::process::id();
        let namespace = format!("charon-{id}");
        let (outer_link, inner_link) = (format!("ch{id}o"), format!("ch{id}i"));
        // A /30 of its own per process: 10.(id / 64 % 256).(id % 64 * 4).0/30.
        let net = format!("10.{}.{}", 100 + (id / 64) % 150, (id % 64) * 4);
        let address = format!("{net}.2");
        remove_stale_namespaces();
        ip(&["netns", "add", &namespace]);
        let mut server = PartitionedServer {
            namespace,
            inner_link,
            address,
            port: 6379,
            dir: tempfile::Builder::new()
                .prefix("charon-sessions-netns-")
                .tempdir()
                .expect("create a temporary directory"),
            child: None,
        };
        let ns = server.namespace.clone();
        ip(&[
            "link",
            "add",
            &outer_link,
            "type",
            "veth",
            "peer",
            "name",
            &server.inner_link,
        ]);
        ip(&["link", "set", &server.inner_link, "netns", &ns]);
        ip(&["addr", "add", &format!("{net}.1/30"), "dev", &outer_link]);
        ip(&["link", "set", &outer_link, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/30", server.address),
            "dev",
            &server.inner_link,
        ]);
        ip(&["-n", &ns, "link", "set", &server.inner_link, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);

        let log = server.dir.path().join("server.log");
        let child = privileged("ip")
            .args(["netns", "exec", &ns])
            .arg(&binary)
            .args(["--port", &server.port.to_string()])
            .args(["--bind", &server.address])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(server.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} in {ns}: {e}", binary.display()));
        server.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((server.address.as_str(), server.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the server in {ns} did not come up:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// `redis://<address>:<port>`, reachable from the test's namespace.
    pub fn url(&self) -> String {
        format!("redis://{}:{}", self.address, self.port)
    }

    /// Cuts the link: from now on every packet to the server is dropped
    /// silently.
    pub fn cut(&self) {
        ip(&[
            "-n",
            &self.namespace,
            "link",
            "set",
            &self.inner_link,
            "down",
        ]);
    }

    /// Restores the link.
    pub fn restore(&self) {
        ip(&["-n", &self.namespace, "link", "set", &self.inner_link, "up"]);
    }
}

impl Drop for PartitionedServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting the namespace deletes the veth pair with it.
        let _ = privileged("ip")
            .args(["netns", "del", &self.namespace])
            .status();
    }
}
