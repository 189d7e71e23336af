//! `/api/v1/api-keys` and `/api/v1/audit-events`: key management for administrators (the admin
//! secret, or a key with the `api_keys:admin` scope).

use crate::api_keys::ApiKeysRoom;
use crate::http::auth::Auth;
use crate::http::collection::{PageQuery, collection, conditional, etag, if_match, page_request};
use crate::http::error::ApiError;
use crate::http::extract::{Json, Query};
use crate::http::routes::{Access, Route};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use depot_api_keys::{
    Actor, ApiKey, AuditEvent, CreateKey, KeyFilter, KeyStatus, PlainKey, Renewal, UsageRecord,
};
use depot_client::wire::{
    self, ApiKeyCreated, ApiKeyView, AuditEventView, CreateApiKeyRequest, RenewRequest,
    RotateRequest, UsageView,
};
use depot_core::Permission;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

/// The API-keys room's routes: all for key administrators.
pub fn routes() -> Vec<Route> {
    let admin = Access::Scope(Permission::ApiKeysAdmin);
    vec![
        Route::new::<__path_create, _, _>(admin, create),
        Route::new::<__path_list, _, _>(admin, list),
        Route::new::<__path_get, _, _>(admin, get),
        Route::new::<__path_delete, _, _>(admin, delete),
        Route::new::<__path_revoke, _, _>(admin, revoke),
        Route::new::<__path_reactivate, _, _>(admin, reactivate),
        Route::new::<__path_renew, _, _>(admin, renew),
        Route::new::<__path_rotate, _, _>(admin, rotate),
        Route::new::<__path_usage, _, _>(admin, usage),
        Route::new::<__path_audit_events, _, _>(admin, audit_events),
    ]
}

/// Who acts, for the audit log.
fn actor(auth: &Auth, req: &HttpRequest) -> Actor {
    Actor {
        principal: auth.0.clone(),
        client_ip: crate::http::client_ip::of(req),
    }
}

/// A key as listings show it (`now` decides whether it counts as expired).
pub fn key_view(k: ApiKey, now: DateTime<Utc>) -> ApiKeyView {
    ApiKeyView {
        status: match k.status(now) {
            KeyStatus::Active => wire::KeyStatus::Active,
            KeyStatus::Revoked => wire::KeyStatus::Revoked,
            KeyStatus::Expired => wire::KeyStatus::Expired,
        },
        id: k.id,
        name: k.name,
        key_prefix: format!("{}…", k.prefix),
        scopes: k.scopes.iter().map(|p| p.as_str().to_owned()).collect(),
        rate_limit_per_minute: k.rate_limit_per_minute,
        created_at: k.created_at,
        updated_at: k.updated_at,
        expires_at: k.expires_at,
        revoked_at: k.revoked_at,
        last_used_at: k.last_used_at,
        total_uses: k.total_uses,
        rotated_from: k.rotated_from,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `active`, `revoked` or `expired`.
    #[param(value_type = Option<wire::KeyStatus>)]
    pub status: Option<String>,
    /// Exact name.
    pub name: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// e.g. `api_key.revoke`.
    pub action: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub fn usage_view(r: UsageRecord) -> UsageView {
    UsageView {
        at: r.at,
        method: r.method,
        route: r.route,
        status: r.status,
        client_ip: r.client_ip,
        user_agent: r.user_agent,
    }
}

pub fn audit_view(e: AuditEvent) -> AuditEventView {
    AuditEventView {
        id: e.id,
        at: e.at,
        actor: e.actor,
        action: e.action,
        target_id: e.target_id,
        client_ip: e.client_ip,
        details: e.details,
    }
}

fn single(key: ApiKey, now: DateTime<Utc>) -> HttpResponse {
    let tag = etag(key.revision);
    HttpResponse::Ok()
        .insert_header((header::ETAG, tag))
        .json(key_view(key, now))
}

fn created(key: ApiKey, plain: PlainKey, now: DateTime<Utc>) -> HttpResponse {
    let location = format!("/api/v1/api-keys/{}", key.id);
    let mut res = HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .insert_header((header::ETAG, etag(key.revision)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ApiKeyCreated {
            key: plain.expose().to_owned(),
            api_key: key_view(key, now),
        });
    // The plaintext key must not be kept for an idempotent replay.
    res.extensions_mut()
        .insert(crate::http::idempotency::SecretResponse);
    res
}

#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "Created; `key` is shown this once", body = ApiKeyCreated),
        (status = 401, description = "Missing or bad credentials"),
        (status = 403, description = "Not an administrator"),
        (status = 422, description = "Invalid fields, each named")))]
