//! Stored values: a session sealed for storage and opened back.
//!
//! Sealing is what every upsert does before it writes, whichever store:
//! validate the session, skip a dead one, give it its next lock version,
//! encode it in the store's payload format ([`codec`]),
//! refuse it beyond the size limit, and sign it
//! ([`signing`]). Opening is what every read does with a
//! value it found: verify the signature under any of the store's keys,
//! decode it, and check that it belongs where it was found and has not
//! expired. [`LocalStore`](crate::LocalStore) and
//! [`RedisStore`](crate::RedisStore) both go through here, as do tools that
//! read Redis directly (`charon-sessions list`), the benchmarks and the
//! tests, so the rules cannot drift apart.
//!
//! ```
//! use std::time::Duration;
//! use charon_sessions::Session;
//! use charon_sessions::signing::SigningKey;
//! use charon_sessions::stored::{self, Encoding};
//!
//! let key = SigningKey::generate();
//! let session = Session::new_login("alice", Duration::from_secs(3600));
//! let sealed = stored::seal(&session, &Encoding::default(), &key)?.expect("not dead");
//! assert_eq!(sealed.lock_version, 1);
//!
//! let now = session.created_at;
//! let opened = stored::open(&sealed.value, &[key], &session.id, "alice", "full", now).unwrap();
//! assert_eq!(opened.lock_version, 1);
//! # Ok::<(), charon_sessions::StoreError>(())
//! ```

use std::fmt;

use crate::codec::{self, MAX_TERM_BYTES, MapKeys, PayloadFormat};
use crate::error::StoreError;
use crate::limit::DEFAULT_MAX_SESSION_SIZE;
use crate::session::Session;
use crate::signing::{self, SigningKey};

/// How a store encodes the sessions it writes: the payload format, how
/// Charon's format types new map keys, and the largest encoding accepted.
///
/// Defaults to the compact format, binary map keys and
/// [`DEFAULT_MAX_SESSION_SIZE`] (64 KiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Encoding {
    /// What upserts write (reads accept every format).
    pub format: PayloadFormat,
    /// How [`PayloadFormat::Charon`] types new keys of maps in
    /// `extra_payload`.
    pub map_keys: MapKeys,
    /// Largest encoded session accepted, in bytes.
    pub max_size: usize,
}

impl Default for Encoding {
    fn default() -> Self {
        Encoding {
            format: PayloadFormat::default(),
            map_keys: MapKeys::default(),
            max_size: DEFAULT_MAX_SESSION_SIZE,
        }
    }
}

impl Encoding {
    /// An encoding in `format`, with `map_keys` and `max_size` (bytes).
    pub fn new(format: PayloadFormat, map_keys: MapKeys, max_size: usize) -> Encoding {
        Encoding {
            format,
            map_keys,
            max_size,
        }
    }
}

/// What an upsert of a session writes: the lock version the session gets
/// and its encoding, which carries that same lock version.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Encoded {
    /// The session's next lock version (`lock_version + 1`).
    pub(crate) lock_version: u64,
    /// The session encoded with `lock_version`.
    pub(crate) payload: Vec<u8>,
}

/// A sealed session: its next lock version and the signed encoding that
/// carries it, ready to be stored.
///
/// `Debug` leaves out the value (it holds the refresh token id).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sealed {
    /// The session's next lock version (`lock_version + 1`).
    pub lock_version: u64,
    /// The signed encoding of the session with `lock_version`.
    pub value: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("lock_version", &self.lock_version)
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .finish()
    }
}

impl fmt::Debug for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoded")
            .field("lock_version", &self.lock_version)
            .field("payload", &format_args!("<{} bytes>", self.payload.len()))
            .finish()
    }
}

/// [`seal`] without the signature: what [`LocalStore`](crate::LocalStore)
/// keeps (the lock version; the payload only measured).
pub(crate) fn encode(
    session: &Session,
    encoding: &Encoding,
) -> Result<Option<Encoded>, StoreError> {
    session.validate()?;
    if session.is_dead() {
        return Ok(None);
    }
    let lock_version = session.lock_version + 1;
    let payload =
        codec::encode_with_lock_as(session, lock_version, encoding.format, encoding.map_keys)
            .map_err(|e| StoreError::InvalidInput(e.to_string()))?;
    // Decoding reads Charon's terms up to MAX_TERM_BYTES; a smaller
    // max_size is the limit users set, and named first.
    if encoding.format == PayloadFormat::Charon
        && payload.len() > MAX_TERM_BYTES
        && encoding.max_size > MAX_TERM_BYTES
    {
        return Err(StoreError::InvalidInput(format!(
            "session encodes to {} bytes in Charon's format, more than it reads back \
             (MAX_TERM_BYTES, {MAX_TERM_BYTES} bytes)",
            payload.len()
        )));
    }
    if payload.len() > encoding.max_size {
        return Err(StoreError::InvalidInput(format!(
            "session encodes to {} bytes, more than max_session_size ({} bytes)",
            payload.len(),
            encoding.max_size
        )));
    }
    Ok(Some(Encoded {
        lock_version,
        payload,
    }))
}

