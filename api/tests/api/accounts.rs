//! Accounts: registration, login, access tokens, refresh-token rotation and reuse detection,
//! throttling, user administration, bearer tokens on protected routes, the `depot users` CLI.

use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};

pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    pub async fn register(&self, email: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/register"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.login_from(email, password, None).await
    }

    pub async fn login_from(
        &self,
        email: &str,
        password: &str,
        forwarded_for: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}));
        if let Some(ip) = forwarded_for {
            req = req.header("X-Forwarded-For", ip);
        }
        req.send().await.unwrap()
    }

    /// Registers and logs in; returns the token response.
    pub async fn signed_in_user(&self, email: &str) -> Value {
        let res = self.register(email, PASSWORD).await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        let res = self.login(email, PASSWORD).await;
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        res.json().await.unwrap()
    }

    pub async fn refresh(&self, token: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/refresh"))
            .json(&json!({"refresh_token": token}))
            .send()
            .await
            .unwrap()
    }

    pub fn with_token(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// The id of the user these tokens belong to (`GET /users/me`).
    pub async fn user_id(&self, tokens: &Value) -> String {
        let res = self
            .with_token(Method::GET, "/api/v1/users/me", access(tokens))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
        res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Makes a registered user an administrator (with the admin secret).
    pub async fn promote(&self, user_id: &str) {
        let res = self
            .admin(Method::PATCH, &format!("/api/v1/users/{user_id}"))
            .json(&json!({"role": "admin"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    }
}

fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

fn refresh_token(tokens: &Value) -> &str {
    tokens["refresh_token"].as_str().unwrap()
}

#[tokio::test]
async fn register_login_me_refresh_and_logout() {
    let app = spawn_app().await;
    let res = app.register("  Alice@Example.com ", PASSWORD).await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["role"], "user");
    assert_eq!(
        location,
        format!("/api/v1/users/{}", user["id"].as_str().unwrap())
    );
    assert!(user.get("password_hash").is_none());

    let res = app.login("alice@example.com", PASSWORD).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert!(refresh_token(&tokens).starts_with("dpr_"));

    let me: Value = app
        .with_token(Method::GET, "/api/v1/users/me", access(&tokens))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], user["id"]);
    assert_eq!(me["has_password"], true);
    let who: Value = app
        .with_token(Method::GET, "/api/v1/auth/whoami", access(&tokens))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["kind"], "user");
    assert_eq!(who["id"], user["id"]);

    let res = app.refresh(refresh_token(&tokens)).await;
    assert_eq!(res.status(), 200);
    let rotated: Value = res.json().await.unwrap();
    assert_ne!(refresh_token(&rotated), refresh_token(&tokens));
    let res = app
        .with_token(Method::GET, "/api/v1/users/me", access(&rotated))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let res = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .json(&json!({"refresh_token": refresh_token(&rotated)}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = app.refresh(refresh_token(&rotated)).await;
    assert_problem(res, 401, "refresh_token_invalid").await;
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_hashes() {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let app = spawn_app().await;
    let tokens = app.signed_in_user("hash@example.com").await;
    let db = Database::connect(&app.settings.database.url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT token_hash FROM refresh_tokens",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let stored: Vec<u8> = rows[0].try_get("", "token_hash").unwrap();
    assert_eq!(stored.len(), 32, "a SHA-256, not the token");
    let plain = refresh_token(&tokens).as_bytes();
    assert!(!stored.windows(8).any(|w| plain.windows(8).any(|p| p == w)));
    let users = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT password_hash FROM users",
        ))
        .await
        .unwrap();
    let hash: String = users[0].try_get("", "password_hash").unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    db.close().await.ok();
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_whole_family() {
    let app = spawn_app().await;
    let first = app.signed_in_user("reuse@example.com").await;
    let second: Value = app
        .refresh(refresh_token(&first))
        .await
        .json()
        .await
        .unwrap();
    // An attacker (or a confused client) presents the used token again.
    let res = app.refresh(refresh_token(&first)).await;
    assert_problem(res, 401, "refresh_token_reused").await;
    // The legitimate holder's current token is revoked too.
    let res = app.refresh(refresh_token(&second)).await;
    assert_problem(res, 401, "refresh_token_invalid").await;
    // Another session of the same user is untouched.
    let other: Value = app
        .login("reuse@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.refresh(refresh_token(&other)).await.status(), 200);
    let res = app.refresh("dpr_not-a-token").await;
    assert_problem(res, 401, "refresh_token_invalid").await;
    let res = app.refresh("").await;
    let body = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "refresh_token");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let app = spawn_app().await;
    app.signed_in_user("bob@example.com").await;
    let wrong = app.login("bob@example.com", "not the password!").await;
    let wrong = assert_problem(wrong, 401, "credentials_invalid").await;
    let unknown = app.login("nobody@example.com", "not the password!").await;
    let unknown = assert_problem(unknown, 401, "credentials_invalid").await;
    assert_eq!(wrong["detail"], unknown["detail"]);
    // Both verify one argon2id hash, so they take comparable time. Alternating samples and
    // comparing the fastest of each keeps other tests' load out of the comparison.
    let time = async |email: &str| {
        let start = std::time::Instant::now();
        app.login(email, "not the password!").await;
        start.elapsed()
    };
    let (mut known, mut unknown) = (std::time::Duration::MAX, std::time::Duration::MAX);
    for _ in 0..3 {
        known = known.min(time("bob@example.com").await);
        unknown = unknown.min(time("nobody@example.com").await);
    }
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    assert!(
        (0.33..3.0).contains(&ratio),
        "known {known:?} vs unknown {unknown:?}"
    );

    let res = app.login("not-an-email", "").await;
    let body = assert_problem(res, 422, "validation_failed").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password"]);
}

#[tokio::test]
async fn registration_validates_and_can_be_turned_off() {
    let app = spawn_app().await;
    let res = app.register("carol@example.com", "short").await;
    let body = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "password");
    let res = app.register("carol", "x".repeat(129).as_str()).await;
    let body = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.register("carol@example.com", PASSWORD).await.status(),
        201
    );
    let res = app.register("CAROL@example.com", PASSWORD).await;
    assert_problem(res, 409, "conflict").await;

    let closed = spawn_app_with(|s| s.accounts.registration_enabled = false).await;
    let res = closed.register("dave@example.com", PASSWORD).await;
    assert_problem(res, 403, "registration_disabled").await;
}

#[tokio::test]
async fn repeated_failures_slow_the_account_down_per_client() {
    let app = spawn_app_with(|s| s.server.trusted_proxies = vec!["127.0.0.1".into()]).await;
    app.signed_in_user("erin@example.com").await;
    let attacker = Some("203.0.113.66");
    for _ in 0..5 {
        let res = app
            .login_from("erin@example.com", "guess guess guess", attacker)
            .await;
        assert_eq!(res.status(), 401);
    }
    let res = app
        .login_from("erin@example.com", "guess guess guess", attacker)
        .await;
    assert_eq!(res.status(), 401, "the 6th failure is answered, then locks");
    let res = app.login_from("erin@example.com", PASSWORD, attacker).await;
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 429, "login_throttled").await;
    // The owner, elsewhere, is not locked out by the attacker.
    let res = app
        .login_from("erin@example.com", PASSWORD, Some("198.51.100.7"))
        .await;
    assert_eq!(res.status(), 200);
    // Unknown accounts are throttled alike (no way to tell which e-mails exist).
    for _ in 0..6 {
        app.login_from("ghost@example.com", "guess guess guess", attacker)
            .await;
    }
    let res = app
        .login_from("ghost@example.com", "guess guess guess", attacker)
        .await;
    assert_problem(res, 429, "login_throttled").await;
}

