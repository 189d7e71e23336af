//! Accounts: registration, login, access tokens, refresh-token rotation and reuse detection,
//! throttling, user administration, bearer tokens on protected routes, the `depot users` CLI.

use crate::helpers::{
    TestApp, assert_api_problem, assert_raw_problem_text, fields, key_request, spawn_app,
    spawn_app_with, status_of,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use depot_client::wire::{
    Collection, CreateApiKeyRequest, CreatePackageRequest, CredentialsRequest, PatchUserRequest,
    RefreshRequest, RegistrationAccepted, Role, TokenResponse, UserView, WhoAmI,
};
use depot_client::{Error, Response};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use reqwest::Method;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

const ME: &str = "/api/v1/users/me";
const JWKS: &str = "/.well-known/jwks.json";

pub fn credentials(email: &str, password: &str) -> CredentialsRequest {
    CredentialsRequest {
        email: email.into(),
        password: password.into(),
    }
}

/// The sign-in calls go through the client's transport with the wire types, for the answer's
/// status and headers (the typed `register`, `login` and `refresh` answer the body alone).
impl TestApp {
    /// `POST /api/v1/auth/register`, with the answer's status and headers.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Response<RegistrationAccepted>, Error> {
        let depot = self.depot();
        let req = depot.request(Method::POST, "/api/v1/auth/register");
        depot.send(req.json(&credentials(email, password))).await
    }

    /// `POST /api/v1/auth/login`, with the answer's status and headers.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Response<TokenResponse>, Error> {
        self.login_from(email, password, None).await
    }

    /// [`TestApp::login`] as if through a proxy, from `forwarded_for` (`X-Forwarded-For`, a
    /// header the client does not send).
    pub async fn login_from(
        &self,
        email: &str,
        password: &str,
        forwarded_for: Option<&str>,
    ) -> Result<Response<TokenResponse>, Error> {
        let depot = self.depot();
        let mut req = depot.request(Method::POST, "/api/v1/auth/login");
        if let Some(ip) = forwarded_for {
            req = req.header("X-Forwarded-For", ip);
        }
        depot.send(req.json(&credentials(email, password))).await
    }

    /// Registers a new account (a reader) with [`PASSWORD`]; returns it as `/users/me` shows it.
    pub async fn registered(&self, email: &str) -> UserView {
        let res = self.register(email, PASSWORD).await.unwrap();
        assert_eq!(res.status, 202, "{res:?}");
        let res = self.login(email, PASSWORD).await.unwrap();
        assert_eq!(res.status, 200, "{res:?}");
        self.depot_with_token(&res.body.access_token)
            .me()
            .await
            .unwrap()
    }

    /// Registers and logs in; returns the token response.
    pub async fn signed_in_user(&self, email: &str) -> TokenResponse {
        let user = self.registered(email).await;
        // Registered accounts are readers; an administrator makes this one a `user` (a
        // package writer), as the tests of what users do need.
        let granted = self
            .admin_depot()
            .patch_user(user.id, &role("user"), None)
            .await
            .unwrap();
        assert_eq!(granted.body.role, Role::User);
        let res = self.login(email, PASSWORD).await.unwrap();
        assert_eq!(res.status, 200, "{res:?}");
        res.body
    }

    /// `POST /api/v1/auth/refresh`, with the answer's status.
    pub async fn refresh(&self, token: &str) -> Result<Response<TokenResponse>, Error> {
        let depot = self.depot();
        let req = depot.request(Method::POST, "/api/v1/auth/refresh");
        let body = RefreshRequest {
            refresh_token: token.into(),
        };
        depot.send(req.json(&body)).await
    }

    /// The id of the user these tokens belong to (`GET /users/me`).
    pub async fn user_id(&self, tokens: &TokenResponse) -> Uuid {
        let res = self
            .depot_with_token(&tokens.access_token)
            .get::<UserView>(ME)
            .await
            .unwrap();
        assert_eq!(res.status, 200, "{res:?}");
        res.body.id
    }

    /// Makes a registered user an administrator (with the admin secret).
    pub async fn promote(&self, user_id: Uuid) {
        let res = self
            .admin_depot()
            .patch_user(user_id, &role("admin"), None)
            .await
            .unwrap();
        assert_eq!(res.status, 200, "{res:?}");
    }
}

