//! Charon's payload format: `:erlang.term_to_binary(%Charon.Models.Session{})`.
//!
//! The struct is a map of 14 atom keys: `__struct__` (the atom
//! `Elixir.Charon.Models.Session`) and Charon 4.3's 13 fields. How each
//! [`Session`] field is written:
//!
//! | field | Erlang term |
//! |---|---|
//! | `id`, `refresh_token_id` | binary |
//! | `user_id` | binary, or integer for [`UserIdKind::Integer`] |
//! | `session_type` | `type`: an atom |
//! | `expires_at` | integer, `None` as the atom `infinite` |
//! | the other times, `lock_version` | integers |
//! | `extra_payload` | a map (below) |
//! | `version` | the integer 7 |
//!
//! `extra_payload` as JSON ([`Session::extra_payload`]) is a view of the
//! Erlang map. Read from Erlang: atoms `true`/`false` are booleans, `nil`
//! is `null`, other atoms and UTF-8 binaries are strings, integers and
//! floats are numbers (integers beyond 64 bits are strings of their
//! digits), lists and tuples are arrays, maps (structs such as a
//! `DateTime` included, with their `"__struct__"` key) are objects whose
//! keys are the atom's name, the binary, or the integer's digits; other
//! binaries are arrays of their bytes, and pids, ports, references and funs
//! strings such as `"#PID"`. The Erlang terms themselves are kept in
//! [`Session::charon_terms`], and written back as they were read wherever
//! the view was not changed: a refresh from Rust returns Charon's
//! `extra_payload` `=:=` equal.
//!
//! Where the application sets a value, it becomes: `null` → `nil`,
//! booleans → `true`/`false`, integers → integers, other numbers → floats,
//! strings → binaries, arrays → lists, objects → maps with binary keys
//! (`%{"ip" => …}`), or atom keys (`%{ip: …}`) with [`MapKeys::Atoms`]. A
//! changed value keeps the Erlang type of the one it replaces where the
//! JSON kind is the same: a string that replaces an atom is an atom, an
//! array that replaces a tuple of the same length a tuple, and in a map
//! that was changed the keys already there keep their type. Values that
//! cannot be represented (an atom key longer than 255 characters, nesting
//! deeper than [`MAX_DEPTH`]) are [`StoreError::InvalidInput`] naming them.
//!
//! The bytes are those of Erlang/OTP's `term_to_binary(Session,
//! [{minor_version, 2}])` (the default from OTP 26 on): atoms as
//! `SMALL_ATOM_UTF8_EXT`, map keys in Erlang's term order, as OTP 25 and
//! earlier write maps of up to 32 keys. OTP 26 and later write the atom keys
//! of such maps in the order of their runtime's atom table instead, which
//! differs between runtimes; every version reads either `=:=` equal. Maps
//! of more than 32 keys set from Rust are written in term order too (Erlang
//! writes those in hash order; they read back equal).
//!
//! Reading refuses ([`DecodeError::Charon`]) a term that is not this struct
//! (another `__struct__`, a missing or unknown field, a field of the wrong
//! type) or of a record version other than 7.

use std::fmt;
use std::sync::Arc;

use num_bigint::BigInt;
use serde_json::{Number, Value};

use super::etf::{self, MAX_ATOM_CHARS, MAX_DEPTH, Term};
use super::{DecodeError, MapKeys};
use crate::session::{SESSION_VERSION, Session, UserIdKind};
use crate::store::StoreError;

/// The struct's module, the value of its `__struct__` key.
const STRUCT: &str = "Elixir.Charon.Models.Session";

/// The Erlang terms of a session read in Charon's format, kept so that
/// writing it back changes nothing the application did not change (see
/// [`codec`](crate::codec)). Opaque; empty for sessions created in Rust or
/// read in another format. Cheap to clone. `Debug` shows only whether
/// terms are kept, never their values.
#[derive(Clone, Default)]
pub struct CharonTerms {
    /// `extra_payload` as Charon stored it: a map.
    extra_payload: Option<Arc<Term>>,
}

