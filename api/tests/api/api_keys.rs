use crate::helpers::{
    TestApp, assert_api_problem, assert_raw_problem, detail, fields, key_request, spawn_app,
    spawn_app_with,
};
use depot_client::wire::{
    ApiKeyCreated, ApiKeyView, Collection, CreateApiKeyRequest, KeyStatus, PasswordResponse,
    RenewRequest, RotateRequest, WhoAmI,
};
use depot_client::{Client, Error, Response};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use uuid::Uuid;

const WHOAMI: &str = "/api/v1/auth/whoami";
const PASSWORDS: &str = "/api/v1/passwords";

/// `GET /api/v1/auth/whoami` with a key, with the answer's status and headers.
async fn whoami(app: &TestApp, key: &str) -> Result<Response<WhoAmI>, Error> {
    app.depot_with_key(key).get(WHOAMI).await
}

/// The status whoami answers with a key (200 when the key is let in).
async fn whoami_status(app: &TestApp, key: &str) -> u16 {
    match whoami(app, key).await {
        Ok(res) => res.status,
        Err(e) => e.status().unwrap_or_else(|| panic!("no answer: {e}")),
    }
}

async fn key_view(app: &TestApp, id: Uuid) -> ApiKeyView {
    app.admin_depot().get_api_key(id).await.unwrap().body
}

/// `POST /api/v1/api-keys/{id}/{action}` through the client's transport, for the answer's
/// status and headers (the typed actions answer the body alone). `body` is the JSON to send.
async fn key_action<T: serde::de::DeserializeOwned>(
    admin: &Client,
    id: Uuid,
    action: &str,
    body: Option<&impl serde::Serialize>,
    if_match: Option<&str>,
) -> Result<Response<T>, Error> {
    let mut req = admin.request(Method::POST, &format!("/api/v1/api-keys/{id}/{action}"));
    if let Some(body) = body {
        req = req.json(body);
    }
    if let Some(tag) = if_match {
        req = req.header("If-Match", tag);
    }
    admin.send(req).await
}

/// `DELETE /api/v1/api-keys/{id}` through the client's transport, for the exact status.
async fn delete(admin: &Client, id: Uuid) -> Result<Response<()>, Error> {
    admin
        .send(admin.request(Method::DELETE, &format!("/api/v1/api-keys/{id}")))
        .await
}

fn scopes(scopes: &[&str]) -> Vec<String> {
    scopes.iter().map(|s| s.to_string()).collect()
}

fn q(name: &'static str, value: impl ToString) -> (&'static str, Option<String>) {
    (name, Some(value.to_string()))
}

/// A key with a valid checksum that Depot never issued.
fn forged_key() -> String {
    depot_api_keys::PlainKey::generate(&mut rand::rng())
        .expose()
        .to_owned()
}