#[tokio::test]
async fn parallel_guesses_are_counted_one_by_one() {
    let app = spawn_app_with(|s| s.server.trusted_proxies = vec!["127.0.0.1".into()]).await;
    app.signed_in_user("burst@example.com").await;
    let passwords: Vec<String> = (0..30).map(|i| format!("guess number {i:04}")).collect();
    let guesses = passwords
        .iter()
        .map(|p| app.login_from("burst@example.com", p, Some("203.0.113.9")));
    let statuses: Vec<u16> = futures::future::join_all(guesses)
        .await
        .into_iter()
        .map(|r| r.status().as_u16())
        .collect();
    let answered = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        answered, 6,
        "5 free attempts and the one that locks: {statuses:?}"
    );
    assert_eq!(refused, 24, "{statuses:?}");
}

#[tokio::test]
async fn a_third_party_cannot_lock_the_owner_out() {
    let app = spawn_app_with(|s| s.server.trusted_proxies = vec!["127.0.0.1".into()]).await;
    app.register("owner@example.com", PASSWORD).await;
    let home = Some("198.51.100.20");
    assert_eq!(
        app.login_from("owner@example.com", PASSWORD, home)
            .await
            .status(),
        200
    );
    // Guesses from many addresses exhaust the account-wide allowance (20)…
    for i in 0..21 {
        let ip = format!("203.0.113.{i}");
        let res = app
            .login_from("owner@example.com", "guess guess guess", Some(&ip))
            .await;
        assert_eq!(res.status(), 401, "attempt {i}");
    }
    let res = app
        .login_from("owner@example.com", PASSWORD, Some("192.0.2.77"))
        .await;
    assert_problem(res, 429, "login_throttled").await;
    // …but the owner, from where they signed in before, still gets in.
    assert_eq!(
        app.login_from("owner@example.com", PASSWORD, home)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn disabled_users_cannot_sign_in_or_refresh_and_the_last_admin_stays() {
    let app = spawn_app().await;
    let tokens = app.signed_in_user("frank@example.com").await;
    let id = app.user_id(&tokens).await;
    let res = app
        .admin(Method::GET, &format!("/api/v1/users/{id}"))
        .send()
        .await
        .unwrap();
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let res = app
        .admin(Method::PATCH, &format!("/api/v1/users/{id}"))
        .header("If-Match", &etag)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .admin(Method::PATCH, &format!("/api/v1/users/{id}"))
        .header("If-Match", &etag)
        .json(&json!({"disabled": false}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 412, "precondition_failed").await;

    let res = app.login("frank@example.com", PASSWORD).await;
    assert_problem(res, 403, "account_disabled").await;
    let res = app.refresh(refresh_token(&tokens)).await;
    assert_eq!(res.status().as_u16() / 100, 4, "sessions were revoked");

    let res = app
        .admin(Method::PATCH, &format!("/api/v1/users/{id}"))
        .json(&json!({"role": "root"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "role");

    // The only administrator cannot demote or disable itself away.
    let admin = app.signed_in_user("gina@example.com").await;
    let admin_id = app.user_id(&admin).await;
    app.promote(&admin_id).await;
    let res = app
        .admin(Method::PATCH, &format!("/api/v1/users/{admin_id}"))
        .json(&json!({"role": "user"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 409, "conflict").await;
}

/// `GET /users/me` with `token` on `app` until it answers `status`, for up to 5 s.
async fn until_me_answers(app: &TestApp, token: &str, status: u16) -> reqwest::Response {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let res = app
            .with_token(Method::GET, "/api/v1/users/me", token)
            .send()
            .await
            .unwrap();
        if res.status() == status || std::time::Instant::now() > deadline {
            return res;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Access tokens issued before their user was disabled or demoted stop working: at once on the
/// replica that made the change, within a poll (250 ms) on another. A promotion leaves them be.
#[tokio::test]
async fn access_tokens_die_with_a_disable_or_a_demotion_on_every_replica() {
    // Replicas share the signing key, as in production.
    let pem = depot_accounts::tokens::generate_ed25519_pem();
    let app = spawn_app_with(move |s| {
        std::fs::write(s.secrets.dir.as_ref().unwrap().join("jwt_signing_key"), pem).unwrap();
    })
    .await;
    let other = app.spawn_replica().await;
    let ivy = app.signed_in_user("ivy@example.com").await;
    assert_eq!(
        until_me_answers(&other, access(&ivy), 200).await.status(),
        200
    );
    let ivy_id = app.user_id(&ivy).await;

    // A promotion: the token issued as a plain user keeps working (as that user).
    app.promote(&ivy_id).await;
    assert_eq!(
        until_me_answers(&app, access(&ivy), 200).await.status(),
        200
    );

    // Another administrator, so that Ivy is not the last one.
    let jack = app.signed_in_user("jack@example.com").await;
    app.promote(&app.user_id(&jack).await).await;

    // An administrator's token, then a demotion (a second later: `iat` has whole seconds).
    let res = app.login("ivy@example.com", PASSWORD).await;
    let as_admin: Value = res.json().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let res = app
        .admin(Method::PATCH, &format!("/api/v1/users/{ivy_id}"))
        .json(&json!({"role": "user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .with_token(Method::GET, "/api/v1/users/me", access(&as_admin))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "token_revoked").await;
    let res = until_me_answers(&other, access(&as_admin), 401).await;
    assert_problem(res, 401, "token_revoked").await;
    // Signing in again gives a token that works.
    let res = app.login("ivy@example.com", PASSWORD).await;
    let fresh: Value = res.json().await.unwrap();
    assert_eq!(
        until_me_answers(&other, access(&fresh), 200).await.status(),
        200
    );

    // Disabled: every token of the user stops, on both replicas.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let res = other
        .admin(Method::PATCH, &format!("/api/v1/users/{ivy_id}"))
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    for replica in [&other, &app] {
        let res = until_me_answers(replica, access(&fresh), 401).await;
        assert_problem(res, 401, "token_revoked").await;
    }
}

#[tokio::test]
async fn roles_decide_what_a_bearer_token_may_do() {
    let app = spawn_app().await;
    let user = app.signed_in_user("henry@example.com").await;
    // A user works with packages by bearer token, exactly as with an API key.
    let res = app
        .with_token(Method::POST, "/api/v1/packages", access(&user))
        .json(&json!({"name": "bearer-pkg", "version": "1.0.0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let key = app.create_key(&["packages:read"], json!({})).await.1;
    let via_key: Value = app
        .get_with_key("/api/v1/packages?name=bearer", &key)
        .await
        .json()
        .await
        .unwrap();
    let via_token: Value = app
        .with_token(Method::GET, "/api/v1/packages?name=bearer", access(&user))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(via_key["items"], via_token["items"]);
    assert_eq!(via_key["items"].as_array().unwrap().len(), 1);
    // ...but administration needs the admin role.
    for path in ["/api/v1/users", "/api/v1/api-keys"] {
        let res = app
            .with_token(Method::GET, path, access(&user))
            .send()
            .await
            .unwrap();
        assert_problem(res, 403, "insufficient_scope").await;
    }
    // An API key is not a user.
    let res = app.get_with_key("/api/v1/users/me", &key).await;
    assert_problem(res, 403, "not_a_user").await;

    // Promoted, the user gets the admin scopes with the next token (after refresh).
    let user_id = app.user_id(&user).await;
    app.promote(&user_id).await;
    let admin: Value = app
        .refresh(refresh_token(&user))
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .with_token(Method::POST, "/api/v1/api-keys", access(&admin))
        .json(&json!({"name": "made-by-a-user", "scopes": ["packages:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let audit: Value = app
        .with_token(Method::GET, "/api/v1/audit-events", access(&admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"][0]["actor"], format!("user:{user_id}"));
    let users: Value = app
        .with_token(Method::GET, "/api/v1/users?limit=1", access(&admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users["items"].as_array().unwrap().len(), 1);
}

fn jwt_part(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A signing-key rotation: with the old key as `jwt_previous_signing_key`, tokens it signed
/// still work and both public keys are published; new tokens use the new key.
#[tokio::test]
async fn tokens_of_the_previous_signing_key_work_during_a_rotation() {
    use depot_accounts::{Role, TokenIssuer, TokenSettings};
    let (old_pem, new_pem) = (
        depot_accounts::tokens::generate_ed25519_pem(),
        depot_accounts::tokens::generate_ed25519_pem(),
    );
    let previous = old_pem.clone();
    let app = spawn_app_with(move |s| {
        let dir = s.secrets.dir.as_ref().unwrap();
        std::fs::write(dir.join("jwt_signing_key"), new_pem).unwrap();
        std::fs::write(dir.join("jwt_previous_signing_key"), previous).unwrap();
    })
    .await;
    let a = &app.settings.accounts;
    let old = TokenIssuer::from_pem(
        &old_pem,
        TokenSettings {
            issuer: a.token_issuer.clone(),
            audience: a.token_audience.clone(),
            access_ttl: chrono::Duration::minutes(5),
        },
    )
    .unwrap();
    let signed_before = old.issue(uuid::Uuid::now_v7(), Role::User, chrono::Utc::now());
    let res = app
        .with_token(Method::GET, "/api/v1/auth/whoami", &signed_before)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    let old_kid = old.jwks().keys[0].common.key_id.clone().unwrap();
    assert_eq!(kids.len(), 2, "{jwks}");
    assert_eq!(kids[1], old_kid, "the previous key comes second");

    let fresh = app.signed_in_user("kim@example.com").await;
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(access(&fresh).split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], kids[0], "new tokens use the current key");
}

#[tokio::test]
async fn expired_tampered_unsigned_and_confused_tokens_are_refused() {
    let pem = depot_accounts::tokens::generate_ed25519_pem();
    let key_file = pem.clone();
    let app = spawn_app_with(move |s| {
        std::fs::write(
            s.secrets.dir.as_ref().unwrap().join("jwt_signing_key"),
            key_file,
        )
        .unwrap();
    })
    .await;
    let tokens = app.signed_in_user("ivy@example.com").await;
    let token = access(&tokens);
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    for claim in ["iss", "aud", "sub", "exp", "iat", "jti", "role", "scope"] {
        assert!(claims.get(claim).is_some(), "{claim} in {claims}");
    }

    // The published key set verifies the token.
    let jwks: jsonwebtoken::jwk::JwkSet = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let jwk = jwks
        .find(header["kid"].as_str().unwrap())
        .expect("the token's kid is published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["depot"]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .expect("verifies with the published key");

    let check = async |t: String, code: &str| {
        let res = app
            .with_token(Method::GET, "/api/v1/users/me", &t)
            .send()
            .await
            .unwrap();
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("Bearer")
        );
        assert_problem(res, 401, code).await;
    };
    // Expired (signed with the server's own key).
    let mut old = claims.clone();
    old["iat"] = json!(chrono::Utc::now().timestamp() - 3600);
    old["exp"] = json!(chrono::Utc::now().timestamp() - 1800);
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.typ = Some("at+jwt".into());
    h.kid = header["kid"].as_str().map(str::to_owned);
    let expired = jsonwebtoken::encode(
        &h,
        &old,
        &jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    check(expired, "token_expired").await;
    // Tampered claims: a user promoting itself.
    let mut forged = claims.clone();
    forged["role"] = json!("admin");
    check(
        format!("{}.{}.{}", parts[0], jwt_part(&forged), parts[2]),
        "credentials_invalid",
    )
    .await;
    // alg: none.
    let none = jwt_part(&json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]}));
    check(format!("{none}.{}.", parts[1]), "credentials_invalid").await;
    // Algorithm confusion: HS256 keyed with the public key.
    let x = serde_json::to_value(&jwks).unwrap()["keys"][0]["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = header["kid"].as_str().map(str::to_owned);
    let confused = jsonwebtoken::encode(
        &hs,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    check(confused, "credentials_invalid").await;
    check("garbage".into(), "credentials_invalid").await;
    let res = app
        .client
        .get(app.url("/api/v1/users/me"))
        .header("Authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "credentials_invalid").await;
}

#[tokio::test]
async fn secrets_are_never_kept_for_idempotent_replay() {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let app = spawn_app().await;
    app.register("jack@example.com", PASSWORD).await;
    let key = uuid::Uuid::new_v4().to_string();
    let login = || {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("Idempotency-Key", &key)
            .json(&json!({"email": "jack@example.com", "password": PASSWORD}))
            .send()
    };
    // Sign-in is outside idempotency altogether: nothing about it is stored, a retry signs in again.
    let first: Value = login().await.unwrap().json().await.unwrap();
    let again = login().await.unwrap();
    assert_eq!(again.status(), 200);
    assert!(again.headers().get("idempotent-replayed").is_none());
    let again: Value = again.json().await.unwrap();
    assert_ne!(first["refresh_token"], again["refresh_token"]);
    // A new API key's plaintext is not kept either: the retry is told so instead.
    let create = || {
        app.admin(Method::POST, "/api/v1/api-keys")
            .header("Idempotency-Key", &key)
            .json(&json!({"name": "once", "scopes": ["packages:read"]}))
            .send()
    };
    assert_eq!(create().await.unwrap().status(), 201);
    let replay = create().await.unwrap();
    let body = assert_problem(replay, 409, "idempotency_secret_not_replayable").await;
    assert!(!body.to_string().contains("dpk_"));
    let db = Database::connect(&app.settings.database.url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT response_body FROM idempotency_keys",
        ))
        .await
        .unwrap();
    for row in rows {
        let stored: Option<Vec<u8>> = row.try_get("", "response_body").unwrap_or(None);
        let text = String::from_utf8_lossy(stored.as_deref().unwrap_or_default()).to_string();
        assert!(!text.contains("dpk_") && !text.contains("dpr_"), "{text}");
    }
    db.close().await.ok();
}

#[tokio::test]
async fn the_cli_creates_the_first_administrator() {
    let app = spawn_app().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_depot"))
        .args([
            "users",
            "create",
            "--email",
            "root@example.com",
            "--role",
            "admin",
        ])
        .env("DATABASE_URL", &app.settings.database.url)
        .env("DEPOT_NEW_USER_PASSWORD", PASSWORD)
        .env_remove("AMQP_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created admin root@example.com"));
    let tokens: Value = app
        .login("root@example.com", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .with_token(Method::GET, "/api/v1/users", access(&tokens))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_depot"))
        .args(["users", "create", "--email", "weak@example.com"])
        .env("DATABASE_URL", &app.settings.database.url)
        .env("DEPOT_NEW_USER_PASSWORD", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_depot"))
        .args(["users", "keygen"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-----BEGIN PRIVATE KEY-----"));
}

/// Each refresh extends a session by `refresh_token_days`, but never past `session_max_days`
/// after the login. Time is a clock the test moves.
#[tokio::test]
async fn a_session_ends_after_its_maximum_life_however_often_it_is_refreshed() {
    let clock = std::sync::Arc::new(depot_core::FixedClock::new(chrono::Utc::now()));
    let app_clock = clock.clone();
    let app = crate::helpers::spawn_app_with_adapters(async move |settings| {
        let mut adapters = depot_api::bootstrap::build(settings).await.unwrap();
        adapters.clock = app_clock;
        adapters
    })
    .await;
    let mut tokens = app.signed_in_user("long@example.com").await;
    // Refreshed every 20 days (within the 30-day refresh lifetime) for 80 days: still fine.
    for _ in 0..4 {
        clock.advance(chrono::Duration::days(20));
        let res = app.refresh(refresh_token(&tokens)).await;
        assert_eq!(res.status(), 200);
        tokens = res.json().await.unwrap();
    }
    // Day 100: past the 90-day maximum, although the token was used 20 days ago.
    clock.advance(chrono::Duration::days(20));
    let res = app.refresh(refresh_token(&tokens)).await;
    assert_problem(res, 401, "refresh_token_invalid").await;
}

#[tokio::test]
async fn two_concurrent_demotions_cannot_remove_the_last_administrators() {
    let app = spawn_app().await;
    let mut ids = vec![];
    for email in ["ann@example.com", "ben@example.com"] {
        let user: Value = app.register(email, PASSWORD).await.json().await.unwrap();
        let id = user["id"].as_str().unwrap().to_owned();
        app.promote(&id).await;
        ids.push(id);
    }
    let demote = |id: &String| {
        app.admin(Method::PATCH, &format!("/api/v1/users/{id}"))
            .json(&json!({"role": "user"}))
            .send()
    };
    let (a, b) = tokio::join!(demote(&ids[0]), demote(&ids[1]));
    let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "exactly one administrator remains");
}

#[tokio::test]
async fn an_idempotent_retry_after_a_token_refresh_is_still_a_retry() {
    let app = spawn_app().await;
    let first = app.signed_in_user("retry@example.com").await;
    let key = uuid::Uuid::new_v4().to_string();
    let create = |token: String| {
        let key = key.clone();
        let app = &app;
        async move {
            app.with_token(Method::POST, "/api/v1/packages", &token)
                .header("Idempotency-Key", key)
                .json(&json!({"name": "retried", "version": "1"}))
                .send()
                .await
                .unwrap()
        }
    };
    let res = create(access(&first).to_owned()).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    // The client's token expires; it refreshes and retries the same request.
    let second: Value = app
        .refresh(refresh_token(&first))
        .await
        .json()
        .await
        .unwrap();
    let res = create(access(&second).to_owned()).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    let replayed: Value = res.json().await.unwrap();
    assert_eq!(replayed["id"], created["id"], "one package, not two");
}