impl CharonTerms {
    /// Whether no terms are kept (the session was not read in Charon's
    /// format).
    pub fn is_empty(&self) -> bool {
        self.extra_payload.is_none()
    }
}

impl fmt::Debug for CharonTerms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CharonTerms")
            .field("kept", &!self.is_empty())
            .finish()
    }
}

/// Decodes a payload in Charon's format (first byte 131).
pub(super) fn decode(payload: &[u8]) -> Result<Session, DecodeError> {
    let term = etf::decode(payload).map_err(DecodeError::Term)?;
    session_of(term).map_err(DecodeError::Charon)
}

fn session_of(term: Term) -> Result<Session, &'static str> {
    let Term::Map(entries) = term else {
        return Err("not a map (a struct)");
    };
    let mut fields = entries
        .into_iter()
        .map(|(key, value)| match key {
            Term::Atom(name) => Ok((name, value)),
            _ => Err("a key that is not an atom"),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut take = |name: &str| {
        let at = fields
            .iter()
            .position(|(n, _)| n == name)
            .ok_or("a field of Charon's session is missing")?;
        Ok::<_, &'static str>(fields.swap_remove(at).1)
    };
    struct_name(take("__struct__")?)?;
    if take("version")? != Term::Int(7) {
        return Err("record version is not 7");
    }
    let (user_id, user_id_kind) = user_id(take("user_id")?)?;
    let (extra_payload, kept) = extra_payload(take("extra_payload")?)?;
    let session = Session {
        id: string(take("id")?)?,
        user_id,
        session_type: match take("type")? {
            Term::Atom(name) => name,
            _ => return Err("type is not an atom"),
        },
        created_at: int(take("created_at")?)?,
        expires_at: match take("expires_at")? {
            Term::Atom(a) if a == "infinite" => None,
            other => Some(int(other)?),
        },
        refresh_expires_at: int(take("refresh_expires_at")?)?,
        refreshed_at: int(take("refreshed_at")?)?,
        refresh_token_id: string(take("refresh_token_id")?)?,
        tokens_fresh_from: int(take("tokens_fresh_from")?)?,
        prev_tokens_fresh_from: int(take("prev_tokens_fresh_from")?)?,
        lock_version: match take("lock_version")? {
            Term::Int(v) => u64::try_from(v).map_err(|_| "negative lock_version")?,
            _ => return Err("lock_version is not an integer"),
        },
        extra_payload,
        version: SESSION_VERSION,
        user_id_kind,
        charon_terms: CharonTerms {
            extra_payload: Some(Arc::new(kept)),
        },
    };
    if !fields.is_empty() {
        return Err("a field Charon 4.3's session does not have");
    }
    Ok(session)
}

fn struct_name(value: Term) -> Result<(), &'static str> {
    match value {
        Term::Atom(name) if name == STRUCT => Ok(()),
        _ => Err("__struct__ is not Elixir.Charon.Models.Session"),
    }
}

fn int(value: Term) -> Result<i64, &'static str> {
    match value {
        Term::Int(v) => Ok(v),
        Term::Big(_) => Err("a time beyond the 64-bit range"),
        _ => Err("a time that is not an integer"),
    }
}

fn string(value: Term) -> Result<String, &'static str> {
    match value {
        Term::Binary(bytes) => String::from_utf8(bytes).map_err(|_| "an id that is not UTF-8"),
        _ => Err("an id that is not a binary"),
    }
}

fn user_id(value: Term) -> Result<(String, UserIdKind), &'static str> {
    Ok(match value {
        Term::Binary(bytes) => (
            String::from_utf8(bytes).map_err(|_| "user_id is not UTF-8")?,
            UserIdKind::String,
        ),
        Term::Int(v) => (v.to_string(), UserIdKind::Integer),
        Term::Big(v) => (v.to_string(), UserIdKind::Integer),
        _ => return Err("user_id is neither a binary nor an integer"),
    })
}