fn role(role: &str) -> PatchUserRequest {
    PatchUserRequest {
        role: Some(role.into()),
        ..Default::default()
    }
}

fn disabled(disabled: bool) -> PatchUserRequest {
    PatchUserRequest {
        disabled: Some(disabled),
        ..Default::default()
    }
}

fn q(name: &'static str, value: impl ToString) -> (&'static str, Option<String>) {
    (name, Some(value.to_string()))
}

/// The registration's answer is read raw as well: the test is about which members it carries.
#[tokio::test]
async fn register_login_me_refresh_and_logout() {
    let app = spawn_app().await;
    let res = app
        .depot()
        .request(Method::POST, "/api/v1/auth/register")
        .json(&credentials("  Alice@Example.com ", PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert!(res.headers().get("location").is_none(), "no user id");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"email": "alice@example.com", "login": "/api/v1/auth/login"})
    );

    let res = app.login("alice@example.com", PASSWORD).await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.headers["cache-control"], "no-store");
    let tokens = res.body;
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 900);
    assert!(tokens.refresh_token.starts_with("dpr_"));

    let user_depot = app.depot_with_token(&tokens.access_token);
    let me = user_depot.me().await.unwrap();
    assert_eq!(me.email, "alice@example.com");
    // Least privilege: a self-registered account reads until an administrator grants more.
    assert_eq!(me.role, Role::Reader);
    assert!(me.has_password);
    let who = user_depot.whoami().await.unwrap();
    assert_eq!(who.kind, "user");
    assert_eq!(who.id, Some(me.id));

    let res = app.refresh(&tokens.refresh_token).await.unwrap();
    assert_eq!(res.status, 200);
    let rotated = res.body;
    assert_ne!(rotated.refresh_token, tokens.refresh_token);
    let res = app
        .depot_with_token(&rotated.access_token)
        .get::<UserView>(ME)
        .await
        .unwrap();
    assert_eq!(res.status, 200);

    let depot = app.depot();
    let req = depot.request(Method::POST, "/api/v1/auth/logout");
    let body = RefreshRequest {
        refresh_token: rotated.refresh_token.clone(),
    };
    let res = depot.send::<()>(req.json(&body)).await.unwrap();
    assert_eq!(res.status, 204);
    assert_api_problem(
        app.refresh(&rotated.refresh_token).await,
        401,
        "refresh_token_invalid",
    );
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_hashes() {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let app = spawn_app().await;
    app.register("hash@example.com", PASSWORD).await.unwrap();
    let tokens = app.login("hash@example.com", PASSWORD).await.unwrap().body;
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
    let plain = tokens.refresh_token.as_bytes();
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
    let second = app.refresh(&first.refresh_token).await.unwrap().body;
    // An attacker (or a confused client) presents the used token again.
    assert_api_problem(
        app.refresh(&first.refresh_token).await,
        401,
        "refresh_token_reused",
    );
    // The legitimate holder's current token is revoked too.
    assert_api_problem(
        app.refresh(&second.refresh_token).await,
        401,
        "refresh_token_invalid",
    );
    // Another session of the same user is untouched.
    let other = app.login("reuse@example.com", PASSWORD).await.unwrap().body;
    assert_eq!(status_of(&app.refresh(&other.refresh_token).await), 200);
    assert_api_problem(
        app.refresh("dpr_not-a-token").await,
        401,
        "refresh_token_invalid",
    );
    let p = assert_api_problem(app.refresh("").await, 422, "validation_failed");
    assert_eq!(fields(&p)[0], "refresh_token");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let app = spawn_app().await;
    app.signed_in_user("bob@example.com").await;
    let wrong = app.login("bob@example.com", "not the password!").await;
    let wrong = assert_api_problem(wrong, 401, "credentials_invalid");
    let unknown = app.login("nobody@example.com", "not the password!").await;
    let unknown = assert_api_problem(unknown, 401, "credentials_invalid");
    assert_eq!(wrong.detail, unknown.detail);
    // Both verify one argon2id hash, so they take comparable time. Alternating samples and
    // comparing the fastest of each keeps other tests' load out of the comparison.
    let time = async |email: &str| {
        let start = std::time::Instant::now();
        let _ = app.login(email, "not the password!").await;
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

    let p = assert_api_problem(
        app.login("not-an-email", "").await,
        422,
        "validation_failed",
    );
    assert_eq!(fields(&p), ["email", "password"]);
}

#[tokio::test]
async fn registration_validates_and_can_be_turned_off() {
    let app = spawn_app().await;
    let res = app.register("carol@example.com", "short").await;
    let p = assert_api_problem(res, 422, "validation_failed");
    assert_eq!(fields(&p)[0], "password");
    let res = app.register("carol", "x".repeat(129).as_str()).await;
    let p = assert_api_problem(res, 422, "validation_failed");
    assert_eq!(p.errors.len(), 2);
    let new = app.register("carol@example.com", PASSWORD).await.unwrap();
    assert_eq!(new.status, 202);
    // A taken e-mail is answered exactly as a new one, and the account is untouched.
    let other = "somebody else's password";
    let taken = app.register("CAROL@example.com", other).await.unwrap();
    assert_eq!((taken.status, &taken.body), (new.status, &new.body));
    let headers = |r: &Response<RegistrationAccepted>| {
        let mut h: Vec<_> = r
            .headers
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        h.sort();
        h
    };
    assert_eq!(headers(&taken), headers(&new));
    assert_eq!(
        status_of(&app.login("carol@example.com", PASSWORD).await),
        200
    );
    assert_api_problem(
        app.login("carol@example.com", other).await,
        401,
        "credentials_invalid",
    );

    let closed = spawn_app_with(|s| s.accounts.registration_enabled = false).await;
    let res = closed.register("dave@example.com", PASSWORD).await;
    assert_api_problem(res, 403, "registration_disabled");
}

/// The review's finding: nothing limited registrations or logins of unknown e-mails, and 60
/// concurrent registrations slowed a real login to seconds. Every request to a sign-in route
/// counts against its address's budget (login, refresh and logout share one); past it, 429 with
/// Retry-After, before any password is hashed. Other addresses keep theirs.
#[tokio::test]
async fn the_sign_in_routes_have_a_budget_per_client_address() {
    let app = spawn_app_with(|s| {
        s.server.trusted_proxies = vec!["127.0.0.1".into()];
        s.auth.sign_ins_per_minute = 4;
        s.auth.registrations_per_hour = 2;
    })
    .await;
    let depot = app.depot();
    let register_from = |email: &str, ip: &str| {
        let req = depot
            .request(Method::POST, "/api/v1/auth/register")
            .header("X-Forwarded-For", ip)
            .json(&credentials(email, PASSWORD));
        depot.send::<RegistrationAccepted>(req)
    };
    let a = "198.51.100.7";
    let b = "2001:db8:7:7::1";
    for i in 0..2 {
        let res = register_from(&format!("r{i}@example.com"), a).await;
        assert_eq!(status_of(&res), 202);
    }
    let res = register_from("r3@example.com", a).await;
    let p = assert_api_problem(res, 429, "rate_limited");
    assert!(p.detail.unwrap().contains("registrations"));
    let res = register_from("r4@example.com", b).await;
    assert_eq!(status_of(&res), 202, "another address has its own budget");

    for _ in 0..3 {
        let res = app
            .login_from("nobody@example.com", PASSWORD, Some(a))
            .await;
        assert_api_problem(res, 401, "credentials_invalid");
    }
    let res = app.login_from("r0@example.com", PASSWORD, Some(a)).await;
    assert_eq!(status_of(&res), 200);
    let res = app.login_from("r0@example.com", PASSWORD, Some(a)).await;
    let Err(Error::Api {
        status, headers, ..
    }) = &res
    else {
        panic!("{res:?}")
    };
    assert_eq!(*status, 429);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let refresh = depot
        .request(Method::POST, "/api/v1/auth/refresh")
        .header("X-Forwarded-For", a)
        .json(&RefreshRequest {
            refresh_token: "dpr_whatever".into(),
        });
    let res = depot.send::<TokenResponse>(refresh).await;
    assert_api_problem(res, 429, "rate_limited");
    let res = app.login_from("r4@example.com", PASSWORD, Some(b)).await;
    assert_eq!(status_of(&res), 200);
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
        assert_eq!(status_of(&res), 401);
    }
    let res = app
        .login_from("erin@example.com", "guess guess guess", attacker)
        .await;
    assert_eq!(
        status_of(&res),
        401,
        "the 6th failure is answered, then locks"
    );
    let res = app.login_from("erin@example.com", PASSWORD, attacker).await;
    let headers = res.as_ref().err().and_then(Error::headers);
    assert!(headers.is_some_and(|h| h.contains_key("retry-after")));
    assert_api_problem(res, 429, "login_throttled");
    // The owner, elsewhere, is not locked out by the attacker.
    let res = app
        .login_from("erin@example.com", PASSWORD, Some("198.51.100.7"))
        .await;
    assert_eq!(status_of(&res), 200);
    // Unknown accounts are throttled alike (no way to tell which e-mails exist).
    for _ in 0..6 {
        let _ = app
            .login_from("ghost@example.com", "guess guess guess", attacker)
            .await;
    }
    let res = app
        .login_from("ghost@example.com", "guess guess guess", attacker)
        .await;
    assert_api_problem(res, 429, "login_throttled");
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
        .iter()
        .map(status_of)
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
    let _ = app.register("owner@example.com", PASSWORD).await;
    let home = Some("198.51.100.20");
    assert_eq!(
        status_of(&app.login_from("owner@example.com", PASSWORD, home).await),
        200
    );
    // Guesses from many addresses exhaust the account-wide allowance (20)…
    for i in 0..21 {
        let ip = format!("203.0.113.{i}");
        let res = app
            .login_from("owner@example.com", "guess guess guess", Some(&ip))
            .await;
        assert_eq!(status_of(&res), 401, "attempt {i}");
    }
    let res = app
        .login_from("owner@example.com", PASSWORD, Some("192.0.2.77"))
        .await;
    assert_api_problem(res, 429, "login_throttled");
    // …but the owner, from where they signed in before, still gets in.
    assert_eq!(
        status_of(&app.login_from("owner@example.com", PASSWORD, home).await),
        200
    );
}