pub async fn create(
    req: HttpRequest,
    auth: Auth,
    state: web::Data<ApiKeysRoom>,
    body: Json<CreateApiKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&auth, &req);
    let b = body.0;
    let (key, plain) = state
        .api_keys
        .create(
            &actor,
            CreateKey {
                name: b.name,
                scopes: b.scopes,
                expires_at: b.expires_at,
                expires_in_days: b.expires_in_days,
                never_expires: b.never_expires,
                rate_limit_per_minute: b.rate_limit_per_minute,
            },
        )
        .await?;
    Ok(created(key, plain, state.api_keys.now()))
}

#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", params(ListQuery),
    responses(
        (status = 200, description = "Newest first; follow `next_cursor` or the `Link` header", body = inline(wire::Collection<ApiKeyView>)),
        (status = 422, description = "Bad filter or cursor")))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<ApiKeysRoom>,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.0;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let filter = KeyFilter {
        status: q.status.as_deref().map(KeyStatus::parse).transpose()?,
        name: q.name,
    };
    let keys = state.api_keys.list(&filter, &page).await?;
    let now = state.api_keys.now();
    Ok(collection(&req, keys, |k| key_view(k, now)))
}

#[utoipa::path(get, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The key (never its secret), with an ETag", body = ApiKeyView),
        (status = 304, description = "If-None-Match matched"),
        (status = 404, description = "No such key")))]
pub async fn get(
    req: HttpRequest,
    state: web::Data<ApiKeysRoom>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let key = state.api_keys.get(*id).await?;
    Ok(conditional(&req, key.revision, || {
        single(key, state.api_keys.now())
    }))
}

#[utoipa::path(post, path = "/api/v1/api-keys/{id}/revoke", tag = "api-keys",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "The ETag last read")),
    responses(
        (status = 200, description = "Revoked: the key stops working at once on every replica", body = ApiKeyView),
        (status = 404, description = "No such key"),
        (status = 409, description = "Already revoked"),
        (status = 412, description = "Stale If-Match")))]
pub async fn revoke(
    req: HttpRequest,
    auth: Auth,
    state: web::Data<ApiKeysRoom>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&auth, &req);
    let key = state.api_keys.revoke(&actor, *id, if_match(&req)?).await?;
    Ok(single(key, state.api_keys.now()))
}

#[utoipa::path(post, path = "/api/v1/api-keys/{id}/reactivate", tag = "api-keys",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses(
        (status = 200, description = "No longer revoked (an expired key stays expired until renewed)", body = ApiKeyView),
        (status = 409, description = "Not revoked")))]
pub async fn reactivate(
    req: HttpRequest,
    auth: Auth,
    state: web::Data<ApiKeysRoom>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&auth, &req);
    let key = state
        .api_keys
        .reactivate(&actor, *id, if_match(&req)?)
        .await?;
    Ok(single(key, state.api_keys.now()))
}

#[utoipa::path(post, path = "/api/v1/api-keys/{id}/renew", tag = "api-keys",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    request_body = RenewRequest,
    responses(
        (status = 200, description = "The new expiry applies", body = ApiKeyView),
        (status = 409, description = "Revoked keys are reactivated first"),
        (status = 422, description = "Bad expiry")))]
