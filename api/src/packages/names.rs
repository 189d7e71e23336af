//! `/api/v1/package-names`: a name as a resource (its owner, active, previous and latest
//! version, its versions by precedence), its activation history and rollback; and yanking a
//! version (`/api/v1/packages/{id}/yank`, `/unyank`).

use crate::http::auth::Auth;
use crate::http::collection::{PageQuery, collection, page_request};
use crate::http::error::ApiError;
use crate::http::extract::{Json, Query};
use crate::http::routes::{Access, Route};
use crate::packages::PackagesRoom;
use crate::packages::routes::{owner_view, package_response, package_status, started};
use actix_web::{HttpRequest, HttpResponse, web};
use depot_client::wire::{
    self, ActivationView, NameVersionView, OperationView, PackageNameEntry, PackageNameView,
    PackageView, PrunePlanView, VersionRefView, YankRequest,
};
use depot_core::Permission;
use depot_packages::names::NameSummary;
use depot_packages::{Activation, OperationKind, VersionRef};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

pub fn routes() -> Vec<Route> {
    use Permission::{PackagesRead, PackagesWrite};
    vec![
        Route::new::<__path_list_names, _, _>(Access::Scope(PackagesRead), list_names),
        Route::new::<__path_get_name, _, _>(Access::Scope(PackagesRead), get_name),
        Route::new::<__path_history, _, _>(Access::Scope(PackagesRead), history),
        Route::new::<__path_rollback, _, _>(Access::Scope(PackagesWrite), rollback),
        Route::new::<__path_prune, _, _>(Access::Scope(PackagesWrite), prune),
        Route::new::<__path_yank, _, _>(Access::Scope(PackagesWrite), yank),
        Route::new::<__path_unyank, _, _>(Access::Scope(PackagesWrite), unyank),
    ]
}

/// The white space a name is trimmed of (Unicode White_Space, as the name's pattern lists it).
const WS: &str = "[\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000]";

/// What the derived schemas cannot say: a name is not `.` or `..` (URL libraries collapse them
/// in paths), however it is padded.
pub fn refine_docs(doc: &mut serde_json::Value) {
    for schema in ["CreatePackageRequest", "PatchPackageRequest"] {
        let pointer = format!("/components/schemas/{schema}/properties/name");
        if let Some(name) = doc.pointer_mut(&pointer).and_then(|n| n.as_object_mut()) {
            name.insert(
                "not".into(),
                serde_json::json!({"pattern": format!("^{WS}*\\.\\.?{WS}*$")}),
            );
        }
    }
}

fn version_ref(v: VersionRef) -> VersionRefView {
    VersionRefView {
        id: v.id,
        version: v.version,
    }
}

fn name_view(s: NameSummary) -> PackageNameView {
    PackageNameView {
        name: s.record.name,
        owner: s.record.owner.map(owner_view),
        active: s.active.map(version_ref),
        previous: s.previous.map(version_ref),
        latest: s.latest.map(version_ref),
        versions: s
            .versions
            .into_iter()
            .map(|p| NameVersionView {
                id: p.id,
                version: p.version,
                status: package_status(p.status),
                yanked: p.yanked.is_some(),
            })
            .collect(),
    }
}

fn activation_view(a: Activation) -> ActivationView {
    ActivationView {
        id: a.id,
        from: a.from.map(version_ref),
        to: a.to.map(version_ref),
        at: a.at,
        by: a.actor,
        operation_id: a.operation_id,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NameQuery {
    /// Names starting with this (literal, case-sensitive).
    pub prefix: Option<String>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/package-names", tag = "package-names", params(NameQuery),
    responses((status = 200, description = "A page of package names, ascending", body = inline(wire::Collection<PackageNameEntry>))))]
pub async fn list_names(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    query: Query<NameQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.0;
    let page = page_request(q.limit, q.cursor.as_deref())?;
    let prefix = q.prefix.filter(|p| !p.is_empty());
    let names = state.packages.names(prefix.as_deref(), &page).await?;
    Ok(collection(&req, names, |r| PackageNameEntry {
        name: r.name,
        owner: r.owner.map(owner_view),
    }))
}

#[utoipa::path(get, path = "/api/v1/package-names/{name}", tag = "package-names",
    params(("name" = String, Path, description = "The package name, percent-encoded")),
    responses((status = 200, description = "The name: owner, active, previous and latest version, and its versions newest first by precedence", body = PackageNameView),
        (status = 404, description = "No such package name")))]
pub async fn get_name(
    state: web::Data<PackagesRoom>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let summary = state.packages.name(&name).await?;
    Ok(HttpResponse::Ok().json(name_view(summary)))
}