/// The key's GET is read raw: the test is about which bytes it carries.
#[tokio::test]
async fn create_shows_the_key_once_and_stores_only_its_hash() {
    let app = spawn_app().await;
    let admin = app.admin_depot();
    let res = admin
        .create_api_key_with(
            &CreateApiKeyRequest {
                name: "  ci  ".into(),
                scopes: scopes(&["packages:read", "packages:write"]),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status, 201);
    let location = res.location.clone().expect("a Location");
    let created = res.body;
    let key = created.key.as_str();
    assert!(key.starts_with("dpk_") && key.len() == 53, "{key}");
    assert_eq!(created.api_key.name, "ci");
    assert_eq!(created.api_key.status, KeyStatus::Active);
    assert_eq!(created.api_key.key_prefix, format!("{}…", &key[..8]));
    assert_eq!(location, format!("/api/v1/api-keys/{}", created.api_key.id));
    // Default lifetime: 15 days.
    let expires = created.api_key.expires_at.expect("an expiry");
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((14.9..=15.0).contains(&days), "{days}");

    let res = admin.request(Method::GET, &location).send().await.unwrap();
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let body = res.text().await.unwrap();
    assert!(!body.contains(key), "the plaintext key is shown again");
    assert!(!body.contains(&key[8..]));
    // No `key` member: the answer does not read as a created key, only as a view.
    assert!(
        serde_json::from_str::<ApiKeyCreated>(&body).is_err(),
        "{body}"
    );
    let view: ApiKeyView = serde_json::from_str(&body).unwrap();
    assert_eq!(view.scopes, ["packages:read", "packages:write"]);
    // If-None-Match with the current ETag → 304.
    let unchanged = admin
        .get_api_key_if_none_match(view.id, &etag)
        .await
        .unwrap();
    assert!(unchanged.is_none(), "304 Not Modified: {unchanged:?}");
}

/// The last cases (a scope list that is a string, an unknown field, broken JSON, a form) are
/// beyond the wire type: sent raw.
#[tokio::test]
async fn create_validates_every_field() {
    let app = spawn_app().await;
    let admin = app.admin_depot();
    let request = |name: &str, scope_list: &[&str]| CreateApiKeyRequest {
        name: name.into(),
        scopes: scopes(scope_list),
        ..Default::default()
    };
    let post = async |k: CreateApiKeyRequest| {
        assert_api_problem(admin.create_api_key(&k).await, 422, "validation_failed")
    };
    let p = post(request(" ", &["packages:read", "root"])).await;
    assert_eq!(fields(&p), ["name", "scopes[1]"]);
    let p = post(request("x", &[])).await;
    assert_eq!(fields(&p), ["scopes"]);
    let p = post(CreateApiKeyRequest {
        expires_in_days: Some(3),
        never_expires: Some(true),
        ..request("x", &["packages:read"])
    })
    .await;
    assert_eq!(fields(&p), ["expires_at"]);
    let p = post(CreateApiKeyRequest {
        expires_at: Some("2001-01-01T00:00:00Z".parse().unwrap()),
        ..request("x", &["packages:read"])
    })
    .await;
    assert_eq!(fields(&p), ["expires_at"]);
    let p = post(CreateApiKeyRequest {
        expires_in_days: Some(0),
        ..request("x", &["packages:read"])
    })
    .await;
    assert_eq!(fields(&p), ["expires_in_days"]);
    let p = post(CreateApiKeyRequest {
        rate_limit_per_minute: Some(0),
        ..request("x", &["packages:read"])
    })
    .await;
    assert_eq!(fields(&p), ["rate_limit_per_minute"]);

    let raw = |body: serde_json::Value| {
        admin
            .request(Method::POST, "/api/v1/api-keys")
            .json(&body)
            .send()
    };
    let p = assert_raw_problem(
        raw(json!({"name": "x", "scopes": "packages:read"}))
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["scopes"]);
    let p = assert_raw_problem(
        raw(json!({"name": "x", "scopes": ["packages:read"], "expire_in_days": 3}))
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert!(p.errors[0].message.contains("expire_in_days"), "{p:?}");
    let res = admin
        .request(Method::POST, "/api/v1/api-keys")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_raw_problem(res, 400, "malformed_json").await;
    let res = admin
        .request(Method::POST, "/api/v1/api-keys")
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_raw_problem(res, 415, "unsupported_media_type").await;
}

/// The `api-key` header (the other name) is beyond the client's credentials: sent raw.
#[tokio::test]
async fn every_credential_state_has_its_answer() {
    let app = spawn_app().await;
    let created = app.key_with_scopes(&["packages:read"]).await;
    let (id, key) = (created.api_key.id, created.key);

    // valid
    let res = whoami(&app, &key).await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.body.kind, "api_key");
    assert_eq!(res.body.id, Some(id));
    assert_eq!(res.body.scopes, ["packages:read"]);

    // missing
    let missing = app.depot().get::<WhoAmI>(WHOAMI).await;
    let challenge = missing.as_ref().unwrap_err().headers().unwrap()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("ApiKey"), "{challenge}");
    assert_api_problem(missing, 401, "credentials_missing");
    // malformed
    assert_api_problem(whoami(&app, "not-a-key").await, 401, "credentials_invalid");
    // bad checksum
    let mut typo: Vec<char> = key.chars().collect();
    typo[20] = if typo[20] == 'a' { 'b' } else { 'a' };
    assert_api_problem(
        whoami(&app, &typo.into_iter().collect::<String>()).await,
        401,
        "credentials_invalid",
    );
    // unknown (well-formed, never issued)
    assert_api_problem(
        whoami(&app, &forged_key()).await,
        401,
        "credentials_invalid",
    );
    // wrong admin secret
    assert_api_problem(
        app.depot()
            .with_admin_secret("nope")
            .list_api_keys(&[])
            .await,
        401,
        "credentials_invalid",
    );
    // wrong scope
    let p = assert_api_problem(
        app.depot_with_key(&key).list_api_keys(&[]).await,
        403,
        "insufficient_scope",
    );
    assert!(detail(&p).contains("api_keys:admin"));
    // the other header name
    let res = app
        .depot()
        .request(Method::GET, WHOAMI)
        .header("api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // query keys are off by default
    assert_api_problem(
        app.depot()
            .get::<WhoAmI>(&format!("{WHOAMI}?api_key={key}"))
            .await,
        401,
        "credentials_missing",
    );

    // revoked
    let admin = app.admin_depot();
    let revoked = key_action::<ApiKeyView>(&admin, id, "revoke", None::<&()>, None).await;
    assert_eq!(revoked.unwrap().status, 200);
    assert_api_problem(whoami(&app, &key).await, 401, "key_revoked");

    // expired: a key that expires in a second
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1200);
    let short = app
        .create_key_with(&CreateApiKeyRequest {
            expires_at: Some(at),
            ..key_request(&["packages:read"])
        })
        .await
        .key;
    assert_eq!(whoami_status(&app, &short).await, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_api_problem(whoami(&app, &short).await, 401, "key_expired");
}

#[tokio::test]
async fn query_keys_when_allowed() {
    let app = spawn_app_with(|s| s.auth.allow_query_keys = true).await;
    let key = app.key_with_scopes(&["packages:read"]).await.key;
    for name in ["api_key", "api-key"] {
        let res = app
            .depot()
            .get::<WhoAmI>(&format!("{WHOAMI}?{name}={key}"))
            .await
            .unwrap();
        assert_eq!(res.status, 200, "{name}");
    }
}

#[tokio::test]
async fn a_keys_rate_limit_answers_429_with_headers() {
    let app = spawn_app().await;
    let key = app
        .create_key_with(&CreateApiKeyRequest {
            rate_limit_per_minute: Some(3),
            ..key_request(&["packages:read"])
        })
        .await
        .key;
    for remaining in [2, 1, 0] {
        let res = whoami(&app, &key).await.unwrap();
        assert_eq!(res.status, 200);
        assert_eq!(res.headers["ratelimit-limit"], "3");
        assert_eq!(
            res.headers["ratelimit-remaining"],
            remaining.to_string().as_str()
        );
    }
    let limited = whoami(&app, &key).await;
    let headers = limited.as_ref().unwrap_err().headers().unwrap();
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert_api_problem(limited, 429, "rate_limited");
}

#[tokio::test]
async fn admin_keys_manage_keys_too() {
    let app = spawn_app().await;
    // It grants only what it holds (see a_key_administrator_cannot_mint_more_than_it_holds).
    let admin_key = app
        .key_with_scopes(&["api_keys:admin", "packages:read"])
        .await
        .key;
    let res = app
        .depot_with_key(&admin_key)
        .create_api_key_with(
            &CreateApiKeyRequest {
                name: "made by a key".into(),
                ..key_request(&["packages:read"])
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(res.status, 201);
    let events = app
        .admin_depot()
        .audit_events(&[q("action", "api_key.create")])
        .await
        .unwrap();
    let actors: Vec<&str> = events.items.iter().map(|e| e.actor.as_str()).collect();
    assert!(actors[0].starts_with("api_key:"), "{actors:?}");
    assert_eq!(actors[1], "admin");
}

#[tokio::test]
async fn list_filters_and_paginates() {
    let app = spawn_app().await;
    let admin = app.admin_depot();
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let created = admin
            .create_api_key(&CreateApiKeyRequest {
                name: name.into(),
                ..key_request(&["packages:read"])
            })
            .await
            .unwrap();
        ids.push(created.api_key.id);
    }
    admin.revoke_api_key(ids[0], None).await.unwrap();

    let res = admin
        .get::<Collection<ApiKeyView>>("/api/v1/api-keys?limit=2")
        .await
        .unwrap();
    let link = res.next_link().expect("a Link with rel=\"next\"");
    let first: Vec<Uuid> = res.body.items.iter().map(|k| k.id).collect();
    assert_eq!(first, [ids[2], ids[1]], "newest first");
    assert!(link.contains("limit=2"), "{link}");
    let cursor = res.body.next_cursor.clone().expect("a next cursor");
    let page = admin
        .list_api_keys(&[q("limit", 2), q("cursor", cursor)])
        .await
        .unwrap();
    assert_eq!(page.items[0].id, ids[0]);
    assert!(page.next_cursor.is_none());

    let active = admin.list_api_keys(&[q("status", "active")]).await.unwrap();
    assert_eq!(active.items.len(), 2);
    let revoked = admin
        .list_api_keys(&[q("status", "revoked")])
        .await
        .unwrap();
    assert_eq!(revoked.items[0].id, ids[0]);
    let named = admin.list_api_keys(&[q("name", "b")]).await.unwrap();
    assert_eq!(named.items.len(), 1);
    // Given as written (`%%%` is no percent-encoding at all).
    for bad in ["?status=gone", "?limit=0", "?limit=x", "?cursor=%%%"] {
        assert_api_problem(
            admin
                .get::<Collection<ApiKeyView>>(&format!("/api/v1/api-keys{bad}"))
                .await,
            422,
            "validation_failed",
        );
    }
}

/// The rotation with an empty body (the default grace) is sent as `{}`, which the wire type
/// (it always writes `grace_seconds`) cannot say.
#[tokio::test]
async fn revoke_reactivate_renew_rotate_delete() {
    let app = spawn_app().await;
    let admin = app.admin_depot();
    let created = app
        .create_key_with(&CreateApiKeyRequest {
            expires_in_days: Some(5),
            ..key_request(&["packages:read"])
        })
        .await;
    let (id, key) = (created.api_key.id, created.key);

    // A stale If-Match is refused.
    assert_api_problem(
        admin.revoke_api_key(id, Some("\"99\"")).await,
        412,
        "precondition_failed",
    );
    let res = key_action::<ApiKeyView>(&admin, id, "revoke", None::<&()>, Some("\"1\""))
        .await
        .unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.etag.as_deref(), Some("\"2\""));
    assert_eq!(res.body.status, KeyStatus::Revoked);
    let p = assert_api_problem(admin.revoke_api_key(id, None).await, 409, "invalid_state");
    assert!(detail(&p).contains("revoked"));
    let days = |days: i64| RenewRequest {
        days: Some(days),
        ..Default::default()
    };
    let p = assert_api_problem(
        admin.renew_api_key(id, &days(10), None).await,
        409,
        "invalid_state",
    );
    assert!(detail(&p).contains("revoked"));

    let reactivated = admin.reactivate_api_key(id, None).await.unwrap();
    assert_eq!(reactivated.status, KeyStatus::Active);
    assert_eq!(whoami_status(&app, &key).await, 200);
    assert_api_problem(
        admin.reactivate_api_key(id, None).await,
        409,
        "invalid_state",
    );

    let renewed = admin.renew_api_key(id, &days(30), None).await.unwrap();
    let expires = renewed.expires_at.expect("an expiry");
    assert!((expires - chrono::Utc::now()).num_days() >= 29);
    let forever = RenewRequest {
        never_expires: Some(true),
        ..Default::default()
    };
    let renewed = admin.renew_api_key(id, &forever, None).await.unwrap();
    assert!(renewed.expires_at.is_none());
    assert_api_problem(
        admin.renew_api_key(id, &days(-1), None).await,
        422,
        "validation_failed",
    );

    // Rotation with a grace period: both keys work, the new one has the same settings.
    let grace = |grace_seconds| RotateRequest { grace_seconds };
    let res = key_action::<ApiKeyCreated>(&admin, id, "rotate", Some(&grace(60)), None)
        .await
        .unwrap();
    assert_eq!(res.status, 201);
    let rotated = res.body;
    let new_key = rotated.key.clone();
    assert_eq!(rotated.api_key.rotated_from, Some(id));
    assert_eq!(rotated.api_key.scopes, ["packages:read"]);
    assert_eq!(whoami_status(&app, &new_key).await, 200);
    assert_eq!(
        whoami_status(&app, &key).await,
        200,
        "the old key works during the grace period"
    );
    // Rotating without grace stops the old key at once.
    let newest =
        key_action::<ApiKeyCreated>(&admin, rotated.api_key.id, "rotate", Some(&json!({})), None)
            .await
            .unwrap()
            .body
            .key;
    assert_api_problem(whoami(&app, &new_key).await, 401, "key_expired");
    assert_eq!(whoami_status(&app, &newest).await, 200);
    assert_api_problem(
        admin.rotate_api_key(id, &grace(9_999_999), None).await,
        422,
        "validation_failed",
    );

    // Delete: 412 on a stale If-Match, then 204, then 404 and the key stops working.
    assert_api_problem(
        admin.delete_api_key(id, Some("\"1\"")).await,
        412,
        "precondition_failed",
    );
    assert_eq!(delete(&admin, id).await.unwrap().status, 204);
    assert_api_problem(admin.get_api_key(id).await, 404, "not_found");
    assert_api_problem(delete(&admin, id).await, 404, "not_found");
    assert_api_problem(whoami(&app, &key).await, 401, "credentials_invalid");
    let e = admin
        .get::<ApiKeyView>("/api/v1/api-keys/not-a-uuid")
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(422), "{e}");

    // Every action is in the audit log, newest first.
    let events = admin.audit_events(&[q("limit", 200)]).await.unwrap();
    let actions: Vec<&str> = events.items.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "api_key.create",
        "api_key.revoke",
        "api_key.reactivate",
        "api_key.renew",
        "api_key.rotate",
        "api_key.delete",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    assert_eq!(actions[0], "api_key.delete");
    let first = &events.items[0];
    assert_eq!(first.actor, "admin");
    assert_eq!(first.target_id, Some(id));
    assert_eq!(first.client_ip.as_deref(), Some("127.0.0.1"));
}

