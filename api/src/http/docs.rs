//! The OpenAPI 3.1 document (generated from the code by utoipa) and the vendored Swagger UI.

use crate::accounts::routes as accounts;
use crate::api_keys::routes as api_keys;
use crate::http::error::{Problem, ProblemField};
use crate::http::{health, whoami};
use crate::packages::routes as packages;
use crate::passwords::routes as passwords;
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
    paths(
        health::live,
        health::ready,
        passwords::generate,
        whoami::whoami,
        api_keys::create,
        api_keys::list,
        api_keys::get,
        api_keys::revoke,
        api_keys::reactivate,
        api_keys::renew,
        api_keys::rotate,
        api_keys::delete,
        api_keys::usage,
        api_keys::audit_events,
        packages::create,
        packages::list,
        packages::get,
        packages::patch,
        packages::delete,
        packages::download,
        packages::activate,
        packages::deactivate,
        packages::get_operation,
        packages::list_operations,
        packages::cancel,
        packages::events,
        accounts::register,
        accounts::login,
        accounts::refresh,
        accounts::logout,
        accounts::oidc_login,
        accounts::oidc_callback,
        accounts::me,
        accounts::list,
        accounts::get,
        accounts::patch,
        accounts::jwks
    ),
    components(schemas(
        Problem,
        ProblemField,
        passwords::PasswordResponse,
        whoami::WhoAmI,
        api_keys::ApiKeyView,
        api_keys::ApiKeyCreated,
        api_keys::CreateApiKeyRequest,
        api_keys::RenewRequest,
        api_keys::RotateRequest,
        api_keys::UsageView,
        api_keys::AuditEventView,
        packages::PackageView,
        packages::OperationView,
        packages::OperationProblem,
        packages::CreatePackageRequest,
        packages::PatchPackageRequest,
        accounts::UserView,
        accounts::TokenResponse,
        accounts::CredentialsRequest,
        accounts::RefreshRequest,
        accounts::PatchUserRequest
    )),
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