#[tokio::test]
async fn disabled_users_cannot_sign_in_or_refresh_and_the_last_admin_stays() {
    let app = spawn_app().await;
    let admin = app.admin_depot();
    let tokens = app.signed_in_user("frank@example.com").await;
    let id = app.user_id(&tokens).await;
    let etag = admin.get_user(id).await.unwrap().etag.expect("an ETag");
    let res = admin.patch_user(id, &disabled(true), Some(&etag)).await;
    assert_eq!(status_of(&res), 200);
    let res = admin.patch_user(id, &disabled(false), Some(&etag)).await;
    assert_api_problem(res, 412, "precondition_failed");

    let res = app.login("frank@example.com", PASSWORD).await;
    assert_api_problem(res, 403, "account_disabled");
    let res = app.refresh(&tokens.refresh_token).await;
    assert_eq!(status_of(&res) / 100, 4, "sessions were revoked");

    let res = admin.patch_user(id, &role("root"), None).await;
    let p = assert_api_problem(res, 422, "validation_failed");
    assert_eq!(fields(&p)[0], "role");

    // The only administrator cannot demote or disable itself away.
    let gina = app.signed_in_user("gina@example.com").await;
    let gina_id = app.user_id(&gina).await;
    app.promote(gina_id).await;
    let res = admin.patch_user(gina_id, &role("user"), None).await;
    assert_api_problem(res, 409, "conflict");

    // Each change is in the audit log, with who made it and what it set; refused ones are not.
    let audit = admin
        .audit_events(&[q("action", "user.update")])
        .await
        .unwrap();
    let got: Vec<_> = audit
        .items
        .iter()
        .map(|e| (e.actor.as_str(), e.target_id, e.details.clone().unwrap()))
        .collect();
    let json = |v: serde_json::Value| v;
    assert_eq!(
        got,
        [
            (
                "admin",
                Some(gina_id),
                json(serde_json::json!({"role": "admin"}))
            ),
            (
                "admin",
                Some(gina_id),
                json(serde_json::json!({"role": "user"}))
            ),
            (
                "admin",
                Some(id),
                json(serde_json::json!({"disabled": true}))
            ),
            ("admin", Some(id), json(serde_json::json!({"role": "user"}))),
        ]
    );
}