async fn wait_for_uses(app: &TestApp, id: Uuid, expected: i64) -> ApiKeyView {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let view = key_view(app, id).await;
        if view.total_uses >= expected || Instant::now() > deadline {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The request with its own `User-Agent` is sent raw (the client sets its own).
#[tokio::test]
async fn usage_is_logged_with_route_templates_newest_first() {
    let app = spawn_app().await;
    let created = app.key_with_scopes(&["passwords:generate"]).await;
    let (id, key) = (created.api_key.id, created.key);
    let depot = app.depot_with_key(&key);
    depot.whoami().await.unwrap();
    depot
        .request(Method::GET, "/api/v1/passwords?password_length=12")
        .header("User-Agent", "depot-test/1.0")
        .send()
        .await
        .unwrap();
    // A 403, still a use of the key.
    assert_api_problem(depot.list_api_keys(&[]).await, 403, "insufficient_scope");
    let view = wait_for_uses(&app, id, 3).await;
    assert_eq!(view.total_uses, 3);
    assert!(view.last_used_at.is_some());
    let admin = app.admin_depot();
    let usage = admin
        .api_key_usage_with(id, &[q("limit", 2)])
        .await
        .unwrap();
    let items = &usage.items;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].route, "/api/v1/api-keys");
    assert_eq!(items[0].status, 403);
    assert_eq!(items[1].route, "/api/v1/passwords");
    assert_eq!(items[1].user_agent.as_deref(), Some("depot-test/1.0"));
    assert_eq!(items[1].method, "GET");
    assert!(usage.next_cursor.is_some());
    assert_api_problem(admin.api_key_usage(Uuid::now_v7()).await, 404, "not_found");
}

