//! `/api/v1/packages` and `/api/v1/operations`: the registry and its long-running operations.

use crate::http::auth::Auth;
use crate::http::collection::{
    collection, conditional, etag, if_match, page_request, render_collection,
};
use crate::http::error::ApiError;
use crate::http::extract::{Json, Query};
use crate::http::routes::{Access, Route};
use crate::packages::PackagesRoom;
use crate::packages::streams::{NoSlot, Slot};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use depot_client::wire::{
    self, CreatePackageRequest, OperationProblem, OperationView, PackageView, PatchPackageRequest,
};
use depot_core::{Permission, ValidationError};
use depot_packages::model::PackageInput;
use depot_packages::names::VersionOrder;
use depot_packages::ports::{OperationFilter, PackageFilter, PackageSort};
use depot_packages::version::Requirement;
use depot_packages::{Operation, OperationKind, OperationStatus, Package, PackageStatus};
use serde::Deserialize;
use std::time::Duration;
use utoipa::IntoParams;
use uuid::Uuid;

/// The packages room's routes and who may call them.
pub fn routes() -> Vec<Route> {
    use Permission::{OperationsRead, PackagesRead, PackagesWrite};
    // packages:read first: a refusal names it, as it always did.
    const READ_OPERATIONS: Access = Access::AnyScope(&[PackagesRead, OperationsRead]);
    vec![
        Route::new::<__path_create, _, _>(Access::Scope(PackagesWrite), create),
        Route::new::<__path_list, _, _>(Access::Scope(PackagesRead), list),
        Route::new::<__path_get, _, _>(Access::Scope(PackagesRead), get),
        Route::new::<__path_patch, _, _>(Access::Scope(PackagesWrite), patch),
        Route::new::<__path_delete, _, _>(Access::Scope(PackagesWrite), delete),
        Route::new::<__path_download, _, _>(Access::Scope(PackagesWrite), download),
        Route::new::<__path_activate, _, _>(Access::Scope(PackagesWrite), activate),
        Route::new::<__path_deactivate, _, _>(Access::Scope(PackagesWrite), deactivate),
        Route::new::<__path_list_operations, _, _>(READ_OPERATIONS, list_operations),
        Route::new::<__path_get_operation, _, _>(READ_OPERATIONS, get_operation),
        Route::new::<__path_cancel, _, _>(Access::Scope(PackagesWrite), cancel),
        Route::new::<__path_events, _, _>(READ_OPERATIONS, events),
    ]
}

pub fn package_status(s: PackageStatus) -> wire::PackageStatus {
    match s {
        PackageStatus::Created => wire::PackageStatus::Created,
        PackageStatus::Downloaded => wire::PackageStatus::Downloaded,
        PackageStatus::Active => wire::PackageStatus::Active,
    }
}

fn operation_kind(k: OperationKind) -> wire::OperationKind {
    match k {
        OperationKind::Download => wire::OperationKind::Download,
        OperationKind::Activate => wire::OperationKind::Activate,
        OperationKind::Deactivate => wire::OperationKind::Deactivate,
        OperationKind::Prune => wire::OperationKind::Prune,
    }
}

fn operation_status(s: OperationStatus) -> wire::OperationStatus {
    match s {
        OperationStatus::Pending => wire::OperationStatus::Pending,
        OperationStatus::Running => wire::OperationStatus::Running,
        OperationStatus::Succeeded => wire::OperationStatus::Succeeded,
        OperationStatus::Failed => wire::OperationStatus::Failed,
        OperationStatus::Cancelled => wire::OperationStatus::Cancelled,
    }
}

pub fn owner_view(o: depot_core::Owner) -> wire::OwnerView {
    wire::OwnerView {
        kind: match o.kind {
            depot_core::OwnerKind::ApiKey => wire::OwnerKind::ApiKey,
            depot_core::OwnerKind::User => wire::OwnerKind::User,
            depot_core::OwnerKind::Admin => wire::OwnerKind::Admin,
        },
        id: o.id,
    }
}

pub fn package_view(p: Package) -> PackageView {
    PackageView {
        id: p.id,
        name: p.name,
        version: p.version,
        status: package_status(p.status),
        description: p.description,
        source_url: p.source_url,
        sha256: p.sha256,
        size_bytes: p.size_bytes,
        owner: p.owner.map(owner_view),
        yanked: p.yanked.is_some(),
        yanked_reason: p.yanked.as_ref().map(|y| y.reason.clone()),
        yanked_at: p.yanked.as_ref().map(|y| y.at),
        signature_url: p.signature_url,
        signature: p.signature.map(|s| wire::SignatureView {
            key_id: s.key_id().unwrap_or_default(),
            verified: s.verified_at.is_some(),
            verified_at: s.verified_at,
        }),
        created_at: p.created_at,
        updated_at: p.updated_at,
    }
}

