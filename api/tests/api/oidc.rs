//! Sign-in through an external OpenID Connect provider: a small provider runs inside the test
//! (discovery document, key set, authorization and token endpoints, its own Ed25519 keys).

use crate::accounts::PASSWORD;
use crate::helpers::{
    TestApp, assert_api_problem, assert_raw_problem, detail, fields, spawn_app_with, status_of,
};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use depot_client::wire::{PatchUserRequest, Role, TokenResponse, UserView};
use depot_client::{Error, Response};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const CLIENT_ID: &str = "depot-test-client";
const CLIENT_SECRET: &str = "provider-side-secret";
/// Where the provider sends the browser back; the test rewrites the host to the app's.
const REDIRECT: &str = "http://depot.invalid/api/v1/auth/oidc/callback";

struct SigningKey {
    kid: String,
    pem: String,
}

impl SigningKey {
    fn new(kid: &str) -> Self {
        Self {
            kid: kid.into(),
            pem: depot_accounts::tokens::generate_ed25519_pem(),
        }
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(
            &EncodingKey::from_ed_pem(self.pem.as_bytes()).unwrap(),
            Algorithm::EdDSA,
        )
        .unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        jwk
    }
}

/// What the next ID token looks like; tests change it to provoke each failure.
struct Behaviour {
    subject: String,
    email: String,
    email_verified: bool,
    /// Sign with this key (published or not).
    signing: usize,
    /// Keys in the published set.
    published: Vec<usize>,
    /// Put this nonce in the token instead of the requested one.
    nonce_override: Option<String>,
    /// Name these as token_endpoint and jwks_uri in the discovery document instead.
    endpoints_override: Option<(String, String)>,
    /// Name this as authorization_endpoint in the discovery document instead.
    authorize_override: Option<String>,
}

struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

struct Provider {
    issuer: String,
    keys: Vec<SigningKey>,
    behaviour: Mutex<Behaviour>,
    grants: Mutex<HashMap<String, Grant>>,
    jwks_fetches: Mutex<u32>,
}

async fn discovery(p: web::Data<Provider>) -> HttpResponse {
    let authorize = p
        .behaviour
        .lock()
        .unwrap()
        .authorize_override
        .clone()
        .unwrap_or_else(|| format!("{}/authorize", p.issuer));
    let (token, jwks) = p
        .behaviour
        .lock()
        .unwrap()
        .endpoints_override
        .clone()
        .unwrap_or_else(|| (format!("{}/token", p.issuer), format!("{}/jwks", p.issuer)));
    HttpResponse::Ok().json(json!({
        "issuer": p.issuer,
        "authorization_endpoint": authorize,
        "token_endpoint": token,
        "jwks_uri": jwks,
        "id_token_signing_alg_values_supported": ["EdDSA", "RS256"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
    }))
}

async fn jwks(p: web::Data<Provider>) -> HttpResponse {
    *p.jwks_fetches.lock().unwrap() += 1;
    let b = p.behaviour.lock().unwrap();
    let keys = b.published.iter().map(|i| p.keys[*i].jwk()).collect();
    HttpResponse::Ok().json(JwkSet { keys })
}

async fn authorize(p: web::Data<Provider>, q: web::Query<HashMap<String, String>>) -> HttpResponse {
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].split(' ').any(|s| s == "openid"));
    let code = uuid::Uuid::new_v4().to_string();
    p.grants.lock().unwrap().insert(
        code.clone(),
        Grant {
            nonce: q["nonce"].clone(),
            challenge: q["code_challenge"].clone(),
            redirect_uri: q["redirect_uri"].clone(),
        },
    );
    let location = format!("{}?code={code}&state={}", q["redirect_uri"], q["state"]);
    HttpResponse::Found()
        .insert_header(("Location", location))
        .finish()
}

async fn token(
    p: web::Data<Provider>,
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        != Some(&expected)
    {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    let Some(grant) = p.grants.lock().unwrap().remove(&form["code"]) else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}));
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(form["code_verifier"].as_bytes()));
    if challenge != grant.challenge || form["redirect_uri"] != grant.redirect_uri {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}));
    }
    let b = p.behaviour.lock().unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": p.issuer,
        "sub": b.subject,
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": b.nonce_override.clone().unwrap_or(grant.nonce),
        "email": b.email,
        "email_verified": b.email_verified,
    });
    let key = &p.keys[b.signing];
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    let id_token = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_pem(key.pem.as_bytes()).unwrap(),
    )
    .unwrap();
    HttpResponse::Ok().json(json!({
        "access_token": "provider-access-token",
        "token_type": "Bearer",
        "id_token": id_token,
    }))
}

