//! `/api/v1/auth/*` (register, login, refresh, logout, OpenID Connect sign-in), `/api/v1/users`
//! and `/.well-known/jwks.json`.

use crate::accounts::AccountsRoom;
use crate::http::auth::Auth;
use crate::http::collection::{PageQuery, collection, conditional, etag, if_match, page_request};
use crate::http::error::ApiError;
use crate::http::extract::{Json, Query};
use crate::http::routes::{Access, Route};
use crate::http::throttle::Budget;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use depot_accounts::tokens::{random_token, sha256};
use depot_accounts::{Identity, PendingLogin, Role, TokenPair, User, UserPatch};
use depot_client::wire::{
    self, CredentialsRequest, PatchUserRequest, RefreshRequest, RegistrationAccepted,
    TokenResponse, UserView,
};
use depot_core::{Actor, Permission, PrincipalKind, ValidationError};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use utoipa::IntoParams;
use uuid::Uuid;

const STATE_COOKIE: &str = "depot_oidc_state";
const COOKIE_PATH: &str = "/api/v1/auth/oidc";
const PENDING_MINUTES: i64 = 10;

/// The accounts room's routes: sign-in is public, the user list is for user administrators.
pub fn routes() -> Vec<Route> {
    let admin = Access::Scope(Permission::UsersAdmin);
    vec![
        Route::new::<__path_register, _, _>(Access::Public, register).budget(Budget::Registration),
        Route::new::<__path_login, _, _>(Access::Public, login).budget(Budget::SignIn),
        Route::new::<__path_refresh, _, _>(Access::Public, refresh).budget(Budget::SignIn),
        Route::new::<__path_logout, _, _>(Access::Public, logout).budget(Budget::SignIn),
        Route::new::<__path_oidc_login, _, _>(Access::Public, oidc_login).budget(Budget::OidcStart),
        Route::new::<__path_oidc_callback, _, _>(Access::Public, oidc_callback)
            .budget(Budget::SignIn),
        Route::new::<__path_me, _, _>(Access::User, me),
        Route::new::<__path_list, _, _>(admin, list),
        Route::new::<__path_get, _, _>(admin, get),
        Route::new::<__path_patch, _, _>(admin, patch),
        Route::new::<__path_jwks, _, _>(Access::Public, jwks),
    ]
}

pub fn user_view(u: User) -> UserView {
    UserView {
        id: u.id,
        email: u.email.as_str().to_owned(),
        role: match u.role {
            Role::Admin => wire::Role::Admin,
            Role::User => wire::Role::User,
            Role::Reader => wire::Role::Reader,
        },
        scopes: u
            .role
            .scopes()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        disabled: u.disabled,
        has_password: u.password_hash.is_some(),
        created_at: u.created_at,
        updated_at: u.updated_at,
    }
}

pub fn token_response(p: TokenPair) -> TokenResponse {
    TokenResponse {
        access_token: p.access_token,
        token_type: p.token_type.to_owned(),
        expires_in: p.expires_in,
        refresh_token: p.refresh_token,
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set by the provider when the user refused or the request was bad.
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Token responses carry secrets: never cached. (`/auth/*` is outside idempotency storage.)
fn tokens_response(pair: TokenPair) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(token_response(pair))
}

fn count(state: &AccountsRoom, method: &str, result: &str) {
    state
        .metrics
        .logins
        .with_label_values(&[method, result])
        .inc();
}

fn outcome<T>(state: &AccountsRoom, method: &str, r: &Result<T, depot_accounts::AccountError>) {
    use depot_accounts::AccountError as E;
    let label = match r {
        Ok(_) => "success",
        Err(E::InvalidCredentials) => "invalid_credentials",
        Err(E::Throttled { .. }) => "throttled",
        Err(E::Disabled) => "disabled",
        Err(E::RefreshReused) => "reused",
        Err(E::RefreshInvalid) => "invalid_token",
        Err(E::Validation(_)) => "invalid_request",
        Err(_) => "error",
    };
    count(state, method, label);
}

/// What the derived schemas cannot say: the configured password length on registration (login
/// takes any non-empty password), and that a change to a user names `role` or `disabled`.
pub fn refine_docs(
    doc: &mut serde_json::Value,
    settings: &crate::accounts::settings::AccountsSection,
) {
    let body = |path: &str| {
        format!(
            "/paths/{}/post/requestBody/content/application~1json/schema",
            path.replace('~', "~0").replace('/', "~1")
        )
    };
    let credentials = |password: serde_json::Value| {
        serde_json::json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["email", "password"],
            "properties": {
                // What `Email::parse` takes: an address of at most 254 characters.
                "email": {"type": "string", "format": "email", "maxLength": 254, "examples": ["alice@example.com"]},
                "password": password,
            }
        })
    };
    if let Some(schema) = doc.pointer_mut(&body("/api/v1/auth/register")) {
        *schema = credentials(serde_json::json!({
            "type": "string",
            "minLength": settings.password_min_length,
            "maxLength": settings.password_max_length,
        }));
    }
    if let Some(schema) = doc.pointer_mut(&body("/api/v1/auth/login")) {
        *schema = credentials(serde_json::json!({"type": "string", "minLength": 1}));
    }
    if let Some(schema) = doc.pointer_mut("/components/schemas/PatchUserRequest") {
        let derived = schema.take();
        *schema = serde_json::json!({
            "allOf": [derived, {"anyOf": [
                {"required": ["role"], "properties": {"role": {"type": "string"}}},
                {"required": ["disabled"], "properties": {"disabled": {"type": "boolean"}}},
            ]}]
        });
    }
}

