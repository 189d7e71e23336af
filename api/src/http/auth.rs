//! Credentials → `depot_core::Principal`. Every protected route takes an [`Auth`] and checks the
//! scope it needs; handlers never look at headers themselves.
//!
//! Accepted, in this order: `X-Admin-Secret` (the operator; constant-time comparison), an API key
//! in `X-API-Key` or `api-key` (or `?api_key=` / `?api-key=` when `auth.allow_query_keys`), a
//! user's access token in `Authorization: Bearer`.

use crate::http::error::{
    ApiError, CHALLENGE, RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET,
};
use crate::http::state::HttpState;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use depot_api_keys::{RateState, UsageRecord};
use depot_core::Principal;
use depot_core::secrets::{ExposeSecret, constant_time_eq};
use futures::future::LocalBoxFuture;
use uuid::Uuid;

pub const ADMIN_SECRET_HEADER: &str = "x-admin-secret";

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

/// Set on requests authenticated with an API key, for usage recording and rate-limit headers.
#[derive(Debug, Clone, Copy)]
struct KeyUse {
    key_id: Uuid,
    rate: Option<RateState>,
}

fn unauthorized(code: &'static str, detail: &str) -> ApiError {
    ApiError::Unauthorized {
        code,
        detail: detail.to_owned(),
        challenge: CHALLENGE,
    }
}

fn presented_key(req: &HttpRequest, allow_query: bool) -> Option<String> {
    for name in ["x-api-key", "api-key"] {
        if let Some(v) = req.headers().get(name) {
            return Some(v.to_str().unwrap_or_default().to_owned());
        }
    }
    if allow_query {
        for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
            if k == "api_key" || k == "api-key" {
                return Some(v.into_owned());
            }
        }
    }
    None
}

fn presents_credentials(req: &HttpRequest, allow_query: bool) -> bool {
    let h = req.headers();
    h.contains_key(ADMIN_SECRET_HEADER)
        || h.contains_key(header::AUTHORIZATION)
        || h.contains_key("x-api-key")
        || h.contains_key("api-key")
        || (allow_query
            && form_urlencoded::parse(req.query_string().as_bytes())
                .any(|(k, _)| k == "api_key" || k == "api-key"))
}

/// Why [`Auth::check`] refused: the answer, and whether the credentials were simply wrong (a
/// guess, which the failed-credential throttle counts) rather than revoked, expired or limited.
struct Refused {
    error: ApiError,
    guess: bool,
}

impl Refused {
    fn guess(error: ApiError) -> Self {
        Self { error, guess: true }
    }
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            guess: false,
        }
    }
}

impl Auth {
    /// Checks the credentials the request presents (see the module doc for the order), unless
    /// the client's address has used up its failed checks for the minute (429).
    pub(crate) async fn authenticate(req: HttpRequest) -> Result<Self, ApiError> {
        let state = req
            .app_data::<web::Data<HttpState>>()
            .ok_or_else(|| ApiError::unexpected(anyhow::anyhow!("application state missing")))?
            .clone();
        let client = crate::http::client_ip::addr(&req);
        if presents_credentials(&req, state.allow_query_keys)
            && let Err(retry_after) = state.failed_credentials.check(client)
        {
            return Err(ApiError::TooManyRequests {
                detail: "too many failed credential checks from this address; try again later"
                    .into(),
                retry_after,
                limit: state.failed_credentials.limit(),
            });
        }
        let refused = match Self::check(&req, &state).await {
            Ok(auth) => return Ok(auth),
            Err(refused) => refused,
        };
        if refused.guess {
            let failures = state.failed_credentials.fail(client);
            if req.headers().contains_key(ADMIN_SECRET_HEADER) {
                // Audited: who tried the operator's secret, how often.
                tracing::warn!(
                    client_ip = ?client,
                    failures_this_minute = failures,
                    "the admin secret was refused"
                );
            }
        }
        Err(refused.error)
    }