pub fn operation_view(o: Operation) -> OperationView {
    OperationView {
        id: o.id,
        kind: operation_kind(o.kind),
        package_id: o.package_id,
        package_name: o.package_name,
        status: operation_status(o.status),
        progress: o.progress,
        error: o.error.map(|e| OperationProblem {
            type_uri: format!("https://depot.dev/problems/{}", e.code),
            title: "Operation failed".into(),
            code: e.code,
            detail: e.detail,
        }),
        cancel_requested: o.cancel_requested && !o.status.is_final(),
        attempts: o.attempts,
        created_at: o.created_at,
        updated_at: o.updated_at,
        finished_at: o.finished_at,
    }
}

/// The orders a package list comes in (documentation only: the handler names a bad one).
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PackageSortKey {
    CreatedAt,
    Name,
    Version,
    #[serde(rename = "-version")]
    VersionDescending,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PackageQuery {
    /// `created`, `downloaded` or `active`.
    #[param(value_type = Option<wire::PackageStatus>)]
    pub status: Option<String>,
    /// Names starting with this.
    pub name: Option<String>,
    /// `created_at` (newest first, the default), `name`, or `version` / `-version` (by
    /// precedence, lowest / highest first; needs `name`).
    #[param(inline, value_type = Option<PackageSortKey>)]
    pub sort: Option<String>,
    /// A SemVer requirement as cargo reads one (`^1.2`, `~1.2.3`, `>=1, <2`; a bare `1.2.3`
    /// means `^1.2.3`): only SemVer versions that match it. Needs `name`.
    pub version: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OperationQuery {
    pub package_id: Option<Uuid>,
    /// `pending`, `running`, `succeeded`, `failed` or `cancelled`.
    #[param(value_type = Option<wire::OperationStatus>)]
    pub status: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub fn package_response(p: Package) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(p.revision)))
        .json(package_view(p))
}

#[utoipa::path(post, path = "/api/v1/packages", tag = "packages", request_body = CreatePackageRequest,
    responses(
        (status = 201, description = "Registered (status `created`); the body equals what a GET returns", body = PackageView),
        (status = 409, description = "This name and version exist, or were retired (`version_retired`: a downloaded version that was deleted is never registered again)"),
        (status = 422, description = "Invalid fields, each named (an attempt to set `status` included)")))]
pub async fn create(
    state: web::Data<PackagesRoom>,
    auth: Auth,
    body: Json<CreatePackageRequest>,
) -> Result<HttpResponse, ApiError> {
    let b = body.0;
    let p = state
        .packages
        .create(
            &auth.0,
            PackageInput {
                name: Some(b.name),
                version: Some(b.version),
                description: Some(b.description),
                source_url: Some(b.source_url),
                sha256: Some(b.sha256),
                size_bytes: Some(b.size_bytes),
                signature_url: Some(b.signature_url),
            },
        )
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/packages/{}", p.id)))
        .insert_header((header::ETAG, etag(p.revision)))
        .json(package_view(p)))
}

#[utoipa::path(get, path = "/api/v1/packages", tag = "packages", params(PackageQuery),
    responses((status = 200, description = "A page of packages", body = inline(wire::Collection<PackageView>)),
        (status = 422, description = "Bad filter, sort or cursor")))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    query: Query<PackageQuery>,
) -> Result<HttpResponse, ApiError> {
    // Embedded topology: the page as rendered before, while no write has happened since.
    let generation = state.package_cache.as_ref().map(|c| c.generation());
    if let (Some(cache), Some(g)) = (&state.package_cache, generation)
        && let Some(hit) = state.package_lists.get(req.query_string(), g)
    {
        cache
            .hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(hit.response());
    }
    let q = query.0;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(PackageStatus::parse(s).ok_or_else(|| {
            ValidationError::field("status", "must be created, downloaded or active")
        })?),
    };
    let mut by_version = None;
    let sort = match q.sort.as_deref() {
        None | Some("created_at") => PackageSort::CreatedAt,
        Some("name") => PackageSort::Name,
        Some("version") => {
            by_version = Some(VersionOrder::Ascending);
            PackageSort::Name
        }
        Some("-version") => {
            by_version = Some(VersionOrder::Descending);
            PackageSort::Name
        }
        Some(_) => {
            return Err(ValidationError::field(
                "sort",
                "must be created_at, name, version or -version",
            )
            .into());
        }
    };
    let requirement = q
        .version
        .as_deref()
        .map(|v| Requirement::parse(v, "version"))
        .transpose()?;
    let filter = PackageFilter {
        status,
        name_prefix: q.name.filter(|n| !n.is_empty()),
    };
    let packages = if by_version.is_some() || requirement.is_some() {
        let order = by_version.unwrap_or(VersionOrder::Descending);
        state
            .packages
            .list_by_version(&filter, requirement.as_ref(), order, &page)
            .await?
    } else {
        state.packages.list(&filter, sort, &page).await?
    };
    let rendered = render_collection(&req, packages, package_view);
    if let Some(g) = generation {
        state
            .package_lists
            .put(req.query_string().to_owned(), g, rendered.clone());
    }
    Ok(rendered.response())
}

