//! The HTTP side of OpenID Connect sign-in: the provider's discovery document and key set
//! (cached; the keys are refetched when a token names an unknown `kid`, at most every
//! `oidc.jwks_refresh_min_seconds`), and the authorization-code exchange.

use crate::accounts::settings::OidcSettings;
use crate::http::egress::redact;
use depot_accounts::oidc::{self, IdClaims, IdTokenError, ProviderMetadata};
use depot_core::secrets::{ExposeSecret, SecretString};
use jsonwebtoken::jwk::JwkSet;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered nonsense.
    #[error("the identity provider is unavailable: {0}")]
    Provider(String),
    /// The provider refused the code (expired, reused, wrong verifier…).
    #[error("the identity provider refused the authorization code")]
    CodeRejected,
    #[error(transparent)]
    Token(#[from] IdTokenError),
}

const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);

struct Cache {
    metadata: Option<ProviderMetadata>,
    jwks: Option<(JwkSet, Instant)>,
}

pub struct OidcClient {
    http: crate::http::egress::EgressClient,
    issuer: String,
    pub client_id: String,
    client_secret: Option<SecretString>,
    pub redirect_url: String,
    pub scopes: Vec<String>,
    pub cookie_secure: bool,
    allowed_endpoint_hosts: Vec<String>,
    refresh_min: Duration,
    cache: Mutex<Cache>,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

impl OidcClient {
    pub fn new(
        settings: &OidcSettings,
        client_secret: Option<SecretString>,
        egress: &crate::http::egress::Egress,
    ) -> Option<Self> {
        let issuer = settings.issuer_url.clone()?;
        let builder =
            reqwest::Client::builder().timeout(Duration::from_secs(settings.http_timeout_seconds));
        let http = egress.client(builder, None).ok()?;
        Some(Self {
            http,
            issuer,
            client_id: settings.client_id.clone().unwrap_or_default(),
            client_secret,
            redirect_url: settings.redirect_url.clone().unwrap_or_default(),
            scopes: settings.scopes.clone(),
            cookie_secure: settings.cookie_secure,
            allowed_endpoint_hosts: settings.allowed_endpoint_hosts.clone(),
            refresh_min: Duration::from_secs(settings.jwks_refresh_min_seconds),
            cache: Mutex::new(Cache {
                metadata: None,
                jwks: None,
            }),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let res = self
            .http
            .request(reqwest::Method::GET, url)
            .map_err(|e| OidcError::Provider(format!("GET {}: {e}", redact(url))))?
            .send()
            .await
            .map_err(|e| {
                OidcError::Provider(format!("GET {}: {}", redact(url), e.without_url()))
            })?;
        if !res.status().is_success() {
            return Err(OidcError::Provider(format!(
                "GET {}: {}",
                redact(url),
                res.status()
            )));
        }
        res.json()
            .await
            .map_err(|e| OidcError::Provider(format!("GET {}: {}", redact(url), e.without_url())))
    }

    /// The discovery document, fetched once. Its `issuer` must be the configured one exactly.
    pub async fn metadata(&self) -> Result<ProviderMetadata, OidcError> {
        if let Some(m) = &self.cache.lock().await.metadata {
            return Ok(m.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let m: ProviderMetadata = self.get_json(&url).await?;
        if m.issuer != self.issuer {
            return Err(OidcError::Provider(format!(
                "the discovery document names issuer `{}`, not the configured `{}`",
                m.issuer, self.issuer
            )));
        }
        // The browser is sent to the first; Depot calls the others.
        self.check_endpoint("authorization_endpoint", &m.authorization_endpoint)?;
        self.check_endpoint("token_endpoint", &m.token_endpoint)?;
        self.check_endpoint("jwks_uri", &m.jwks_uri)?;
        self.cache.lock().await.metadata = Some(m.clone());
        Ok(m)
    }

    /// The endpoints Depot calls itself (the code exchange, the key set), and the one it sends
    /// browsers to (the authorization endpoint), are https on the
    /// issuer's own origin, or on a host listed in `oidc.allowed_endpoint_hosts` (Google's are
    /// on googleapis.com); plain http only for a provider on loopback, on its own origin. A
    /// tampered or misconfigured discovery document cannot point Depot anywhere else.
    fn check_endpoint(&self, what: &str, endpoint: &str) -> Result<(), OidcError> {
        let refuse = |why: &str| {
            Err(OidcError::Provider(format!(
                "the discovery document's {what} ({}) {why}",
                redact(endpoint)
            )))
        };
        let (Ok(issuer), Ok(url)) = (url::Url::parse(&self.issuer), url::Url::parse(endpoint))
        else {
            return refuse("is not a URL");
        };
        let same_origin = url.origin() == issuer.origin();
        let listed = url.host_str().is_some_and(|h| {
            self.allowed_endpoint_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(h.trim_end_matches('.')))
        });
        match url.scheme() {
            "https" if same_origin || listed => Ok(()),
            "https" => refuse("is not on the issuer's origin nor in oidc.allowed_endpoint_hosts"),
            "http" if same_origin && issuer.scheme() == "http" => Ok(()),
            _ => refuse("is not https"),
        }
    }

    async fn jwks(&self, m: &ProviderMetadata, refresh: bool) -> Result<JwkSet, OidcError> {
        {
            let cache = self.cache.lock().await;
            // Refetched when a token names an unknown key (at most every refresh_min), and at
            // least hourly, so keys the provider withdrew stop being trusted.
            if let Some((set, fetched)) = &cache.jwks
                && fetched.elapsed() < JWKS_MAX_AGE
                && (!refresh || fetched.elapsed() < self.refresh_min)
            {
                return Ok(set.clone());
            }
        }
        let set: JwkSet = self.get_json(&m.jwks_uri).await?;
        self.cache.lock().await.jwks = Some((set.clone(), Instant::now()));
        Ok(set)
    }

    /// Exchanges the authorization code (with the PKCE verifier) and verifies the ID token.
    pub async fn complete(
        &self,
        code: &str,
        code_verifier: &str,
        nonce: &str,
    ) -> Result<IdClaims, OidcError> {
        let m = self.metadata().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_url.as_str()),
            ("client_id", self.client_id.as_str()),
            ("code_verifier", code_verifier),
        ];
        let mut req = self
            .http
            .request(reqwest::Method::POST, &m.token_endpoint)
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?
            .form(&form);
        if let Some(secret) = &self.client_secret {
            req = req.basic_auth(&self.client_id, Some(secret.expose_secret()));
        }
        let res = req
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint: {}", e.without_url())))?;
        if res.status().is_client_error() {
            return Err(OidcError::CodeRejected);
        }
        if !res.status().is_success() {
            return Err(OidcError::Provider(format!(
                "token endpoint: {}",
                res.status()
            )));
        }
        let body: TokenResponse = res
            .json()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint: {}", e.without_url())))?;
        let id_token = body
            .id_token
            .ok_or_else(|| OidcError::Provider("the token response has no id_token".into()))?;
        let keys = self.jwks(&m, false).await?;
        match oidc::verify_id_token(&id_token, &keys, &m, &self.client_id, nonce) {
            Err(IdTokenError::UnknownKey(kid)) => {
                tracing::info!(%kid, "ID token signed with an unknown key; refetching the provider's keys");
                let keys = self.jwks(&m, true).await?;
                Ok(oidc::verify_id_token(
                    &id_token,
                    &keys,
                    &m,
                    &self.client_id,
                    nonce,
                )?)
            }
            other => Ok(other?),
        }
    }
}
