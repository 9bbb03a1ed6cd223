//! Access and refresh tokens: JWTs signed with HS256 (`jsonwebtoken`).
//!
//! Both kinds carry the same claims and differ in `typ` and lifetime, so
//! that one can never be used as the other; a refresh token also carries the
//! session's refresh token id (`jti`), which access tokens, shown to every
//! API call, leave out. This module signs and verifies; whether a verified
//! refresh token is still fresh is decided in `freshness.rs` against the
//! stored session.

use std::fmt;
use std::time::Duration;

use charon_sessions::Session;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Which of the two tokens a JWT is (its `typ` claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Short-lived, presented as `Authorization: Bearer` to the API.
    Access,
    /// Long-lived, presented only to `POST /refresh`.
    Refresh,
}

/// The claims of both tokens. Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id (the session's owner).
    pub sub: String,
    /// Session id.
    pub sid: String,
    /// Session type, e.g. `"full"`.
    pub styp: String,
    /// Access or refresh token.
    pub typ: TokenKind,
    /// When the token was issued.
    pub iat: i64,
    /// When the token stops being accepted.
    pub exp: i64,
    /// Refresh tokens only: the session's `refresh_token_id` when the token
    /// was issued, which the refresh rule compares with the stored one. A
    /// refresh token without it is refused by [`TokenKeys::verify`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// A freshly issued token pair, as `POST /login` and `POST /refresh` answer.
/// No `Debug`: the tokens are credentials.
#[derive(Serialize)]
pub struct TokenPair {
    /// The access token (JWT).
    pub access_token: String,
    /// The refresh token (JWT).
    pub refresh_token: String,
    /// Always `"Bearer"`.
    pub token_type: &'static str,
    /// The session both tokens belong to.
    pub session_id: String,
    /// When the access token expires, unix seconds.
    pub access_expires_at: i64,
    /// When the refresh token (and the session, unless refreshed) expires,
    /// unix seconds.
    pub refresh_expires_at: i64,
}

/// Token signing and verification with one HS256 secret. `Debug` hides the
/// keys.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("keys", &"<redacted>")
            .field("access_ttl", &self.access_ttl)
            .finish()
    }
}

impl TokenKeys {
    /// Keys for `secret`; access tokens live `access_ttl`, and `exp` is
    /// checked with `leeway_secs` of clock-skew allowance.
    ///
    /// # Errors
    ///
    /// An empty `secret`.
    pub fn new(
        secret: &[u8],
        access_ttl: Duration,
        leeway_secs: u64,
    ) -> Result<TokenKeys, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway_secs;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(TokenKeys {
            encoding: EncodingKey::from_secret(secret)?,
            decoding: DecodingKey::from_secret(secret)?,
            validation,
            access_ttl,
        })
    }

    /// An access and a refresh token for `session`, issued at `now` (unix
    /// seconds). The refresh token expires with the session's refresh window.
    pub fn issue_pair(
        &self,
        session: &Session,
        now: i64,
    ) -> Result<TokenPair, jsonwebtoken::errors::Error> {
        let access_ttl = i64::try_from(self.access_ttl.as_secs()).unwrap_or(i64::MAX);
        let access_expires_at = now.saturating_add(access_ttl);
        let claims = |typ, exp, jti| Claims {
            sub: session.user_id.clone(),
            sid: session.id.clone(),
            styp: session.session_type.clone(),
            typ,
            iat: now,
            exp,
            jti,
        };
        let refresh = claims(
            TokenKind::Refresh,
            session.refresh_expires_at,
            Some(session.refresh_token_id.clone()),
        );
        Ok(TokenPair {
            access_token: self.sign(&claims(TokenKind::Access, access_expires_at, None))?,
            refresh_token: self.sign(&refresh)?,
            token_type: "Bearer",
            session_id: session.id.clone(),
            access_expires_at,
            refresh_expires_at: session.refresh_expires_at,
        })
    }

    fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// The claims of `token` if its signature is ours, it has not expired,
    /// it is of `kind` and, for a refresh token, it has a `jti`; `None`
    /// otherwise (the reason is not told to the client).
    pub fn verify(&self, token: &str, kind: TokenKind) -> Option<Claims> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()?
            .claims;
        let has_jti = claims.jti.is_some();
        (claims.typ == kind && (kind == TokenKind::Access || has_jti)).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &[u8]) -> TokenKeys {
        TokenKeys::new(secret, Duration::from_secs(60), 0).unwrap()
    }

    #[test]
    fn pair_round_trips_and_kinds_do_not_mix() {
        let k = keys(b"secret one");
        let session = Session::new_login("alice", Duration::from_secs(600));
        let now = charon_sessions::Session::now();
        let pair = k.issue_pair(&session, now).unwrap();
        let refresh = k.verify(&pair.refresh_token, TokenKind::Refresh).unwrap();
        assert_eq!(
            (
                refresh.sub.as_str(),
                refresh.sid.as_str(),
                refresh.styp.as_str()
            ),
            ("alice", session.id.as_str(), "full")
        );
        assert_eq!(
            (refresh.iat, refresh.exp),
            (now, session.refresh_expires_at)
        );
        assert_eq!(
            refresh.jti.as_deref(),
            Some(session.refresh_token_id.as_str())
        );
        let access = k.verify(&pair.access_token, TokenKind::Access).unwrap();
        assert_eq!(access.exp, now + 60);
        assert_eq!(
            access.jti, None,
            "the refresh token id stays out of access tokens"
        );
        assert!(k.verify(&pair.access_token, TokenKind::Refresh).is_none());
        assert!(k.verify(&pair.refresh_token, TokenKind::Access).is_none());
    }

    #[test]
    fn foreign_expired_and_garbage_tokens_are_refused() {
        let session = Session::new_login("alice", Duration::from_secs(600));
        let now = charon_sessions::Session::now();
        let pair = keys(b"another secret").issue_pair(&session, now).unwrap();
        assert!(
            keys(b"secret one")
                .verify(&pair.refresh_token, TokenKind::Refresh)
                .is_none()
        );

        let k = keys(b"secret one");
        let old = k.issue_pair(&session, now - 120).unwrap();
        assert!(k.verify(&old.access_token, TokenKind::Access).is_none());
        assert!(k.verify("not.a.jwt", TokenKind::Access).is_none());
    }

    #[test]
    fn a_refresh_token_without_jti_is_refused() {
        let k = keys(b"secret one");
        let now = charon_sessions::Session::now();
        let claims = Claims {
            sub: "alice".to_owned(),
            sid: "sid".to_owned(),
            styp: "full".to_owned(),
            typ: TokenKind::Refresh,
            iat: now,
            exp: now + 60,
            jti: None,
        };
        let token = k.sign(&claims).unwrap();
        assert!(k.verify(&token, TokenKind::Refresh).is_none());
        let with_jti = k
            .sign(&Claims {
                jti: Some("rt".to_owned()),
                ..claims
            })
            .unwrap();
        assert!(k.verify(&with_jti, TokenKind::Refresh).is_some());
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert!(TokenKeys::new(b"", Duration::from_secs(60), 0).is_err());
    }

    #[test]
    fn debug_hides_the_keys() {
        let shown = format!("{:?}", keys(b"very secret bytes"));
        assert!(!shown.contains("very secret"), "{shown}");
    }
}