/// The JSON view of `extra_payload`, and the term itself.
fn extra_payload(value: Term) -> Result<(serde_json::Map<String, Value>, Term), &'static str> {
    match view(&value) {
        Value::Object(view) if matches!(value, Term::Map(_)) => Ok((view, value)),
        _ => Err("extra_payload is not a map"),
    }
}

/// The JSON view of a term (module docs).
fn view(term: &Term) -> Value {
    match term {
        Term::Atom(a) => match a.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "nil" => Value::Null,
            _ => Value::String(a.clone()),
        },
        Term::Int(v) => Value::from(*v),
        Term::Big(v) => u64::try_from(v).map_or_else(|_| Value::String(v.to_string()), Value::from),
        Term::Float(v) => Number::from_f64(*v).map_or(Value::Null, Value::Number),
        Term::Binary(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Value::String(text.to_owned()),
            Err(_) => bytes_view(bytes),
        },
        Term::Bits(bytes, _) => bytes_view(bytes),
        Term::List(elements, tail) => {
            Value::Array(elements.iter().chain(tail.as_deref()).map(view).collect())
        }
        Term::Tuple(elements) => Value::Array(elements.iter().map(view).collect()),
        Term::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (key_name(k), view(v)))
                .collect(),
        ),
        Term::Opaque(kind, _) => Value::String(
            match kind {
                etf::Opaque::Pid => "#PID",
                etf::Opaque::Port => "#Port",
                etf::Opaque::Reference => "#Reference",
                etf::Opaque::Fun => "#Function",
            }
            .to_owned(),
        ),
    }
}

fn bytes_view(bytes: &[u8]) -> Value {
    Value::Array(bytes.iter().map(|&b| Value::from(b)).collect())
}

/// The JSON object key a map key shows as.
fn key_name(key: &Term) -> String {
    match view(key) {
        Value::String(name) => name,
        other => other.to_string(),
    }
}

/// Encodes `session` in Charon's format with lock version `lock`: the bytes
/// `term_to_binary(Session, [{minor_version, 2}])` gives for the struct
/// Charon builds.
///
/// # Errors
///
/// [`StoreError::InvalidInput`] for a value that cannot be represented.
pub(super) fn encode_with_lock(
    session: &Session,
    lock: u64,
    map_keys: MapKeys,
) -> Result<Vec<u8>, StoreError> {
    let user_id = match session.user_id_kind {
        UserIdKind::String => Term::Binary(session.user_id.clone().into_bytes()),
        UserIdKind::Integer => Term::integer(session.user_id.parse::<BigInt>().map_err(|_| {
            StoreError::InvalidInput("user_id of kind Integer is not an integer".to_owned())
        })?),
    };
    let old = session.charon_terms.extra_payload.as_deref();
    let payload = Value::Object(session.extra_payload.clone());
    let extra_payload = term_of(&payload, old, map_keys, 0, "extra_payload")?;
    let time = |t: i64| Term::Int(t);
    let mut entries = vec![
        (Term::atom("__struct__"), Term::atom(STRUCT)),
        (Term::atom("created_at"), time(session.created_at)),
        (
            Term::atom("expires_at"),
            session
                .expires_at
                .map_or_else(|| Term::atom("infinite"), time),
        ),
        (Term::atom("extra_payload"), extra_payload),
        (
            Term::atom("id"),
            Term::Binary(session.id.clone().into_bytes()),
        ),
        (
            Term::atom("lock_version"),
            Term::integer(BigInt::from(lock)),
        ),
        (
            Term::atom("prev_tokens_fresh_from"),
            time(session.prev_tokens_fresh_from),
        ),
        (
            Term::atom("refresh_expires_at"),
            time(session.refresh_expires_at),
        ),
        (
            Term::atom("refresh_token_id"),
            Term::Binary(session.refresh_token_id.clone().into_bytes()),
        ),
        (Term::atom("refreshed_at"), time(session.refreshed_at)),
        (
            Term::atom("tokens_fresh_from"),
            time(session.tokens_fresh_from),
        ),
        (Term::atom("type"), Term::atom(&session.session_type)),
        (Term::atom("user_id"), user_id),
        (Term::atom("version"), Term::Int(i64::from(SESSION_VERSION))),
    ];
    etf::sort_map(&mut entries);
    Ok(etf::encode(&Term::Map(entries)))
}