#[utoipa::path(get, path = "/api/v1/package-names/{name}/history", tag = "package-names",
    params(("name" = String, Path, description = "The package name, percent-encoded"), PageQuery),
    responses((status = 200, description = "Every activation and deactivation, newest first", body = inline(wire::Collection<ActivationView>)),
        (status = 404, description = "No such package name")))]
pub async fn history(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    name: web::Path<String>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page_request(query.0.limit, query.0.cursor.as_deref())?;
    let history = state.packages.history(&name, &page).await?;
    Ok(collection(&req, history, activation_view))
}

#[utoipa::path(post, path = "/api/v1/package-names/{name}/rollback", tag = "package-names",
    params(("name" = String, Path, description = "The package name, percent-encoded")),
    responses((status = 202, description = "Accepted: an activation of the previous version; poll Location or stream its /events", body = OperationView,
            headers(("Location" = String), ("Retry-After" = String))),
        (status = 403, description = "Not the name's owner (nor packages:admin)"),
        (status = 404, description = "No such package name"),
        (status = 409, description = "`no_previous_version`: nothing was active before that is still downloaded and not yanked; or an operation is in progress on it")))]
pub async fn rollback(
    state: web::Data<PackagesRoom>,
    auth: Auth,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let op = state.packages.rollback(&auth.0, &name).await?;
    Ok(started(&state, OperationKind::Activate, op))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PruneQuery {
    /// How many of the newest versions (by precedence) holding an artifact keep it, the active
    /// one counted among them; the previous version keeps it too, wherever it ranks.
    /// `packages.keep_versions` when not given.
    #[param(minimum = 1, maximum = 10000)]
    pub keep: Option<u32>,
    /// Say what would go (200), changing nothing.
    pub dry_run: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/package-names/{name}/prune", tag = "package-names",
    params(("name" = String, Path, description = "The package name, percent-encoded"), PruneQuery),
    responses((status = 202, description = "Accepted: a prune (name-level: no package_id); its Downloaded versions past the `keep` newest holding an artifact lose it and return to `created`. The active and the previous version and yanked ones are left as they are", body = OperationView,
            headers(("Location" = String), ("Retry-After" = String))),
        (status = 200, description = "`dry_run=true`: what would go, nothing changed", body = PrunePlanView),
        (status = 403, description = "Not the name's owner (nor packages:admin)"),
        (status = 404, description = "No such package name"),
        (status = 409, description = "`operation_in_progress`: a prune of this name is pending or running"),
        (status = 422, description = "`keep` missing while retention is off (`packages.keep_versions` = 0), or out of range")))]
pub async fn prune(
    state: web::Data<PackagesRoom>,
    auth: Auth,
    name: web::Path<String>,
    query: Query<PruneQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.0;
    match state
        .packages
        .prune(&auth.0, &name, q.keep, q.dry_run.unwrap_or(false))
        .await?
    {
        depot_packages::names::Prune::Plan { keep, versions } => {
            Ok(HttpResponse::Ok().json(PrunePlanView {
                name: name.into_inner(),
                keep,
                versions: versions.into_iter().map(version_ref).collect(),
            }))
        }
        depot_packages::names::Prune::Started(op) => Ok(started(&state, OperationKind::Prune, op)),
    }
}

#[utoipa::path(post, path = "/api/v1/packages/{id}/yank", tag = "packages",
    params(("id" = Uuid, Path)), request_body = YankRequest,
    responses((status = 200, description = "Yanked: not downloaded or activated anew, skipped by latest and rollback, still readable (an active version stays active until replaced or deactivated)", body = PackageView),
        (status = 403, description = "Not the name's owner (nor packages:admin)"),
        (status = 404, description = "No such package")))]
pub async fn yank(
    state: web::Data<PackagesRoom>,
    auth: Auth,
    id: web::Path<Uuid>,
    body: Json<YankRequest>,
) -> Result<HttpResponse, ApiError> {
    let p = state
        .packages
        .set_yank(&auth.0, *id, Some(&body.0.reason))
        .await?;
    Ok(package_response(p))
}

#[utoipa::path(post, path = "/api/v1/packages/{id}/unyank", tag = "packages",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The yank is taken back", body = PackageView),
        (status = 403, description = "Not the name's owner (nor packages:admin)"),
        (status = 404, description = "No such package")))]
pub async fn unyank(
    state: web::Data<PackagesRoom>,
    auth: Auth,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let p = state.packages.set_yank(&auth.0, *id, None).await?;
    Ok(package_response(p))
}