/// `GET /users/me` with `token` on `app`.
async fn me(app: &TestApp, token: &str) -> Result<Response<UserView>, Error> {
    app.depot_with_token(token).get(ME).await
}

/// `GET /users/me` with `token` on `app` until it answers `status`, for up to 5 s.
async fn until_me_answers(
    app: &TestApp,
    token: &str,
    status: u16,
) -> Result<Response<UserView>, Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let res = me(app, token).await;
        if status_of(&res) == status || std::time::Instant::now() > deadline {
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
        status_of(&until_me_answers(&other, &ivy.access_token, 200).await),
        200
    );
    let ivy_id = app.user_id(&ivy).await;

    // A promotion: the token issued as a plain user keeps working (as that user).
    app.promote(ivy_id).await;
    assert_eq!(
        status_of(&until_me_answers(&app, &ivy.access_token, 200).await),
        200
    );

    // Another administrator, so that Ivy is not the last one.
    let jack = app.signed_in_user("jack@example.com").await;
    app.promote(app.user_id(&jack).await).await;

    // An administrator's token, then a demotion (a second later: `iat` has whole seconds).
    let as_admin = app.login("ivy@example.com", PASSWORD).await.unwrap().body;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let res = app
        .admin_depot()
        .patch_user(ivy_id, &role("user"), None)
        .await;
    assert_eq!(status_of(&res), 200);
    assert_api_problem(me(&app, &as_admin.access_token).await, 401, "token_revoked");
    let res = until_me_answers(&other, &as_admin.access_token, 401).await;
    assert_api_problem(res, 401, "token_revoked");
    // Signing in again gives a token that works.
    let fresh = app.login("ivy@example.com", PASSWORD).await.unwrap().body;
    assert_eq!(
        status_of(&until_me_answers(&other, &fresh.access_token, 200).await),
        200
    );

    // Disabled: every token of the user stops, on both replicas.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let res = other
        .admin_depot()
        .patch_user(ivy_id, &disabled(true), None)
        .await;
    assert_eq!(status_of(&res), 200);
    for replica in [&other, &app] {
        let res = until_me_answers(replica, &fresh.access_token, 401).await;
        assert_api_problem(res, 401, "token_revoked");
    }
}

