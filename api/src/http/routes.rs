//! The route table. Each route is declared once: its method, path and documentation in the
//! handler's `#[utoipa::path]`, and who may call it in its [`Route`] entry, whose [`Access`] is
//! both enforced (a middleware on the route authenticates the caller and checks it before the
//! handler runs) and documented (the operation's `security`). The actix routes and the OpenAPI
//! document's paths are both made from this table, so they cannot drift apart.
//!
//! The document also gets, for every operation, the answers the shared machinery gives
//! (401/403/429 for protected routes, 400/413/415/422 for JSON bodies, 422 for malformed path
//! or query parameters, the `Idempotency-Key` header and its 409/422 on POST), and every 4xx/5xx
//! answer without a body of its own is documented as a problem document.

use crate::http::auth::Auth;
use crate::http::error::ApiError;
use crate::http::throttle::Budget;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, HttpMessage, web};
use depot_core::principal::Forbidden;
use depot_core::{Permission, PrincipalKind};
use std::sync::Arc;
use utoipa::openapi::path::{HttpMethod, Operation, Parameter, ParameterIn};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{Content, Ref, RefOr, Required, Response, Schema};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; credentials are not looked at.
    Public,
    /// Anyone; credentials, when given, are checked and passed on (the handler decides).
    Optional,
    /// Any valid credentials.
    Authenticated,
    /// A signed-in user's access token (not an API key, not the admin secret).
    User,
    /// Credentials holding this scope (the admin secret holds every scope).
    Scope(Permission),
    /// Credentials holding at least one of these scopes.
    AnyScope(&'static [Permission]),
}

impl Access {
    /// Checks a principal against this access; the error is the answer.
    fn allows(self, principal: &depot_core::Principal) -> Result<(), ApiError> {
        match self {
            Access::Public | Access::Optional | Access::Authenticated => Ok(()),
            Access::User => match principal.kind {
                PrincipalKind::User { .. } => Ok(()),
                _ => Err(ApiError::Refused {
                    code: "not_a_user",
                    detail: "these credentials do not belong to a user; sign in with a user \
                             account"
                        .into(),
                }),
            },
            Access::Scope(p) => Ok(principal.require(p)?),
            Access::AnyScope(ps) => {
                if ps.iter().any(|p| principal.has(*p)) {
                    Ok(())
                } else {
                    Err(Forbidden { required: ps[0] }.into())
                }
            }
        }
    }

    fn needs_credentials(self) -> bool {
        !matches!(self, Access::Public | Access::Optional)
    }

    /// The operation's `security`: which credentials with which scopes.
    fn security(self) -> Option<Vec<SecurityRequirement>> {
        let all = |scopes: Vec<&str>| {
            vec![
                SecurityRequirement::new("api_key", scopes.clone()),
                SecurityRequirement::new("bearer", scopes),
                SecurityRequirement::new::<&str, [&str; 0], &str>("admin_secret", []),
            ]
        };
        match self {
            Access::Public => None,
            Access::Optional => {
                let mut s = vec![SecurityRequirement::default()];
                s.extend(all(vec![]));
                Some(s)
            }
            Access::Authenticated => Some(all(vec![])),
            // Any credentials reach the route; those not of a user get 403 `not_a_user`.
            Access::User => Some(all(vec![])),
            Access::Scope(p) => Some(all(vec![p.as_str()])),
            Access::AnyScope(ps) => {
                let mut s = Vec::new();
                for p in ps {
                    s.push(SecurityRequirement::new("api_key", [p.as_str()]));
                    s.push(SecurityRequirement::new("bearer", [p.as_str()]));
                }
                s.push(SecurityRequirement::new::<&str, [&str; 0], &str>(
                    "admin_secret",
                    [],
                ));
                Some(s)
            }
        }
    }
}

/// The bare actix route: method and handler, no middleware yet.
type Build = Arc<dyn Fn() -> actix_web::Route + Send + Sync>;
type Schemas = Vec<(String, RefOr<Schema>)>;

/// One entry of the route table.
#[derive(Clone)]
pub struct Route {
    pub method: Method,
    /// The full path as documented, e.g. `/api/v1/packages/{id}`.
    pub path: String,
    pub access: Access,
    /// The per-address budget every request to it counts against (the public sign-in routes).
    pub budget: Option<Budget>,
    operation: Operation,
    schemas: Schemas,
    build: Build,
}

fn actix_method(m: &HttpMethod) -> Method {
    match m {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Trace => Method::TRACE,
    }
}

fn http_method(m: &Method) -> HttpMethod {
    match *m {
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        Method::HEAD => HttpMethod::Head,
        Method::OPTIONS => HttpMethod::Options,
        Method::TRACE => HttpMethod::Trace,
        _ => HttpMethod::Get,
    }
}

