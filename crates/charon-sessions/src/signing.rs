//! HMAC-SHA256 signing of stored values, and the signing-key derivation.
//!
//! A signed value is `b"signed." ++ HMAC-SHA256(key, payload) ++ b"." ++
//! payload`, with the 32 raw MAC bytes in the middle: Charon's format, and
//! with the same base secret the same key and MACs. (The payload encoding
//! differs: Charon stores Erlang terms, this crate MessagePack, see
//! [`codec`](crate::codec).) Charon's url-safe variant
//! `b"signed_u64." ++ base64url(MAC) ++ b"." ++ payload` (43 characters of
//! unpadded base64) is accepted by [`verify`] too. Verification runs in
//! constant time.
//!
//! This module only transforms bytes; it never logs and never touches
//! storage.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::StoreError;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of the raw-MAC format that [`sign`] writes.
pub const SIGNED_PREFIX: &[u8] = b"signed.";
/// Prefix of Charon's url-safe base64 format, accepted by [`verify`].
pub const SIGNED_BASE64_PREFIX: &[u8] = b"signed_u64.";
/// Length of an HMAC-SHA256 tag, in bytes.
pub const MAC_LEN: usize = 32;
const MAC_BASE64_LEN: usize = 43;

/// Salt of the default key derivation (Charon's `RedisStore` salt).
pub const DEFAULT_SALT: &[u8] = b"RedisStore HMAC";
/// PBKDF2 iterations of the default key derivation.
pub const DEFAULT_ITERATIONS: u32 = 250_000;
/// Length of a derived signing key, in bytes.
pub const DEFAULT_KEY_LEN: usize = 32;
/// Shortest base secret worth its name, in bytes: 32 random bytes, as
/// `head -c 32 /dev/urandom | base64` gives. Shorter secrets are accepted
/// by the library (only an empty one is refused); the CLI and the axum
/// example refuse them unless told that a weak one is meant.
pub const MIN_BASE_SECRET_LEN: usize = 32;

/// How to make a good secret, for error messages.
const HOW_TO_GENERATE: &str = "generate a base secret of at least 32 random bytes (e.g. \
    `head -c 32 /dev/urandom | base64`), or a key with SigningKey::generate()";

/// A key for HMAC-SHA256 signing.
///
/// Cheap to clone. Its bytes are never shown: `Debug` prints
/// `SigningKey(<redacted>)`.
#[derive(Clone)]
pub struct SigningKey {
    // The keyed MAC state: cloning it per message skips re-hashing the key.
    mac: HmacSha256,
}

impl SigningKey {
    /// A signing key made of `key` as is: use 32 random bytes (or
    /// [`generate`](Self::generate) one). Any non-empty length works (HMAC
    /// hashes keys longer than 64 bytes).
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for an empty key: anyone could compute
    /// its MACs, and so forge every stored session.
    pub fn from_bytes(key: &[u8]) -> Result<SigningKey, StoreError> {
        if key.is_empty() {
            return Err(StoreError::InvalidInput(format!(
                "the signing key is empty, so anyone could sign sessions with it; {HOW_TO_GENERATE}"
            )));
        }
        Ok(SigningKey {
            mac: HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length"),
        })
    }

    /// The key Charon derives from a base secret: PBKDF2-HMAC-SHA256 with
    /// salt `"RedisStore HMAC"`, 250 000 iterations, 32 bytes.
    ///
    /// The base secret should be at least [`MIN_BASE_SECRET_LEN`] (32)
    /// random bytes: the key is only as hard to guess as the secret, and
    /// anyone who guesses it can forge every session. This costs tens of
    /// milliseconds of CPU on purpose: derive once per process and clone
    /// the result.
    ///
    /// # Errors
    ///
    /// [`StoreError::InvalidInput`] for an empty base secret (an unset
    /// environment variable, say): its key is public knowledge.
    pub fn from_base_secret(base_secret: &[u8]) -> Result<SigningKey, StoreError> {
        if base_secret.is_empty() {
            return Err(StoreError::InvalidInput(format!(
                "the base secret is empty, so anyone could derive its signing key; {HOW_TO_GENERATE}"
            )));
        }
        SigningKey::from_bytes(&derive_key(
            base_secret,
            DEFAULT_SALT,
            DEFAULT_ITERATIONS,
            DEFAULT_KEY_LEN,
        ))
    }