/// Starts the provider on a random port; it stops with the test's runtime.
async fn start_provider() -> Arc<web::Data<Provider>> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let provider = web::Data::new(Provider {
        issuer,
        // 0 and 1 are the provider's keys; 2 is a forger's key under kid-a; 3 is never published.
        keys: vec![
            SigningKey::new("kid-a"),
            SigningKey::new("kid-b"),
            SigningKey::new("kid-a"),
            SigningKey::new("kid-c"),
        ],
        behaviour: Mutex::new(Behaviour {
            subject: "provider-user-1".into(),
            email: "oidc.user@example.com".into(),
            email_verified: true,
            signing: 0,
            published: vec![0],
            nonce_override: None,
            endpoints_override: None,
            authorize_override: None,
        }),
        grants: Mutex::new(HashMap::new()),
        jwks_fetches: Mutex::new(0),
    });
    let data = provider.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route(
                "/.well-known/openid-configuration",
                web::get().to(discovery),
            )
            .route("/jwks", web::get().to(jwks))
            .route("/authorize", web::get().to(authorize))
            .route("/token", web::post().to(token))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    Arc::new(provider)
}

async fn app_with(provider: &Provider) -> TestApp {
    let issuer = provider.issuer.clone();
    spawn_app_with(move |s| {
        s.oidc.issuer_url = Some(issuer);
        s.oidc.client_id = Some(CLIENT_ID.into());
        s.oidc.redirect_url = Some(REDIRECT.into());
        s.oidc.jwks_refresh_min_seconds = 0;
        std::fs::write(
            s.secrets.dir.as_ref().unwrap().join("oidc_client_secret"),
            CLIENT_SECRET,
        )
        .unwrap();
    })
    .await
}

/// The browser's part up to the callback: (callback URL on the app, state cookie). Raw: the
/// redirects and the cookie are the browser's, beyond the typed client.
async fn start_sign_in(app: &TestApp) -> (String, String) {
    let res = app.get("/api/v1/auth/oidc/login").await;
    assert_eq!(res.status(), 302);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(cookie.contains("Path=/api/v1/auth/oidc"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let to_provider = res.headers()["location"].to_str().unwrap().to_owned();
    let res = app.client.get(&to_provider).send().await.unwrap();
    assert_eq!(res.status(), 302);
    let back = res.headers()["location"].to_str().unwrap();
    let callback = back.replace("http://depot.invalid", &app.address);
    (callback, cookie)
}

/// The browser's return to the callback (with its cookie, which the client cannot send), its
/// answer decoded by the client: Depot's tokens, with the headers (`Set-Cookie`).
async fn callback(
    app: &TestApp,
    url: &str,
    cookie: Option<&str>,
) -> Result<Response<TokenResponse>, Error> {
    let mut req = app.client.get(url);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    app.depot().send(req).await
}

async fn sign_in(app: &TestApp) -> Result<Response<TokenResponse>, Error> {
    let (url, cookie) = start_sign_in(app).await;
    callback(app, &url, Some(&cookie)).await
}

/// Signs in, which must succeed: Depot's tokens.
async fn signed_in(app: &TestApp) -> TokenResponse {
    let res = sign_in(app)
        .await
        .unwrap_or_else(|e| panic!("signing in: {e}"));
    assert_eq!(res.status, 200);
    res.body
}

async fn me(app: &TestApp, tokens: &TokenResponse) -> UserView {
    app.depot_with_token(&tokens.access_token)
        .me()
        .await
        .unwrap()
}

#[tokio::test]
async fn signing_in_creates_the_account_once_and_issues_depot_tokens() {
    let provider = start_provider().await;
    let app = app_with(&provider).await;
    let res = sign_in(&app).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status, 200, "{res:?}");
    let set_cookie = res.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("Max-Age=0"),
        "the state cookie is cleared: {set_cookie}"
    );
    let tokens = res.body;
    let user = me(&app, &tokens).await;
    assert_eq!(user.email, "oidc.user@example.com");
    assert!(!user.has_password);
    // Created at sign-in: a reader until an administrator grants more.
    assert_eq!(user.role, Role::Reader);
    let again = signed_in(&app).await;
    assert_eq!(me(&app, &again).await.id, user.id, "linked by subject");
    assert_eq!(
        *provider.jwks_fetches.lock().unwrap(),
        1,
        "the key set is cached"
    );
    // Depot's refresh tokens work for OIDC sessions too.
    let res = app.refresh(&again.refresh_token).await;
    assert_eq!(status_of(&res), 200);
}

