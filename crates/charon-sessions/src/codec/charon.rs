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
//! keys are the atom's own name (`nil` as `"nil"`), the binary, or the
//! integer's digits (other keys: the JSON text of their view); other
//! binaries are arrays of their bytes, and pids, ports, references and funs
//! strings such as `"#PID"`. Keys that show as the same name (`:a` and
//! `"a"`) show once, with the value of the last in Erlang's term order.
//! The Erlang terms themselves are kept inside the [`Session`] read, and
//! written back as they were read wherever the view was not changed: a
//! refresh from Rust returns Charon's `extra_payload` `=:=` equal.
//!
//! Where the application sets a value, it becomes: `null` → `nil`,
//! booleans → `true`/`false`, integers → integers, other numbers → floats,
//! strings → binaries, arrays → lists, objects → maps with binary keys
//! (`%{"ip" => …}`), or atom keys (`%{ip: …}`) with [`MapKeys::Atoms`]. A
//! changed value keeps the Erlang type of the one it replaces where it
//! reads back the same: a string that replaces an atom is an atom (but
//! `"true"`, `"false"` and `"nil"` are binaries, which read back as
//! strings), an array that replaces a tuple of the same length a tuple, an
//! array of bytes that replaces a binary (or bit string) a binary (which
//! reads back as a string when the bytes are UTF-8). In a map that was
//! changed, each key keeps its term; where several keys show as one name,
//! the one shown takes the application's value and the others are kept
//! as they were (all go when the application removes the name). Values
//! that cannot be represented or would not read back are
//! [`EncodeError`] naming them, before anything is sent: an
//! atom key longer than 255 characters, nesting deeper than
//! [`MAX_TERM_DEPTH`](super::MAX_TERM_DEPTH) levels counted as decoding counts them (the session
//! struct is level 0, `extra_payload` level 1). A payload larger than
//! [`MAX_TERM_BYTES`](super::MAX_TERM_BYTES), which decoding refuses, is
//! refused by the stores ([`stored::seal`](crate::stored::seal)).
//!
//! The bytes are those Erlang/OTP 25 writes with `term_to_binary(Session,
//! [{minor_version, 2}])` (atoms as `SMALL_ATOM_UTF8_EXT`, map keys in
//! Erlang's term order), and `=:=` equal to what Charon writes on any OTP
//! release. They are not Charon's own bytes: Charon calls
//! `term_to_binary/1`, which on OTP 25 writes atoms as `ATOM_EXT`, and OTP
//! 26 and later write the atom keys of small maps in the order of their
//! runtime's atom table, which differs between runtimes. Maps of more than
//! 32 keys are written in term order too (Erlang writes those in hash
//! order; they read back equal).
//!
//! Reading refuses ([`DecodeError::Charon`]) a term that is not this struct
//! (another `__struct__`, a missing or unknown field, a field of the wrong
//! type) or of a record version other than 7.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use num_bigint::BigInt;
use serde_json::{Number, Value};

use super::format::{DecodeError, EncodeError, MapKeys};
use crate::etf::{self, MAX_ATOM_CHARS, MAX_DEPTH, Term};
use crate::session::{CharonTerms, Session, UserIdKind};

/// The struct's module, the value of its `__struct__` key.
const STRUCT: &str = "Elixir.Charon.Models.Session";

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
            Term::Big(_) => return Err("lock_version beyond the 64-bit range"),
            _ => return Err("lock_version is not an integer"),
        },
        extra_payload,
        version: Session::VERSION,
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
                .map(|(k, v)| (key_name(k).into_owned(), view(v)))
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

/// The JSON object key a map key shows as: an atom's or a UTF-8 binary's
/// own text (so the atom `nil` is `"nil"`, not `"null"`), an integer's
/// digits, else the JSON text of the key's view.
fn key_name(key: &Term) -> Cow<'_, str> {
    match key {
        Term::Atom(name) => Cow::Borrowed(name),
        Term::Binary(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => Cow::Owned(bytes_view(bytes).to_string()),
        },
        Term::Int(v) => Cow::Owned(v.to_string()),
        other => match view(other) {
            Value::String(text) => Cow::Owned(text),
            view => Cow::Owned(view.to_string()),
        },
    }
}