#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = CredentialsRequest,
    responses(
        (status = 202, description = "Registered, or the e-mail had an account already (then nothing changed): the answer is the same, so that it tells nobody which addresses have accounts. A new account has the role `reader`; sign in next", body = RegistrationAccepted),
        (status = 403, description = "Registration is turned off"),
        (status = 422, description = "Invalid e-mail or password length")))]
pub async fn register(
    state: web::Data<AccountsRoom>,
    body: Json<CredentialsRequest>,
) -> Result<HttpResponse, ApiError> {
    let registration = state
        .accounts
        .register(&body.0.email, &body.0.password)
        .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(RegistrationAccepted {
            email: registration.email().as_str().to_owned(),
            login: "/api/v1/auth/login".to_owned(),
        }))
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = CredentialsRequest,
    responses(
        (status = 200, description = "An access token and the first refresh token of a new session", body = TokenResponse),
        (status = 401, description = "Unknown e-mail or wrong password (the same answer for both)"),
        (status = 403, description = "The account is disabled"),
        (status = 429, description = "Too many failures for this account; see Retry-After")))]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AccountsRoom>,
    body: Json<CredentialsRequest>,
) -> Result<HttpResponse, ApiError> {
    let ip = crate::http::client_ip::of(&req);
    let r = state
        .accounts
        .login(&body.0.email, &body.0.password, ip.as_deref())
        .await;
    outcome(&state, "password", &r);
    let (_, pair) = r?;
    Ok(tokens_response(pair))
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair; the presented refresh token no longer works", body = TokenResponse),
        (status = 401, description = "Unknown, expired or revoked token; a reused token also revokes its whole session"),
        (status = 403, description = "The account is disabled")))]
pub async fn refresh(
    state: web::Data<AccountsRoom>,
    body: Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let r = state.accounts.refresh(&body.0.refresh_token).await;
    outcome(&state, "refresh", &r);
    Ok(tokens_response(r?))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 204, description = "The session (every refresh token of its family) is revoked"),
        (status = 401, description = "Unknown refresh token")))]
pub async fn logout(
    state: web::Data<AccountsRoom>,
    body: Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    state.accounts.logout(&body.0.refresh_token).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/users/me", tag = "users",
    responses(
        (status = 200, description = "The signed-in user", body = UserView),
        (status = 401, description = "Missing, expired or invalid access token"),
        (status = 403, description = "The credentials are not a user's (an API key or the admin secret)")))]
pub async fn me(auth: Auth, state: web::Data<AccountsRoom>) -> Result<HttpResponse, ApiError> {
    let PrincipalKind::User { user_id } = auth.0.kind else {
        // Access::User lets only users in.
        return Err(ApiError::unexpected(anyhow::anyhow!(
            "a non-user reached /users/me"
        )));
    };
    let user = state.accounts.get(user_id).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(user_view(user)))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery),
    responses(
        (status = 200, description = "A page of users, newest first", body = inline(wire::Collection<UserView>)),
        (status = 403, description = "Needs the users:admin scope")))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AccountsRoom>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page_request(query.0.limit, query.0.cursor.as_deref())?;
    let users = state.accounts.list(&page).await?;
    Ok(collection(&req, users, user_view))
}

fn user_response(u: User) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(u.revision)))
        .json(user_view(u))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users",
    responses(
        (status = 200, description = "The user, with its ETag", body = UserView),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 404, description = "No such user")))]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AccountsRoom>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let user = state.accounts.get(*id).await?;
    Ok(conditional(&req, user.revision, || user_response(user)))
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", request_body = PatchUserRequest,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses(
        (status = 200, description = "The updated user", body = UserView),
        (status = 404, description = "No such user"),
        (status = 409, description = "It would leave no enabled administrator"),
        (status = 412, description = "If-Match names an old revision"),
        (status = 422, description = "Unknown role, or nothing to change")))]
pub async fn patch(
    req: HttpRequest,
    auth: Auth,
    state: web::Data<AccountsRoom>,
    id: web::Path<Uuid>,
    body: Json<PatchUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let role = body.0.role.as_deref().map(str::parse::<Role>).transpose()?;
    let patch = UserPatch {
        role,
        disabled: body.0.disabled,
    };
    let actor = Actor {
        principal: auth.0,
        client_ip: crate::http::client_ip::of(&req),
    };
    let user = state
        .accounts
        .update(&actor, *id, patch, if_match(&req)?)
        .await?;
    Ok(user_response(user))
}