    /// A new random key of 32 bytes from the operating system's random
    /// source: for a process whose sessions nobody else needs to read
    /// (every process that shares sessions must share the key, or the
    /// base secret it is derived from).
    ///
    /// # Panics
    ///
    /// When the operating system's random source fails.
    pub fn generate() -> SigningKey {
        let mut key = [0u8; DEFAULT_KEY_LEN];
        getrandom::fill(&mut key).expect("the operating system's random source failed");
        SigningKey::from_bytes(&key).expect("a generated key is not empty")
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(payload);
        mac
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Why [`verify`] rejected a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The value is not in a signed format (wrong prefix, too short, bad
    /// separator or bad base64).
    #[error("value is not in the signed format")]
    Malformed,
    /// The value is well-formed but its MAC does not match: signed with
    /// another key, or altered.
    #[error("signature does not match")]
    Mismatch,
}

/// PBKDF2-HMAC-SHA256 of `base_secret` with `salt` and `iterations`,
/// `length` bytes long.
///
/// ```
/// use charon_sessions::signing::derive_key;
/// assert_eq!(derive_key(b"secret", b"salt", 1, 5), [56, 223, 66, 139, 48]);
/// ```
///
/// # Panics
///
/// When `iterations` is 0.
pub fn derive_key(base_secret: &[u8], salt: &[u8], iterations: u32, length: usize) -> Vec<u8> {
    assert!(iterations > 0, "PBKDF2 needs at least one iteration");
    let mut out = vec![0u8; length];
    pbkdf2::pbkdf2_hmac::<Sha256>(base_secret, salt, iterations, &mut out);
    out
}

/// Signs `payload`: `b"signed." ++ HMAC-SHA256(key, payload) ++ b"." ++ payload`.
pub fn sign(payload: &[u8], key: &SigningKey) -> Vec<u8> {
    let tag = key.mac(payload).finalize().into_bytes();
    let mut out = Vec::with_capacity(SIGNED_PREFIX.len() + MAC_LEN + 1 + payload.len());
    out.extend_from_slice(SIGNED_PREFIX);
    out.extend_from_slice(&tag);
    out.push(b'.');
    out.extend_from_slice(payload);
    out
}

/// Checks a signed value and returns its payload.
///
/// Accepts [`sign`]'s raw format and Charon's `signed_u64.` base64 format.
/// The MAC comparison is constant-time.
///
/// # Errors
///
/// [`SignatureError::Malformed`] when the value is not in either format,
/// [`SignatureError::Mismatch`] when the MAC is wrong.
pub fn verify<'a>(signed: &'a [u8], key: &SigningKey) -> Result<&'a [u8], SignatureError> {
    verify_with_any(signed, std::slice::from_ref(key))
}