/// The value an upsert of `session` writes, and the lock version it
/// carries, decided the same way by every store: `session` is validated
/// ([`Session::validate`]); a dead session (`refresh_expires_at <
/// refreshed_at`) gives `None`, for nothing is written; otherwise it is
/// encoded in `encoding` with its next lock version, refused beyond
/// `encoding.max_size` bytes, and signed with `key` (HMAC-SHA256,
/// [`signing::sign`]). Whatever this accepts, [`open`] reads back.
///
/// # Errors
///
/// [`StoreError::InvalidInput`] for an invalid session, one whose encoding
/// is longer than `encoding.max_size`, or one the format cannot represent
/// or would not read back, named in the message with the limit.
pub fn seal(
    session: &Session,
    encoding: &Encoding,
    key: &SigningKey,
) -> Result<Option<Sealed>, StoreError> {
    Ok(encode(session, encoding)?.map(|encoded| Sealed {
        lock_version: encoded.lock_version,
        value: signing::sign(&encoded.payload, key),
    }))
}

/// Opens a stored `value` found at the address (`session_id`, `user_id`,
/// `session_type`) at `now` (unix seconds): verifies its signature under
/// any of `keys`, decodes it (any payload format), and checks that its id,
/// user id and type are those of the address and that its
/// `refresh_expires_at` has not passed.
///
/// # Errors
///
/// [`Rejected`], saying why ([`Rejection`]) without quoting the value.
pub fn open(
    value: &[u8],
    keys: &[SigningKey],
    session_id: &str,
    user_id: &str,
    session_type: &str,
    now: i64,
) -> Result<Session, Rejected> {
    let payload = signing::verify_with_any(value, keys)
        .map_err(|e| Rejected::new(Rejection::Signature, e))?;
    let session = codec::decode(payload).map_err(|e| Rejected::new(Rejection::Decode, e))?;
    if session.id != session_id
        || session.user_id != user_id
        || session.session_type != session_type
    {
        return Err(Rejected::new(
            Rejection::OwnerMismatch,
            "session id, user id or type differ from where it is stored",
        ));
    }
    if session.is_expired_at(now) {
        // Redis never returns a field past its expiry, and both carry
        // refresh_expires_at: this is a value written with another expiry,
        // or this host's clock is ahead of the server's.
        return Err(Rejected::new(
            Rejection::Expired,
            "refresh_expires_at has passed (clock ahead of the server's?)",
        ));
    }
    Ok(session)
}

/// Why a stored value is treated as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// The HMAC did not verify under any of the store's keys.
    Signature,
    /// The payload is not a session record.
    Decode,
    /// Its id, user id or type differ from where it is stored.
    OwnerMismatch,
    /// Its `refresh_expires_at` has passed.
    Expired,
}

impl Rejection {
    /// The name used in metric labels and logs: `signature`, `decode`,
    /// `owner_mismatch`, `expired`.
    pub fn name(self) -> &'static str {
        match self {
            Rejection::Signature => "signature",
            Rejection::Decode => "decode",
            Rejection::OwnerMismatch => "owner_mismatch",
            Rejection::Expired => "expired",
        }
    }
}

/// A stored value that [`open`] refused: why, and a detail that never
/// quotes the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Why.
    pub reason: Rejection,
    detail: String,
}

impl Rejected {
    /// What exactly failed, in a few words (never the value).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    fn new(reason: Rejection, detail: impl fmt::Display) -> Rejected {
        Rejected {
            reason,
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.name(), self.detail)
    }
}

impl std::error::Error for Rejected {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::codec::MAX_COMPACT_PAYLOAD_DEPTH;
    use crate::codec::tests::sample;

    fn unlimited() -> Encoding {
        Encoding::new(PayloadFormat::Compact, MapKeys::Binaries, usize::MAX)
    }

