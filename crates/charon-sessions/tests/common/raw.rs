//! Raw access to a test server, through a connection of the test's own
//! (never the store's): to look at the layout, write hostile values, and
//! count the commands the server received.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use charon_sessions_testkit::TestServer;
use redis::aio::MultiplexedConnection;

/// The hash of `user`'s sessions of `kind` under the default prefix.
pub fn key_of(user: &str, kind: &str) -> String {
    format!("charon_.{user}.{kind}")
}

/// A connection to `url`.
pub async fn raw_url(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap_or_else(|e| panic!("bad URL {url}: {e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("raw connection to {url}: {e}"))
}

/// A connection to `server`.
pub async fn raw(server: &TestServer) -> MultiplexedConnection {
    raw_url(&server.url()).await
}

/// Every field of a raw hash (empty when the key does not exist).
pub async fn hgetall(conn: &mut MultiplexedConnection, key: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(conn)
        .await
        .expect("HGETALL")
}

/// One raw field.
pub async fn hget(conn: &mut MultiplexedConnection, key: &str, field: &str) -> Option<Vec<u8>> {
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(conn)
        .await
        .expect("HGET")
}

/// Writes one raw field behind the store's back.
pub async fn hset(conn: &mut MultiplexedConnection, key: &str, field: &[u8], value: &[u8]) {
    redis::cmd("HSET")
        .arg(key)
        .arg(field)
        .arg(value)
        .query_async::<()>(conn)
        .await
        .expect("HSET");
}

/// Whether a key exists.
pub async fn exists(conn: &mut MultiplexedConnection, key: &str) -> bool {
    let n: i64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(conn)
        .await
        .expect("EXISTS");
    n == 1
}

/// `CLIENT PAUSE <millis> <mode>`: the server holds every other client's
/// commands (`"ALL"`) or only their writes (`"WRITE"`) that long.
pub async fn client_pause(conn: &mut MultiplexedConnection, millis: u64, mode: &str) {
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(millis)
        .arg(mode)
        .query_async::<()>(conn)
        .await
        .expect("CLIENT PAUSE");
}

/// `FUNCTION FLUSH`: the server forgets every function library.
pub async fn function_flush(conn: &mut MultiplexedConnection) {
    redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async::<()>(conn)
        .await
        .expect("FUNCTION FLUSH");
}

/// `CLIENT KILL TYPE normal SKIPME yes`: closes every other client's
/// connection; returns how many.
pub async fn kill_other_clients(conn: &mut MultiplexedConnection) -> i64 {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(conn)
        .await
        .expect("CLIENT KILL TYPE normal")
}

/// `CLIENT KILL ID <id>`: closes one client's connection.
pub async fn kill_client(conn: &mut MultiplexedConnection, id: u64) {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async::<()>(conn)
        .await
        .expect("CLIENT KILL ID");
}

/// `INFO commandstats` as command → calls + rejected calls (every request
/// the server received for it), all commands.
pub async fn command_calls(conn: &mut MultiplexedConnection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    let mut calls = BTreeMap::new();
    for line in info.lines() {
        let Some((name, stats)) = line
            .trim()
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let mut n = 0;
        for pair in stats.split(',') {
            if let Some(("calls" | "rejected_calls", v)) = pair.split_once('=') {
                n += v.parse::<u64>().expect("a count");
            }
        }
        calls.insert(name.to_owned(), n);
    }
    calls
}

/// Commands a connection issues by itself (connect handshake, pool checks)
/// or that the test issues to observe the server: not data commands.
pub fn is_bookkeeping(command: &str) -> bool {
    [
        "info", "client", "hello", "select", "auth", "ping", "function",
    ]
    .iter()
    .any(|c| command == *c || command.starts_with(&format!("{c}|")))
}

/// [`command_calls`] without the bookkeeping commands.
pub async fn data_command_calls(conn: &mut MultiplexedConnection) -> BTreeMap<String, u64> {
    command_calls(conn)
        .await
        .into_iter()
        .filter(|(c, _)| !is_bookkeeping(c))
        .collect()
}

/// A log writer that keeps everything written, for inspection.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything logged so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// A subscriber that logs every span and event, at every level and
    /// without colours, into this capture.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let writer = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .finish()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `HEXPIRETIME key FIELDS n field…`: per field, the absolute expiry in unix
/// seconds, -1 without expiry, -2 when the field does not exist.
pub async fn hexpiretime(conn: &mut MultiplexedConnection, key: &str, fields: &[&str]) -> Vec<i64> {
    redis::cmd("HEXPIRETIME")
        .arg(key)
        .arg("FIELDS")
        .arg(fields.len())
        .arg(fields)
        .query_async(conn)
        .await
        .expect("HEXPIRETIME")
}
