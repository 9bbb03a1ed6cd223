//! The compact format: [`FORMAT_MSGPACK`], then the session's fields as a
//! positional MessagePack record (slot order and forward-compatibility
//! rules in the [`codec`](crate::codec) documentation).

use std::fmt;

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::format::{DecodeError, EncodeError, FORMAT_MSGPACK};
use crate::session::{Session, UserIdKind};

/// Slots of the positional record this version writes (the last,
/// `user_id_kind`, only when it is not the default).
const SLOTS: usize = 14;

/// Deepest nesting of containers a payload may have, as serde_json's
/// default recursion limit: deeper `extra_payload` values are refused
/// instead of exhausting the stack.
const MAX_DEPTH: usize = 128;

/// Deepest nesting of containers in `extra_payload` (itself level 1) that
/// a compact record of it decodes with: [`MAX_DEPTH`] less the record's
/// array and one level the decoder takes for the value it is in. Upserts
/// refuse deeper ones, which no read would return.
pub(crate) const MAX_COMPACT_PAYLOAD_DEPTH: usize = MAX_DEPTH - 2;

/// Whether `payload`, counted as level 1, holds arrays or objects nested
/// deeper than `limit` levels. Walks with a stack of its own, so any depth
/// is measured without recursion.
fn nests_deeper_than(payload: &serde_json::Map<String, serde_json::Value>, limit: usize) -> bool {
    use serde_json::Value;
    let mut stack: Vec<(&Value, usize)> = payload.values().map(|v| (v, 2)).collect();
    while let Some((value, depth)) = stack.pop() {
        match value {
            Value::Array(_) | Value::Object(_) if depth > limit => return true,
            Value::Array(items) => stack.extend(items.iter().map(|child| (child, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|child| (child, depth + 1))),
            _ => {}
        }
    }
    false
}

/// [`UserIdKind`] as the compact record (slot 13) and the JSON of earlier
/// releases name it.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum UserIdKindName {
    String,
    Integer,
}

impl UserIdKindName {
    /// The name slot 13 carries: none for a string, the default, which a
    /// record leaves out (exhaustive, so that a new kind must be named
    /// here).
    fn of_slot_13(kind: UserIdKind) -> Option<UserIdKindName> {
        match kind {
            UserIdKind::String => None,
            UserIdKind::Integer => Some(UserIdKindName::Integer),
        }
    }
}

impl From<UserIdKindName> for UserIdKind {
    fn from(name: UserIdKindName) -> UserIdKind {
        match name {
            UserIdKindName::String => UserIdKind::String,
            UserIdKindName::Integer => UserIdKind::Integer,
        }
    }
}

/// `session` with `lock_version` replaced by `lock`, encoded, refusing an
/// `extra_payload` nested deeper than decoding reads back.
pub(super) fn encode_checked(session: &Session, lock: u64) -> Result<Vec<u8>, EncodeError> {
    if nests_deeper_than(&session.extra_payload, MAX_COMPACT_PAYLOAD_DEPTH) {
        return Err(EncodeError(format!(
            "extra_payload nests deeper than {MAX_COMPACT_PAYLOAD_DEPTH} levels (itself \
             level 1), which the compact format does not read back"
        )));
    }
    Ok(encode_with_lock(session, lock))
}

/// Decodes the record after the format byte.
pub(super) fn decode(record: &[u8]) -> Result<Session, DecodeError> {
    // Strings are read in place (no copy through a reader's buffer).
    let mut de = rmp_serde::Deserializer::from_read_ref(record);
    de.set_max_depth(MAX_DEPTH);
    let PositionalOwned(session) =
        PositionalOwned::deserialize(&mut de).map_err(|e| DecodeError::MessagePack(reason(&e)))?;
    if !at_end(&mut de) {
        return Err(DecodeError::MessagePack("bytes after the record"));
    }
    Ok(session)
}

/// Whether `de` has no input left after the record.
///
/// The borrowing deserializer has no accessor for the unread input (its
/// `get_ref` returns the whole record), so this asks it for one more
/// value. In rmp-serde 1.3 only the first byte of a value is read as a
/// marker, and any byte is a marker; every later short read (a length, a
/// string, a number) is an `InvalidDataRead`. So the reply is an
/// `InvalidMarkerRead` at the end of input exactly when nothing is left.
/// With input left, [`NoValue`] refuses whatever value follows, and a
/// truncated one fails past its marker. (A marker left cached by the record
/// would also be refused; decoding a [`Session`] leaves none.) The unit
/// test `bytes_after_the_record_are_refused` pins this for every
/// single-byte tail and every truncated value kind.
fn at_end<'de, R: rmp_serde::decode::ReadSlice<'de>>(de: &mut rmp_serde::Deserializer<R>) -> bool {
    use rmp_serde::decode::Error;
    matches!(
        de.deserialize_any(NoValue),
        Err(Error::InvalidMarkerRead(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof
    )
}

/// A visitor that refuses every value (serde's default "invalid type" for
/// each `visit_*`), so [`at_end`] never mistakes a value for the end.
struct NoValue;

impl Visitor<'_> for NoValue {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the end of the record")
    }
}