/// 500 concurrent requests with one key add exactly 500 uses.
#[tokio::test]
async fn concurrent_uses_are_counted_exactly() {
    let app = spawn_app().await;
    let created = app.key_with_scopes(&["packages:read"]).await;
    let (id, key) = (created.api_key.id, created.key);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let depot = app.depot_with_key(&key);
        tasks.spawn(async move { depot.get::<WhoAmI>(WHOAMI).await.map(|r| r.status) });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap().unwrap(), 200);
    }
    let view = wait_for_uses(&app, id, 500).await;
    assert_eq!(view.total_uses, 500);
    // Nothing is counted twice by a later flush either.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(key_view(&app, id).await.total_uses, 500);
}

/// A revocation made on one replica reaches another (which has the key cached) within 1 s.
#[tokio::test]
async fn revocation_reaches_another_replica_within_a_second() {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let created = app.key_with_scopes(&["packages:read"]).await;
    let (id, key) = (created.api_key.id, created.key);
    assert_eq!(whoami_status(&replica, &key).await, 200); // cached on the replica now
    let revoked = key_action::<ApiKeyView>(&app.admin_depot(), id, "revoke", None::<&()>, None)
        .await
        .unwrap();
    assert_eq!(revoked.status, 200);
    let revoked_at = Instant::now();
    loop {
        let answer = whoami(&replica, &key).await;
        if answer.as_ref().err().and_then(Error::status) == Some(401) {
            assert_api_problem(answer, 401, "key_revoked");
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    eprintln!("revocation reached the other replica in {took:?}");
}

#[tokio::test]
async fn password_generation_can_require_the_scope() {
    let app = spawn_app_with(|s| s.password.require_scope = true).await;
    assert_api_problem(
        app.depot().generate_password(&[]).await,
        401,
        "credentials_missing",
    );
    let reader = app.key_with_scopes(&["packages:read"]).await.key;
    assert_api_problem(
        app.depot_with_key(&reader).generate_password(&[]).await,
        403,
        "insufficient_scope",
    );
    let generator = app.key_with_scopes(&["passwords:generate"]).await.key;
    let generated = app
        .depot_with_key(&generator)
        .get::<PasswordResponse>(PASSWORDS)
        .await;
    assert_eq!(generated.unwrap().status, 200);
    // Public by default: bad credentials still fail loudly rather than being ignored.
    let public = spawn_app().await;
    let generated = public.depot().get::<PasswordResponse>(PASSWORDS).await;
    assert_eq!(generated.unwrap().status, 200);
    assert_api_problem(
        public
            .depot_with_key("dpk_bad")
            .generate_password(&[])
            .await,
        401,
        "credentials_invalid",
    );
}

#[tokio::test]
async fn key_management_is_documented() {
    use std::collections::BTreeMap;
    use utoipa::openapi::path::{HttpMethod, Paths};
    use utoipa::openapi::security::{ApiKey, SecurityScheme};
    /// The parts of the OpenAPI document read here, through utoipa's types (its schemas, which
    /// are Depot's own, do not all read back into them).
    #[derive(serde::Deserialize)]
    struct Doc {
        paths: Paths,
        components: Components,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Components {
        security_schemes: BTreeMap<String, SecurityScheme>,
    }
    let app = spawn_app().await;
    let doc = app
        .depot()
        .get::<Doc>("/api/v1/openapi.json")
        .await
        .unwrap()
        .body;
    for (path, name, method) in [
        ("/api/v1/api-keys", "post", HttpMethod::Post),
        ("/api/v1/api-keys", "get", HttpMethod::Get),
        ("/api/v1/api-keys/{id}", "get", HttpMethod::Get),
        ("/api/v1/api-keys/{id}", "delete", HttpMethod::Delete),
        ("/api/v1/api-keys/{id}/revoke", "post", HttpMethod::Post),
        ("/api/v1/api-keys/{id}/reactivate", "post", HttpMethod::Post),
        ("/api/v1/api-keys/{id}/renew", "post", HttpMethod::Post),
        ("/api/v1/api-keys/{id}/rotate", "post", HttpMethod::Post),
        ("/api/v1/api-keys/{id}/usage", "get", HttpMethod::Get),
        ("/api/v1/audit-events", "get", HttpMethod::Get),
        ("/api/v1/auth/whoami", "get", HttpMethod::Get),
    ] {
        assert!(
            doc.paths.get_path_operation(path, method).is_some(),
            "{name} {path} missing"
        );
    }
    let header_name = |scheme: &str| match &doc.components.security_schemes[scheme] {
        SecurityScheme::ApiKey(ApiKey::Header(value)) => value.name.clone(),
        _ => panic!("{scheme} is no API key in a header"),
    };
    assert_eq!(header_name("api_key"), "X-API-Key");
    assert_eq!(header_name("admin_secret"), "X-Admin-Secret");
}

/// Usage still in memory when the server stops is written on the way out.
#[tokio::test]
async fn graceful_shutdown_flushes_pending_usage() {
    let mut app = spawn_app_with(|s| s.api_keys.usage_flush_milliseconds = 60_000).await;
    let created = app.key_with_scopes(&["packages:read"]).await;
    let (id, key) = (created.api_key.id, created.key);
    for _ in 0..5 {
        assert_eq!(whoami_status(&app, &key).await, 200);
    }
    assert_eq!(key_view(&app, id).await.total_uses, 0, "not flushed yet");
    let replica = app.spawn_replica().await;
    app.stop().await;
    let records = replica.admin_depot().api_key_usage(id).await.unwrap();
    assert_eq!(
        key_view(&replica, id).await.total_uses,
        5,
        "usage records written: {}",
        records.items.len()
    );
    assert_eq!(records.items.len(), 5);
}

/// The review's escalation: a key with `api_keys:admin` minted a `users:admin` key, which then
/// promoted a user to administrator. A principal grants only what it holds, and `users:admin`
/// only the admin secret or an administrator user grants.
#[tokio::test]
async fn a_key_administrator_cannot_mint_more_than_it_holds() {
    let app = spawn_app().await;
    let key_admin = app
        .key_with_scopes(&["api_keys:admin", "packages:read"])
        .await;
    let depot = app.depot_with_key(&key_admin.key);
    // A subset of its own scopes: allowed.
    depot
        .create_api_key(&key_request(&["packages:read"]))
        .await
        .unwrap();
    for (scopes, named) in [
        (&["users:admin"][..], "users:admin"),
        (&["packages:read", "packages:write"][..], "packages:write"),
        (
            &["api_keys:admin", "operations:read"][..],
            "operations:read",
        ),
    ] {
        let e = depot
            .create_api_key(&key_request(scopes))
            .await
            .unwrap_err();
        assert_eq!(e.status_and_code(), Some((403, "insufficient_scope")));
        let detail = e.problem().unwrap().detail.clone().unwrap();
        assert!(detail.contains(named), "{detail}");
    }
    // Holding users:admin is not enough for a key: it cannot hand it on.
    let holder = app
        .key_with_scopes(&["api_keys:admin", "users:admin"])
        .await;
    let e = app
        .depot_with_key(&holder.key)
        .create_api_key(&key_request(&["users:admin"]))
        .await
        .unwrap_err();
    assert_eq!(e.status_and_code(), Some((403, "insufficient_scope")));
    // Rotating or reactivating a stronger key is handing out its scopes again.
    let strong = app.key_with_scopes(&["packages:write"]).await;
    let e = depot
        .rotate_api_key(strong.api_key.id, &RotateRequest::default(), None)
        .await
        .unwrap_err();
    assert_eq!(e.status_and_code(), Some((403, "insufficient_scope")));
    let admin = app.admin_depot();
    admin.revoke_api_key(strong.api_key.id, None).await.unwrap();
    let e = depot
        .reactivate_api_key(strong.api_key.id, None)
        .await
        .unwrap_err();
    assert_eq!(e.status_and_code(), Some((403, "insufficient_scope")));
    // The admin secret grants anything.
    admin
        .create_api_key(&key_request(&["users:admin"]))
        .await
        .unwrap();
}

/// The review's findings: 300 wrong admin-secret guesses took 0.13 s, unthrottled; 120k random
/// keys were each a database lookup. Past `auth.failed_credentials_per_minute` failures from
/// one address, every credential check from it answers 429 for the rest of the minute — the
/// right secret included, so guessing gains nothing.
#[tokio::test]
async fn failed_credential_checks_are_throttled_per_address() {
    let app = spawn_app_with(|s| s.auth.failed_credentials_per_minute = 5).await;
    let wrong = app
        .depot()
        .with_admin_secret("not-the-secret-but-long-enough-to-pass-the-length-check");
    for _ in 0..5 {
        assert_api_problem(wrong.list_api_keys(&[]).await, 401, "credentials_invalid");
    }
    let e = app.admin_depot().list_api_keys(&[]).await.unwrap_err();
    assert_eq!(e.status_and_code(), Some((429, "rate_limited")));
    let retry: u64 = e.headers().unwrap()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Random well-formed keys count the same way.
    let other = spawn_app_with(|s| s.auth.failed_credentials_per_minute = 5).await;
    for _ in 0..5 {
        let key = depot_api_keys::PlainKey::generate(&mut rand::rng());
        let res = other.depot_with_key(key.expose()).whoami().await;
        assert_api_problem(res, 401, "credentials_invalid");
    }
    let key = depot_api_keys::PlainKey::generate(&mut rand::rng());
    let e = other
        .depot_with_key(key.expose())
        .whoami()
        .await
        .unwrap_err();
    assert_eq!(e.status_and_code(), Some((429, "rate_limited")));
    // Requests without credentials are not affected.
    assert!(other.depot().live().await.unwrap());
}