/// The public keys that verify Depot's access tokens (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "The JSON Web Key Set", content_type = "application/jwk-set+json")))]
pub async fn jwks(state: web::Data<AccountsRoom>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.accounts.tokens().jwks())
}

fn oidc_client(state: &AccountsRoom) -> Result<&crate::accounts::oidc::OidcClient, ApiError> {
    state
        .oidc
        .as_deref()
        .ok_or_else(|| ApiError::not_found("sign-in with an identity provider is not configured"))
}

fn state_cookie(value: String, secure: bool, max_age: CookieDuration) -> Cookie<'static> {
    Cookie::build(STATE_COOKIE, value)
        .path(COOKIE_PATH)
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(max_age)
        .finish()
}

#[utoipa::path(get, path = "/api/v1/auth/oidc/login", tag = "auth",
    responses(
        (status = 302, description = "To the identity provider (authorization code flow with PKCE); sets a short-lived state cookie"),
        (status = 404, description = "No identity provider is configured"),
        (status = 502, description = "The provider's discovery document could not be read")))]
pub async fn oidc_login(state: web::Data<AccountsRoom>) -> Result<HttpResponse, ApiError> {
    let client = oidc_client(&state)?;
    let metadata = client.metadata().await?;
    let oidc_state = random_token(32);
    let nonce = random_token(32);
    let code_verifier = random_token(48);
    let now = state.clock.now();
    state
        .pending_logins
        .save(&PendingLogin {
            state_hash: sha256(&oidc_state),
            nonce: nonce.clone(),
            code_verifier: code_verifier.clone(),
            expires_at: now + chrono::Duration::minutes(PENDING_MINUTES),
        })
        .await?;
    let url = depot_accounts::oidc::authorization_url(
        &metadata,
        &depot_accounts::oidc::AuthorizationRequest {
            client_id: &client.client_id,
            redirect_uri: &client.redirect_url,
            scopes: &client.scopes,
            state: &oidc_state,
            nonce: &nonce,
            code_verifier: &code_verifier,
        },
    );
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(state_cookie(
            oidc_state,
            client.cookie_secure,
            CookieDuration::minutes(PENDING_MINUTES),
        ))
        .finish())
}

fn state_invalid(detail: &str) -> ApiError {
    ApiError::BadRequest {
        code: "oidc_state_invalid",
        detail: detail.to_owned(),
    }
}

#[utoipa::path(get, path = "/api/v1/auth/oidc/callback", tag = "auth", params(CallbackQuery),
    responses(
        (status = 200, description = "Signed in: Depot's own tokens", body = TokenResponse),
        (status = 400, description = "Missing/mismatched state (or cookie), reused or expired sign-in, provider error, refused code"),
        (status = 404, description = "No identity provider is configured"),
        (status = 401, description = "The ID token failed verification (signature, issuer, audience, expiry, nonce)"),
        (status = 403, description = "The account is disabled"),
        (status = 409, description = "An account with the e-mail exists and the provider has not verified it"),
        (status = 502, description = "The identity provider is unavailable")))]
pub async fn oidc_callback(
    req: HttpRequest,
    state: web::Data<AccountsRoom>,
    query: Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let client = oidc_client(&state)?;
    let q = query.0;
    if let Some(error) = q.error {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(ApiError::BadRequest {
            code: "oidc_provider_error",
            detail: format!("the identity provider answered `{error}`"),
        });
    }
    let (Some(code), Some(oidc_state)) = (q.code, q.state) else {
        let mut e = ValidationError::field("code", "is required");
        e.push("state", "is required");
        return Err(e.into());
    };
    let cookie = req.cookie(STATE_COOKIE).ok_or_else(|| {
        state_invalid(
            "the sign-in cookie is missing: start again at /auth/oidc/login in the same browser",
        )
    })?;
    if !bool::from(cookie.value().as_bytes().ct_eq(oidc_state.as_bytes())) {
        return Err(state_invalid(
            "the state does not match this browser's sign-in",
        ));
    }
    let now = state.clock.now();
    let pending = state
        .pending_logins
        .take(&sha256(&oidc_state), now)
        .await?
        .ok_or_else(|| state_invalid("this sign-in is unknown, expired or already used"))?;
    let claims = client
        .complete(&code, &pending.code_verifier, &pending.nonce)
        .await;
    if claims.is_err() {
        count(&state, "oidc", "invalid_token");
    }
    let claims = claims?;
    let r = state
        .accounts
        .sign_in_external(
            Identity {
                issuer: client.issuer().to_owned(),
                subject: claims.subject,
            },
            claims.email.as_deref(),
            claims.email_verified,
            crate::http::client_ip::of(&req),
        )
        .await;
    outcome(&state, "oidc", &r);
    let (_, pair) = r?;
    let mut res = tokens_response(pair);
    let _ = res.add_removal_cookie(&state_cookie(
        String::new(),
        client.cookie_secure,
        CookieDuration::ZERO,
    ));
    Ok(res)
}