#[tokio::test]
async fn roles_decide_what_a_bearer_token_may_do() {
    let app = spawn_app().await;
    let user = app.signed_in_user("henry@example.com").await;
    let as_user = app.depot_with_token(&user.access_token);
    // A user works with packages by bearer token, exactly as with an API key.
    let res = as_user
        .create_package_with(&CreatePackageRequest::new("bearer-pkg", "1.0.0"), None)
        .await;
    assert_eq!(status_of(&res), 201, "{res:?}");
    let key = app.key_with_scopes(&["packages:read"]).await.key;
    let via_key = app
        .depot_with_key(&key)
        .list_packages(&[q("name", "bearer")])
        .await
        .unwrap();
    let via_token = as_user.list_packages(&[q("name", "bearer")]).await.unwrap();
    assert_eq!(via_key.items, via_token.items);
    assert_eq!(via_key.items.len(), 1);
    // ...but administration needs the admin role.
    assert_api_problem(as_user.list_users(&[]).await, 403, "insufficient_scope");
    assert_api_problem(as_user.list_api_keys(&[]).await, 403, "insufficient_scope");
    // An API key is not a user.
    assert_api_problem(app.depot_with_key(&key).me().await, 403, "not_a_user");

    // Promoted, the user gets the admin scopes with the next token (after refresh).
    let user_id = app.user_id(&user).await;
    app.promote(user_id).await;
    let admin = app.refresh(&user.refresh_token).await.unwrap().body;
    let as_admin = app.depot_with_token(&admin.access_token);
    let res = as_admin
        .create_api_key_with(
            &CreateApiKeyRequest {
                name: "made-by-a-user".into(),
                ..key_request(&["packages:read"])
            },
            None,
        )
        .await;
    assert_eq!(status_of(&res), 201);
    let audit = as_admin.audit_events(&[]).await.unwrap();
    assert_eq!(audit.items[0].actor, format!("user:{user_id}"));
    let users = as_admin.list_users(&[q("limit", 1)]).await.unwrap();
    assert_eq!(users.items.len(), 1);
}