pub async fn renew(
    req: HttpRequest,
    auth: Auth,
    state: web::Data<ApiKeysRoom>,
    id: web::Path<Uuid>,
    body: Json<RenewRequest>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&auth, &req);
    let b = body.0;
    let key = state
        .api_keys
        .renew(
            &actor,
            *id,
            Renewal {
                expires_at: b.expires_at,
                days: b.days,
                never_expires: b.never_expires,
            },
            if_match(&req)?,
        )
        .await?;
    Ok(single(key, state.api_keys.now()))
}

#[utoipa::path(post, path = "/api/v1/api-keys/{id}/rotate", tag = "api-keys",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    request_body = RotateRequest,
    responses(
        (status = 201, description = "The new key (shown once); the old one stops after the grace period", body = ApiKeyCreated),
        (status = 409, description = "Only active keys rotate")))]
pub async fn rotate(
    req: HttpRequest,
    auth: Auth,
    state: web::Data<ApiKeysRoom>,
    id: web::Path<Uuid>,
    body: Json<RotateRequest>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&auth, &req);
    let (key, plain) = state
        .api_keys
        .rotate(&actor, *id, body.0.grace_seconds, if_match(&req)?)
        .await?;
    Ok(created(key, plain, state.api_keys.now()))
}

#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses(
        (status = 204, description = "Deleted, with its usage log"),
        (status = 404, description = "No such key"),
        (status = 412, description = "Stale If-Match")))]
pub async fn delete(
    req: HttpRequest,
    auth: Auth,
    state: web::Data<ApiKeysRoom>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&auth, &req);
    state.api_keys.delete(&actor, *id, if_match(&req)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/api-keys/{id}/usage", tag = "api-keys",
    params(("id" = Uuid, Path), PageQuery),
    responses(
        (status = 200, description = "The key's requests, newest first", body = inline(wire::Collection<UsageView>)),
        (status = 404, description = "No such key")))]
pub async fn usage(
    req: HttpRequest,
    state: web::Data<ApiKeysRoom>,
    id: web::Path<Uuid>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page_request(query.0.limit, query.0.cursor.as_deref())?;
    let records = state.api_keys.usage(*id, &page).await?;
    Ok(collection(&req, records, usage_view))
}

#[utoipa::path(get, path = "/api/v1/audit-events", tag = "api-keys", params(AuditQuery),
    responses((status = 200, description = "Administrative actions, newest first", body = inline(wire::Collection<AuditEventView>))))]
pub async fn audit_events(
    req: HttpRequest,
    state: web::Data<ApiKeysRoom>,
    query: Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.0;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let events = state
        .api_keys
        .audit_events(q.action.as_deref(), &page)
        .await?;
    Ok(collection(&req, events, audit_view))
}

/// What the derived schemas cannot say: a key's lifetime is given at most one way. (That an
/// `expires_at` lies in the future, within 3650 days, depends on the clock: the field's
/// description says it, and a past instant answers 422 naming `expires_at`.)
pub fn refine_docs(doc: &mut serde_json::Value) {
    for (schema, days) in [
        ("CreateApiKeyRequest", "expires_in_days"),
        ("RenewRequest", "days"),
    ] {
        let Some(schema) = doc.pointer_mut(&format!("/components/schemas/{schema}")) else {
            continue;
        };
        // A field counts as given when it is not null (`never_expires` only when true).
        let given = |field: &str| match field {
            "never_expires" => serde_json::json!({
                "required": [field], "properties": {field: {"const": true}}
            }),
            "expires_at" => serde_json::json!({
                "required": [field], "properties": {field: {"type": "string"}}
            }),
            _ => serde_json::json!({
                "required": [field], "properties": {field: {"type": "integer"}}
            }),
        };
        let pair = |a: &str, b: &str| serde_json::json!({"allOf": [given(a), given(b)]});
        let derived = schema.take();
        *schema = serde_json::json!({
            "allOf": [derived, {"not": {"anyOf": [
                pair("expires_at", days),
                pair("expires_at", "never_expires"),
                pair(days, "never_expires"),
            ]}}]
        });
    }
}
