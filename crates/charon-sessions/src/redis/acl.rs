//! The least-privilege ACL rule for an application's Redis user.
//!
//! The store needs `HGET`, `HGETALL`, `HDEL`, `DEL` and `FCALL` on its own
//! keys, the commands the upsert function runs too (Redis checks them
//! against the caller's rights: `HSETEX`, and `HLEN`, `HKEYS`,
//! `HEXPIRETIME` for the session limit), and `INFO` for the version check
//! at connect. It needs
//! no right to load functions when the library is loaded by an admin
//! ([`RedisStoreConfig::register_functions`](crate::RedisStoreConfig::register_functions)).

use crate::session::validate_key_prefix;
use crate::store::StoreError;

/// Commands the store's application user needs, as ACL `+` rules.
pub const REQUIRED_COMMANDS: &[&str] = &[
    "hget",
    "hgetall",
    "hdel",
    "del",
    "fcall",
    // Run by the upsert function.
    "hsetex",
    "hlen",
    "hkeys",
    "hexpiretime",
    "info",
    // Only for a URL naming a database other than 0.
    "select",
    // redis-rs names itself at connect; refusals are ignored, but allowing
    // it keeps the server's ACL log clean.
    "client|setinfo",
];

/// The ACL rule for a user that can do what a store with `key_prefix`
/// needs and nothing else: its keys only (`~<prefix>.*`), no channels, no
/// selectors, only the [`REQUIRED_COMMANDS`]; no `FUNCTION LOAD`.
///
/// Use it as `ACL SETUSER <user> on resetpass ><password> <rule>` (the rule
/// resets what the user could do before; `resetpass` drops old passwords).
///
/// ```
/// let rule = charon_sessions::acl_rule("myapp").unwrap();
/// assert!(rule.starts_with("resetkeys ~myapp.* resetchannels clearselectors -@all +hget"));
/// ```
///
/// # Errors
///
/// [`StoreError::InvalidInput`] for an invalid key prefix.
pub fn acl_rule(key_prefix: &str) -> Result<String, StoreError> {
    validate_key_prefix(key_prefix)?;
    // The prefix allows no glob characters ([A-Za-z0-9_:-]), so it is its
    // own pattern.
    let mut rule = format!("resetkeys ~{key_prefix}.* resetchannels clearselectors -@all");
    for command in REQUIRED_COMMANDS {
        rule.push_str(" +");
        rule.push_str(command);
    }
    Ok(rule)
}