#[tokio::test]
async fn a_verified_email_links_an_existing_account_an_unverified_one_does_not() {
    let provider = start_provider().await;
    let app = app_with(&provider).await;
    let local = app.registered("oidc.user@example.com").await;
    provider.behaviour.lock().unwrap().email_verified = false;
    assert_api_problem(sign_in(&app).await, 409, "conflict");
    // A session of whoever set the local password (maybe not the address's owner).
    let squatter = app
        .login("oidc.user@example.com", PASSWORD)
        .await
        .unwrap()
        .body;
    provider.behaviour.lock().unwrap().email_verified = true;
    let tokens = signed_in(&app).await;
    let linked = me(&app, &tokens).await;
    assert_eq!(linked.id, local.id);
    // Linking hands the account to the verified owner: the local password and its sessions end.
    assert!(!linked.has_password);
    let res = app.login("oidc.user@example.com", PASSWORD).await;
    assert_api_problem(res, 401, "credentials_invalid");
    let res = app.refresh(&squatter.refresh_token).await;
    assert_api_problem(res, 401, "refresh_token_invalid");
    // The link is in the audit log: the account's owner linked it, from the browser's address.
    let audit = app
        .admin_depot()
        .audit_events(&[("action", Some("user.link_identity".to_owned()))])
        .await
        .unwrap();
    assert_eq!(audit.items.len(), 1);
    let e = &audit.items[0];
    assert_eq!(
        (e.actor.clone(), e.target_id),
        (format!("user:{}", local.id), Some(local.id))
    );
    assert_eq!(
        e.details.as_ref().unwrap()["issuer"],
        provider.issuer.as_str()
    );
}

#[tokio::test]
async fn administrators_are_never_linked_automatically() {
    let provider = start_provider().await;
    let app = app_with(&provider).await;
    let admin = app.registered("oidc.user@example.com").await;
    app.promote(admin.id).await;
    assert_api_problem(sign_in(&app).await, 409, "conflict");
    assert_eq!(
        status_of(&app.login("oidc.user@example.com", PASSWORD).await),
        200
    );
}

/// The callback is called without, or with someone else's, cookie: raw, as a browser would.
#[tokio::test]
async fn state_must_match_the_browser_and_is_single_use() {
    let provider = start_provider().await;
    let app = app_with(&provider).await;
    let (url, cookie) = start_sign_in(&app).await;
    let res = callback(&app, &url, None).await;
    assert_api_problem(res, 400, "oidc_state_invalid");
    let res = callback(&app, &url, Some("depot_oidc_state=someone-elses-state")).await;
    assert_api_problem(res, 400, "oidc_state_invalid");
    assert_eq!(status_of(&callback(&app, &url, Some(&cookie)).await), 200);
    let res = callback(&app, &url, Some(&cookie)).await;
    assert_api_problem(res, 400, "oidc_state_invalid");
    let res = app
        .depot()
        .get::<TokenResponse>("/api/v1/auth/oidc/callback?error=access_denied")
        .await;
    assert_api_problem(res, 400, "oidc_provider_error");
    let res = app
        .depot()
        .get::<TokenResponse>("/api/v1/auth/oidc/callback")
        .await;
    let p = assert_api_problem(res, 422, "validation_failed");
    assert_eq!(fields(&p)[0], "code");
}