/// A part of a JWT: the base64url of `v` as JSON.
fn jwt_part(v: &impl serde::Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// The key ids of the published key set, in order.
fn kids(jwks: &JwkSet) -> Vec<&str> {
    jwks.keys
        .iter()
        .map(|k| k.common.key_id.as_deref().expect("a kid"))
        .collect()
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
        .depot_with_token(&signed_before)
        .get::<WhoAmI>("/api/v1/auth/whoami")
        .await;
    assert_eq!(status_of(&res), 200, "{res:?}");

    let jwks = app.depot().get::<JwkSet>(JWKS).await.unwrap().body;
    let kids = kids(&jwks);
    let old_kid = old.jwks().keys[0].common.key_id.clone().unwrap();
    assert_eq!(kids.len(), 2, "{jwks:?}");
    assert_eq!(kids[1], old_kid, "the previous key comes second");

    let fresh = app.signed_in_user("kim@example.com").await;
    let header = jsonwebtoken::decode_header(&fresh.access_token).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(kids[0]),
        "new tokens use the current key"
    );
}

/// The forged tokens are made by hand: an `alg: none` header is beyond jsonwebtoken's types (it
/// is written as JSON), and the `Basic` credentials beyond the client's (sent raw).
#[tokio::test]
async fn expired_tampered_unsigned_and_confused_tokens_are_refused() {
    use depot_accounts::tokens::AccessClaims;
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
    let token = tokens.access_token.as_str();
    let parts: Vec<&str> = token.split('.').collect();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.clone().expect("a kid");
    // Every claim is there: iss, aud, sub, exp, iat, jti, role and scope (AccessClaims needs each).
    let claims: AccessClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();

    // The published key set verifies the token.
    let jwks = app.depot().get::<JwkSet>(JWKS).await.unwrap().body;
    let jwk = jwks.find(&kid).expect("the token's kid is published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["depot"]);
    jsonwebtoken::decode::<AccessClaims>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .expect("verifies with the published key");

    let check = async |t: String, code: &str| {
        let res = me(&app, &t).await;
        let challenge = res.as_ref().err().and_then(Error::headers).unwrap()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.contains("Bearer"), "{challenge}");
        assert_api_problem(res, 401, code);
    };
    // Expired (signed with the server's own key).
    let old = AccessClaims {
        iat: chrono::Utc::now().timestamp() - 3600,
        exp: chrono::Utc::now().timestamp() - 1800,
        ..claims.clone()
    };
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.typ = Some("at+jwt".into());
    h.kid = Some(kid.clone());
    let expired = jsonwebtoken::encode(
        &h,
        &old,
        &jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    check(expired, "token_expired").await;
    // Tampered claims: a user promoting itself.
    let forged = AccessClaims {
        role: "admin".into(),
        ..claims.clone()
    };
    check(
        format!("{}.{}.{}", parts[0], jwt_part(&forged), parts[2]),
        "credentials_invalid",
    )
    .await;
    // alg: none.
    let none = jwt_part(&serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid}));
    check(format!("{none}.{}.", parts[1]), "credentials_invalid").await;
    // Algorithm confusion: HS256 keyed with the public key.
    let x = match &jwks.keys[0].algorithm {
        AlgorithmParameters::OctetKeyPair(okp) => okp.x.clone(),
        other => panic!("an Ed25519 key, not {other:?}"),
    };
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some(kid.clone());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    check(confused, "credentials_invalid").await;
    check("garbage".into(), "credentials_invalid").await;
    let depot = app.depot();
    let req = depot
        .request(Method::GET, ME)
        .header("Authorization", "Basic Zm9vOmJhcg==");
    assert_api_problem(
        depot.send::<UserView>(req).await,
        401,
        "credentials_invalid",
    );
}