    async fn check(req: &HttpRequest, state: &HttpState) -> Result<Self, Refused> {
        if let Some(given) = req.headers().get(ADMIN_SECRET_HEADER) {
            let expected = state.admin_secret.expose_secret().as_bytes();
            return if constant_time_eq(given.as_bytes(), expected) {
                Ok(Auth(Principal::admin()))
            } else {
                Err(Refused::guess(unauthorized(
                    "credentials_invalid",
                    "the admin secret is not valid",
                )))
            };
        }
        if let Some(raw) = presented_key(req, state.allow_query_keys) {
            let result = state.verifier.verify(&raw).await;
            let label = match &result {
                Ok(_) => "valid",
                Err(depot_api_keys::VerifyError::Malformed) => "malformed",
                Err(depot_api_keys::VerifyError::Unknown) => "unknown",
                Err(depot_api_keys::VerifyError::Revoked) => "revoked",
                Err(depot_api_keys::VerifyError::Expired) => "expired",
                Err(depot_api_keys::VerifyError::RateLimited { .. }) => "rate_limited",
                Err(depot_api_keys::VerifyError::Unavailable(_)) => "unavailable",
            };
            state
                .metrics
                .key_verifications
                .with_label_values(&[label])
                .inc();
            let verified = result.map_err(|e| match e {
                e @ (depot_api_keys::VerifyError::Malformed
                | depot_api_keys::VerifyError::Unknown) => Refused::guess(e.into()),
                e => ApiError::from(e).into(),
            })?;
            req.extensions_mut().insert(KeyUse {
                key_id: verified.key_id,
                rate: verified.rate,
            });
            return Ok(Auth(verified.principal));
        }
        if let Some(value) = req.headers().get(header::AUTHORIZATION) {
            let value = value.to_str().unwrap_or_default();
            let token = match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
                _ => {
                    return Err(Refused::guess(unauthorized(
                        "credentials_invalid",
                        "Authorization must be `Bearer <access token>`",
                    )));
                }
            };
            let result = state.accounts.authenticate(token);
            state
                .metrics
                .token_verifications
                .with_label_values(&[match &result {
                    Ok(_) => "valid",
                    Err(depot_accounts::TokenError::Expired) => "expired",
                    Err(depot_accounts::TokenError::Invalid) => "invalid",
                    Err(depot_accounts::TokenError::Revoked) => "revoked",
                }])
                .inc();
            return match result {
                Ok(principal) => Ok(Auth(principal)),
                Err(depot_accounts::TokenError::Expired) => Err(unauthorized(
                    "token_expired",
                    "the access token has expired; refresh it",
                )
                .into()),
                Err(depot_accounts::TokenError::Invalid) => Err(Refused::guess(unauthorized(
                    "credentials_invalid",
                    "the access token is not valid",
                ))),
                Err(depot_accounts::TokenError::Revoked) => Err(unauthorized(
                    "token_revoked",
                    "the account changed (disabled, or its role) after this access token was \
                     issued; refresh it or sign in again",
                )
                .into()),
            };
        }
        Err(unauthorized(
            "credentials_missing",
            "this endpoint needs credentials: Authorization: Bearer <access token>, X-API-Key, \
             or X-Admin-Secret for administration",
        )
        .into())
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    /// The caller the route's access check authenticated (see `http::routes`), or, on a route
    /// without one, the credentials checked now.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let checked = req
            .extensions()
            .get::<crate::http::routes::Authenticated>()
            .cloned();
        match checked {
            Some(crate::http::routes::Authenticated(Some(auth))) => {
                Box::pin(async move { Ok(auth) })
            }
            Some(crate::http::routes::Authenticated(None)) => Box::pin(async {
                Err(unauthorized(
                    "credentials_missing",
                    "this endpoint needs credentials",
                ))
            }),
            // A route without an access check in the route table: refuse rather than
            // authenticate without checking anything (fail closed).
            None => Box::pin(async {
                Err(ApiError::unexpected(anyhow::anyhow!(
                    "a handler takes Auth on a route the route table does not guard"
                )))
            }),
        }
    }
}

/// Optional credentials: `None` when the request carries none, an error when it carries bad ones.
#[derive(Debug, Clone)]
pub struct MaybeAuth(pub Option<Principal>);

impl FromRequest for MaybeAuth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let checked = req
            .extensions()
            .get::<crate::http::routes::Authenticated>()
            .cloned();
        Box::pin(async move {
            match checked {
                Some(crate::http::routes::Authenticated(checked)) => {
                    Ok(MaybeAuth(checked.map(|a| a.0)))
                }
                // Fail closed, as Auth does.
                None => Err(ApiError::unexpected(anyhow::anyhow!(
                    "a handler takes MaybeAuth on a route the route table does not guard"
                ))),
            }
        })
    }
}

/// After the response: records the request in the key's usage log (asynchronously batched) and
/// adds the `RateLimit-*` headers.
pub async fn record_key_use(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let key_use = res.request().extensions().get::<KeyUse>().copied();
    if let Some(KeyUse { key_id, rate }) = key_use {
        let request = res.request();
        if let Some(state) = request.app_data::<web::Data<HttpState>>() {
            state.verifier.record_use(UsageRecord {
                id: Uuid::now_v7(),
                key_id,
                at: chrono::Utc::now(),
                method: request.method().to_string(),
                route: crate::http::middleware::route_template(request),
                status: res.status().as_u16(),
                client_ip: crate::http::client_ip::of(request),
                user_agent: request
                    .headers()
                    .get("user-agent")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            });
        }
        if let Some(rate) = rate {
            let h = res.headers_mut();
            h.insert(RATELIMIT_LIMIT, HeaderValue::from(rate.limit));
            h.insert(RATELIMIT_REMAINING, HeaderValue::from(rate.remaining));
            h.insert(RATELIMIT_RESET, HeaderValue::from(rate.reset_seconds));
        }
    }
    Ok(res)
}
