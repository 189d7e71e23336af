//! The OpenAPI 3.1 document (generated from the code by utoipa) and the vendored Swagger UI.

use crate::error::{Problem, ProblemField};
use crate::routes::{health, passwords};
use actix_web::{HttpResponse, web};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Depot",
        description = "A registry of software packages with long-running lifecycle operations, \
                       API-key and user authentication, and a password generator.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(health::live, health::ready, passwords::generate),
    components(schemas(Problem, ProblemField, passwords::PasswordResponse)),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "passwords", description = "Password and passphrase generation")
    )
)]
pub struct ApiDoc;

pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Registers `/`, `/docs` and the OpenAPI document when enabled; with docs off they are 404.
pub fn configure(enabled: bool) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        if !enabled {
            return;
        }
        cfg.route(
            "/",
            web::get().to(|| async {
                HttpResponse::TemporaryRedirect()
                    .insert_header(("Location", "/docs/"))
                    .finish()
            }),
        )
        .route(
            "/docs",
            web::get().to(|| async {
                HttpResponse::PermanentRedirect()
                    .insert_header(("Location", "/docs/"))
                    .finish()
            }),
        )
        .service(SwaggerUi::new("/docs/{_:.*}").url(OPENAPI_PATH, ApiDoc::openapi()));
    }
}