/// Encodes `session` in Charon's format with lock version `lock`: the bytes
/// Erlang/OTP 25 writes with `term_to_binary(Session, [{minor_version, 2}])`
/// for the struct Charon builds, `=:=` equal to what Charon writes on any
/// OTP release.
///
/// # Errors
///
/// [`EncodeError`] for a value that cannot be represented, or
/// that Charon's format would not read back (named in the message).
pub(super) fn encode_with_lock(
    session: &Session,
    lock: u64,
    map_keys: MapKeys,
) -> Result<Vec<u8>, EncodeError> {
    let user_id = match session.user_id_kind {
        UserIdKind::String => Term::Binary(session.user_id.clone().into_bytes()),
        UserIdKind::Integer => Term::integer(
            session
                .user_id
                .parse::<BigInt>()
                .map_err(|_| EncodeError("user_id of kind Integer is not an integer".to_owned()))?,
        ),
    };
    let old = session.charon_terms.extra_payload.as_deref();
    let old_entries = match old {
        Some(Term::Map(entries)) => Some(entries.as_slice()),
        _ => None,
    };
    let extra_payload = match object_term(
        &session.extra_payload,
        old_entries,
        map_keys,
        1,
        &Path::Root("extra_payload"),
    )? {
        Made::Kept => old.cloned().unwrap_or_else(|| Term::Map(Vec::new())),
        Made::New(term) => term,
    };
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
        (
            Term::atom("version"),
            Term::Int(i64::from(Session::VERSION)),
        ),
    ];
    etf::sort_map(&mut entries);
    Ok(etf::encode(&Term::Map(entries)))
}

/// What [`term_of`] made of a value.
enum Made {
    /// The old term is the value: write it as it is.
    Kept,
    /// A new term for a changed (or new) value.
    New(Term),
}

impl Made {
    /// The term to write: `old` when kept.
    fn into_term(self, old: Option<&Term>) -> Term {
        match (self, old) {
            (Made::New(term), _) => term,
            (Made::Kept, Some(old)) => old.clone(),
            (Made::Kept, None) => unreachable!("a value is only kept where there is an old term"),
        }
    }
}

/// Where a value sits in `extra_payload`, for error messages; rendered only
/// when one is needed.
enum Path<'a> {
    Root(&'static str),
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(name) => f.write_str(name),
            Path::Key(parent, name) => write!(f, "{parent}.{name}"),
            // Array elements are named by the array's path.
            Path::Index(parent) => write!(f, "{parent}"),
        }
    }
}

/// Refuses a new term at `depth` (the session struct is depth 0,
/// `extra_payload` 1) beyond what decoding accepts: a term nested deeper
/// than [`MAX_DEPTH`].
fn check_depth(depth: usize, path: &Path<'_>) -> Result<(), EncodeError> {
    if depth > MAX_DEPTH {
        return Err(EncodeError(format!(
            "{} nests deeper than {MAX_DEPTH} levels (MAX_TERM_DEPTH, counted from the session \
             struct, extra_payload being level 1), which Charon's format does not read",
            short(&path.to_string())
        )));
    }
    Ok(())
}

