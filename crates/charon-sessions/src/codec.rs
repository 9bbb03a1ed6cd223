//! Session ⇄ bytes: the payload that gets signed and stored.
//!
//! # Format
//!
//! The first byte says which encoding follows:
//!
//! * [`FORMAT_MSGPACK`] (`0x01`), written by this version: a MessagePack
//!   array of the [`Session`] fields in a fixed order, `extra_payload` as a
//!   MessagePack map (floats as 64-bit floats, so numbers come back bit for
//!   bit). Field names are not stored: the typical session of the
//!   benchmarks encodes to 263 bytes (the criterion benchmark
//!   `benches/client_cpu.rs` prints the size).
//! * [`FORMAT_TERM`] (`0x83`, 131): Charon's own format,
//!   `:erlang.term_to_binary(%Charon.Models.Session{})` in Erlang's External
//!   Term Format, which an Elixir service using Charon 4.x reads and writes
//!   ([`PayloadFormat::Charon`]; mapping in [`charon`]). Written as Erlang/OTP
//!   25 writes it with `[{minor_version, 2}]`, `=:=` equal to what Charon
//!   writes on any OTP release.
//! * `{`: a JSON object with the field names of [`Session`], as earlier
//!   releases wrote it. Still read, so no session is lost on upgrade; never
//!   written.
//!
//! Every read accepts every format, whatever the store is configured to
//! write ([`PayloadFormat`]), so a deployment can switch formats without
//! losing a session: each is rewritten in the configured format at its next
//! upsert. Any other first byte is refused ([`DecodeError::UnknownFormat`]);
//! a later incompatible encoding gets a byte of its own.
//!
//! # Forward compatibility of the positional record
//!
//! The array is read by position, so its order is the format. The rules:
//! a new field is only ever **appended** (slot 13, 14, …) and has a default;
//! a field is never moved, and a retired field keeps its slot (written as
//! its default). Decoding then works both ways: a record with more elements
//! than this version knows (written by a newer version) decodes with the
//! extra ones skipped, and a shorter record (written by an older version)
//! takes the defaults of [`Session::default`] for the missing trailing
//! fields. So a trailing slot that holds its default may be left out (a
//! slot before the last one written never is): slot 13 is written only for
//! [`UserIdKind::Integer`](crate::UserIdKind::Integer), and records of
//! string-user sessions keep their 13 slots and their size. The record
//! version travels in the `version` slot.
//!
//! | slot | field | slot | field |
//! |---|---|---|---|
//! | 0 | `id` | 7 | `refresh_token_id` |
//! | 1 | `user_id` | 8 | `tokens_fresh_from` |
//! | 2 | `session_type` | 9 | `prev_tokens_fresh_from` |
//! | 3 | `created_at` | 10 | `lock_version` |
//! | 4 | `expires_at` (nil = `None`) | 11 | `extra_payload` |
//! | 5 | `refresh_expires_at` | 12 | `version` |
//! | 6 | `refreshed_at` | 13 | `user_id_kind`: the string `"integer"`, or left out for `"string"` |
//!
//! This module neither signs nor logs; it is pure data transformation.

pub mod charon;
mod compact;
mod format;
mod json;

pub use self::format::{
    DecodeError, EncodeError, FORMAT_JSON, FORMAT_MSGPACK, FORMAT_TERM, MapKeys, PayloadFormat,
};
pub use crate::etf::{MAX_DEPTH as MAX_TERM_DEPTH, MAX_TERM_BYTES, TermError};

#[cfg(test)]
pub(crate) use self::compact::MAX_COMPACT_PAYLOAD_DEPTH;
use crate::session::Session;

/// Encodes a session for storage: [`FORMAT_MSGPACK`], then the positional
/// record.
pub fn encode(session: &Session) -> Vec<u8> {
    compact::encode_with_lock(session, session.lock_version)
}