/// Like [`verify`], accepting a value signed with any of `keys` (tried in
/// order, each in constant time): for key rotation, pass the current key
/// first and then the older ones still accepted.
///
/// # Errors
///
/// [`SignatureError::Malformed`] when the value is not in a signed format,
/// [`SignatureError::Mismatch`] when no key's MAC matches (also when `keys`
/// is empty).
pub fn verify_with_any<'a>(
    signed: &'a [u8],
    keys: &[SigningKey],
) -> Result<&'a [u8], SignatureError> {
    let (tag, payload) = split(signed)?;
    if keys
        .iter()
        .any(|key| key.mac(payload).verify_slice(&tag).is_ok())
    {
        Ok(payload)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Splits a signed value into its MAC and payload.
fn split(signed: &[u8]) -> Result<([u8; MAC_LEN], &[u8]), SignatureError> {
    let (tag, rest): ([u8; MAC_LEN], &[u8]) = if let Some(rest) = signed.strip_prefix(SIGNED_PREFIX)
    {
        let (tag, rest) = rest
            .split_first_chunk::<MAC_LEN>()
            .ok_or(SignatureError::Malformed)?;
        (*tag, rest)
    } else if let Some(rest) = signed.strip_prefix(SIGNED_BASE64_PREFIX) {
        let (encoded, rest) = rest
            .split_first_chunk::<MAC_BASE64_LEN>()
            .ok_or(SignatureError::Malformed)?;
        let mut tag = [0u8; MAC_LEN];
        let n = URL_SAFE_NO_PAD
            .decode_slice(encoded, &mut tag)
            .map_err(|_| SignatureError::Malformed)?;
        if n != MAC_LEN {
            return Err(SignatureError::Malformed);
        }
        (tag, rest)
    } else {
        return Err(SignatureError::Malformed);
    };
    let payload = rest.strip_prefix(b".").ok_or(SignatureError::Malformed)?;
    Ok((tag, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(b"secret").unwrap()
    }

    #[test]
    fn pbkdf2_known_value() {
        assert_eq!(derive_key(b"secret", b"salt", 1, 5), [56, 223, 66, 139, 48]);
    }

    #[test]
    fn rfc7914_pbkdf2_sha256_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64).
        let out = derive_key(b"passwd", b"salt", 1, 64);
        assert_eq!(hex::encode(&out[..16]), "55ac046e56e3089fec1691c22544b605");
    }

    #[test]
    fn hmac_known_value() {
        let signed = sign(b"iodata", &key());
        assert_eq!(
            &signed[SIGNED_PREFIX.len()..SIGNED_PREFIX.len() + 8],
            &[174, 127, 185, 114, 225, 247, 199, 79]
        );
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let signed = sign(b"hello.world", &key());
        assert!(signed.starts_with(b"signed."));
        assert_eq!(signed.len(), 7 + 32 + 1 + 11);
        assert_eq!(verify(&signed, &key()), Ok(&b"hello.world"[..]));
        assert_eq!(verify(&sign(b"", &key()), &key()), Ok(&b""[..]));
    }

    #[test]
    fn verify_distinguishes_malformed_from_mismatch() {
        let signed = sign(b"payload", &key());
        let other = SigningKey::from_bytes(b"other").unwrap();
        assert_eq!(verify(&signed, &other), Err(SignatureError::Mismatch));
        let mut flipped = signed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(verify(&flipped, &key()), Err(SignatureError::Mismatch));
        let mut flipped = signed.clone();
        flipped[10] ^= 0x80;
        assert_eq!(verify(&flipped, &key()), Err(SignatureError::Mismatch));
        for bad in [
            &b""[..],
            b"payload",
            b"signed.",
            &signed[..20],
            &signed[..SIGNED_PREFIX.len() + MAC_LEN],
            b"signed_u64.abc.payload",
        ] {
            assert_eq!(
                verify(bad, &key()),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
        let mut no_dot = signed.clone();
        no_dot[SIGNED_PREFIX.len() + MAC_LEN] = b'x';
        assert_eq!(verify(&no_dot, &key()), Err(SignatureError::Malformed));
    }

    #[test]
    fn verify_accepts_charons_base64_variant() {
        let tag = key().mac(b"payload").finalize().into_bytes();
        let mut value = b"signed_u64.".to_vec();
        value.extend_from_slice(URL_SAFE_NO_PAD.encode(tag).as_bytes());
        value.extend_from_slice(b".payload");
        assert_eq!(verify(&value, &key()), Ok(&b"payload"[..]));
        let other = SigningKey::from_bytes(b"other").unwrap();
        assert_eq!(verify(&value, &other), Err(SignatureError::Mismatch));
    }

    #[test]
    fn rotation_accepts_any_listed_key() {
        let (old, new, other) = (
            SigningKey::from_bytes(b"old").unwrap(),
            SigningKey::from_bytes(b"new").unwrap(),
            SigningKey::from_bytes(b"other").unwrap(),
        );
        let keys = [new.clone(), old.clone()];
        assert_eq!(verify_with_any(&sign(b"a", &old), &keys), Ok(&b"a"[..]));
        assert_eq!(verify_with_any(&sign(b"b", &new), &keys), Ok(&b"b"[..]));
        assert_eq!(
            verify_with_any(&sign(b"c", &other), &keys),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_with_any(&sign(b"d", &new), &[]),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_with_any(b"junk", &keys),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn debug_hides_key() {
        let k = SigningKey::from_bytes(b"very-secret-bytes").unwrap();
        let shown = format!("{k:?} {k:#?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert_eq!(format!("{k:?}"), "SigningKey(<redacted>)");
    }

    #[test]
    fn empty_secrets_and_keys_are_refused_with_how_to_make_one() {
        for err in [
            SigningKey::from_bytes(b"").unwrap_err(),
            SigningKey::from_base_secret(b"").unwrap_err(),
        ] {
            let msg = err.to_string();
            assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
            assert!(
                msg.contains("empty") && msg.contains("/dev/urandom"),
                "{msg}"
            );
        }
        // A one-byte secret is weak, not refused: the minimum is documented.
        SigningKey::from_base_secret(b"x").unwrap();
    }

    #[test]
    fn generated_keys_differ() {
        let (a, b) = (SigningKey::generate(), SigningKey::generate());
        assert_ne!(sign(b"x", &a), sign(b"x", &b));
    }

    #[test]
    fn base_secret_derivation_matches_explicit_pbkdf2() {
        let from_secret = SigningKey::from_base_secret(b"base").unwrap();
        let explicit =
            SigningKey::from_bytes(&derive_key(b"base", b"RedisStore HMAC", 250_000, 32)).unwrap();
        assert_eq!(sign(b"x", &from_secret), sign(b"x", &explicit));
    }
}
