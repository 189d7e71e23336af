//! Access tokens (JWT, EdDSA, algorithm pinned) and refresh tokens (opaque, stored as hashes).
//!
//! An access token's header is `{"alg":"EdDSA","typ":"at+jwt","kid":…}` (RFC 9068), its claims
//! `iss`, `aud`, `sub` (the user id), `iat`, `exp`, `jti`, `role` and `scope`. Verification pins
//! the algorithm (so `alg: none` and HS256-with-the-public-key confusion fail), requires every
//! claim, checks issuer and audience, and re-derives the scopes from the role: a token cannot
//! carry more than its role allows.

use crate::model::Role;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use depot_core::{Permission, Principal, PrincipalKind};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use uuid::Uuid;

pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
pub const REFRESH_PREFIX: &str = "dpr_";

/// `n` random bytes, URL-safe base64 without padding.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256, the form in which refresh tokens and OIDC states are stored.
pub fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// A new refresh token: `dpr_` + 256 random bits.
pub fn new_refresh_token() -> String {
    format!("{REFRESH_PREFIX}{}", random_token(32))
}

/// PKCS#8 DER header of an Ed25519 private key (RFC 8410); the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A fresh Ed25519 private key as PKCS#8 PEM (what `jwt_signing_key` holds; the same as
/// `openssl genpkey -algorithm ed25519`).
pub fn generate_ed25519_pem() -> String {
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    der.extend_from_slice(&seed);
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(der)
    )
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("jwt_signing_key is not an Ed25519 private key in PKCS#8 PEM form: {0}")]
    Invalid(String),
}

/// Why a presented access token was refused. The API answers 401 for all of them alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid")]
    Invalid,
    /// Issued before its user was disabled or changed role.
    #[error("the access token was issued before the account changed")]
    Revoked,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    /// Depot's own claim: when the token was issued, in milliseconds (`iat` has whole
    /// seconds), so that a change of the user voids exactly the tokens issued before it.
    /// Tokens without it (issued before the claim existed) count as issued at `iat`'s start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<i64>,
    pub exp: i64,
    pub jti: String,
    pub role: String,
    /// Space-separated scopes (RFC 8693 style).
    pub scope: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
}

pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: chrono::Duration,
}

/// Signs access tokens with one Ed25519 key, and verifies them with it or, during a key
/// rotation, with the previous key (by `kid`).
pub struct TokenIssuer {
    encoding: EncodingKey,
    /// The current key first, then the previous one, if any.
    verifiers: Vec<(String, DecodingKey)>,
    kid: String,
    jwks: JwkSet,
    validation: Validation,
    settings: TokenSettings,
}

impl TokenIssuer {
    pub fn from_pem(pem: &str, settings: TokenSettings) -> Result<Self, KeyError> {
        let (encoding, jwk, kid, decoding) = Self::key(pem)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Ok(Self {
            encoding,
            verifiers: vec![(kid.clone(), decoding)],
            kid,
            jwks: JwkSet { keys: vec![jwk] },
            validation,
            settings,
        })
    }

    /// A key rotation: tokens signed with the previous key (PEM) still verify until they expire,
    /// and its public half stays in the key set. New tokens are signed with the current key.
    pub fn with_previous(mut self, pem: &str) -> Result<Self, KeyError> {
        let (_, jwk, kid, decoding) = Self::key(pem)?;
        if kid != self.kid {
            self.verifiers.push((kid, decoding));
            self.jwks.keys.push(jwk);
        }
        Ok(self)
    }