impl Route {
    /// The route documented by `P` (a handler's `#[utoipa::path]`, named `__path_<handler>`),
    /// served by `handler`, open to `access`.
    pub fn new<P, F, Args>(access: Access, handler: F) -> Self
    where
        P: utoipa::Path + utoipa::__dev::SchemaReferences,
        F: actix_web::Handler<Args> + Send + Sync,
        Args: FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        let methods = P::methods();
        assert_eq!(methods.len(), 1, "{}: one method per route", P::path());
        let method = actix_method(&methods[0]);
        let mut schemas = Vec::new();
        P::schemas(&mut schemas);
        let m = method.clone();
        Self {
            method,
            path: P::path(),
            access,
            operation: P::operation(),
            schemas,
            budget: None,
            build: Arc::new(move || web::method(m.clone()).to(handler.clone())),
        }
    }

    /// Counts every request to this route against `budget`, per client address (429 past it).
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The actix route: the handler behind its middlewares.
    fn actix(&self) -> actix_web::Route {
        let route = (self.build)();
        let access = self.access;
        let route = if access == Access::Public {
            // Public routes (sign-in, health) take no part in idempotency: sign-in carries
            // passwords and answers with new secrets, none of which is kept.
            route
        } else {
            // The access check first (the last `wrap` runs first), then idempotency.
            route
                .wrap(from_fn(crate::http::idempotency::idempotency))
                .wrap(from_fn(move |req, next| enforce(access, req, next)))
        };
        match self.budget {
            // Before anything else: a refused request costs no hash and no query.
            Some(budget) => route.wrap(from_fn(move |req, next| admit(budget, req, next))),
            None => route,
        }
    }

    /// The operation as the document shows it: with its security and the shared answers.
    pub fn documented(&self) -> Operation {
        let mut op = self.operation.clone();
        op.security = self.access.security();
        let mut add = |status: &str, description: &str| {
            op.responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| RefOr::T(Response::new(description)));
        };
        if self.access.needs_credentials() {
            add(
                "401",
                "Missing, malformed, unknown, revoked or expired credentials",
            );
            add(
                "429",
                "The API key's rate limit is exhausted; see Retry-After",
            );
        }
        if matches!(
            self.access,
            Access::Scope(_) | Access::AnyScope(_) | Access::User
        ) {
            add("403", "The credentials lack the scope this needs");
        }
        if self.budget.is_some() {
            add(
                "429",
                "Too many requests from this address to the sign-in routes; see Retry-After",
            );
        }
        if self.access == Access::Optional {
            add("401", "Bad credentials (when credentials are given)");
            add("403", "The credentials lack a scope this needs");
        }
        if let Some(RefOr::T(body)) = &self.operation.request_body
            && body.content.contains_key("application/json")
        {
            add("400", "The body is not valid JSON");
            add("413", "The body is larger than server.body_limit_bytes");
            add(
                "415",
                "The body is not JSON (Content-Type: application/json)",
            );
            add("422", "Invalid fields, each named in `errors`");
        }
        let params = op.parameters.get_or_insert_with(Vec::new);
        let has = |params: &Vec<RefOr<Parameter>>, place: ParameterIn| {
            params
                .iter()
                .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place))
        };
        let in_path = has(params, ParameterIn::Path);
        let if_match = params
            .iter()
            .any(|p| matches!(p, RefOr::T(p) if p.name == "If-Match"));
        // A header is a string or absent, never `null`.
        for p in params.iter_mut() {
            if let RefOr::T(p) = p
                && p.parameter_in == ParameterIn::Header
                && p.name != "Idempotency-Key"
            {
                p.schema = Some(RefOr::T(Schema::Object(
                    utoipa::openapi::schema::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::schema::Type::String)
                        .build(),
                )));
            }
        }
        let in_query = has(params, ParameterIn::Query);
        let idempotent = self.method == Method::POST
            && self.path.starts_with("/api/v1/")
            && !self.path.starts_with("/api/v1/auth/");
        if idempotent
            && !params
                .iter()
                .any(|p| matches!(p, RefOr::T(p) if p.name == "Idempotency-Key"))
        {
            let mut p = Parameter::new("Idempotency-Key");
            p.parameter_in = ParameterIn::Header;
            p.required = Required::False;
            p.description = Some(
                "A UUID; a retry with the same key and body replays the first answer (header \
                 Idempotent-Replayed: true)"
                    .into(),
            );
            p.schema = Some(RefOr::T(Schema::Object(
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Uuid,
                    )))
                    .build(),
            )));
            params.push(RefOr::T(p));
        }
        if params.is_empty() {
            op.parameters = None;
        }
        let mut add = |status: &str, description: &str| {
            op.responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| RefOr::T(Response::new(description)));
        };
        if in_path {
            add("404", "No such resource");
            add("422", "A path parameter is malformed (e.g. not a UUID)");
        }
        if if_match {
            add("412", "If-Match does not name the current ETag");
        }
        if in_query {
            add("422", "A query parameter is invalid; `errors` names it");
        }
        if idempotent {
            add(
                "409",
                "The first request with this Idempotency-Key is still being processed",
            );
            add(
                "422",
                "Invalid input, or an Idempotency-Key used with another request",
            );
        }
        for (status, response) in op.responses.responses.iter_mut() {
            if let RefOr::T(r) = response
                && (status.starts_with('4') || status.starts_with('5'))
                && r.content.is_empty()
            {
                r.content.insert(
                    crate::http::error::PROBLEM_JSON.to_owned(),
                    RefOr::T(Content::new(Some(Ref::from_schema_name("Problem")))),
                );
            }
        }
        op
    }
}