/// The login carries an `Idempotency-Key` (which the typed login does not send), and the
/// replayed key creation is read raw: the test is about which bytes its answer carries.
#[tokio::test]
async fn secrets_are_never_kept_for_idempotent_replay() {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let app = spawn_app().await;
    let _ = app.register("jack@example.com", PASSWORD).await;
    let key = uuid::Uuid::new_v4().to_string();
    let depot = app.depot();
    let login = || {
        let req = depot
            .request(Method::POST, "/api/v1/auth/login")
            .header("Idempotency-Key", &key);
        depot.send::<TokenResponse>(req.json(&credentials("jack@example.com", PASSWORD)))
    };
    // Sign-in is outside idempotency altogether: nothing about it is stored, a retry signs in again.
    let first = login().await.unwrap().body;
    let again = login().await.unwrap();
    assert_eq!(again.status, 200);
    assert!(again.headers.get("idempotent-replayed").is_none());
    assert_ne!(first.refresh_token, again.body.refresh_token);
    // A new API key's plaintext is not kept either: the retry is told so instead.
    let admin = app.admin_depot();
    let once = CreateApiKeyRequest {
        name: "once".into(),
        ..key_request(&["packages:read"])
    };
    let created = admin.create_api_key_with(&once, Some(&key)).await;
    assert_eq!(status_of(&created), 201);
    let replay = admin
        .request(Method::POST, "/api/v1/api-keys")
        .header("Idempotency-Key", &key)
        .json(&once)
        .send()
        .await
        .unwrap();
    let (_, body) = assert_raw_problem_text(replay, 409, "idempotency_secret_not_replayable").await;
    assert!(!body.contains("dpk_"), "{body}");
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
    let tokens = app.login("root@example.com", PASSWORD).await.unwrap().body;
    let res = app
        .depot_with_token(&tokens.access_token)
        .get::<Collection<UserView>>("/api/v1/users")
        .await;
    assert_eq!(status_of(&res), 200);
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
        let res = app.refresh(&tokens.refresh_token).await.unwrap();
        assert_eq!(res.status, 200);
        tokens = res.body;
    }
    // Day 100: past the 90-day maximum, although the token was used 20 days ago.
    clock.advance(chrono::Duration::days(20));
    assert_api_problem(
        app.refresh(&tokens.refresh_token).await,
        401,
        "refresh_token_invalid",
    );
}

#[tokio::test]
async fn two_concurrent_demotions_cannot_remove_the_last_administrators() {
    let app = spawn_app().await;
    let mut ids = vec![];
    for email in ["ann@example.com", "ben@example.com"] {
        let user = app.registered(email).await;
        app.promote(user.id).await;
        ids.push(user.id);
    }
    let admin = app.admin_depot();
    let demotion = role("user");
    let demote = |id: Uuid| admin.patch_user(id, &demotion, None);
    let (a, b) = tokio::join!(demote(ids[0]), demote(ids[1]));
    let mut statuses = [status_of(&a), status_of(&b)];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "exactly one administrator remains");
}

#[tokio::test]
async fn an_idempotent_retry_after_a_token_refresh_is_still_a_retry() {
    let app = spawn_app().await;
    let first = app.signed_in_user("retry@example.com").await;
    let key = uuid::Uuid::new_v4().to_string();
    let package = CreatePackageRequest::new("retried", "1");
    let create = async |token: &str| {
        app.depot_with_token(token)
            .create_package_with(&package, Some(&key))
            .await
            .unwrap()
    };
    let res = create(&first.access_token).await;
    assert_eq!(res.status, 201);
    let created = res.body;
    // The client's token expires; it refreshes and retries the same request.
    let second = app.refresh(&first.refresh_token).await.unwrap().body;
    let res = create(&second.access_token).await;
    assert_eq!(res.status, 201);
    assert_eq!(res.headers["idempotent-replayed"], "true");
    assert_eq!(res.body.id, created.id, "one package, not two");
}