#[utoipa::path(get, path = "/api/v1/packages/{id}", tag = "packages", params(("id" = Uuid, Path)),
    responses((status = 200, description = "The package, with an ETag", body = PackageView),
        (status = 304, description = "If-None-Match matched"),
        (status = 404, description = "No such package")))]
pub async fn get(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let p = state.packages.get(*id).await?;
    Ok(conditional(&req, p.revision, || package_response(p)))
}

#[utoipa::path(patch, path = "/api/v1/packages/{id}", tag = "packages",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)), request_body = PatchPackageRequest,
    responses((status = 200, description = "Updated", body = PackageView),
        (status = 409, description = "Another package has this name and version; or `field_frozen`: name, version, source_url, sha256, size_bytes and signature_url freeze once the package has left `created`; or `operation_in_progress` for those fields while an operation runs"),
        (status = 412, description = "Stale If-Match"),
        (status = 422, description = "Invalid fields (status cannot be set)")))]
pub async fn patch(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    auth: Auth,
    id: web::Path<Uuid>,
    body: Json<PatchPackageRequest>,
) -> Result<HttpResponse, ApiError> {
    let b = body.0;
    let p = state
        .packages
        .patch(
            &auth.0,
            *id,
            PackageInput {
                name: b.name,
                version: b.version,
                description: b.description,
                source_url: b.source_url,
                sha256: b.sha256,
                size_bytes: b.size_bytes,
                signature_url: b.signature_url,
            },
            if_match(&req)?,
        )
        .await?;
    Ok(package_response(p))
}

#[utoipa::path(delete, path = "/api/v1/packages/{id}", tag = "packages",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Deleted with its finished operations"),
        (status = 404, description = "No such package"),
        (status = 409, description = "An operation is pending or running on it, or it is the active version (`package_active`: deactivate it first)"),
        (status = 412, description = "Stale If-Match")))]
pub async fn delete(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state.packages.delete(&auth.0, *id, if_match(&req)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn start(
    state: web::Data<PackagesRoom>,
    auth: Auth,
    id: Uuid,
    kind: OperationKind,
) -> Result<HttpResponse, ApiError> {
    let op = state.packages.start(&auth.0, id, kind).await?;
    Ok(started(&state, kind, op))
}

/// The 202 of a started operation (counted in the metrics).
pub fn started(state: &PackagesRoom, kind: OperationKind, op: Operation) -> HttpResponse {
    state
        .metrics
        .operations_started
        .with_label_values(&[kind.as_str()])
        .inc();
    HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/v1/operations/{}", op.id)))
        .insert_header((header::RETRY_AFTER, "1"))
        .json(operation_view(op))
}

#[utoipa::path(post, path = "/api/v1/packages/{id}/download", tag = "packages", params(("id" = Uuid, Path)),
    responses((status = 202, description = "Accepted: poll Location (the operation) or stream its /events", body = OperationView,
            headers(("Location" = String), ("Retry-After" = String))),
        (status = 404, description = "No such package"),
        (status = 409, description = "Not `created`, or another operation is in progress; the detail names the current state")))]
pub async fn download(
    state: web::Data<PackagesRoom>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    start(state, auth, *id, OperationKind::Download).await
}

#[utoipa::path(post, path = "/api/v1/packages/{id}/activate", tag = "packages", params(("id" = Uuid, Path)),
    responses((status = 202, description = "Accepted (downloaded → active)", body = OperationView),
        (status = 409, description = "Not `downloaded`, or busy")))]
pub async fn activate(
    state: web::Data<PackagesRoom>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    start(state, auth, *id, OperationKind::Activate).await
}

#[utoipa::path(post, path = "/api/v1/packages/{id}/deactivate", tag = "packages", params(("id" = Uuid, Path)),
    responses((status = 202, description = "Accepted (active → downloaded)", body = OperationView),
        (status = 409, description = "Not `active`, or busy")))]
pub async fn deactivate(
    state: web::Data<PackagesRoom>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    start(state, auth, *id, OperationKind::Deactivate).await
}

#[utoipa::path(get, path = "/api/v1/operations/{id}", tag = "operations", params(("id" = Uuid, Path)),
    responses((status = 200, description = "The operation", body = OperationView),
        (status = 404, description = "No such operation")))]