/// The term to write for `value` at `depth`: [`Made::Kept`] where `old` is
/// there and its view is `value`, else `value` mapped, keeping the types of
/// `old` where it can (module docs). Time linear in the size of `value`
/// and `old`.
fn term_of(
    value: &Value,
    old: Option<&Term>,
    map_keys: MapKeys,
    depth: usize,
    path: &Path<'_>,
) -> Result<Made, EncodeError> {
    // No term read in Charon's format sits deeper, kept or not: refused
    // here, before recursing into whatever nesting `value` has.
    check_depth(depth, path)?;
    match (value, old) {
        (Value::Object(object), old) => {
            let old_entries = match old {
                Some(Term::Map(entries)) => Some(entries.as_slice()),
                _ => None,
            };
            object_term(object, old_entries, map_keys, depth, path)
        }
        (Value::Array(items), Some(Term::Tuple(old_items))) if items.len() == old_items.len() => {
            Ok(match elements(items, old_items, map_keys, depth, path)? {
                None => Made::Kept,
                Some(terms) => Made::New(Term::Tuple(terms)),
            })
        }
        (Value::Array(items), Some(Term::List(old_items, None))) => {
            Ok(match elements(items, old_items, map_keys, depth, path)? {
                None => Made::Kept,
                Some(terms) => Made::New(Term::List(terms, None)),
            })
        }
        // Maps, tuples and proper lists have views only of their own
        // kind, handled above: anything else replacing one is a change.
        (_, Some(Term::Map(_) | Term::Tuple(_) | Term::List(_, None))) | (_, None) => {
            new_term(value, old, map_keys, depth, path).map(Made::New)
        }
        (_, Some(leaf)) if view(leaf) == *value => Ok(Made::Kept),
        (_, old) => new_term(value, old, map_keys, depth, path).map(Made::New),
    }
}

/// The elements of an array replacing the tuple or proper list
/// `old_items` (element by element, by index): `None` when the length is
/// the same and every element is kept.
fn elements(
    items: &[Value],
    old_items: &[Term],
    map_keys: MapKeys,
    depth: usize,
    path: &Path<'_>,
) -> Result<Option<Vec<Term>>, EncodeError> {
    let inner = Path::Index(path);
    let made = items
        .iter()
        .enumerate()
        .map(|(i, v)| term_of(v, old_items.get(i), map_keys, depth + 1, &inner))
        .collect::<Result<Vec<_>, _>>()?;
    if items.len() == old_items.len() && made.iter().all(|m| matches!(m, Made::Kept)) {
        return Ok(None);
    }
    check_depth(depth, path)?;
    Ok(Some(
        made.into_iter()
            .enumerate()
            .map(|(i, m)| m.into_term(old_items.get(i)))
            .collect(),
    ))
}

/// The map to write for `object`, replacing the map `old` (when there is
/// one): each name's entry keeps the key, and whatever the application did
/// not change, of the old entry the view shows under that name. Where
/// several old keys show as one name (`:a` and `"a"`), the view shows the
/// last one; the others are kept as they were, unless the name is gone
/// from `object`.
fn object_term(
    object: &serde_json::Map<String, Value>,
    old: Option<&[(Term, Term)]>,
    map_keys: MapKeys,
    depth: usize,
    path: &Path<'_>,
) -> Result<Made, EncodeError> {
    // Name -> the old entry the view shows (the last of that name).
    let mut shown: HashMap<Cow<'_, str>, usize> = HashMap::with_capacity(old.map_or(0, <[_]>::len));
    for (i, (key, _)) in old.unwrap_or_default().iter().enumerate() {
        shown.insert(key_name(key), i);
    }
    // Unchanged: every name there, each value kept (and so, by the rule
    // above, every hidden entry too).
    let mut unchanged = old.is_some() && object.len() == shown.len();
    let mut made = Vec::with_capacity(object.len());
    for (name, v) in object {
        let at = shown.get(name.as_str()).copied();
        let old_value = at.and_then(|i| old.map(|old| &old[i].1));
        let m = term_of(v, old_value, map_keys, depth + 1, &Path::Key(path, name))?;
        unchanged &= matches!(m, Made::Kept);
        made.push((at, name, m));
    }
    if unchanged {
        return Ok(Made::Kept);
    }
    let old = old.unwrap_or_default();
    check_depth(depth, path)?;
    let mut entries = Vec::with_capacity(made.len() + old.len() - shown.len());
    // Old entries hidden behind another of the same name, while the name
    // is still there.
    for (i, (key, value)) in old.iter().enumerate() {
        let name = key_name(key);
        if shown[&name] != i && object.contains_key(&*name) {
            entries.push((key.clone(), value.clone()));
        }
    }
    for (at, name, m) in made {
        let entry = match at {
            Some(i) => (old[i].0.clone(), m.into_term(Some(&old[i].1))),
            None => (
                new_key(name, map_keys, &Path::Key(path, name))?,
                m.into_term(None),
            ),
        };
        entries.push(entry);
    }
    etf::sort_map(&mut entries);
    if entries
        .windows(2)
        .any(|pair| etf::compare(&pair[0].0, &pair[1].0).is_eq())
    {
        // Unreachable as keys are built (a new name has no old key of that
        // text), refused rather than written unreadable.
        return Err(EncodeError(format!(
            "{} would hold one key twice",
            short(&path.to_string())
        )));
    }
    Ok(Made::New(Term::Map(entries)))
}