/// Encodes a session in `format` (with `map_keys` for maps set in
/// `extra_payload`, in Charon's format), with its own lock version.
///
/// Whatever this accepts, [`decode`] reads back, but for a payload in
/// Charon's format larger than [`MAX_TERM_BYTES`], which stores refuse to
/// write ([`stored::seal`](crate::stored::seal)).
///
/// # Errors
///
/// [`EncodeError`] when the format cannot represent a value or would not
/// read it back, named in the message with the limit.
pub fn encode_as(
    session: &Session,
    format: PayloadFormat,
    map_keys: MapKeys,
) -> Result<Vec<u8>, EncodeError> {
    encode_with_lock_as(session, session.lock_version, format, map_keys)
}

/// [`encode_as`] with `lock_version` replaced by `lock`: what an upsert
/// stores, without cloning the session to bump its lock version.
///
/// Refuses what [`decode`] would not read back, but for the size: in the
/// compact format `extra_payload` nested deeper than
/// [`MAX_COMPACT_PAYLOAD_DEPTH`]; in Charon's format nesting deeper than
/// [`MAX_TERM_DEPTH`], and values it cannot represent.
pub(crate) fn encode_with_lock_as(
    session: &Session,
    lock: u64,
    format: PayloadFormat,
    map_keys: MapKeys,
) -> Result<Vec<u8>, EncodeError> {
    match format {
        PayloadFormat::Compact => compact::encode_checked(session, lock),
        PayloadFormat::Charon => charon::encode_with_lock(session, lock, map_keys),
    }
}