pub async fn get_operation(
    state: web::Data<PackagesRoom>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let op = state.packages.operation(*id).await?;
    let mut res = HttpResponse::Ok();
    if !op.status.is_final() {
        res.insert_header((header::RETRY_AFTER, "1"));
    }
    Ok(res.json(operation_view(op)))
}

#[utoipa::path(get, path = "/api/v1/operations", tag = "operations", params(OperationQuery),
    responses((status = 200, description = "Operations, newest first", body = inline(wire::Collection<OperationView>))))]
pub async fn list_operations(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    query: Query<OperationQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.0;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(OperationStatus::parse(s).ok_or_else(|| {
            ValidationError::field(
                "status",
                "must be pending, running, succeeded, failed or cancelled",
            )
        })?),
    };
    let ops = state
        .packages
        .operations(
            &OperationFilter {
                package_id: q.package_id,
                status,
            },
            &page,
        )
        .await?;
    Ok(collection(&req, ops, operation_view))
}

#[utoipa::path(post, path = "/api/v1/operations/{id}/cancel", tag = "operations", params(("id" = Uuid, Path)),
    responses((status = 202, description = "Cancelled (pending) or asked to stop (running)", body = OperationView),
        (status = 409, description = "Already finished")))]
pub async fn cancel(
    state: web::Data<PackagesRoom>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let op = state.packages.cancel(&auth.0, *id).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/api/v1/operations/{}", op.id)))
        .json(operation_view(op)))
}

#[utoipa::path(get, path = "/api/v1/operations/{id}/events", tag = "operations", params(("id" = Uuid, Path)),
    responses((status = 200, description = "Server-Sent Events: one `operation` event (the operation as JSON) per status or progress change; the stream closes after the final state, or at `operations.max_event_stream_seconds`", content_type = "text/event-stream"),
        (status = 404, description = "No such operation"),
        (status = 429, description = "These credentials hold `operations.max_event_streams_per_principal` streams already"),
        (status = 503, description = "Every event-stream slot of this process is taken")))]
pub async fn events(
    state: web::Data<PackagesRoom>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = *id;
    let first = state.packages.operation(id).await?;
    // Held by the stream: released when the operation ends, at the time limit, or when the
    // client goes.
    let slot = state
        .event_streams
        .acquire(&auth.0.actor())
        .map_err(|e| match e {
            NoSlot::Full => ApiError::ServiceUnavailable {
                detail: "too many event streams are open; poll GET /api/v1/operations/{id} instead"
                    .into(),
            },
            NoSlot::PrincipalFull { limit } => ApiError::TooManyRequests {
                detail: format!(
                    "these credentials hold {limit} event streams already, their most; close one \
                     or poll GET /api/v1/operations/{{id}}"
                ),
                retry_after: 1,
                limit: limit as u32,
            },
        })?;
    let deadline = tokio::time::Instant::now() + state.event_streams.max_duration;
    struct S {
        _slot: Slot,
        rx: tokio::sync::watch::Receiver<Operation>,
        last: Option<(OperationStatus, u8)>,
        done: bool,
        deadline: tokio::time::Instant,
    }
    let rx = state.operation_watch.follow(first);
    let init = S {
        _slot: slot,
        rx,
        last: None,
        done: false,
        deadline,
    };
    let stream = futures::stream::unfold(init, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            let op = s.rx.borrow_and_update().clone();
            let key = (op.status, op.progress);
            if s.last != Some(key) {
                s.last = Some(key);
                s.done = op.status.is_final();
                let json = serde_json::to_string(&operation_view(op)).unwrap_or_default();
                let frame = format!("event: operation\ndata: {json}\n\n");
                return Some((Ok::<_, actix_web::Error>(web::Bytes::from(frame)), s));
            }
            let now = tokio::time::Instant::now();
            if now >= s.deadline {
                // The stream's time is up: the client reconnects if it still wants to follow.
                s.done = true;
                let bye = b": the stream's time limit is reached; reconnect to follow on\n\n";
                return Some((Ok(web::Bytes::from_static(bye)), s));
            }
            let wait = Duration::from_secs(15).min(s.deadline - now);
            match tokio::time::timeout(wait, s.rx.changed()).await {
                Ok(Ok(())) => {}
                // Final state already sent, or the operation was deleted with its package.
                Ok(Err(_)) => return None,
                // A comment every 15 s of silence keeps proxies from closing the stream.
                Err(_) if tokio::time::Instant::now() < s.deadline => {
                    return Some((Ok(web::Bytes::from_static(b": keep-alive\n\n")), s));
                }
                Err(_) => {}
            }
        }
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}