/// Authenticates the caller as the route's access says, checks it, and leaves the principal in
/// the request for the handler's [`Auth`] extractor.
async fn enforce(
    access: Access,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let checked = match Auth::authenticate(req.request().clone()).await {
        Ok(auth) => access.allows(&auth.0).map(|()| Some(auth)),
        Err(ApiError::Unauthorized {
            code: "credentials_missing",
            ..
        }) if access == Access::Optional => Ok(None),
        Err(e) => Err(e),
    };
    match checked {
        Ok(auth) => {
            req.extensions_mut().insert(Authenticated(auth));
            Ok(next.call(req).await?.map_into_boxed_body())
        }
        Err(e) => Ok(req.error_response(e)),
    }
}

/// Counts the request against the route's budget for its client address; 429 past it.
async fn admit(
    budget: Budget,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let counters = req
        .app_data::<web::Data<crate::http::state::HttpState>>()
        .map(|state| state.sign_in_budgets.clone());
    if let Some(counters) = counters {
        let client = crate::http::client_ip::addr(req.request());
        let windows = counters.of(budget);
        if let Err(retry_after) = windows.admit(client) {
            tracing::warn!(client_ip = ?client, ?budget, "a sign-in budget is used up");
            return Ok(req.error_response(ApiError::TooManyRequests {
                detail: budget.detail().into(),
                retry_after,
                limit: windows.limit(),
            }));
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// What [`enforce`] found: the principal, or none (optional access without credentials).
#[derive(Debug, Clone)]
pub(crate) struct Authenticated(pub Option<Auth>);

/// The business routes' prefix: their scope has the idempotency and key-usage middlewares.
pub const API_PREFIX: &str = "/api/v1";

/// Registers the routes under [`API_PREFIX`] (in that scope's configuration, without the
/// prefix) when `api` is true, the others (at the root) when it is false. Several methods on
/// one path share one actix resource (a resource answers 405 for methods it lacks, so they
/// cannot be split).
pub fn configure(routes: &[Route], api: bool, cfg: &mut web::ServiceConfig) {
    check(routes);
    // In the table's order: actix matches resources in the order they are registered.
    let mut by_path: Vec<(&str, Vec<&Route>)> = Vec::new();
    for r in routes {
        let under_api = r
            .path
            .strip_prefix(API_PREFIX)
            .filter(|rest| rest.starts_with('/'));
        let path = match (api, under_api) {
            (true, Some(rest)) => rest,
            (false, None) => r.path.as_str(),
            _ => continue,
        };
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, same)) => same.push(r),
            None => by_path.push((path, vec![r])),
        }
    }
    for (path, routes) in by_path {
        let mut resource = web::resource(path);
        for r in routes {
            resource = resource.route(r.actix());
        }
        cfg.service(resource);
    }
}

/// Paths outside [`API_PREFIX`] the table may hold (they skip the business scope's middlewares).
const ROOT_PATHS: [&str; 2] = ["/health/", "/.well-known/"];

/// The table's invariants: each (method, path) once, and every path under [`API_PREFIX`] or one
/// of the [`ROOT_PATHS`] (a typo would otherwise serve a route outside the business scope).
fn check(routes: &[Route]) {
    let mut seen = std::collections::HashSet::new();
    for r in routes {
        assert!(
            seen.insert((r.method.clone(), r.path.as_str())),
            "{} {} is in the route table twice",
            r.method,
            r.path
        );
        assert!(
            r.path.starts_with(&format!("{API_PREFIX}/"))
                || ROOT_PATHS.iter().any(|p| r.path.starts_with(p)),
            "{} is neither under {API_PREFIX}/ nor a root path",
            r.path
        );
    }
}

/// Adds the routes' operations and the schemas they name to `doc`.
pub fn document(routes: &[Route], doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    for r in routes {
        for (name, schema) in &r.schemas {
            components
                .schemas
                .entry(name.clone())
                .or_insert_with(|| schema.clone());
        }
        doc.paths
            .add_path_operation(&r.path, vec![http_method(&r.method)], r.documented());
    }
}
