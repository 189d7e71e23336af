//! The OpenAPI 3.1 document (generated from the code by utoipa) and the vendored Swagger UI.

use crate::http::error::{Problem, ProblemField};
use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Depot",
        description = "A registry of software packages with long-running lifecycle operations, \
                       API-key and user authentication, and a password generator.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(Problem, ProblemField)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "passwords", description = "Password and passphrase generation"),
        (name = "auth", description = "Credentials: sign-in, tokens, OpenID Connect"),
        (name = "users", description = "User accounts (administrators manage them)"),
        (name = "api-keys", description = "API-key management and the audit log (administrators)"),
        (name = "packages", description = "The package registry and its lifecycle"),
        (name = "operations", description = "Long-running operations: poll, list, cancel, stream")
    )
)]
pub struct ApiDoc;

/// The credentials Depot accepts, as OpenAPI security schemes.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key (dpk_…). Also accepted: header api-key; query api_key when enabled.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A user's access token from /api/v1/auth/login, /auth/refresh or the \
                         OpenID Connect callback (EdDSA JWT; keys at /.well-known/jwks.json).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_secret",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Admin-Secret",
                "The operator's admin secret, for key management.",
            ))),
        );
    }
}

pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The document: Depot's description, security schemes and tags, and every route of the table
/// with the schemas it names.
pub fn openapi(routes: &[crate::http::routes::Route]) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    crate::http::routes::document(routes, &mut doc);
    doc
}

/// Registers `/`, `/docs` and the OpenAPI document when there is one; with docs off they are
/// 404.
pub fn configure(doc: Option<web::Bytes>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let Some(doc) = doc else {
            return;
        };
        cfg.route(
            OPENAPI_PATH,
            web::get().to(move || {
                let doc = doc.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(doc)
                }
            }),
        );
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
        .service(
            SwaggerUi::new("/docs/{_:.*}").config(utoipa_swagger_ui::Config::new([OPENAPI_PATH])),
        );
    }
}

#[cfg(test)]
mod tests {
    /// Every `$ref` in the document names a schema the document defines.
    #[test]
    fn every_reference_resolves() {
        let json = crate::app::openapi(&crate::settings::Settings::defaults());
        let schemas = json["components"]["schemas"].as_object().unwrap();
        let mut refs = Vec::new();
        fn walk(v: &serde_json::Value, refs: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(serde_json::Value::String(r)) = m.get("$ref") {
                        refs.push(r.clone());
                    }
                    m.values().for_each(|v| walk(v, refs));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        walk(&json, &mut refs);
        assert!(refs.len() > 20, "{refs:?}");
        for r in refs {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(schemas.contains_key(name), "{r} is not defined");
        }
    }
}