/// Decodes a stored payload in any format: compact, Charon's, or the JSON
/// of earlier releases.
///
/// # Errors
///
/// [`DecodeError`] when the first byte names no known format or the rest
/// does not decode to a session.
pub fn decode(payload: &[u8]) -> Result<Session, DecodeError> {
    match payload.first() {
        Some(&FORMAT_MSGPACK) => compact::decode(&payload[1..]),
        Some(&FORMAT_TERM) => charon::decode(payload),
        Some(&FORMAT_JSON) => json::decode(payload),
        _ => Err(DecodeError::UnknownFormat),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use serde::{Serialize, Serializer};
    use serde_json::{Value, json};

    use super::compact::UserIdKindName;
    use super::json::JsonRecord;
    use super::*;
    use crate::UserIdKind;

    /// `s` as an earlier release wrote it in JSON.
    fn json_record(s: &Session) -> JsonRecord {
        JsonRecord {
            id: s.id.clone(),
            user_id: s.user_id.clone(),
            session_type: s.session_type.clone(),
            created_at: s.created_at,
            expires_at: s.expires_at,
            refresh_expires_at: s.refresh_expires_at,
            refreshed_at: s.refreshed_at,
            refresh_token_id: s.refresh_token_id.clone(),
            tokens_fresh_from: s.tokens_fresh_from,
            prev_tokens_fresh_from: s.prev_tokens_fresh_from,
            lock_version: s.lock_version,
            extra_payload: s.extra_payload.clone(),
            version: s.version,
            user_id_kind: (s.user_id_kind == UserIdKind::Integer)
                .then_some(UserIdKindName::Integer),
        }
    }

    /// A session with an absolute end, a lock version and a nested payload,
    /// for the codec's tests and stored.rs's.
    pub(crate) fn sample() -> Session {
        let mut s = Session::new_login_at("user.with.dots", 1_700_000_000, Duration::from_secs(60));
        s.expires_at = Some(1_700_000_600);
        s.lock_version = 3;
        s.extra_payload.insert(
            "device".into(),
            json!({"name": "phone", "ip": "::1", "scale": 1.5}),
        );
        s
    }

    /// The record of `s` as a JSON array of its slots, read back with a
    /// generic MessagePack reader (not this codec).
    fn slots(bytes: &[u8]) -> Vec<Value> {
        assert_eq!(bytes[0], FORMAT_MSGPACK);
        let Value::Array(slots) = rmp_serde::from_slice(&bytes[1..]).unwrap() else {
            panic!("the record is an array")
        };
        slots
    }

    /// A record built slot by slot, as another version might write it.
    fn record(slots: &[Value]) -> Vec<u8> {
        let mut out = vec![FORMAT_MSGPACK];
        out.extend_from_slice(&rmp_serde::to_vec(slots).unwrap());
        out
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let bytes = encode(&s);
        assert_eq!(bytes[0], FORMAT_MSGPACK);
        assert_eq!(decode(&bytes).unwrap(), s);
        let mut none = s.clone();
        none.expires_at = None;
        assert_eq!(decode(&encode(&none)).unwrap(), none);
    }

    #[test]
    fn slots_are_in_the_documented_order() {
        let s = sample();
        let got = slots(&encode(&s));
        let expected = vec![
            json!(s.id),
            json!("user.with.dots"),
            json!("full"),
            json!(1_700_000_000),
            json!(1_700_000_600),
            json!(1_700_000_060),
            json!(1_700_000_000),
            json!(s.refresh_token_id),
            json!(1_700_000_000),
            json!(1_700_000_000),
            json!(3),
            json!({"device": {"name": "phone", "ip": "::1", "scale": 1.5}}),
            json!(7),
        ];
        assert_eq!(got, expected);
    }

    /// `user_id_kind` travels in slot 13, written only for
    /// `UserIdKind::Integer` (the append rule: a record without it takes
    /// the default, `String`), and in the JSON of earlier releases as
    /// `"user_id_kind"`, left out for `String`.
    #[test]
    fn user_id_kind_is_slot_13() {
        let string = sample();
        let mut integer = sample();
        integer.user_id = "42".into();
        integer.user_id_kind = UserIdKind::Integer;
        assert_eq!(slots(&encode(&string)).len(), 13);
        let integer_slots = slots(&encode(&integer));
        assert_eq!(integer_slots.len(), 14);
        assert_eq!(integer_slots[13], json!("integer"));
        for s in [&string, &integer] {
            assert_eq!(decode(&encode(s)).unwrap(), *s);
            let json = serde_json::to_vec(&json_record(s)).unwrap();
            assert_eq!(decode(&json).unwrap(), *s);
        }
        assert_eq!(
            serde_json::to_value(json_record(&integer)).unwrap()["user_id_kind"],
            json!("integer")
        );
        assert!(
            serde_json::to_value(json_record(&string))
                .unwrap()
                .get("user_id_kind")
                .is_none()
        );
        // Written by a version that had no slot 13: the default.
        let old = decode(&record(&integer_slots[..13])).unwrap();
        assert_eq!(old.user_id_kind, UserIdKind::String);
        // A record of a later version with more slots still decodes.
        let mut newer = integer_slots.clone();
        newer.push(json!("a later slot"));
        assert_eq!(decode(&record(&newer)).unwrap(), integer);
    }

    #[test]
    fn record_of_a_newer_version_with_extra_slots_decodes() {
        let s = sample();
        let mut newer = slots(&encode(&s));
        // A newer version writes every slot up to its last: slot 13 too.
        newer.push(json!("string"));
        newer.push(json!([1, 2, {"nested": true}]));
        newer.push(json!("a field added later"));
        newer.push(Value::Null);
        assert_eq!(decode(&record(&newer)).unwrap(), s);
    }

    #[test]
    fn record_missing_trailing_slots_takes_the_defaults() {
        let s = sample();
        let full = slots(&encode(&s));
        // Without `version`, then without `extra_payload` too, then only
        // the first three slots.
        let old = decode(&record(&full[..12])).unwrap();
        assert_eq!(old, s);
        assert_eq!(old.version, 7);
        let older = decode(&record(&full[..11])).unwrap();
        assert!(older.extra_payload.is_empty());
        assert_eq!(older.lock_version, 3);
        let oldest = decode(&record(&full[..3])).unwrap();
        assert_eq!(
            (oldest.id.as_str(), oldest.lock_version),
            (s.id.as_str(), 0)
        );
        assert_eq!(oldest.expires_at, None);
    }

    #[test]
    fn json_written_by_earlier_releases_still_decodes() {
        let s = sample();
        let json = serde_json::to_vec(&json_record(&s)).unwrap();
        assert_eq!(json[0], b'{');
        assert_eq!(decode(&json).unwrap(), s);
        // A value as an earlier release stored it, byte for byte.
        let literal = br#"{"id":"abc","user_id":"u.1","session_type":"full","created_at":1700000000,"expires_at":null,"refresh_expires_at":1700003600,"refreshed_at":1700000000,"refresh_token_id":"rt","tokens_fresh_from":1700000000,"prev_tokens_fresh_from":1700000000,"lock_version":2,"extra_payload":{"f":0.1},"version":7}"#;
        let old = decode(literal).unwrap();
        assert_eq!((old.id.as_str(), old.user_id.as_str()), ("abc", "u.1"));
        assert_eq!(
            (old.lock_version, old.refresh_expires_at),
            (2, 1_700_003_600)
        );
        assert_eq!(old.extra_payload["f"], json!(0.1));
    }

    #[test]
    fn json_unknown_fields_are_ignored_and_missing_ones_defaulted() {
        let mut v = serde_json::to_value(json_record(&sample())).unwrap();
        v["added_in_version_8"] = json!([1, 2, 3]);
        v.as_object_mut().unwrap().remove("prev_tokens_fresh_from");
        let s = decode(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(s.prev_tokens_fresh_from, 0);
        assert_eq!(s.user_id, "user.with.dots");
    }

    #[test]
    fn floats_round_trip_bit_for_bit() {
        let floats = [
            0.1,
            0.1 + 0.2,
            -0.0,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            f64::MIN,
            1e300,
            std::f64::consts::PI,
            2f64.powi(53) + 2.0,
        ];
        let mut s = sample();
        s.extra_payload.insert("floats".into(), json!(floats));
        let read = decode(&encode(&s)).unwrap();
        let back: Vec<u64> = read.extra_payload["floats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap().to_bits())
            .collect();
        let sent: Vec<u64> = floats.iter().map(|f| f.to_bits()).collect();
        assert_eq!(back, sent);
        // Integers stay integers, of either sign and any width.
        s.extra_payload
            .insert("ints".into(), json!([u64::MAX, i64::MIN, 0, -1]));
        assert_eq!(decode(&encode(&s)).unwrap(), s);
    }

    #[test]
    fn decode_errors_never_quote_the_payload() {
        let bad = br#"{"id":"x","lock_version":"SECRET-MARKER","extra_payload":"SECRET-2"}"#;
        let shown = decode(bad).unwrap_err().to_string();
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("line 1"), "{shown}");
        let mut slots = slots(&encode(&sample()));
        slots[10] = json!("SECRET-MARKER");
        let err = decode(&record(&slots)).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("MessagePack"), "{shown}");
    }

    #[test]
    fn bytes_after_the_record_are_refused() {
        let good = encode(&sample());
        assert!(decode(&good).is_ok());
        let refused = |tail: &[u8]| {
            let bytes = [&good[..], tail].concat();
            match decode(&bytes) {
                Err(e) => e.to_string().contains("bytes after the record"),
                Ok(_) => false,
            }
        };
        // Every byte is a marker: each one alone (a whole value such as
        // nil or a fixint, a marker MessagePack never uses, or the start of
        // an unfinished value) is refused.
        for byte in 0..=u8::MAX {
            assert!(refused(&[byte]), "tail {byte:#04x}");
        }
        // One value of each kind that is longer than its marker (strings,
        // binaries, exts, numbers and containers of every width), cut short
        // after each byte of its header and just before its end, and whole.
        let values: Vec<Vec<u8>> = vec![
            rmp_serde::to_vec("abc").unwrap(),
            rmp_serde::to_vec(&"x".repeat(40)).unwrap(),
            rmp_serde::to_vec(&"x".repeat(300)).unwrap(),
            rmp_serde::to_vec(&"x".repeat(70_000)).unwrap(),
            rmp_serde::to_vec(&bin(5)).unwrap(),
            rmp_serde::to_vec(&bin(300)).unwrap(),
            rmp_serde::to_vec(&bin(70_000)).unwrap(),
            vec![0xd4, 0x01, 0x02],
            vec![0xd5, 0x01, 0x02, 0x03],
            vec![0xd6, 0x01, 0, 0, 0, 0],
            vec![0xd7, 0x01, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![0xd8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            vec![0xc7, 0x02, 0x01, 0xaa, 0xbb],
            vec![0xc8, 0x00, 0x02, 0x01, 0xaa, 0xbb],
            vec![0xc9, 0x00, 0x00, 0x00, 0x02, 0x01, 0xaa, 0xbb],
            rmp_serde::to_vec(&200u8).unwrap(),
            rmp_serde::to_vec(&60_000u16).unwrap(),
            rmp_serde::to_vec(&4_000_000_000u32).unwrap(),
            rmp_serde::to_vec(&u64::MAX).unwrap(),
            rmp_serde::to_vec(&-100i8).unwrap(),
            rmp_serde::to_vec(&-30_000i16).unwrap(),
            rmp_serde::to_vec(&-2_000_000_000i32).unwrap(),
            rmp_serde::to_vec(&i64::MIN).unwrap(),
            rmp_serde::to_vec(&1.5f32).unwrap(),
            rmp_serde::to_vec(&0.1f64).unwrap(),
            rmp_serde::to_vec(&[1, 2]).unwrap(),
            rmp_serde::to_vec(&vec![0u8; 20]).unwrap(),
            [&[0xdd, 0, 0, 0, 2][..], &[1, 2]].concat(),
            rmp_serde::to_vec(&json!({"a": [1, {"b": "c"}]})).unwrap(),
            [
                &[0xde, 0, 1][..],
                &rmp_serde::to_vec(&("k", 1)).unwrap()[1..],
            ]
            .concat(),
            [
                &[0xdf, 0, 0, 0, 1][..],
                &rmp_serde::to_vec(&("k", 1)).unwrap()[1..],
            ]
            .concat(),
        ];
        for value in &values {
            // Of a long value, the first twelve prefixes and the last one
            // (each prefix is a decode of the whole record).
            let ends = (1..=value.len()).filter(|&end| end <= 12 || end + 2 > value.len());
            for end in ends {
                let tail = &value[..end];
                assert!(refused(tail), "tail {:02x?}", &tail[..tail.len().min(8)]);
            }
        }
    }

    /// `len` bytes that serialise as a MessagePack bin (a `Vec<u8>`
    /// serialises as an array).
    fn bin(len: usize) -> RawBin {
        RawBin(vec![7; len])
    }

    struct RawBin(Vec<u8>);

    impl Serialize for RawBin {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(&self.0)
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let s = sample();
        let good = encode(&s);
        let named = [
            &[FORMAT_MSGPACK][..],
            &rmp_serde::to_vec_named(&json_record(&s)).unwrap(),
        ]
        .concat();
        let mut slots = slots(&good);
        slots[3] = json!("not a time");
        let wrong_type = record(&slots);
        slots[3] = json!(-1);
        slots[10] = json!(-1);
        let negative_lock = record(&slots);
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let mut slots = slots.clone();
        slots[10] = json!(1);
        slots[11] = json!({ "deep": deep });
        let too_deep = record(&slots);
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"\xff\xfe",
            b"{\"lock_version\": -1}",
            b"null",
            b" {}",
            b"\x02\x90",
            &good[1..],
            &good[..good.len() - 1],
            &[&good[..], b"\x00"].concat(),
            &[FORMAT_MSGPACK],
            &named,
            &wrong_type,
            &negative_lock,
            &too_deep,
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
