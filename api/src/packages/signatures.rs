//! Detached signatures over HTTP: `PUT /api/v1/packages/{id}/signature` gives a package the
//! text of a minisign `.minisig` file (checked against the trusted keys, and against the bytes
//! when the package holds them), `GET` reads it back so that clients can check it themselves.

use crate::http::auth::Auth;
use crate::http::collection::if_match;
use crate::http::error::ApiError;
use crate::http::extract::content_type_in;
use crate::http::routes::{Access, Route};
use crate::packages::PackagesRoom;
use crate::packages::routes::package_response;
use actix_web::{HttpRequest, HttpResponse, web};
use depot_core::{Permission, ValidationError};
use depot_packages::signature::MAX_SIGNATURE_BYTES;
use futures::StreamExt;
use uuid::Uuid;

pub fn routes() -> Vec<Route> {
    use Permission::{PackagesRead, PackagesWrite};
    vec![
        Route::new::<__path_sign, _, _>(Access::Scope(PackagesWrite), sign),
        Route::new::<__path_signature, _, _>(Access::Scope(PackagesRead), signature),
    ]
}

#[utoipa::path(put, path = "/api/v1/packages/{id}/signature", tag = "packages",
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    request_body(content = String, content_type = "text/plain",
        description = "The `.minisig` file minisign wrote (pre-hashed, minisign 0.10 or later; at most 4096 bytes)"),
    responses((status = 200, description = "Kept: the package, its `signature` naming the key and, when the package holds its artifact, when it verified", body = depot_client::wire::PackageView),
        (status = 403, description = "`not_owner`: the name belongs to another principal"),
        (status = 404, description = "No such package"),
        (status = 409, description = "The version is active (it keeps the signature it was activated with; `invalid_transition`), or an operation is under way (`operation_in_progress`)"),
        (status = 412, description = "Stale If-Match"),
        (status = 413, description = "Longer than 4096 bytes"),
        (status = 415, description = "A Content-Type other than text/plain or application/octet-stream"),
        (status = 422, description = "`signature`: not a minisign signature, not by a key trusted for the name (`packages.trusted_keys`), or it does not verify against the artifact the package holds")))]
pub async fn sign(
    req: HttpRequest,
    state: web::Data<PackagesRoom>,
    auth: Auth,
    id: web::Path<Uuid>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    content_type_in(
        &req,
        &["text/plain", "application/octet-stream"],
        "a signature is sent as text/plain (the .minisig file)",
    )?;
    let if_match = if_match(&req)?;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            ValidationError::field("signature", "the request body ended before it was complete")
        })?;
        if body.len() + chunk.len() > MAX_SIGNATURE_BYTES {
            return Err(ApiError::PayloadTooLarge {
                limit: MAX_SIGNATURE_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body)
        .map_err(|_| ValidationError::field("signature", "must be UTF-8 text (a .minisig file)"))?;
    let package = state.packages.sign(&auth.0, *id, &text, if_match).await?;
    Ok(package_response(package))
}

#[utoipa::path(get, path = "/api/v1/packages/{id}/signature", tag = "packages",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The `.minisig` file, as uploaded or fetched from `signature_url`", content_type = "text/plain", body = String),
        (status = 404, description = "No such package, or it carries no signature")))]
pub async fn signature(
    state: web::Data<PackagesRoom>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let package = state.packages.get(*id).await?;
    let Some(signature) = package.signature else {
        return Err(
            depot_packages::PackageError::NotFound("the package carries no signature").into(),
        );
    };
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(signature.text))
}
