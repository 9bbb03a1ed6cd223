//! What the codec's formats share: the first byte of each, which format a
//! store writes ([`PayloadFormat`]), how Charon's format types new map keys
//! ([`MapKeys`]), and why a payload does not encode or decode.

use std::fmt;

use crate::etf::TermError;

/// First byte of a payload in the current format: a positional MessagePack
/// record (see the [`codec`](crate::codec) documentation). No JSON text starts
/// with it, and a bare MessagePack record (an array) never does either.
pub const FORMAT_MSGPACK: u8 = 0x01;

/// First byte of a payload in the JSON format of earlier releases.
pub const FORMAT_JSON: u8 = b'{';

/// First byte of a payload in Charon's format: the version byte (131) of
/// Erlang's External Term Format.
pub const FORMAT_TERM: u8 = 0x83;

/// The payload format a store writes. Reads accept every format.
///
/// ```
/// use charon_sessions::{PayloadFormat, RedisStoreConfig};
/// use charon_sessions::signing::SigningKey;
///
/// // Share sessions with an Elixir service running Charon 4.x.
/// let config = RedisStoreConfig::new("redis://127.0.0.1:6379", SigningKey::from_base_secret(b"shared base secret")?)
///     .payload_format(PayloadFormat::Charon);
/// # let _ = config;
/// # Ok::<(), charon_sessions::StoreError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PayloadFormat {
    /// [`FORMAT_MSGPACK`]: `0x01` and a positional MessagePack record, about
    /// half the size of JSON. Charon cannot read it. The default.
    #[default]
    Compact,
    /// [`FORMAT_TERM`]: Charon 4.3's value, `=:=` equal to what Charon
    /// writes for the same session on any Erlang/OTP release, and byte for
    /// byte what OTP 25 writes with `term_to_binary(%Charon.Models.Session{},
    /// [{minor_version, 2}])`, so that an Elixir service using Charon's
    /// Redis store reads and refreshes the sessions this store writes, and
    /// the other way round. The mapping of fields and `extra_payload` is
    /// described in [`charon`](crate::codec::charon).
    Charon,
}

/// How [`PayloadFormat::Charon`] types the keys of maps the application
/// puts in `extra_payload` (keys read from Charon keep their type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MapKeys {
    /// Binaries: `%{"ip" => "::1"}`. The default, as Elixir's JSON
    /// decoders and Phoenix params give them.
    #[default]
    Binaries,
    /// Atoms: `%{ip: "::1"}`, Elixir's habit for data the code builds
    /// itself. Keys longer than 255 characters are refused. Every Elixir
    /// node that reads the session creates these atoms, which Erlang never
    /// frees (Charon's `binary_to_term` is not `:safe`): use it for a fixed
    /// set of keys, never for keys taken from user input.
    Atoms,
}

/// Why a payload could not be decoded. Neither its `Display` nor its
/// `Debug` output quotes the payload, because it ends up in logs.
#[derive(Debug)]
#[non_exhaustive]
pub enum DecodeError {
    /// The first byte names no known format (none of [`FORMAT_MSGPACK`],
    /// [`FORMAT_TERM`] and [`FORMAT_JSON`]), or the payload is empty.
    UnknownFormat,
    /// A JSON payload (earlier releases) is not valid JSON of session fields.
    Json(serde_json::Error),
    /// A MessagePack payload does not decode; says why in a few words.
    MessagePack(&'static str),
    /// A payload in Charon's format is not a valid Erlang term, or too deep
    /// or too large to decode safely.
    Term(TermError),
    /// A payload in Charon's format is a valid term, but not a Charon 4.3
    /// session of record version 7; says which rule it breaks.
    Charon(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownFormat => {
                f.write_str("session payload is in no known format (first byte)")
            }
            DecodeError::Json(e) => write!(
                f,
                "session payload does not decode ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
            DecodeError::MessagePack(reason) => {
                write!(f, "session payload does not decode (MessagePack: {reason})")
            }
            DecodeError::Term(reason) => {
                write!(f, "session payload does not decode (Erlang term: {reason})")
            }
            DecodeError::Charon(reason) => write!(
                f,
                "session payload is not a Charon session of record version 7 ({reason})"
            ),
        }
    }
}

// No `source`: the message already carries the inner error's words.
impl std::error::Error for DecodeError {}

/// Why a session could not be encoded: its format cannot represent a value
/// or would not read it back. The message names the field (a path into
/// `extra_payload`) and the rule, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(pub(crate) String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}