/// The key of a map entry the application added: a binary, or an atom with
/// [`MapKeys::Atoms`].
fn new_key(name: &str, map_keys: MapKeys, path: &Path<'_>) -> Result<Term, EncodeError> {
    match map_keys {
        MapKeys::Binaries => Ok(Term::Binary(name.as_bytes().to_vec())),
        MapKeys::Atoms if name.chars().count() <= MAX_ATOM_CHARS => Ok(Term::atom(name)),
        MapKeys::Atoms => Err(EncodeError(format!(
            "{} is a key longer than {MAX_ATOM_CHARS} characters, Erlang's limit for an atom \
             (MapKeys::Atoms)",
            short(&path.to_string())
        ))),
    }
}

/// A new term for `value`, which replaces `old` (when there is one).
fn new_term(
    value: &Value,
    old: Option<&Term>,
    map_keys: MapKeys,
    depth: usize,
    path: &Path<'_>,
) -> Result<Term, EncodeError> {
    check_depth(depth, path)?;
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
        // A string replacing an atom stays an atom, unless it would read
        // back as something else (a boolean or null).
        (Value::String(s), Some(Term::Atom(_)))
            if s.chars().count() <= MAX_ATOM_CHARS
                && !matches!(s.as_str(), "true" | "false" | "nil") =>
        {
            Term::Atom(s.clone())
        }
        (Value::String(s), _) => Term::Binary(s.clone().into_bytes()),
        (Value::Object(_), _) => unreachable!("term_of maps objects"),
        // Bytes replacing a binary (shown as an array of its bytes: not
        // UTF-8) or a bit string stay a binary.
        (Value::Array(items), Some(Term::Binary(_) | Term::Bits(..)))
            if items.iter().all(|v| v.as_u64().is_some_and(|b| b <= 255)) =>
        {
            Term::Binary(
                items
                    .iter()
                    .filter_map(|v| v.as_u64().map(|b| b as u8))
                    .collect(),
            )
        }
        // Anything that reaches here replaces no tuple or list it could
        // follow element by element (term_of does that).
        (Value::Array(items), _) => {
            let inner = Path::Index(path);
            let terms = items
                .iter()
                .map(|v| term_of(v, None, map_keys, depth + 1, &inner).map(|m| m.into_term(None)))
                .collect::<Result<Vec<_>, _>>()?;
            Term::List(terms, None)
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
        // 1 000 levels (serde_json drops a value recursively, so much
        // deeper ones cannot even be dropped on a test thread): refused at
        // the limit, without recursing through the rest.
        for array in [true, false] {
            let mut deeper = json!(1);
            for _ in 0..1_000 {
                deeper = if array {
                    Value::Array(vec![deeper])
                } else {
                    Value::Object([("d".to_owned(), deeper)].into_iter().collect())
                };
            }
            let err = refused("deeper", deeper, MapKeys::Binaries).unwrap_err();
            assert!(err.contains("deeper than 128"), "{err}");
        }
    }

    /// A session read in Charon's format whose `extra_payload` is `old`
    /// (its entries put in term order, as decoding gives them).
    fn read_with(mut entries: Vec<(Term, Term)>) -> Session {
        etf::sort_map(&mut entries);
        let mut s = sample();
        s.extra_payload.clear();
        s.charon_terms.extra_payload = Some(Arc::new(Term::Map(Vec::new())));
        let mut bytes = encode_with_lock(&s, 1, MapKeys::Binaries).unwrap();
        // Replace the empty extra_payload map with `entries`.
        let empty = [&[0x77, 13][..], b"extra_payload", &[116, 0, 0, 0, 0]].concat();
        let at = bytes.windows(empty.len()).position(|w| w == empty).unwrap();
        let map = etf::encode(&Term::Map(entries));
        bytes.splice(
            at + empty.len() - 5..at + empty.len(),
            map[1..].iter().copied(),
        );
        decode(&bytes).unwrap()
    }

    /// The `extra_payload` term `s` is written with.
    fn written(s: &Session, map_keys: MapKeys) -> Term {
        let bytes = encode_with_lock(s, 1, map_keys).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(back.extra_payload, s.extra_payload, "reads back as set");
        (*back.charon_terms.extra_payload.unwrap()).clone()
    }

    fn map(entries: Vec<(Term, Term)>) -> Term {
        let mut entries = entries;
        etf::sort_map(&mut entries);
        Term::Map(entries)
    }

    fn bin(text: &str) -> Term {
        Term::Binary(text.as_bytes().to_vec())
    }

    /// Map keys show as their own names (the atom `nil` as "nil", not
    /// "null"), and when a map is rebuilt the keys keep their terms:
    /// `%{:a => 1, "a" => 2, other: 3}`, of which the view shows one "a",
    /// keeps both "a" entries when only `other` changes, and changing "a"
    /// changes the one the view shows.
    #[test]
    fn changed_maps_keep_their_keys() {
        let mut s = sample();
        s.extra_payload = json!({"nil": 1, "true": 2, "x": null})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(
            written(&s, MapKeys::Atoms),
            map(vec![
                (Term::atom("nil"), Term::Int(1)),
                (Term::atom("true"), Term::Int(2)),
                (Term::atom("x"), Term::atom("nil")),
            ])
        );
        let mut s = read_with(vec![
            (Term::atom("a"), Term::Int(1)),
            (bin("a"), Term::Int(2)),
            (Term::atom("other"), Term::Int(3)),
            (Term::atom("nil"), Term::Int(4)),
        ]);
        // The view: one "a" (the binary, last in term order), "nil" as is.
        assert_eq!(
            Value::Object(s.extra_payload.clone()),
            json!({"a": 2, "other": 3, "nil": 4})
        );
        s.extra_payload.insert("other".into(), json!(5));
        let expected = |a: i64, other: i64| {
            map(vec![
                (Term::atom("a"), Term::Int(1)),
                (bin("a"), Term::Int(a)),
                (Term::atom("other"), Term::Int(other)),
                (Term::atom("nil"), Term::Int(4)),
            ])
        };
        assert_eq!(written(&s, MapKeys::Binaries), expected(2, 5));
        s.extra_payload.insert("a".into(), json!(6));
        assert_eq!(written(&s, MapKeys::Atoms), expected(6, 5));
        // Removing the name removes every key of that name.
        s.extra_payload.remove("a");
        assert_eq!(
            written(&s, MapKeys::Binaries),
            map(vec![
                (Term::atom("other"), Term::Int(5)),
                (Term::atom("nil"), Term::Int(4)),
            ])
        );
    }

    /// A changed string replacing an atom is an atom, unless it would read
    /// back as a boolean or null ("true", "false", "nil" stay binaries);
    /// bytes replacing a binary that is not UTF-8 stay a binary.
    #[test]
    fn changed_values_read_back_as_set() {
        let mut s = read_with(vec![
            (Term::atom("role"), Term::atom("admin")),
            (Term::atom("b"), Term::atom("x")),
            (Term::atom("c"), Term::atom("x")),
            (Term::atom("n"), Term::atom("x")),
            (Term::atom("raw"), Term::Binary(vec![255, 0, 1])),
        ]);
        assert_eq!(s.extra_payload["raw"], json!([255, 0, 1]));
        for (name, value) in [
            ("role", json!("user")),
            ("b", json!("true")),
            ("c", json!("false")),
            ("n", json!("nil")),
            ("raw", json!([1, 2, 255])),
        ] {
            s.extra_payload.insert(name.into(), value);
        }
        assert_eq!(
            written(&s, MapKeys::Binaries),
            map(vec![
                (Term::atom("role"), Term::atom("user")),
                (Term::atom("b"), bin("true")),
                (Term::atom("c"), bin("false")),
                (Term::atom("n"), bin("nil")),
                (Term::atom("raw"), Term::Binary(vec![1, 2, 255])),
            ])
        );
    }

    /// Nesting is counted as decoding counts it (the session struct is
    /// level 0, `extra_payload` 1): a leaf at level MAX_DEPTH is written
    /// and reads back, one level deeper is refused naming the limit.
    #[test]
    fn depth_limit_is_the_decoders() {
        // extra_payload = {"d": {"d": ... {"d": 1}}} with `maps` maps
        // inside it: the leaf is at level maps + 2.
        let nested = |maps: usize| {
            let mut value = json!(1);
            for _ in 0..maps {
                value = json!({ "d": value });
            }
            let mut s = sample();
            s.extra_payload.clear();
            s.extra_payload.insert("d".into(), value);
            s
        };
        let deepest = nested(MAX_DEPTH - 2);
        let bytes = encode_with_lock(&deepest, 1, MapKeys::Binaries).unwrap();
        assert_eq!(decode(&bytes).unwrap().extra_payload, deepest.extra_payload);
        let err = encode_with_lock(&nested(MAX_DEPTH - 1), 1, MapKeys::Binaries)
            .unwrap_err()
            .to_string();
        assert!(err.contains("deeper than 128"), "{err}");
        // The same maps as Erlang writes them one level deeper do not decode.
        let mut too_deep = bytes.clone();
        let leaf = [109, 0, 0, 0, 1, b'd', 0x61, 1];
        let at = too_deep.windows(8).position(|w| w == leaf).unwrap();
        too_deep.splice(
            at + 6..at + 8,
            [116, 0, 0, 0, 1, 109, 0, 0, 0, 1, b'd', 0x61, 1],
        );
        assert!(decode(&too_deep).is_err());
    }

    /// After one change in a map of 20 000 keys read from Charon, the
    /// session encodes in time linear in its size (a key looked up by a
    /// scan building every key's name would make it quadratic).
    #[test]
    fn one_change_in_a_large_map_encodes_quickly() {
        let entries = (0..20_000)
            .map(|i| (Term::atom(&format!("key{i}")), Term::Int(i)))
            .collect();
        let mut s = read_with(entries);
        s.extra_payload.insert("key7".into(), json!("changed"));
        let started = std::time::Instant::now();
        let bytes = encode_with_lock(&s, 1, MapKeys::Binaries).unwrap();
        let took = started.elapsed();
        assert!(took.as_secs_f64() < 1.0, "{took:?}");
        let back = decode(&bytes).unwrap();
        assert_eq!(back.extra_payload.len(), 20_000);
        assert_eq!(back.extra_payload["key7"], json!("changed"));
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
                Box::new(set(
                    "lock_version",
                    Term::integer(BigInt::from(u64::MAX) + 1),
                )),
                "lock_version beyond the 64-bit range",
            ),
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
