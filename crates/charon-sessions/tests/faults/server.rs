//! The test's own look at the server (a connection of its own, never the
//! store's): function libraries, key count, other clients.

use redis::aio::MultiplexedConnection;

/// The library names in `FUNCTION LIST`.
pub(crate) async fn library_names(conn: &mut MultiplexedConnection) -> Vec<String> {
    let reply: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(conn)
        .await
        .expect("FUNCTION LIST");
    fn strings(value: &redis::Value, out: &mut Vec<String>) {
        use redis::Value;
        match value {
            Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => out.push(s.clone()),
            Value::Array(items) | Value::Set(items) => items.iter().for_each(|v| strings(v, out)),
            Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
                strings(k, out);
                strings(v, out);
            }),
            _ => {}
        }
    }
    let mut all = Vec::new();
    strings(&reply, &mut all);
    all.windows(2)
        .filter(|w| w[0] == "library_name")
        .map(|w| w[1].clone())
        .collect()
}

pub(crate) async fn dbsize(conn: &mut MultiplexedConnection) -> i64 {
    redis::cmd("DBSIZE")
        .query_async(conn)
        .await
        .expect("DBSIZE")
}

/// Client connections on the server other than `conn` itself.
pub(crate) async fn other_clients(conn: &mut MultiplexedConnection) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .expect("CLIENT LIST");
    list.lines().count().saturating_sub(1)
}
