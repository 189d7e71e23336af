//! The protocol side of OpenID Connect sign-in (authorization code flow with PKCE, `state` and
//! `nonce`), free of HTTP: building the authorization URL and verifying the ID token against the
//! provider's key set. Fetching the discovery document, the key set and the token is the API
//! container's job.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The fields of the discovery document (`/.well-known/openid-configuration`) Depot uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// Signature algorithms accepted for ID tokens: asymmetric only (never `none`, never HMAC, whose
/// "key" would be the client secret).
pub const ACCEPTED_ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// PKCE S256: `BASE64URL(SHA256(verifier))`.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub struct AuthorizationRequest<'a> {
    pub client_id: &'a str,
    pub redirect_uri: &'a str,
    pub scopes: &'a [String],
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_verifier: &'a str,
}

/// The provider's authorization URL for this request.
pub fn authorization_url(metadata: &ProviderMetadata, r: &AuthorizationRequest<'_>) -> String {
    let mut scopes: Vec<&str> = r.scopes.iter().map(String::as_str).collect();
    if !scopes.contains(&"openid") {
        scopes.insert(0, "openid");
    }
    let query = [
        ("response_type", "code"),
        ("client_id", r.client_id),
        ("redirect_uri", r.redirect_uri),
        ("scope", &scopes.join(" ")),
        ("state", r.state),
        ("nonce", r.nonce),
        ("code_challenge", &pkce_challenge(r.code_verifier)),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", urlencode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let sep = if metadata.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{}{sep}{query}", metadata.authorization_endpoint)
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
struct RawIdClaims {
    sub: String,
    aud: Audience,
    nonce: Option<String>,
    azp: Option<String>,
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<Verified>,
}

/// `email_verified` is a boolean by the spec; some providers send `"true"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Verified {
    Bool(bool),
    Text(String),
}

impl Verified {
    fn is_true(&self) -> bool {
        match self {
            Verified::Bool(b) => *b,
            Verified::Text(t) => t.eq_ignore_ascii_case("true"),
        }
    }
}

/// What Depot takes from a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdClaims {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    /// The key id is not in the key set: refetch the set (the provider may have rotated) and
    /// try once more.
    #[error("the ID token's key `{0}` is not in the provider's key set")]
    UnknownKey(String),
    #[error("the ID token is not valid: {0}")]
    Invalid(String),
}

/// Verifies signature, algorithm, `iss`, `aud`, `exp`, `iat`, `azp` and `nonce`.
pub fn verify_id_token(
    token: &str,
    jwks: &JwkSet,
    metadata: &ProviderMetadata,
    client_id: &str,
    expected_nonce: &str,
) -> Result<IdClaims, IdTokenError> {
    let invalid = |m: &str| IdTokenError::Invalid(m.to_owned());
    let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("not a signed JWT"))?;
    if !ACCEPTED_ALGORITHMS.contains(&header.alg) {
        return Err(invalid("its signature algorithm is not accepted"));
    }
    let supported = &metadata.id_token_signing_alg_values_supported;
    let alg_name = format!("{:?}", header.alg);
    if !supported.is_empty() && !supported.contains(&alg_name) {
        return Err(invalid(
            "the provider does not announce its signature algorithm",
        ));
    }
    let jwk = match &header.kid {
        Some(kid) => jwks
            .find(kid)
            .ok_or_else(|| IdTokenError::UnknownKey(kid.clone()))?,
        None if jwks.keys.len() == 1 => &jwks.keys[0],
        None => {
            return Err(invalid(
                "it names no key (kid) and the provider has several",
            ));
        }
    };
    if let Some(key_alg) = jwk.common.key_algorithm
        && format!("{key_alg:?}") != alg_name
    {
        return Err(invalid("its algorithm does not match the key's"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| invalid("the provider's key is unusable"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&metadata.issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.leeway = 60;
    let data = jsonwebtoken::decode::<RawIdClaims>(token, &key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => invalid("bad signature"),
            ErrorKind::ExpiredSignature => invalid("expired"),
            ErrorKind::InvalidIssuer => invalid("wrong issuer"),
            ErrorKind::InvalidAudience => invalid("not issued for this client"),
            _ => invalid("malformed or incomplete claims"),
        }
    })?;
    let c = data.claims;
    let audiences = match &c.aud {
        Audience::One(a) => vec![a.clone()],
        Audience::Many(v) => v.clone(),
    };
    if (audiences.len() > 1 || c.azp.is_some()) && c.azp.as_deref() != Some(client_id) {
        return Err(invalid("its authorized party (azp) is not this client"));
    }
    let nonce_ok = c
        .nonce
        .as_deref()
        .is_some_and(|n| bool::from(n.as_bytes().ct_eq(expected_nonce.as_bytes())));
    if !nonce_ok {
        return Err(invalid("nonce mismatch"));
    }
    if c.sub.is_empty() || c.sub.len() > 255 {
        return Err(invalid("its subject is empty or too long"));
    }
    Ok(IdClaims {
        subject: c.sub,
        email: c.email,
        email_verified: c.email_verified.is_some_and(|v| v.is_true()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_authorization_url_carries_every_parameter() {
        let m = ProviderMetadata {
            issuer: "https://id.example".into(),
            authorization_endpoint: "https://id.example/authorize".into(),
            token_endpoint: "https://id.example/token".into(),
            jwks_uri: "https://id.example/jwks".into(),
            id_token_signing_alg_values_supported: vec![],
        };
        let url = authorization_url(
            &m,
            &AuthorizationRequest {
                client_id: "depot",
                redirect_uri: "http://localhost:8000/api/v1/auth/oidc/callback",
                scopes: &["email".into()],
                state: "s1",
                nonce: "n1",
                code_verifier: "v",
            },
        );
        assert!(url.starts_with("https://id.example/authorize?response_type=code&"));
        assert!(url.contains("scope=openid%20email"));
        assert!(url.contains(
            "redirect_uri=http%3A%2F%2Flocalhost%3A8000%2Fapi%2Fv1%2Fauth%2Foidc%2Fcallback"
        ));
        assert!(url.contains("state=s1") && url.contains("nonce=n1"));
        assert!(url.contains(&format!("code_challenge={}", pkce_challenge("v"))));
        assert!(url.ends_with("code_challenge_method=S256"));
    }
}
