//! The ONE place where errors become HTTP answers: RFC 9457 `application/problem+json`.
//!
//! Components return their own error enums; the `From` impls here decide status and `code`.
//! A 5xx is opaque to the client and logged with its whole `source()` chain.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
pub use depot_client::wire::{Problem, ProblemField};
use depot_core::error::FieldError;
use depot_core::principal::Forbidden;
use depot_core::{RepoError, ValidationError};

pub const PROBLEM_JSON: &str = "application/problem+json";
pub const RATELIMIT_LIMIT: header::HeaderName = header::HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: header::HeaderName =
    header::HeaderName::from_static("ratelimit-remaining");
pub const RATELIMIT_RESET: header::HeaderName = header::HeaderName::from_static("ratelimit-reset");
/// The `WWW-Authenticate` challenge of every 401.
pub const CHALLENGE: &str = "ApiKey realm=\"depot\", Bearer realm=\"depot\"";

fn problem_field(e: FieldError) -> ProblemField {
    ProblemField {
        field: e.field,
        message: e.message,
    }
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(#[from] ValidationError),
    /// Syntactically broken input (malformed JSON, wrong content type).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{detail}")]
    UnsupportedMediaType { detail: String },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{detail}")]
    NotFound { detail: String },
    /// A 404 with a code of its own (`artifact_missing`).
    #[error("{detail}")]
    Absent { code: &'static str, detail: String },
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("{detail}")]
    Unauthorized {
        code: &'static str,
        detail: String,
        /// The `WWW-Authenticate` challenge.
        challenge: &'static str,
    },
    #[error("{0}")]
    Forbidden(#[from] Forbidden),
    /// A 403 for another reason than a missing scope (a disabled account, registration off…).
    #[error("{detail}")]
    Refused { code: &'static str, detail: String },
    /// Login backoff: too many failures for the account.
    #[error("{detail}")]
    Throttled { detail: String, retry_after: u64 },
    /// An upstream (the identity provider) failed; the detail stays in the log.
    #[error("{detail}")]
    BadGateway { code: &'static str, detail: String },
    #[error("{detail}")]
    PreconditionFailed { detail: String },
    /// A `Range` that starts past the end of a `size`-byte representation.
    #[error("the range starts past the end of the {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after: u64,
        limit: u32,
    },
    #[error("{detail}")]
    ServiceUnavailable { detail: String },
    /// Anything else: logged in full, answered as an opaque 500.
    #[error("unexpected error")]
    Unexpected(#[source] anyhow::Error),
}

impl ApiError {
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound {
            detail: detail.into(),
        }
    }

    pub fn unexpected(e: impl Into<anyhow::Error>) -> Self {
        Self::Unexpected(e.into())
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::BadRequest { code, .. } => code,
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::NotFound { .. } => "not_found",
            ApiError::Absent { code, .. } => code,
            ApiError::Conflict { code, .. } => code,
            ApiError::Unauthorized { code, .. } => code,
            ApiError::Forbidden(_) => "insufficient_scope",
            ApiError::Refused { code, .. } => code,
            ApiError::Throttled { .. } => "login_throttled",
            ApiError::BadGateway { code, .. } => code,
            ApiError::PreconditionFailed { .. } => "precondition_failed",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::ServiceUnavailable { .. } => "service_unavailable",
            ApiError::Unexpected(_) => "internal_error",
        }
    }

    /// The problem document for this error (without `instance`, which the request adds).
    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let (detail, errors) = match self {
            ApiError::Validation(v) => (
                Some(if v.errors.len() == 1 {
                    format!("{}: {}", v.errors[0].field, v.errors[0].message)
                } else {
                    "the request has invalid fields".to_owned()
                }),
                v.errors.iter().cloned().map(problem_field).collect(),
            ),
            ApiError::Unexpected(_) => (
                Some("the server could not complete the request".to_owned()),
                vec![],
            ),
            other => (Some(other.to_string()), vec![]),
        };
        problem(status, self.code(), detail, errors)
    }
}

/// Builds a problem document for a status and code.
pub fn problem(
    status: StatusCode,
    code: &str,
    detail: Option<String>,
    errors: Vec<ProblemField>,
) -> Problem {
    Problem {
        type_uri: format!("https://depot.dev/problems/{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        instance: crate::http::middleware::current_path(),
        code: code.to_owned(),
        errors,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound { .. } | ApiError::Absent { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Refused { .. } => StatusCode::FORBIDDEN,
            ApiError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ServiceUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Unexpected(e) = self {
            tracing::error!(error = %format!("{e:#}"), "request failed unexpectedly");
        }
        let mut res = problem_response(&self.problem());
        match self {
            ApiError::Unauthorized { challenge, .. } => {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            ApiError::TooManyRequests {
                retry_after, limit, ..
            } => {
                let h = res.headers_mut();
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
                h.insert(RATELIMIT_LIMIT, HeaderValue::from(*limit));
                h.insert(RATELIMIT_REMAINING, HeaderValue::from(0u32));
                h.insert(RATELIMIT_RESET, HeaderValue::from(*retry_after));
            }
            ApiError::Throttled { retry_after, .. } => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    res.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        res
    }
}

/// Serialises a problem with its content type.
pub fn problem_response(p: &Problem) -> HttpResponse {
    let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type(PROBLEM_JSON)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(p)
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound => ApiError::not_found("the resource does not exist"),
            RepoError::Unavailable(source) => {
                tracing::error!(error = %source, "the store is unavailable");
                ApiError::ServiceUnavailable {
                    detail: "the service is temporarily unavailable".into(),
                }
            }
            RepoError::Unexpected(source) => ApiError::Unexpected(anyhow::anyhow!(source)),
        }
    }
}

/// Responses that already carry a JSON document (a problem, or a deliberate body such as the
/// readiness report) are left alone.
impl From<depot_api_keys::ApiKeyError> for ApiError {
    fn from(e: depot_api_keys::ApiKeyError) -> Self {
        use depot_api_keys::ApiKeyError as E;
        match e {
            E::Validation(v) => ApiError::Validation(v),
            E::NotFound => ApiError::not_found("no API key with this id"),
            E::Conflict(detail) => ApiError::Conflict {
                code: "invalid_state",
                detail,
            },
            E::PreconditionFailed => ApiError::PreconditionFailed {
                detail: "the resource has changed since it was read (If-Match)".into(),
            },
            E::CannotGrant { reason, .. } => ApiError::Refused {
                code: "insufficient_scope",
                detail: reason,
            },
            E::Repo(r) => r.into(),
        }
    }
}

impl From<depot_packages::PackageError> for ApiError {
    fn from(e: depot_packages::PackageError) -> Self {
        use depot_packages::PackageError as E;
        match e {
            E::Validation(v) => ApiError::Validation(v),
            E::NotFound(detail) => ApiError::not_found(detail),
            E::Conflict { code, detail } => ApiError::Conflict { code, detail },
            E::NotOwner(detail) => ApiError::Refused {
                code: "not_owner",
                detail,
            },
            E::PreconditionFailed => ApiError::PreconditionFailed {
                detail: "the resource has changed since it was read (If-Match)".into(),
            },
            E::Repo(r) => r.into(),
            E::TooLarge { limit } => ApiError::PayloadTooLarge {
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            E::BodyIncomplete(detail) => ApiError::BadRequest {
                code: "body_incomplete",
                detail,
            },
            E::ArtifactMissing(detail) => ApiError::Absent {
                code: "artifact_missing",
                detail,
            },
            e @ E::Storage(_) => ApiError::unexpected(e),
        }
    }
}

impl From<depot_accounts::AccountError> for ApiError {
    fn from(e: depot_accounts::AccountError) -> Self {
        use depot_accounts::AccountError as E;
        let unauthorized = |code: &'static str, detail: String| ApiError::Unauthorized {
            code,
            detail,
            challenge: CHALLENGE,
        };
        let detail = e.to_string();
        match e {
            E::Validation(v) => ApiError::Validation(v),
            E::RegistrationDisabled => ApiError::Refused {
                code: "registration_disabled",
                detail,
            },
            E::InvalidCredentials => unauthorized("credentials_invalid", detail),
            E::Throttled { retry_after } => ApiError::Throttled {
                detail,
                retry_after,
            },
            E::Disabled => ApiError::Refused {
                code: "account_disabled",
                detail,
            },
            E::RefreshInvalid => unauthorized("refresh_token_invalid", detail),
            E::RefreshReused => unauthorized("refresh_token_reused", detail),
            E::NotFound => ApiError::not_found(detail),
            E::EmailTaken
            | E::IdentityTaken
            | E::LastAdmin
            | E::AdminNotLinkable
            | E::EmailUnverified => ApiError::Conflict {
                code: "conflict",
                detail,
            },
            E::PreconditionFailed => ApiError::PreconditionFailed {
                detail: "the resource has changed since it was read (If-Match)".into(),
            },
            E::Repo(r) => r.into(),
            E::Hash(depot_accounts::password::HashError::Busy) => ApiError::ServiceUnavailable {
                detail: "too many sign-ins at once; try again shortly".into(),
            },
            E::Hash(h) => ApiError::unexpected(h),
        }
    }
}

impl From<crate::accounts::oidc::OidcError> for ApiError {
    fn from(e: crate::accounts::oidc::OidcError) -> Self {
        use crate::accounts::oidc::OidcError as E;
        match e {
            E::Provider(detail) => {
                tracing::error!(%detail, "the identity provider failed");
                ApiError::BadGateway {
                    code: "oidc_provider_unavailable",
                    detail: "the identity provider could not be reached or answered unexpectedly"
                        .into(),
                }
            }
            E::CodeRejected => ApiError::BadRequest {
                code: "oidc_code_rejected",
                detail: e.to_string(),
            },
            E::Token(t) => ApiError::Unauthorized {
                code: "oidc_token_invalid",
                detail: t.to_string(),
                challenge: CHALLENGE,
            },
        }
    }
}

impl From<depot_api_keys::VerifyError> for ApiError {
    fn from(e: depot_api_keys::VerifyError) -> Self {
        use depot_api_keys::VerifyError as E;
        let unauthorized = |code: &'static str, detail: &str| ApiError::Unauthorized {
            code,
            detail: detail.to_owned(),
            challenge: CHALLENGE,
        };
        match e {
            E::Malformed | E::Unknown => {
                unauthorized("credentials_invalid", "the API key is not valid")
            }
            E::Revoked => unauthorized("key_revoked", "the API key has been revoked"),
            E::Expired => unauthorized("key_expired", "the API key has expired"),
            E::RateLimited { limit, retry_after } => ApiError::TooManyRequests {
                detail: format!("the key's limit of {limit} requests per minute is exhausted"),
                retry_after,
                limit,
            },
            E::Unavailable(r) => r.into(),
        }
    }
}

fn has_json_body(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
}

/// `ErrorHandlers` default handler: every 4xx/5xx that is not already JSON (actix's own
/// 404 and 405, a 413 from a payload limit, …) is rewritten as problem+json.
pub fn problem_for_any_error<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let status = res.status();
    let path = res.request().path().to_owned();
    if has_json_body(res.headers()) {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::BAD_REQUEST => "bad_request",
        s if s.is_server_error() => "internal_error",
        _ => "error",
    };
    let detail = match status {
        StatusCode::NOT_FOUND => format!("no resource at {path}"),
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this resource".into(),
        s if s.is_server_error() => "the server could not complete the request".into(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let mut p = problem(status, code, Some(detail), vec![]);
    p.instance = Some(path);
    let allow = res.headers().get(header::ALLOW).cloned();
    let (req, _) = res.into_parts();
    let mut new = problem_response(&p);
    if let Some(allow) = allow {
        new.headers_mut().insert(header::ALLOW, allow);
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, new).map_into_right_body::<B>(),
    ))
}
