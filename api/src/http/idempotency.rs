//! `Idempotency-Key` on every POST under `/api/v1` (shared/CONVENTIONS.md): a retry with the same
//! key and body replays the first response with `Idempotent-Replayed: true`; the same key with
//! another body is a 422; while the first is still running, a 409. Keys are per principal and
//! kept 24 hours.
//!
//! It runs inside each guarded POST route, after the route's access check (see
//! `http::routes`): a revoked key, a disabled user or a rate-limited caller is refused before
//! anything is replayed, and the decision which routes take part is the route table's (public
//! routes, such as sign-in, never do), not a reading of the raw path.

use crate::http::error::{ApiError, problem_response};
use crate::http::state::HttpState;
use actix_web::body::{BoxBody, MessageBody, to_bytes};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use chrono::Duration;
use depot_core::ValidationError;
use depot_core::idempotency::{Begin, StoredResponse};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
const KEEP_HOURS: i64 = 24;
/// Response headers worth replaying.
const KEPT_HEADERS: [&str; 5] = [
    "content-type",
    "location",
    "etag",
    "retry-after",
    "cache-control",
];

/// Marks a response that carries a secret (a new API key, tokens): its body is never stored.
/// A retry with the same key is answered 409 `idempotency_secret_not_replayable` instead.
#[derive(Debug, Clone, Copy)]
pub struct SecretResponse;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who is asking, as the route's access check authenticated it: `user:<id>` (whose access
/// tokens change every few minutes, so a retry after a token refresh still finds its key),
/// `api_key:<id>`, `admin`. `None` without credentials.
fn owner(req: &ServiceRequest) -> Option<String> {
    match req.extensions().get::<crate::http::routes::Authenticated>() {
        Some(crate::http::routes::Authenticated(Some(auth))) => Some(auth.0.actor()),
        _ => None,
    }
}

fn error(e: ApiError, req: ServiceRequest) -> ServiceResponse<BoxBody> {
    let res = e.error_response();
    req.into_response(res)
}

pub async fn idempotency(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let key = match req.headers().get(IDEMPOTENCY_KEY) {
        Some(v) if req.method() == Method::POST => {
            v.to_str().ok().and_then(|v| Uuid::parse_str(v.trim()).ok())
        }
        _ => return Ok(next.call(req).await?.map_into_boxed_body()),
    };
    let Some(key) = key else {
        let e = ValidationError::field("Idempotency-Key", "must be a UUID");
        return Ok(error(e.into(), req));
    };
    let Some(state) = req.app_data::<web::Data<HttpState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    // Records belong to a principal: without one, nothing is stored or replayed.
    let Some(owner) = owner(&req) else {
        let e = ValidationError::field("Idempotency-Key", "needs credentials: send it with them");
        return Ok(error(e.into(), req));
    };
    let body = req.extract::<web::Bytes>().await?;
    let mut hash = Sha256::new();
    hash.update(req.method().as_str().as_bytes());
    hash.update(b" ");
    hash.update(req.path().as_bytes());
    hash.update(b"?");
    hash.update(req.query_string().as_bytes());
    hash.update(b"\n");
    hash.update(&body);
    let request_hash = hex(&hash.finalize());
    let now = depot_core::Clock::now(state.clock.as_ref());
    let begun = state
        .idempotency
        .begin(
            &owner,
            key,
            &request_hash,
            now,
            now + Duration::hours(KEEP_HOURS),
        )
        .await;
    match begun {
        Err(e) => return Ok(error(e.into(), req)),
        Ok(Begin::Mismatch) => {
            return Ok(error(
                ValidationError::field(
                    "Idempotency-Key",
                    "was already used with a different request; use a new key",
                )
                .into(),
                req,
            ));
        }
        Ok(Begin::InProgress) => {
            return Ok(error(
                ApiError::Conflict {
                    code: "idempotency_in_progress",
                    detail: "the first request with this Idempotency-Key is still being processed"
                        .into(),
                },
                req,
            ));
        }
        Ok(Begin::Replay(stored)) => {
            let mut res =
                HttpResponse::build(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK));
            for (k, v) in &stored.headers {
                res.insert_header((k.as_str(), v.as_str()));
            }
            res.insert_header(("Idempotent-Replayed", "true"));
            return Ok(req.into_response(res.body(stored.body)));
        }
        Ok(Begin::Started) => {}
    }
    req.set_payload(Payload::from(body));
    let res = next.call(req).await?;
    let status = res.status();
    let headers: Vec<(String, String)> = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            res.headers()
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(|v| ((*name).to_owned(), v.to_owned()))
        })
        .collect();
    let secret = res
        .response()
        .extensions()
        .get::<SecretResponse>()
        .is_some();
    let (http_req, response) = res.into_parts();
    let (head, body) = response.into_parts();
    let bytes = match to_bytes(body).await {
        Ok(b) => b,
        Err(_) => {
            let _ = state.idempotency.abandon(&owner, key).await;
            let p =
                ApiError::unexpected(anyhow::anyhow!("reading the response body failed")).problem();
            return Ok(ServiceResponse::new(http_req, problem_response(&p)));
        }
    };
    // Failures worth retrying free the key; everything else is kept for replay.
    let retryable = status.is_server_error()
        || status == StatusCode::CONFLICT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::UNAUTHORIZED;
    let outcome = if retryable {
        state.idempotency.abandon(&owner, key).await
    } else {
        let stored = if secret {
            let p = ApiError::Conflict {
                code: "idempotency_secret_not_replayable",
                detail: "the first request with this Idempotency-Key succeeded; its response \
                         carried a secret, which Depot does not keep"
                    .into(),
            }
            .problem();
            StoredResponse {
                status: p.status,
                headers: vec![(
                    "content-type".into(),
                    crate::http::error::PROBLEM_JSON.into(),
                )],
                body: serde_json::to_vec(&p).unwrap_or_default(),
            }
        } else {
            StoredResponse {
                status: status.as_u16(),
                headers,
                body: bytes.to_vec(),
            }
        };
        state.idempotency.complete(&owner, key, &stored).await
    };
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "storing the idempotent response failed");
    }
    let response = head.set_body(bytes).map_into_boxed_body();
    Ok(ServiceResponse::new(http_req, response))
}