    /// In Charon's format, a payload larger than decoding accepts
    /// (MAX_TERM_BYTES) is refused, naming the limit, even when
    /// `max_size` would allow it.
    #[test]
    fn charon_payloads_beyond_what_decoding_reads_are_refused() {
        let mut s = sample();
        s.extra_payload
            .insert("blob".into(), json!("x".repeat(MAX_TERM_BYTES)));
        let err = encode(
            &s,
            &Encoding::new(PayloadFormat::Charon, MapKeys::Binaries, 4 << 20),
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
        assert!(err.to_string().contains("MAX_TERM_BYTES"), "{err}");
        // Within both limits it is written and reads back.
        s.extra_payload
            .insert("blob".into(), json!("x".repeat(MAX_TERM_BYTES - 1000)));
        let payload = encode(
            &s,
            &Encoding::new(PayloadFormat::Charon, MapKeys::Binaries, 4 << 20),
        )
        .unwrap()
        .unwrap()
        .payload;
        assert_eq!(
            codec::decode(&payload).unwrap().extra_payload,
            s.extra_payload
        );
    }

    /// The compact format refuses on upsert the `extra_payload` nesting it
    /// would not decode (stored, every read would skip the session), and
    /// takes the deepest it decodes.
    #[test]
    fn compact_upserts_refuse_nesting_that_would_not_decode() {
        // The deepest array or object at `levels` (extra_payload is level
        // 1, the value in "d" level 2).
        let nested = |levels: usize, array: bool| {
            let mut s = sample();
            let mut value = json!(1);
            for _ in 1..levels {
                value = if array {
                    json!([value])
                } else {
                    json!({ "d": value })
                };
            }
            s.extra_payload.insert("d".into(), value);
            s
        };
        for array in [false, true] {
            let deepest = nested(MAX_COMPACT_PAYLOAD_DEPTH, array);
            let payload = encode(&deepest, &unlimited()).unwrap().unwrap().payload;
            assert_eq!(
                codec::decode(&payload).unwrap().extra_payload,
                deepest.extra_payload
            );
            let too_deep = nested(MAX_COMPACT_PAYLOAD_DEPTH + 1, array);
            assert!(codec::decode(&codec::encode(&too_deep)).is_err());
            let err = encode(&too_deep, &unlimited()).unwrap_err();
            assert!(matches!(err, StoreError::InvalidInput(_)), "{err}");
            assert!(err.to_string().contains("deeper than 126"), "{err}");
        }
    }

    #[test]
    fn upsert_encodes_the_next_lock_version() {
        let s = sample();
        let Encoded {
            lock_version: lock,
            payload,
        } = encode(&s, &unlimited()).unwrap().unwrap();
        assert_eq!(lock, 4);
        let stored = codec::decode(&payload).unwrap();
        assert_eq!(stored.lock_version, 4);
        assert_eq!(
            Session {
                lock_version: 3,
                ..stored
            },
            s
        );
        let mut dead = s.clone();
        dead.refresh_expires_at = dead.refreshed_at - 1;
        assert!(encode(&dead, &unlimited()).unwrap().is_none());
    }

    #[test]
    fn size_limit_counts_the_encoding() {
        let s = sample();
        // The record measured is the one written (lock version + 1).
        let payload = encode(&s, &unlimited()).unwrap().unwrap().payload;
        let at_most = |max_size| Encoding::new(PayloadFormat::Compact, MapKeys::Binaries, max_size);
        assert!(encode(&s, &at_most(payload.len())).unwrap().is_some());
        let err = encode(&s, &at_most(payload.len() - 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_session_size"), "{err}");
    }

    #[test]
    fn open_refuses_what_is_not_the_sessions_own_value() {
        let keys = [SigningKey::generate()];
        let key = &keys[0];
        let s = sample();
        let now = s.refreshed_at;
        let sealed = seal(&s, &Encoding::default(), key).unwrap().unwrap();
        let opened = open(&sealed.value, &keys, &s.id, &s.user_id, "full", now).unwrap();
        assert_eq!(opened.lock_version, sealed.lock_version);
        let reason = |value: &[u8], id: &str, user: &str, now: i64| {
            open(value, &keys, id, user, "full", now)
                .unwrap_err()
                .reason
        };
        let other_key = SigningKey::generate();
        assert!(open(&sealed.value, &[other_key], &s.id, &s.user_id, "full", now).is_err());
        assert_eq!(
            reason(b"signed.garbage", &s.id, &s.user_id, now),
            Rejection::Signature
        );
        let unsigned = signing::sign(b"\x07not a record", key);
        assert_eq!(reason(&unsigned, &s.id, &s.user_id, now), Rejection::Decode);
        assert_eq!(
            reason(&sealed.value, "other", &s.user_id, now),
            Rejection::OwnerMismatch
        );
        assert_eq!(
            reason(&sealed.value, &s.id, "mallory", now),
            Rejection::OwnerMismatch
        );
        let late = s.refresh_expires_at + 1;
        let err = open(&sealed.value, &keys, &s.id, &s.user_id, "full", late).unwrap_err();
        assert_eq!(err.reason, Rejection::Expired);
        assert!(!err.to_string().contains(&s.refresh_token_id), "{err}");
    }
}
