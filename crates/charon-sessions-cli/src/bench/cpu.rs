//! CPU time spent during a measured slice, on both sides: this process's
//! (the client: the store's or the baseline's work, plus the benchmark's
//! own bookkeeping, which is the same in both phases), from the operating
//! system; and the server's, from `INFO cpu` (`used_cpu_user +
//! used_cpu_sys`, all its threads).
//!
//! Divided by the operations run, these show where a throughput difference
//! comes from, and unlike throughput they barely move when other processes
//! compete for the cores.

use charon_sessions::RedisStore;
use cpu_time::ProcessTime;

/// CPU counters at the start of a phase.
pub struct CpuMark {
    client: ProcessTime,
    server: Option<f64>,
}

/// CPU seconds spent since a [`CpuMark`].
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// This process, seconds.
    pub client_s: f64,
    /// The server, seconds; `None` when `INFO cpu` could not be read.
    pub server_s: Option<f64>,
}

impl CpuUse {
    /// No CPU time yet.
    pub const ZERO: CpuUse = CpuUse {
        client_s: 0.0,
        server_s: Some(0.0),
    };

    /// Adds `other` (a later slice of the same target); the server's time
    /// is unknown once one slice's is.
    pub fn add(self, other: CpuUse) -> CpuUse {
        CpuUse {
            client_s: self.client_s + other.client_s,
            server_s: self.server_s.zip(other.server_s).map(|(a, b)| a + b),
        }
    }
}

impl CpuMark {
    /// Reads both counters now (`INFO cpu` through the store's connections).
    pub async fn now(store: &RedisStore) -> CpuMark {
        let server = server_cpu(store).await;
        CpuMark {
            client: ProcessTime::now(),
            server,
        }
    }

    /// CPU spent since this mark.
    pub async fn elapsed(&self, store: &RedisStore) -> CpuUse {
        let client_s = self.client.elapsed().as_secs_f64();
        let server_s = match (self.server, server_cpu(store).await) {
            (Some(start), Some(end)) => Some(end - start),
            _ => None,
        };
        CpuUse { client_s, server_s }
    }
}

/// The server's CPU seconds so far, from `INFO cpu`.
async fn server_cpu(store: &RedisStore) -> Option<f64> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg("cpu");
    let info: String = store.run_command(&cmd).await.ok()?;
    parse_cpu(&info)
}

/// `used_cpu_user + used_cpu_sys` of an `INFO cpu` reply.
fn parse_cpu(info: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        info.lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))?
            .parse()
            .ok()
    };
    Some(field("used_cpu_user")? + field("used_cpu_sys")?)
}

#[cfg(test)]
mod tests {
    use super::{CpuUse, parse_cpu};

    #[test]
    fn adds_slices_and_loses_an_unknown_server_time() {
        let a = CpuUse {
            client_s: 1.0,
            server_s: Some(0.5),
        };
        let sum = CpuUse::ZERO.add(a).add(a);
        assert_eq!((sum.client_s, sum.server_s), (2.0, Some(1.0)));
        let unknown = sum.add(CpuUse {
            client_s: 1.0,
            server_s: None,
        });
        assert_eq!((unknown.client_s, unknown.server_s), (3.0, None));
    }

    #[test]
    fn adds_user_and_system_time() {
        let info = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\
                    used_cpu_sys_children:9.0\r\nused_cpu_user_main_thread:2.0\r\n";
        assert_eq!(parse_cpu(info), Some(3.75));
        assert_eq!(parse_cpu("# CPU\r\n"), None);
    }
}
