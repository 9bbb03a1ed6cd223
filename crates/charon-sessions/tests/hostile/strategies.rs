//! Arbitrary input shared by the scenarios: user ids, JSON values, sessions,
//! and mutations of a byte string.

use charon_sessions::Session;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

use crate::common::HOUR;

/// Arbitrary user ids: awkward fixed ones, and any characters (control
/// characters and NUL included), 1 to 24 of them.
pub(crate) fn user_id() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => prop::sample::select(vec![
            "alice", "a.b", "l.", ".", "{x}", "*", "a b", "new\nline", "\r\n", "\0",
            "Ærøskøbing", "用户", "alice.full",
        ])
        .prop_map(str::to_owned),
        2 => vec(any::<char>(), 1..24).prop_map(String::from_iter),
    ]
}

/// Arbitrary JSON values, nested a few levels, with object keys that are
/// often the names of session fields.
pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(json_key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const SESSION_FIELDS: [&str; 13] = [
    "id",
    "user_id",
    "session_type",
    "created_at",
    "expires_at",
    "refresh_expires_at",
    "refreshed_at",
    "refresh_token_id",
    "tokens_fresh_from",
    "prev_tokens_fresh_from",
    "lock_version",
    "extra_payload",
    "version",
];

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(SESSION_FIELDS.to_vec()).prop_map(str::to_owned),
        any::<String>(),
    ]
}

/// Arbitrary sessions: any user id, either type, arbitrary application data.
pub(crate) fn session() -> impl Strategy<Value = Session> {
    (
        user_id(),
        prop::sample::select(vec!["full", "oauth2"]),
        btree_map(json_key(), json_value(), 0..4),
        any::<u32>(),
    )
        .prop_map(|(user, kind, extra, lock)| {
            let mut s = Session::new_login(user, HOUR);
            s.session_type = kind.to_owned();
            s.extra_payload = extra.into_iter().collect();
            s.lock_version = u64::from(lock);
            s
        })
}

/// One change to a signed value.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    /// Keep the first `index(len + 1)` bytes (possibly all of them).
    Truncate(Index),
    /// Flip bit `.1` of byte `index(len)`.
    Flip(Index, u8),
    /// Append these bytes (possibly none).
    Append(Vec<u8>),
}

impl Mutation {
    pub(crate) fn apply(&self, value: &mut Vec<u8>) {
        match self {
            Mutation::Truncate(i) => value.truncate(i.index(value.len() + 1)),
            Mutation::Flip(i, bit) if !value.is_empty() => {
                let at = i.index(value.len());
                value[at] ^= 1 << bit;
            }
            Mutation::Flip(..) => {}
            Mutation::Append(bytes) => value.extend_from_slice(bytes),
        }
    }
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        1 => vec(any::<u8>(), 0..16).prop_map(Mutation::Append),
    ]
}
