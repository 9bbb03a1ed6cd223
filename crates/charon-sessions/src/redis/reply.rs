//! Reading fields of map-shaped replies (`HELLO`, `FUNCTION LIST`), which
//! come as RESP3 maps or, over RESP2, as flat arrays of name/value pairs:
//! redis-rs's [`Value::as_map_iter`] reads both.

use redis::Value;

/// The value of field `name` in a map-shaped reply; `None` when the reply
/// is not map-shaped or has no such field.
pub(crate) fn field<'a>(reply: &'a Value, name: &str) -> Option<&'a Value> {
    reply
        .as_map_iter()?
        .find(|(key, _)| text(key).as_deref() == Some(name))
        .map(|(_, value)| value)
}

/// The text of a bulk, simple or verbatim string (`None` for another type
/// or a bulk string that is not UTF-8).
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}