/// The term to write for `value`: `old` itself where its view is `value`,
/// else `value` mapped, keeping the types of `old` where it can (module
/// docs). `path` names the value in errors.
fn term_of(
    value: &Value,
    old: Option<&Term>,
    map_keys: MapKeys,
    depth: usize,
    path: &str,
) -> Result<Term, StoreError> {
    if let Some(old) = old
        && view(old) == *value
    {
        return Ok(old.clone());
    }
    if depth > MAX_DEPTH {
        return Err(StoreError::InvalidInput(format!(
            "{} nests deeper than {MAX_DEPTH} levels, which Charon's format does not read",
            short(path)
        )));
    }
    let nested = |v: &Value, o: Option<&Term>, p: &str| term_of(v, o, map_keys, depth + 1, p);
    Ok(match (value, old) {
        (Value::Null, _) => Term::atom("nil"),
        (Value::Bool(b), _) => Term::atom(if *b { "true" } else { "false" }),
        (Value::Number(n), _) => {
            if let Some(v) = n.as_i64() {
                Term::Int(v)
            } else if let Some(v) = n.as_u64() {
                Term::integer(BigInt::from(v))
            } else {
                // serde_json numbers are i64, u64 or finite f64.
                Term::Float(n.as_f64().unwrap_or_default())
            }
        }
        (Value::String(s), Some(Term::Atom(_))) if s.chars().count() <= MAX_ATOM_CHARS => {
            Term::Atom(s.clone())
        }
        (Value::String(s), _) => Term::Binary(s.clone().into_bytes()),
        (Value::Array(items), Some(Term::Tuple(old_items))) if items.len() == old_items.len() => {
            Term::Tuple(
                items
                    .iter()
                    .zip(old_items)
                    .map(|(v, o)| nested(v, Some(o), path))
                    .collect::<Result<_, _>>()?,
            )
        }
        (Value::Array(items), old) => {
            let old_items = match old {
                Some(Term::List(old_items, None)) => old_items.as_slice(),
                _ => &[],
            };
            Term::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| nested(v, old_items.get(i), path))
                    .collect::<Result<_, _>>()?,
                None,
            )
        }
        (Value::Object(object), old) => {
            let old_entries = match old {
                Some(Term::Map(entries)) => entries.as_slice(),
                _ => &[],
            };
            let mut entries = Vec::with_capacity(object.len());
            for (name, v) in object {
                let inner = format!("{path}.{name}");
                let old_entry = old_entries.iter().find(|(k, _)| key_name(k) == *name);
                let key = match (old_entry, map_keys) {
                    (Some((key, _)), _) => key.clone(),
                    (None, MapKeys::Binaries) => Term::Binary(name.clone().into_bytes()),
                    (None, MapKeys::Atoms) if name.chars().count() <= MAX_ATOM_CHARS => {
                        Term::Atom(name.clone())
                    }
                    (None, MapKeys::Atoms) => {
                        return Err(StoreError::InvalidInput(format!(
                            "{} is a key longer than {MAX_ATOM_CHARS} characters, Erlang's limit for an atom (MapKeys::Atoms)",
                            short(&inner)
                        )));
                    }
                };
                entries.push((key, nested(v, old_entry.map(|(_, o)| o), &inner)?));
            }
            etf::sort_map(&mut entries);
            Term::Map(entries)
        }
    })
}

