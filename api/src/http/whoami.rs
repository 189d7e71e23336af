//! `GET /api/v1/auth/whoami`: who the presented credentials say the caller is.

use crate::http::auth::Auth;
use crate::http::routes::{Access, Route};
use actix_web::HttpResponse;
use depot_client::wire::WhoAmI;
use depot_core::PrincipalKind;

pub fn routes() -> Vec<Route> {
    vec![Route::new::<__path_whoami, _, _>(
        Access::Authenticated,
        whoami,
    )]
}

#[utoipa::path(get, path = "/api/v1/auth/whoami", tag = "auth",
    responses(
        (status = 200, description = "The authenticated caller", body = WhoAmI),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired credentials"),
        (status = 429, description = "The key's rate limit is exhausted")))]
pub async fn whoami(auth: Auth) -> HttpResponse {
    let (kind, id) = match auth.0.kind {
        PrincipalKind::Admin => ("admin", None),
        PrincipalKind::ApiKey { key_id, .. } => ("api_key", Some(key_id)),
        PrincipalKind::User { user_id } => ("user", Some(user_id)),
        PrincipalKind::Anonymous => ("anonymous", None),
    };
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(WhoAmI {
            kind: kind.to_owned(),
            id,
            scopes: auth
                .0
                .scopes
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        })
}