    /// An Ed25519 private key (PEM): the signer, its public JWK, its `kid` (the JWK thumbprint)
    /// and its verifier.
    fn key(pem: &str) -> Result<(EncodingKey, Jwk, String, DecodingKey), KeyError> {
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes())
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::EdDSA)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let kid = jwk
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::EdDSA);
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| KeyError::Invalid(e.to_string()))?;
        Ok((encoding, jwk, kid, decoding))
    }

    /// The public key set served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    pub fn access_ttl(&self) -> chrono::Duration {
        self.settings.access_ttl
    }

    pub fn issue(&self, user_id: Uuid, role: Role, now: DateTime<Utc>) -> String {
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: user_id.to_string(),
            iat: now.timestamp(),
            iat_ms: Some(now.timestamp_millis()),
            exp: (now + self.settings.access_ttl).timestamp(),
            jti: Uuid::now_v7().to_string(),
            role: role.as_str().to_owned(),
            scope: role
                .scopes()
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("an Ed25519 key always signs")
    }

    /// The principal an access token stands for.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        self.verify_issued(token, Utc::now())
            .map(|(principal, _)| principal)
    }

    /// The principal an access token stands for, and when it was issued (milliseconds since
    /// the epoch). A token claiming to be issued in the future (beyond the leeway), or to live
    /// longer than an access token does, is refused: only a forger's would.
    pub fn verify_issued(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(Principal, i64), TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        // The key is chosen by the header's `kid` among this issuer's own keys only; the
        // algorithm stays pinned by `validation`.
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Invalid)?
            .kid
            .ok_or(TokenError::Invalid)?;
        let (_, key) = self
            .verifiers
            .iter()
            .find(|(k, _)| *k == kid)
            .ok_or(TokenError::Invalid)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        if data.header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(TokenError::Invalid);
        }
        let c = data.claims;
        let leeway = self.validation.leeway as i64;
        if c.iat > now.timestamp() + leeway
            || c.exp - c.iat > self.settings.access_ttl.num_seconds() + leeway
        {
            return Err(TokenError::Invalid);
        }
        let issued_ms = match c.iat_ms {
            Some(ms) if ms.div_euclid(1000) == c.iat => ms,
            Some(_) => return Err(TokenError::Invalid),
            None => c.iat * 1000,
        };
        let user_id = Uuid::parse_str(&c.sub).map_err(|_| TokenError::Invalid)?;
        let role: Role = c.role.parse().map_err(|_| TokenError::Invalid)?;
        let allowed = role.scopes();
        let mut scopes = BTreeSet::new();
        for s in c.scope.split_whitespace() {
            let p: Permission = s.parse().map_err(|_| TokenError::Invalid)?;
            if !allowed.contains(&p) {
                return Err(TokenError::Invalid);
            }
            scopes.insert(p);
        }
        if c.jti.is_empty() {
            return Err(TokenError::Invalid);
        }
        Ok((
            Principal {
                kind: PrincipalKind::User { user_id },
                scopes,
            },
            issued_ms,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn issuer() -> TokenIssuer {
        TokenIssuer::from_pem(
            &generate_ed25519_pem(),
            TokenSettings {
                issuer: "depot-test".into(),
                audience: "depot".into(),
                access_ttl: Duration::minutes(15),
            },
        )
        .unwrap()
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn a_token_round_trips_into_a_principal() {
        let t = issuer();
        let id = Uuid::now_v7();
        let token = t.issue(id, Role::User, Utc::now());
        let p = t.verify(&token).unwrap();
        assert_eq!(p.kind, PrincipalKind::User { user_id: id });
        assert_eq!(p.scopes, Role::User.scopes());
        let jwks = serde_json::to_value(t.jwks()).unwrap();
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        assert!(jwks["keys"][0].get("d").is_none(), "never the private part");
    }

    #[test]
    fn expired_tokens_are_refused() {
        let t = issuer();
        let token = t.issue(Uuid::now_v7(), Role::User, Utc::now() - Duration::hours(1));
        assert_eq!(t.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn another_keys_token_is_refused() {
        let token = issuer().issue(Uuid::now_v7(), Role::Admin, Utc::now());
        assert_eq!(issuer().verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn during_a_rotation_the_previous_keys_tokens_verify_and_both_keys_are_published() {
        let settings = || TokenSettings {
            issuer: "depot-test".into(),
            audience: "depot".into(),
            access_ttl: Duration::minutes(15),
        };
        let (old_pem, new_pem) = (generate_ed25519_pem(), generate_ed25519_pem());
        let old = TokenIssuer::from_pem(&old_pem, settings()).unwrap();
        let user = Uuid::now_v7();
        let before = old.issue(user, Role::User, Utc::now());

        let rotated = TokenIssuer::from_pem(&new_pem, settings())
            .unwrap()
            .with_previous(&old_pem)
            .unwrap();
        assert!(rotated.verify(&before).is_ok(), "the previous key's token");
        let after = rotated.issue(user, Role::User, Utc::now());
        assert!(rotated.verify(&after).is_ok());
        assert!(
            old.verify(&after).is_err(),
            "new tokens are signed with the new key"
        );
        let kids: Vec<_> = rotated
            .jwks()
            .keys
            .iter()
            .map(|k| k.common.key_id.clone().unwrap())
            .collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[1], old.jwks().keys[0].common.key_id.clone().unwrap());

        // Once the previous key is dropped, its tokens are refused.
        let done = TokenIssuer::from_pem(&new_pem, settings()).unwrap();
        assert_eq!(done.verify(&before), Err(TokenError::Invalid));
        // The same key given twice is published once.
        let same = TokenIssuer::from_pem(&new_pem, settings())
            .unwrap()
            .with_previous(&new_pem)
            .unwrap();
        assert_eq!(same.jwks().keys.len(), 1);
    }

    #[test]
    fn alg_none_and_tampered_claims_are_refused() {
        let t = issuer();
        let token = t.issue(Uuid::now_v7(), Role::User, Utc::now());
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "at+jwt"})),
            parts[1]
        );
        assert_eq!(t.verify(&none), Err(TokenError::Invalid));
        claims["role"] = "admin".into();
        claims["scope"] = "users:admin".into();
        let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
        assert_eq!(t.verify(&tampered), Err(TokenError::Invalid));
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let t = issuer();
        let x = serde_json::to_value(t.jwks()).unwrap()["keys"][0]["x"]
            .as_str()
            .unwrap()
            .to_owned();
        let claims = AccessClaims {
            iss: "depot-test".into(),
            aud: "depot".into(),
            sub: Uuid::now_v7().to_string(),
            iat: Utc::now().timestamp(),
            iat_ms: None,
            exp: Utc::now().timestamp() + 600,
            jti: "x".into(),
            role: "admin".into(),
            scope: "users:admin".into(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(ACCESS_TOKEN_TYPE.into());
        for secret in [x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(&x).unwrap()] {
            let forged =
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
            assert_eq!(t.verify(&forged), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn scopes_beyond_the_role_are_refused() {
        // Signed by the right key but claiming more than the role allows (a bug elsewhere, or a
        // role downgrade while the token lives): refused.
        let t = issuer();
        let claims = AccessClaims {
            iss: "depot-test".into(),
            aud: "depot".into(),
            sub: Uuid::now_v7().to_string(),
            iat: Utc::now().timestamp(),
            iat_ms: None,
            exp: Utc::now().timestamp() + 600,
            jti: "x".into(),
            role: "user".into(),
            scope: "packages:read users:admin".into(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.into());
        header.kid = Some(t.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &t.encoding).unwrap();
        assert_eq!(t.verify(&token), Err(TokenError::Invalid));
    }

    /// Signed with the right key (a leaked key, or a bug) but dated in the future, or living
    /// longer than an access token does, or with an `iat_ms` outside `iat`'s second: refused.
    #[test]
    fn impossible_issue_times_are_refused() {
        let t = issuer();
        let now = Utc::now().timestamp();
        let sign = |iat: i64, iat_ms: Option<i64>, exp: i64| {
            let claims = AccessClaims {
                iss: "depot-test".into(),
                aud: "depot".into(),
                sub: Uuid::now_v7().to_string(),
                iat,
                iat_ms,
                exp,
                jti: "x".into(),
                role: "user".into(),
                scope: "packages:read".into(),
            };
            let mut header = Header::new(Algorithm::EdDSA);
            header.typ = Some(ACCESS_TOKEN_TYPE.into());
            header.kid = Some(t.kid.clone());
            jsonwebtoken::encode(&header, &claims, &t.encoding).unwrap()
        };
        let ttl = t.access_ttl().num_seconds();
        assert!(
            t.verify(&sign(now, Some(now * 1000 + 5), now + ttl))
                .is_ok()
        );
        assert!(
            t.verify(&sign(now, None, now + ttl)).is_ok(),
            "an older token"
        );
        for (iat, iat_ms, exp) in [
            (now + 3600, None, now + 3600 + ttl),
            (now, None, now + 10 * ttl),
            (now, Some((now + 1) * 1000), now + ttl),
            (now, Some(now * 1000 - 1), now + ttl),
        ] {
            assert_eq!(
                t.verify(&sign(iat, iat_ms, exp)),
                Err(TokenError::Invalid),
                "iat {iat} iat_ms {iat_ms:?} exp {exp}"
            );
        }
    }

    #[test]
    fn wrong_audience_or_issuer_is_refused() {
        let pem = generate_ed25519_pem();
        let settings = |iss: &str, aud: &str| TokenSettings {
            issuer: iss.into(),
            audience: aud.into(),
            access_ttl: Duration::minutes(5),
        };
        let a = TokenIssuer::from_pem(&pem, settings("depot-a", "depot")).unwrap();
        let b = TokenIssuer::from_pem(&pem, settings("depot-b", "depot")).unwrap();
        let c = TokenIssuer::from_pem(&pem, settings("depot-a", "other")).unwrap();
        let token = a.issue(Uuid::now_v7(), Role::User, Utc::now());
        assert!(a.verify(&token).is_ok());
        assert_eq!(b.verify(&token), Err(TokenError::Invalid));
        assert_eq!(c.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn refresh_tokens_are_long_and_distinct() {
        let a = new_refresh_token();
        assert!(a.starts_with(REFRESH_PREFIX));
        assert_eq!(a.len(), REFRESH_PREFIX.len() + 43);
        assert_ne!(a, new_refresh_token());
        assert_ne!(sha256(&a), sha256(&new_refresh_token()));
    }

    #[test]
    fn bad_pem_is_reported() {
        let settings = TokenSettings {
            issuer: "x".into(),
            audience: "y".into(),
            access_ttl: Duration::minutes(5),
        };
        assert!(TokenIssuer::from_pem("not a key", settings).is_err());
    }
}