#[tokio::test]
async fn a_nonce_mismatch_or_a_bad_signature_is_refused() {
    let provider = start_provider().await;
    let app = app_with(&provider).await;
    provider.behaviour.lock().unwrap().nonce_override = Some("replayed-nonce".into());
    let p = assert_api_problem(sign_in(&app).await, 401, "oidc_token_invalid");
    assert!(detail(&p).contains("nonce"), "{p:?}");
    provider.behaviour.lock().unwrap().nonce_override = None;
    // Signed by a key that claims the published kid but is not the provider's.
    provider.behaviour.lock().unwrap().signing = 2;
    let p = assert_api_problem(sign_in(&app).await, 401, "oidc_token_invalid");
    assert!(detail(&p).contains("signature"), "{p:?}");
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_so_rotation_works() {
    let provider = start_provider().await;
    let app = app_with(&provider).await;
    assert_eq!(status_of(&sign_in(&app).await), 200);
    assert_eq!(*provider.jwks_fetches.lock().unwrap(), 1);
    // The provider rotates to kid-b: Depot's cached set does not have it yet.
    {
        let mut b = provider.behaviour.lock().unwrap();
        b.published = vec![0, 1];
        b.signing = 1;
    }
    let res = sign_in(&app).await;
    assert_eq!(status_of(&res), 200, "{res:?}");
    assert_eq!(*provider.jwks_fetches.lock().unwrap(), 2, "refetched once");
    // A kid the provider never publishes stays refused after the refetch.
    provider.behaviour.lock().unwrap().signing = 3;
    let p = assert_api_problem(sign_in(&app).await, 401, "oidc_token_invalid");
    assert!(detail(&p).contains("kid-c"), "{p:?}");
    assert_eq!(*provider.jwks_fetches.lock().unwrap(), 3);
}

/// The sign-in's start is a browser redirect: read raw.
#[tokio::test]
async fn without_a_provider_the_routes_are_absent_and_disabled_users_stay_out() {
    let app = crate::helpers::spawn_app().await;
    let res = app.get("/api/v1/auth/oidc/login").await;
    assert_raw_problem(res, 404, "not_found").await;

    let provider = start_provider().await;
    let app = app_with(&provider).await;
    let tokens = signed_in(&app).await;
    let id = me(&app, &tokens).await.id;
    let disable = PatchUserRequest {
        disabled: Some(true),
        ..Default::default()
    };
    let res = app.admin_depot().patch_user(id, &disable, None).await;
    assert_eq!(status_of(&res), 200);
    assert_api_problem(sign_in(&app).await, 403, "account_disabled");
}

/// A discovery document may not send Depot's own calls (the code exchange, the key set) off the
/// issuer's origin or over plain http: the provider's answer is checked before it is used.
#[tokio::test]
async fn discovery_endpoints_must_be_on_the_issuers_origin() {
    let provider = start_provider().await;
    let issuer = provider.issuer.clone();
    let port: u16 = issuer.rsplit(':').next().unwrap().parse().unwrap();
    for (token, jwks) in [
        // Another origin (another port on the same host is another origin).
        (
            format!("http://127.0.0.1:{}/token", port + 1),
            format!("{issuer}/jwks"),
        ),
        (
            format!("{issuer}/token"),
            "https://keys.example.com/jwks".to_string(),
        ),
        // Plain http to another host.
        (
            format!("http://localhost:{port}/token"),
            format!("{issuer}/jwks"),
        ),
    ] {
        provider.behaviour.lock().unwrap().endpoints_override = Some((token, jwks));
        let app = app_with(&provider).await;
        let res = app.get("/api/v1/auth/oidc/login").await;
        assert_eq!(res.status(), 502, "{}", res.text().await.unwrap());
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("example.com") && !body.contains("token"),
            "{body}"
        );
    }
    // Listed in oidc.allowed_endpoint_hosts, another https host is accepted (the discovery
    // succeeds; nothing is fetched from it until a sign-in completes).
    provider.behaviour.lock().unwrap().endpoints_override = Some((
        format!("{issuer}/token"),
        "https://keys.example.com/jwks".into(),
    ));
    let issuer_url = issuer.clone();
    let app = spawn_app_with(move |s| {
        s.oidc.issuer_url = Some(issuer_url);
        s.oidc.client_id = Some(CLIENT_ID.into());
        s.oidc.redirect_url = Some(REDIRECT.into());
        s.oidc.allowed_endpoint_hosts = vec!["keys.example.com".into()];
    })
    .await;
    assert_eq!(app.get("/api/v1/auth/oidc/login").await.status(), 302);
}

/// The browser is sent to the discovery document's authorization_endpoint: it is held to the
/// same rule as the endpoints Depot calls (https on the issuer's origin or a listed host), so a
/// tampered document cannot send people to a look-alike sign-in page.
#[tokio::test]
async fn the_authorization_endpoint_is_held_to_the_issuers_origin() {
    let provider = start_provider().await;
    for authorize in [
        "https://login.example.net/authorize",
        "javascript:alert(1)",
        "http://127.0.0.1:1/authorize",
    ] {
        provider.behaviour.lock().unwrap().authorize_override = Some(authorize.into());
        let app = app_with(&provider).await;
        let res = app.get("/api/v1/auth/oidc/login").await;
        assert_eq!(res.status(), 502, "{authorize}");
        assert!(res.headers().get("location").is_none());
    }
}

/// Each started sign-in keeps a pending login for 10 minutes, and nothing bounded how many one
/// address could leave: `oidc.pending_logins_per_address` per 10 minutes, then 429.
#[tokio::test]
async fn one_address_cannot_pile_up_pending_sign_ins() {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let provider = start_provider().await;
    let issuer = provider.issuer.clone();
    let app = spawn_app_with(move |s| {
        s.oidc.issuer_url = Some(issuer);
        s.oidc.client_id = Some(CLIENT_ID.into());
        s.oidc.redirect_url = Some(REDIRECT.into());
        s.oidc.pending_logins_per_address = 3;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/auth/oidc/login").await.status(), 302);
    }
    let res = app.get("/api/v1/auth/oidc/login").await;
    assert_raw_problem(res, 429, "rate_limited").await;
    let db = Database::connect(&app.settings.database.url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT 1 FROM oidc_logins",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3, "the refused one stored nothing");
    db.close().await.ok();
}
