use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn whoami(app: &TestApp, key: &str) -> reqwest::Response {
    app.get_with_key("/api/v1/auth/whoami", key).await
}

/// An admin GET that must answer 200: its JSON body.
async fn admin_get(app: &TestApp, path: &str) -> Value {
    let res = app.admin(Method::GET, path).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

async fn key_view(app: &TestApp, id: &str) -> Value {
    admin_get(app, &format!("/api/v1/api-keys/{id}")).await
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A key with a valid checksum that Depot never issued.
fn forged_key() -> String {
    depot_api_keys::PlainKey::generate(&mut rand::rng())
        .expose()
        .to_owned()
}

#[tokio::test]
async fn create_shows_the_key_once_and_stores_only_its_hash() {
    let app = spawn_app().await;
    let res = app
        .admin(Method::POST, "/api/v1/api-keys")
        .json(&json!({"name": "  ci  ", "scopes": ["packages:read", "packages:write"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = res.json().await.unwrap();
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("dpk_") && key.len() == 53, "{key}");
    assert_eq!(created["name"], "ci");
    assert_eq!(created["status"], "active");
    assert_eq!(created["key_prefix"], format!("{}…", &key[..8]));
    assert_eq!(
        location,
        format!("/api/v1/api-keys/{}", created["id"].as_str().unwrap())
    );
    // Default lifetime: 15 days.
    let expires: chrono::DateTime<chrono::Utc> =
        created["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((14.9..=15.0).contains(&days), "{days}");

    let res = app.admin(Method::GET, &location).send().await.unwrap();
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let body = res.text().await.unwrap();
    assert!(!body.contains(key), "the plaintext key is shown again");
    assert!(!body.contains(&key[8..]));
    let view: Value = serde_json::from_str(&body).unwrap();
    assert!(view.get("key").is_none());
    assert_eq!(view["scopes"], json!(["packages:read", "packages:write"]));
    // If-None-Match with the current ETag → 304.
    let res = app
        .admin(Method::GET, &location)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
}

#[tokio::test]
async fn create_validates_every_field() {
    let app = spawn_app().await;
    let post = |body: Value| {
        app.admin(Method::POST, "/api/v1/api-keys")
            .json(&body)
            .send()
    };
    let p = assert_problem(
        post(json!({"name": " ", "scopes": ["packages:read", "root"]}))
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["name", "scopes[1]"]);
    let p = assert_problem(
        post(json!({"name": "x", "scopes": []})).await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["scopes"]);
    let p = assert_problem(
        post(json!({"name": "x", "scopes": ["packages:read"], "expires_in_days": 3, "never_expires": true})).await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["expires_at"]);
    let p = assert_problem(
        post(
            json!({"name": "x", "scopes": ["packages:read"], "expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await
        .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["expires_at"]);
    let p = assert_problem(
        post(json!({"name": "x", "scopes": ["packages:read"], "expires_in_days": 0}))
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["expires_in_days"]);
    let p = assert_problem(
        post(json!({"name": "x", "scopes": ["packages:read"], "rate_limit_per_minute": 0}))
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["rate_limit_per_minute"]);
    let p = assert_problem(
        post(json!({"name": "x", "scopes": "packages:read"}))
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(fields(&p), ["scopes"]);
    let p = assert_problem(
        post(json!({"name": "x", "scopes": ["packages:read"], "expire_in_days": 3}))
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expire_in_days"),
        "{p}"
    );
    let res = app
        .admin(Method::POST, "/api/v1/api-keys")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "malformed_json").await;
    let res = app
        .admin(Method::POST, "/api/v1/api-keys")
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_problem(res, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn every_credential_state_has_its_answer() {
    let app = spawn_app().await;
    let (id, key) = app.create_key(&["packages:read"], json!({})).await;

    // valid
    let res = whoami(&app, &key).await;
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["kind"], "api_key");
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["scopes"], json!(["packages:read"]));

    // missing
    let res = app.get("/api/v1/auth/whoami").await;
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("ApiKey")
    );
    assert_problem(res, 401, "credentials_missing").await;
    // malformed
    assert_problem(whoami(&app, "not-a-key").await, 401, "credentials_invalid").await;
    // bad checksum
    let mut typo: Vec<char> = key.chars().collect();
    typo[20] = if typo[20] == 'a' { 'b' } else { 'a' };
    assert_problem(
        whoami(&app, &typo.into_iter().collect::<String>()).await,
        401,
        "credentials_invalid",
    )
    .await;
    // unknown (well-formed, never issued)
    assert_problem(
        whoami(&app, &forged_key()).await,
        401,
        "credentials_invalid",
    )
    .await;
    // wrong admin secret
    let res = app
        .client
        .get(app.url("/api/v1/api-keys"))
        .header("X-Admin-Secret", "nope")
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "credentials_invalid").await;
    // wrong scope
    let res = app.get_with_key("/api/v1/api-keys", &key).await;
    let p = assert_problem(res, 403, "insufficient_scope").await;
    assert!(p["detail"].as_str().unwrap().contains("api_keys:admin"));
    // the other header name
    let res = app
        .client
        .get(app.url("/api/v1/auth/whoami"))
        .header("api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // query keys are off by default
    let res = app.get(&format!("/api/v1/auth/whoami?api_key={key}")).await;
    assert_problem(res, 401, "credentials_missing").await;

    // revoked
    let res = app
        .admin(Method::POST, &format!("/api/v1/api-keys/{id}/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_problem(whoami(&app, &key).await, 401, "key_revoked").await;

    // expired: a key that expires in a second
    let at = (chrono::Utc::now() + chrono::Duration::milliseconds(1200)).to_rfc3339();
    let (_, short) = app
        .create_key(&["packages:read"], json!({"expires_at": at}))
        .await;
    assert_eq!(whoami(&app, &short).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_problem(whoami(&app, &short).await, 401, "key_expired").await;
}

#[tokio::test]
async fn query_keys_when_allowed() {
    let app = spawn_app_with(|s| s.auth.allow_query_keys = true).await;
    let (_, key) = app.create_key(&["packages:read"], json!({})).await;
    assert_eq!(
        app.get(&format!("/api/v1/auth/whoami?api_key={key}"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.get(&format!("/api/v1/auth/whoami?api-key={key}"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_keys_rate_limit_answers_429_with_headers() {
    let app = spawn_app().await;
    let (_, key) = app
        .create_key(&["packages:read"], json!({"rate_limit_per_minute": 3}))
        .await;
    for remaining in [2, 1, 0] {
        let res = whoami(&app, &key).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["ratelimit-limit"], "3");
        assert_eq!(
            res.headers()["ratelimit-remaining"],
            remaining.to_string().as_str()
        );
    }
    let res = whoami(&app, &key).await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(res.headers()["ratelimit-remaining"], "0");
    assert_problem(res, 429, "rate_limited").await;
}

#[tokio::test]
async fn admin_keys_manage_keys_too() {
    let app = spawn_app().await;
    let (_, admin_key) = app.create_key(&["api_keys:admin"], json!({})).await;
    let res = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .header("X-API-Key", &admin_key)
        .json(&json!({"name": "made by a key", "scopes": ["packages:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let events: Value = app
        .admin(Method::GET, "/api/v1/audit-events?action=api_key.create")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actors: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert!(actors[0].starts_with("api_key:"), "{actors:?}");
    assert_eq!(actors[1], "admin");
}

#[tokio::test]
async fn list_filters_and_paginates() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let res = app
            .admin(Method::POST, "/api/v1/api-keys")
            .json(&json!({"name": name, "scopes": ["packages:read"]}))
            .send()
            .await
            .unwrap();
        ids.push(
            res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.admin(Method::POST, &format!("/api/v1/api-keys/{}/revoke", ids[0]))
        .send()
        .await
        .unwrap();

    let res = app
        .admin(Method::GET, "/api/v1/api-keys?limit=2")
        .send()
        .await
        .unwrap();
    let link = res.headers()["link"].to_str().unwrap().to_owned();
    let page: Value = res.json().await.unwrap();
    let first: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, [ids[2].as_str(), ids[1].as_str()], "newest first");
    assert!(
        link.contains("rel=\"next\"") && link.contains("limit=2"),
        "{link}"
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let page: Value = app
        .admin(
            Method::GET,
            &format!("/api/v1/api-keys?limit=2&cursor={cursor}"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["id"], ids[0].as_str());
    assert!(page.get("next_cursor").is_none());

    let active: Value = app
        .admin(Method::GET, "/api/v1/api-keys?status=active")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(active["items"].as_array().unwrap().len(), 2);
    let revoked: Value = app
        .admin(Method::GET, "/api/v1/api-keys?status=revoked")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revoked["items"][0]["id"], ids[0].as_str());
    let named: Value = app
        .admin(Method::GET, "/api/v1/api-keys?name=b")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(named["items"].as_array().unwrap().len(), 1);
    for bad in ["?status=gone", "?limit=0", "?limit=x", "?cursor=%%%"] {
        let res = app
            .admin(Method::GET, &format!("/api/v1/api-keys{bad}"))
            .send()
            .await
            .unwrap();
        assert_problem(res, 422, "validation_failed").await;
    }
}

#[tokio::test]
async fn revoke_reactivate_renew_rotate_delete() {
    let app = spawn_app().await;
    let (id, key) = app
        .create_key(&["packages:read"], json!({"expires_in_days": 5}))
        .await;
    let path = format!("/api/v1/api-keys/{id}");

    // A stale If-Match is refused.
    let res = app
        .admin(Method::POST, &format!("{path}/revoke"))
        .header("If-Match", "\"99\"")
        .send()
        .await
        .unwrap();
    assert_problem(res, 412, "precondition_failed").await;
    let res = app
        .admin(Method::POST, &format!("{path}/revoke"))
        .header("If-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["etag"], "\"2\"");
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "revoked");
    let p = assert_problem(
        app.admin(Method::POST, &format!("{path}/revoke"))
            .send()
            .await
            .unwrap(),
        409,
        "invalid_state",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("revoked"));
    let p = assert_problem(
        app.admin(Method::POST, &format!("{path}/renew"))
            .json(&json!({"days": 10}))
            .send()
            .await
            .unwrap(),
        409,
        "invalid_state",
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("revoked"));

    let res = app
        .admin(Method::POST, &format!("{path}/reactivate"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "active");
    assert_eq!(whoami(&app, &key).await.status(), 200);
    assert_problem(
        app.admin(Method::POST, &format!("{path}/reactivate"))
            .send()
            .await
            .unwrap(),
        409,
        "invalid_state",
    )
    .await;

    let res = app
        .admin(Method::POST, &format!("{path}/renew"))
        .json(&json!({"days": 30}))
        .send()
        .await
        .unwrap();
    let renewed: Value = res.json().await.unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        renewed["expires_at"].as_str().unwrap().parse().unwrap();
    assert!((expires - chrono::Utc::now()).num_days() >= 29);
    let res = app
        .admin(Method::POST, &format!("{path}/renew"))
        .json(&json!({"never_expires": true}))
        .send()
        .await
        .unwrap();
    assert!(res.json::<Value>().await.unwrap()["expires_at"].is_null());
    let res = app
        .admin(Method::POST, &format!("{path}/renew"))
        .json(&json!({"days": -1}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 422, "validation_failed").await;

    // Rotation with a grace period: both keys work, the new one has the same settings.
    let res = app
        .admin(Method::POST, &format!("{path}/rotate"))
        .json(&json!({"grace_seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let rotated: Value = res.json().await.unwrap();
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["rotated_from"], id.as_str());
    assert_eq!(rotated["scopes"], json!(["packages:read"]));
    assert_eq!(whoami(&app, &new_key).await.status(), 200);
    assert_eq!(
        whoami(&app, &key).await.status(),
        200,
        "the old key works during the grace period"
    );
    // Rotating without grace stops the old key at once.
    let new_id = rotated["id"].as_str().unwrap().to_owned();
    let res = app
        .admin(Method::POST, &format!("/api/v1/api-keys/{new_id}/rotate"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let newest = res.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_problem(whoami(&app, &new_key).await, 401, "key_expired").await;
    assert_eq!(whoami(&app, &newest).await.status(), 200);
    let res = app
        .admin(Method::POST, &format!("{path}/rotate"))
        .json(&json!({"grace_seconds": 9999999}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 422, "validation_failed").await;

    // Delete: 412 on a stale If-Match, then 204, then 404 and the key stops working.
    let res = app
        .admin(Method::DELETE, &path)
        .header("If-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_problem(res, 412, "precondition_failed").await;
    assert_eq!(
        app.admin(Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_problem(
        app.admin(Method::GET, &path).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_problem(
        app.admin(Method::DELETE, &path).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_problem(whoami(&app, &key).await, 401, "credentials_invalid").await;
    let res = app
        .admin(Method::GET, "/api/v1/api-keys/not-a-uuid")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);

    // Every action is in the audit log, newest first.
    let events: Value = app
        .admin(Method::GET, "/api/v1/audit-events?limit=200")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
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
    let first = &events["items"][0];
    assert_eq!(first["actor"], "admin");
    assert_eq!(first["target_id"], id.as_str());
    assert_eq!(first["client_ip"], "127.0.0.1");
}

async fn wait_for_uses(app: &TestApp, id: &str, expected: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let view = key_view(app, id).await;
        if view["total_uses"].as_i64().unwrap() >= expected || Instant::now() > deadline {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn usage_is_logged_with_route_templates_newest_first() {
    let app = spawn_app().await;
    let (id, key) = app.create_key(&["passwords:generate"], json!({})).await;
    whoami(&app, &key).await;
    app.client
        .get(app.url("/api/v1/passwords?password_length=12"))
        .header("X-API-Key", &key)
        .header("User-Agent", "depot-test/1.0")
        .send()
        .await
        .unwrap();
    app.get_with_key("/api/v1/api-keys", &key).await; // 403, still a use of the key
    let view = wait_for_uses(&app, &id, 3).await;
    assert_eq!(view["total_uses"], 3);
    assert!(view["last_used_at"].is_string());
    let usage = admin_get(&app, &format!("/api/v1/api-keys/{id}/usage?limit=2")).await;
    let items = usage["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["route"], "/api/v1/api-keys");
    assert_eq!(items[0]["status"], 403);
    assert_eq!(items[1]["route"], "/api/v1/passwords");
    assert_eq!(items[1]["user_agent"], "depot-test/1.0");
    assert_eq!(items[1]["method"], "GET");
    assert!(usage["next_cursor"].is_string());
    let missing = uuid::Uuid::now_v7();
    let res = app
        .admin(Method::GET, &format!("/api/v1/api-keys/{missing}/usage"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
}

/// 500 concurrent requests with one key add exactly 500 uses.
#[tokio::test]
async fn concurrent_uses_are_counted_exactly() {
    let app = spawn_app().await;
    let (id, key) = app.create_key(&["packages:read"], json!({})).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let client = app.client.clone();
        let url = app.url("/api/v1/auth/whoami");
        let key = key.clone();
        tasks.spawn(async move {
            client
                .get(url)
                .header("X-API-Key", key)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let view = wait_for_uses(&app, &id, 500).await;
    assert_eq!(view["total_uses"], 500);
    // Nothing is counted twice by a later flush either.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(key_view(&app, &id).await["total_uses"], 500);
}

/// A revocation made on one replica reaches another (which has the key cached) within 1 s.
#[tokio::test]
async fn revocation_reaches_another_replica_within_a_second() {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let (id, key) = app.create_key(&["packages:read"], json!({})).await;
    assert_eq!(whoami(&replica, &key).await.status(), 200); // cached on the replica now
    let res = app
        .admin(Method::POST, &format!("/api/v1/api-keys/{id}/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let revoked_at = Instant::now();
    loop {
        let res = whoami(&replica, &key).await;
        if res.status() == 401 {
            assert_problem(res, 401, "key_revoked").await;
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
    assert_problem(
        app.get("/api/v1/passwords").await,
        401,
        "credentials_missing",
    )
    .await;
    let (_, reader) = app.create_key(&["packages:read"], json!({})).await;
    assert_problem(
        app.get_with_key("/api/v1/passwords", &reader).await,
        403,
        "insufficient_scope",
    )
    .await;
    let (_, generator) = app.create_key(&["passwords:generate"], json!({})).await;
    assert_eq!(
        app.get_with_key("/api/v1/passwords", &generator)
            .await
            .status(),
        200
    );
    // Public by default: bad credentials still fail loudly rather than being ignored.
    let public = spawn_app().await;
    assert_eq!(public.get("/api/v1/passwords").await.status(), 200);
    assert_problem(
        public.get_with_key("/api/v1/passwords", "dpk_bad").await,
        401,
        "credentials_invalid",
    )
    .await;
}

#[tokio::test]
async fn key_management_is_documented() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    for (path, method) in [
        ("/api/v1/api-keys", "post"),
        ("/api/v1/api-keys", "get"),
        ("/api/v1/api-keys/{id}", "get"),
        ("/api/v1/api-keys/{id}", "delete"),
        ("/api/v1/api-keys/{id}/revoke", "post"),
        ("/api/v1/api-keys/{id}/reactivate", "post"),
        ("/api/v1/api-keys/{id}/renew", "post"),
        ("/api/v1/api-keys/{id}/rotate", "post"),
        ("/api/v1/api-keys/{id}/usage", "get"),
        ("/api/v1/audit-events", "get"),
        ("/api/v1/auth/whoami", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    assert_eq!(schemes["admin_secret"]["name"], "X-Admin-Secret");
}

/// Usage still in memory when the server stops is written on the way out.
#[tokio::test]
async fn graceful_shutdown_flushes_pending_usage() {
    let mut app = spawn_app_with(|s| s.api_keys.usage_flush_milliseconds = 60_000).await;
    let (id, key) = app.create_key(&["packages:read"], json!({})).await;
    for _ in 0..5 {
        assert_eq!(whoami(&app, &key).await.status(), 200);
    }
    assert_eq!(
        key_view(&app, &id).await["total_uses"],
        0,
        "not flushed yet"
    );
    let replica = app.spawn_replica().await;
    app.stop().await;
    let records = admin_get(&replica, &format!("/api/v1/api-keys/{id}/usage")).await;
    assert_eq!(
        key_view(&replica, &id).await["total_uses"],
        5,
        "usage records written: {}",
        records["items"].as_array().map_or(0, Vec::len)
    );
    assert_eq!(records["items"].as_array().map(Vec::len), Some(5));
}