/// A path for an error message, cut to a readable length.
fn short(path: &str) -> String {
    match path.char_indices().nth(80) {
        Some((end, _)) => format!("{}…", &path[..end]),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn unhex(text: &str) -> Vec<u8> {
        hex::decode(text).unwrap()
    }

    fn sample() -> Session {
        let mut s = Session::new_login_at("alice", 1_700_000_000, Duration::from_secs(60));
        s.extra_payload.insert("ip".into(), json!("::1"));
        s.extra_payload
            .insert("n".into(), json!([1, 2.5, null, true]));
        s
    }

    #[test]
    fn round_trip_with_the_new_lock_version() {
        let s = sample();
        let bytes = encode_with_lock(&s, 4, MapKeys::Binaries).unwrap();
        assert_eq!(bytes[0], 131);
        let back = decode(&bytes).unwrap();
        assert_eq!(
            back,
            Session {
                lock_version: 4,
                ..s.clone()
            }
        );
        // Written again unchanged: the same bytes.
        assert_eq!(encode_with_lock(&back, 4, MapKeys::Atoms).unwrap(), bytes);
        let mut infinite = s.clone();
        infinite.expires_at = Some(1_700_009_999);
        let back = decode(&encode_with_lock(&infinite, 1, MapKeys::Binaries).unwrap()).unwrap();
        assert_eq!(back.expires_at, Some(1_700_009_999));
    }

    #[test]
    fn integer_user_ids_stay_integers() {
        let mut s = sample();
        s.user_id = "42".into();
        s.user_id_kind = UserIdKind::Integer;
        let bytes = encode_with_lock(&s, 1, MapKeys::Binaries).unwrap();
        // ... 0x77 07 "user_id" 0x61 42 (SMALL_INTEGER_EXT) ...
        let user_id = [&[0x77, 7][..], b"user_id", &[0x61, 42]].concat();
        assert!(bytes.windows(user_id.len()).any(|w| w == user_id));
        let back = decode(&bytes).unwrap();
        assert_eq!(
            (back.user_id.as_str(), back.user_id_kind),
            ("42", UserIdKind::Integer)
        );
        s.user_id = "123456789012345678901234567890".into();
        let back = decode(&encode_with_lock(&s, 1, MapKeys::Binaries).unwrap()).unwrap();
        assert_eq!(back.user_id, s.user_id);
    }

    #[test]
    fn unchanged_values_keep_their_terms_and_changed_ones_their_types() {
        // extra_payload = %{role: :admin, "at" => {1, 2}, tags: [:a],
        //                   meta: %{"k" => <<255>>}}, with atom and binary keys.
        let mut entries = vec![
            (Term::atom("role"), Term::atom("admin")),
            (
                Term::Binary(b"at".to_vec()),
                Term::Tuple(vec![Term::Int(1), Term::Int(2)]),
            ),
            (Term::atom("tags"), Term::List(vec![Term::atom("a")], None)),
            (
                Term::atom("meta"),
                Term::Map(vec![(Term::Binary(b"k".to_vec()), Term::Binary(vec![255]))]),
            ),
        ];
        // In term order, as decoding gives a map.
        etf::sort_map(&mut entries);
        let old = Term::Map(entries);
        let mut s = sample();
        let Value::Object(view) = view(&old) else {
            unreachable!()
        };
        assert_eq!(
            Value::Object(view.clone()),
            json!({"role": "admin", "at": [1, 2], "tags": ["a"], "meta": {"k": [255]}})
        );
        s.extra_payload = view;
        s.charon_terms.extra_payload = Some(Arc::new(old.clone()));
        let kept = |s: &Session| {
            let bytes = encode_with_lock(s, 1, MapKeys::Binaries).unwrap();
            decode(&bytes).unwrap().charon_terms.extra_payload.unwrap()
        };
        // Untouched: the very terms.
        assert_eq!(*kept(&s), old);
        // Changed: a string for an atom is an atom, an array for a tuple of
        // the same length a tuple, a new key binary, old keys keep their type.
        s.extra_payload.insert("role".into(), json!("user"));
        s.extra_payload.insert("at".into(), json!([3, 4]));
        s.extra_payload.insert("new".into(), json!({"x": 1}));
        let Term::Map(entries) = &*kept(&s) else {
            panic!()
        };
        let get = |name: &str| {
            entries
                .iter()
                .find(|(k, _)| key_name(k) == name)
                .unwrap()
                .clone()
        };
        assert_eq!(get("role"), (Term::atom("role"), Term::atom("user")));
        assert_eq!(
            get("at"),
            (
                Term::Binary(b"at".to_vec()),
                Term::Tuple(vec![Term::Int(3), Term::Int(4)])
            )
        );
        assert_eq!(
            get("meta").1,
            Term::Map(vec![(Term::Binary(b"k".to_vec()), Term::Binary(vec![255]))])
        );
        assert_eq!(
            get("new"),
            (
                Term::Binary(b"new".to_vec()),
                Term::Map(vec![(Term::Binary(b"x".to_vec()), Term::Int(1))])
            )
        );
        // With MapKeys::Atoms new keys are atoms.
        let bytes = encode_with_lock(&s, 1, MapKeys::Atoms).unwrap();
        let back = decode(&bytes).unwrap();
        let Term::Map(entries) = &*back.charon_terms.extra_payload.unwrap() else {
            panic!()
        };
        let new = entries.iter().find(|(k, _)| key_name(k) == "new").unwrap();
        assert_eq!(new.0, Term::atom("new"));
        assert_eq!(new.1, Term::Map(vec![(Term::atom("x"), Term::Int(1))]));
    }

    #[test]
    fn unrepresentable_values_are_named() {
        let refused = |key: &str, value: Value, map_keys: MapKeys| {
            let mut s = sample();
            s.extra_payload.insert(key.to_owned(), value);
            encode_with_lock(&s, 1, map_keys).map_err(|e| e.to_string())
        };
        let long = "k".repeat(256);
        let err = refused(&long, json!(1), MapKeys::Atoms).unwrap_err();
        assert!(
            err.contains("extra_payload.kkk") && err.contains("255"),
            "{err}"
        );
        assert!(refused(&long, json!(1), MapKeys::Binaries).is_ok());
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!({ "d": deep });
        }
        let err = refused("deep", deep, MapKeys::Binaries).unwrap_err();
        assert!(
            err.contains("extra_payload.deep.d") && err.contains("deeper"),
            "{err}"
        );
    }

    #[test]
    fn foreign_or_malformed_structs_are_refused() {
        let good = encode_with_lock(&sample(), 1, MapKeys::Binaries).unwrap();
        let Term::Map(entries) = etf::decode(&good).unwrap() else {
            panic!()
        };
        type Edit = dyn Fn(&mut Vec<(Term, Term)>);
        let with = |edit: &Edit| {
            let mut e = entries.clone();
            edit(&mut e);
            decode(&etf::encode(&Term::Map(e))).unwrap_err().to_string()
        };
        let set = |name: &'static str, value: Term| {
            move |e: &mut Vec<(Term, Term)>| {
                e.iter_mut()
                    .find(|(k, _)| *k == Term::atom(name))
                    .unwrap()
                    .1 = value.clone();
            }
        };
        for (edit, reason) in [
            (
                Box::new(set("__struct__", Term::atom("Elixir.Other"))) as Box<Edit>,
                "__struct__",
            ),
            (Box::new(set("version", Term::Int(6))), "version"),
            (Box::new(set("lock_version", Term::Int(-1))), "lock_version"),
            (
                Box::new(set("type", Term::Binary(b"full".to_vec()))),
                "type",
            ),
            (Box::new(set("user_id", Term::Float(1.0))), "user_id"),
            (Box::new(set("extra_payload", Term::nil())), "extra_payload"),
            (
                Box::new(set("created_at", Term::integer(BigInt::from(u64::MAX)))),
                "64-bit",
            ),
            (
                Box::new(|e: &mut Vec<(Term, Term)>| {
                    e.retain(|(k, _)| *k != Term::atom("refresh_token_id"))
                }),
                "missing",
            ),
            (
                Box::new(|e: &mut Vec<(Term, Term)>| e.push((Term::atom("extra"), Term::Int(1)))),
                "does not have",
            ),
        ] {
            let err = with(&*edit);
            assert!(err.contains(reason), "{reason}: {err}");
        }
        assert!(decode(&unhex("836A")).is_err());
    }
}
