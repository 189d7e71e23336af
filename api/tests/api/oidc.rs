//! Sign-in through an external OpenID Connect provider: a small provider runs inside the test
//! (discovery document, key set, authorization and token endpoints, its own Ed25519 keys).

use crate::accounts::PASSWORD;
use crate::helpers::{TestApp, assert_problem, spawn_app_with};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
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
    HttpResponse::Ok().json(json!({
        "issuer": p.issuer,
        "authorization_endpoint": format!("{}/authorize", p.issuer),
        "token_endpoint": format!("{}/token", p.issuer),
        "jwks_uri": format!("{}/jwks", p.issuer),
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

/// The browser's part up to the callback: (callback URL on the app, state cookie).
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

async fn callback(app: &TestApp, url: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(url);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    req.send().await.unwrap()
}

async fn sign_in(app: &TestApp) -> reqwest::Response {
    let (url, cookie) = start_sign_in(app).await;
    callback(app, &url, Some(&cookie)).await
}

async fn me(app: &TestApp, tokens: &Value) -> Value {
    app.client
        .get(app.url("/api/v1/users/me"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn signing_in_creates_the_account_once_and_issues_depot_tokens() {
    let provider = start_provider().await;
    let app = app_with(&provider).await;
    let res = sign_in(&app).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let set_cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("Max-Age=0"),
        "the state cookie is cleared: {set_cookie}"
    );
    let tokens: Value = res.json().await.unwrap();
    let user = me(&app, &tokens).await;
    assert_eq!(user["email"], "oidc.user@example.com");
    assert_eq!(user["has_password"], false);
    assert_eq!(user["role"], "user");
    let again: Value = sign_in(&app).await.json().await.unwrap();
    assert_eq!(
        me(&app, &again).await["id"],
        user["id"],
        "linked by subject"
    );
    assert_eq!(
        *provider.jwks_fetches.lock().unwrap(),
        1,
        "the key set is cached"
    );
    // Depot's refresh tokens work for OIDC sessions too.
    let res = app.refresh(again["refresh_token"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_verified_email_links_an_existing_account_an_unverified_one_does_not() {
    let provider = start_provider().await;
    let app = app_with(&provider).await;
    let local = app.register("oidc.user@example.com", PASSWORD).await;
    let local: Value = local.json().await.unwrap();
    provider.behaviour.lock().unwrap().email_verified = false;
    let res = sign_in(&app).await;
    assert_problem(res, 409, "conflict").await;
    // A session of whoever set the local password (maybe not the address's owner).
    let squatter: Value = app
        .login("oidc.user@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    provider.behaviour.lock().unwrap().email_verified = true;
    let tokens: Value = sign_in(&app).await.json().await.unwrap();
    let linked = me(&app, &tokens).await;
    assert_eq!(linked["id"], local["id"]);
    // Linking hands the account to the verified owner: the local password and its sessions end.
    assert_eq!(linked["has_password"], false);
    let res = app.login("oidc.user@example.com", PASSWORD).await;
    assert_problem(res, 401, "credentials_invalid").await;
    let res = app
        .refresh(squatter["refresh_token"].as_str().unwrap())
        .await;
    assert_problem(res, 401, "refresh_token_invalid").await;
}

#[tokio::test]
async fn administrators_are_never_linked_automatically() {
    let provider = start_provider().await;
    let app = app_with(&provider).await;
    let admin: Value = app
        .register("oidc.user@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    app.promote(admin["id"].as_str().unwrap()).await;
    let res = sign_in(&app).await;
    assert_problem(res, 409, "conflict").await;
    assert_eq!(
        app.login("oidc.user@example.com", PASSWORD).await.status(),
        200
    );
}

#[tokio::test]
async fn state_must_match_the_browser_and_is_single_use() {
    let provider = start_provider().await;
    let app = app_with(&provider).await;
    let (url, cookie) = start_sign_in(&app).await;
    let res = callback(&app, &url, None).await;
    assert_problem(res, 400, "oidc_state_invalid").await;
    let res = callback(&app, &url, Some("depot_oidc_state=someone-elses-state")).await;
    assert_problem(res, 400, "oidc_state_invalid").await;
    assert_eq!(callback(&app, &url, Some(&cookie)).await.status(), 200);
    let res = callback(&app, &url, Some(&cookie)).await;
    assert_problem(res, 400, "oidc_state_invalid").await;
    let res = app
        .get("/api/v1/auth/oidc/callback?error=access_denied")
        .await;
    assert_problem(res, 400, "oidc_provider_error").await;
    let res = app.get("/api/v1/auth/oidc/callback").await;
    let body = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "code");
}

#[tokio::test]
async fn a_nonce_mismatch_or_a_bad_signature_is_refused() {
    let provider = start_provider().await;
    let app = app_with(&provider).await;
    provider.behaviour.lock().unwrap().nonce_override = Some("replayed-nonce".into());
    let res = sign_in(&app).await;
    let body = assert_problem(res, 401, "oidc_token_invalid").await;
    assert!(body["detail"].as_str().unwrap().contains("nonce"), "{body}");
    provider.behaviour.lock().unwrap().nonce_override = None;
    // Signed by a key that claims the published kid but is not the provider's.
    provider.behaviour.lock().unwrap().signing = 2;
    let res = sign_in(&app).await;
    let body = assert_problem(res, 401, "oidc_token_invalid").await;
    assert!(
        body["detail"].as_str().unwrap().contains("signature"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_so_rotation_works() {
    let provider = start_provider().await;
    let app = app_with(&provider).await;
    assert_eq!(sign_in(&app).await.status(), 200);
    assert_eq!(*provider.jwks_fetches.lock().unwrap(), 1);
    // The provider rotates to kid-b: Depot's cached set does not have it yet.
    {
        let mut b = provider.behaviour.lock().unwrap();
        b.published = vec![0, 1];
        b.signing = 1;
    }
    let res = sign_in(&app).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(*provider.jwks_fetches.lock().unwrap(), 2, "refetched once");
    // A kid the provider never publishes stays refused after the refetch.
    provider.behaviour.lock().unwrap().signing = 3;
    let res = sign_in(&app).await;
    let body = assert_problem(res, 401, "oidc_token_invalid").await;
    assert!(body["detail"].as_str().unwrap().contains("kid-c"), "{body}");
    assert_eq!(*provider.jwks_fetches.lock().unwrap(), 3);
}

#[tokio::test]
async fn without_a_provider_the_routes_are_absent_and_disabled_users_stay_out() {
    let app = crate::helpers::spawn_app().await;
    let res = app.get("/api/v1/auth/oidc/login").await;
    assert_problem(res, 404, "not_found").await;

    let provider = start_provider().await;
    let app = app_with(&provider).await;
    let tokens: Value = sign_in(&app).await.json().await.unwrap();
    let id = me(&app, &tokens).await["id"].as_str().unwrap().to_owned();
    let res = app
        .admin(Method::PATCH, &format!("/api/v1/users/{id}"))
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = sign_in(&app).await;
    assert_problem(res, 403, "account_disabled").await;
}