/// A few words on a MessagePack error, without the parts that may quote
/// the payload.
fn reason(e: &rmp_serde::decode::Error) -> &'static str {
    use rmp_serde::decode::Error as E;
    match e {
        E::InvalidMarkerRead(_) | E::InvalidDataRead(_) => "truncated",
        E::TypeMismatch(_) => "wrong type",
        E::OutOfRange => "number out of range",
        E::LengthMismatch(_) => "wrong length",
        E::Utf8Error(_) => "invalid UTF-8",
        E::DepthLimitExceeded => "nested too deeply",
        _ => "not a session record",
    }
}

/// `session` with `lock_version` replaced by `lock`, encoded (saves
/// cloning the session to bump its lock version).
pub(super) fn encode_with_lock(session: &Session, lock: u64) -> Vec<u8> {
    // Marker, array header, about 100 bytes of ids and times, then the
    // payload at 32 bytes an entry, with room to spare: usually one
    // allocation (the benchmarks' typical session of four payload entries,
    // one of them a 111-byte user agent, encodes to 264 bytes).
    let mut out = Vec::with_capacity(160 + session.extra_payload.len() * 32);
    out.push(FORMAT_MSGPACK);
    PositionalWithLock(session, lock)
        .serialize(&mut rmp_serde::Serializer::new(&mut out))
        .expect("a Session always serialises to MessagePack");
    out
}

/// Serialises a session as the positional record, with the lock version
/// given. The slot order is the format: append only (module docs).
struct PositionalWithLock<'a>(&'a Session, u64);

impl Serialize for PositionalWithLock<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = self.0;
        let slot_13 = UserIdKindName::of_slot_13(s.user_id_kind);
        let slots = if slot_13.is_some() { SLOTS } else { SLOTS - 1 };
        let mut t = serializer.serialize_tuple(slots)?;
        t.serialize_element(&s.id)?;
        t.serialize_element(&s.user_id)?;
        t.serialize_element(&s.session_type)?;
        t.serialize_element(&s.created_at)?;
        t.serialize_element(&s.expires_at)?;
        t.serialize_element(&s.refresh_expires_at)?;
        t.serialize_element(&s.refreshed_at)?;
        t.serialize_element(&s.refresh_token_id)?;
        t.serialize_element(&s.tokens_fresh_from)?;
        t.serialize_element(&s.prev_tokens_fresh_from)?;
        t.serialize_element(&self.1)?;
        t.serialize_element(&s.extra_payload)?;
        t.serialize_element(&s.version)?;
        if let Some(kind) = slot_13 {
            t.serialize_element(&kind)?;
        }
        t.end()
    }
}

/// Deserialises the positional record: missing trailing slots keep
/// [`Session::default`]'s values, slots beyond the known ones are skipped.
struct PositionalOwned(Session);

impl<'de> Deserialize<'de> for PositionalOwned {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(PositionalVisitor)
    }
}

struct PositionalVisitor;

impl<'de> Visitor<'de> for PositionalVisitor {
    type Value = PositionalOwned;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a positional session record")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PositionalOwned, A::Error> {
        let mut s = Session::default();
        // Each slot in order; the record may end after any of them.
        macro_rules! slots {
            ($($field:ident),*) => {
                $(
                    match seq.next_element()? {
                        Some(value) => s.$field = value,
                        None => return Ok(PositionalOwned(s)),
                    }
                )*
            };
        }
        slots!(
            id,
            user_id,
            session_type,
            created_at,
            expires_at,
            refresh_expires_at,
            refreshed_at,
            refresh_token_id,
            tokens_fresh_from,
            prev_tokens_fresh_from,
            lock_version,
            extra_payload,
            version
        );
        match seq.next_element::<UserIdKindName>()? {
            Some(kind) => s.user_id_kind = kind.into(),
            None => return Ok(PositionalOwned(s)),
        }
        // Slots a newer version appended.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(PositionalOwned(s))
    }
}
