use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn create(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.with_key(Method::POST, "/api/v1/packages", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn create_ok(app: &TestApp, key: &str, name: &str, version: &str) -> Value {
    let res = create(app, key, json!({"name": name, "version": version})).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    res.json().await.unwrap()
}

async fn start(app: &TestApp, key: &str, id: &str, kind: &str) -> reqwest::Response {
    app.with_key(Method::POST, &format!("/api/v1/packages/{id}/{kind}"), key)
        .send()
        .await
        .unwrap()
}

async fn get_json(app: &TestApp, key: &str, path: &str) -> Value {
    let res = app.get_with_key(path, key).await;
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// Polls an operation until it is final.
pub async fn wait_final(app: &TestApp, key: &str, op_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let op = get_json(app, key, &format!("/api/v1/operations/{op_id}")).await;
        if ["succeeded", "failed", "cancelled"].contains(&op["status"].as_str().unwrap()) {
            return op;
        }
        assert!(Instant::now() < deadline, "operation still {op}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_op(app: &TestApp, key: &str, id: &str, kind: &str) -> Value {
    let res = start(app, key, id, kind).await;
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let op: Value = res.json().await.unwrap();
    wait_final(app, key, op["id"].as_str().unwrap()).await
}

#[tokio::test]
async fn create_normalises_and_the_body_equals_a_get() {
    use depot_client::wire::{CreatePackageRequest, PackageStatus};
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let created = depot
        .create_package(&CreatePackageRequest {
            description: Some("  pads  ".into()),
            sha256: Some("AB".repeat(32)),
            size_bytes: Some(12),
            source_url: Some("https://example.com/a.tgz".into()),
            ..CreatePackageRequest::new("  left-pad ", " 1.3.0 ")
        })
        .await
        .unwrap();
    assert_eq!(created.name, "left-pad");
    assert_eq!(created.version, "1.3.0");
    assert_eq!(created.description.as_deref(), Some("pads"));
    assert_eq!(created.status, PackageStatus::Created);
    assert_eq!(created.sha256, Some("ab".repeat(32)));
    let read = depot.get_package(created.id).await.unwrap();
    assert_eq!(read.body, created);
    assert!(read.etag.is_some());

    let e = depot
        .create_package(&CreatePackageRequest::new("left-pad", "1.3.0"))
        .await
        .unwrap_err();
    assert_eq!(e.status_and_code(), Some((409, "duplicate_package")));
    let detail = e.problem().unwrap().detail.clone().unwrap();
    assert!(detail.contains("left-pad 1.3.0"), "{detail}");
    // A missing package is a 404 problem, never `200 null`.
    let e = depot.get_package(uuid::Uuid::now_v7()).await.unwrap_err();
    assert_eq!(e.status_and_code(), Some((404, "not_found")));
}

#[tokio::test]
async fn bad_input_names_every_field_and_status_cannot_be_set() {
    let app = spawn_app().await;
    let key = app.writer_key().await;
    let p = assert_problem(
        create(
            &app,
            &key,
            json!({"name": " ", "version": "x".repeat(51), "source_url": "ftp://x/y",
                                  "sha256": "nothex", "size_bytes": -5}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let fields: Vec<&str> = p["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["name", "version", "source_url", "sha256", "size_bytes"]
    );
    // A NUL (PostgreSQL cannot store it) is refused up front, naming the field.
    let p = assert_problem(
        create(
            &app,
            &key,
            json!({"name": "nul", "version": "1", "description": "a\u{0}b"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "description", "{p}");
    let p = assert_problem(
        create(
            &app,
            &key,
            json!({"name": "a", "version": "1", "status": "active"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert!(
        p["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("status"),
        "{p}"
    );
    let p = assert_problem(
        create(&app, &key, json!({"version": "1"})).await,
        422,
        "validation_failed",
    )
    .await;
    assert!(
        p["errors"][0]["message"].as_str().unwrap().contains("name"),
        "{p}"
    );
}

#[tokio::test]
async fn scopes_guard_reads_and_writes() {
    let app = spawn_app().await;
    let (_, reader) = app.create_key(&["packages:read"], json!({})).await;
    assert_problem(
        create(&app, &reader, json!({"name": "a", "version": "1"})).await,
        403,
        "insufficient_scope",
    )
    .await;
    assert_eq!(
        app.get_with_key("/api/v1/packages", &reader).await.status(),
        200
    );
    let (_, other) = app.create_key(&["passwords:generate"], json!({})).await;
    assert_problem(
        app.get_with_key("/api/v1/packages", &other).await,
        403,
        "insufficient_scope",
    )
    .await;
    assert_problem(
        app.get("/api/v1/packages").await,
        401,
        "credentials_missing",
    )
    .await;
}

#[tokio::test]
async fn list_filters_sorts_and_paginates() {
    let app = spawn_app().await;
    let key = app.writer_key().await;
    for (name, version) in [("zeta", "1"), ("alpha", "1"), ("alpha", "2"), ("beta", "1")] {
        create_ok(&app, &key, name, version).await;
    }
    let page = get_json(&app, &key, "/api/v1/packages?limit=3").await;
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["beta", "alpha", "alpha"], "newest first");
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = get_json(
        &app,
        &key,
        &format!("/api/v1/packages?limit=3&cursor={cursor}"),
    )
    .await;
    assert_eq!(rest["items"][0]["name"], "zeta");
    assert!(rest.get("next_cursor").is_none());

    let mut seen = Vec::new();
    let mut path = "/api/v1/packages?sort=name&limit=1".to_owned();
    loop {
        let res = app.get_with_key(&path, &key).await;
        let link = res
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_owned());
        let page: Value = res.json().await.unwrap();
        seen.push(format!(
            "{} {}",
            page["items"][0]["name"].as_str().unwrap(),
            page["items"][0]["version"].as_str().unwrap()
        ));
        match link {
            Some(l) => {
                path = l
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_owned()
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(
        &seen[..2].iter().map(|s| &s[..5]).collect::<Vec<_>>(),
        &["alpha", "alpha"]
    );
    assert_eq!(seen[3], "zeta 1");
    let prefixed = get_json(&app, &key, "/api/v1/packages?name=al").await;
    assert_eq!(prefixed["items"].as_array().unwrap().len(), 2);
    let created = get_json(&app, &key, "/api/v1/packages?status=created").await;
    assert_eq!(created["items"].as_array().unwrap().len(), 4);
    let active = get_json(&app, &key, "/api/v1/packages?status=active").await;
    assert!(active["items"].as_array().unwrap().is_empty());
    for bad in ["?status=gone", "?sort=size", "?limit=500"] {
        assert_problem(
            app.get_with_key(&format!("/api/v1/packages{bad}"), &key)
                .await,
            422,
            "validation_failed",
        )
        .await;
    }
}

#[tokio::test]
async fn patch_and_delete_honour_if_match() {
    let app = spawn_app().await;
    let key = app.writer_key().await;
    let p = create_ok(&app, &key, "pkg", "1").await;
    let path = format!("/api/v1/packages/{}", p["id"].as_str().unwrap());
    let res = app.get_with_key(&path, &key).await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let res = app
        .with_key(Method::GET, &path, &key)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);

    let res = app
        .with_key(Method::PATCH, &path, &key)
        .header("If-Match", &etag)
        .json(&json!({"description": "  new  ", "version": " 1.0.1 "}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let new_etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let patched: Value = res.json().await.unwrap();
    assert_eq!(patched["description"], "new");
    assert_eq!(patched["version"], "1.0.1");
    let res = app
        .with_key(Method::PATCH, &path, &key)
        .header("If-Match", &etag)
        .json(&json!({"description": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 412, "precondition_failed").await;
    let res = app
        .with_key(Method::PATCH, &path, &key)
        .json(&json!({"status": "active"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 422, "validation_failed").await;
    let res = app
        .with_key(Method::PATCH, &path, &key)
        .json(&json!({"description": null}))
        .send()
        .await
        .unwrap();
    assert!(res.json::<Value>().await.unwrap()["description"].is_null());
    create_ok(&app, &key, "pkg", "2").await;
    let res = app
        .with_key(Method::PATCH, &path, &key)
        .json(&json!({"version": "2"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 409, "duplicate_package").await;

    let res = app
        .with_key(Method::DELETE, &path, &key)
        .header("If-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_problem(res, 412, "precondition_failed").await;
    let _ = new_etag;
    assert_eq!(
        app.with_key(Method::DELETE, &path, &key)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_problem(app.get_with_key(&path, &key).await, 404, "not_found").await;
}

#[tokio::test]
async fn the_lifecycle_runs_as_operations() {
    let app = spawn_app().await;
    let key = app.writer_key().await;
    let p = create_ok(&app, &key, "lib", "1.0").await;
    let id = p["id"].as_str().unwrap();

    // The state machine refuses what it forbids, naming the current status.
    let problem = assert_problem(
        start(&app, &key, id, "activate").await,
        409,
        "invalid_transition",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("created"),
        "{problem}"
    );
    assert_problem(
        start(&app, &key, id, "deactivate").await,
        409,
        "invalid_transition",
    )
    .await;

    let res = start(&app, &key, id, "download").await;
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(res.headers()["retry-after"], "1");
    let op: Value = res.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/operations/{}", op["id"].as_str().unwrap())
    );
    assert_eq!(op["kind"], "download");
    assert_eq!(op["status"], "pending");
    assert_eq!(op["package_id"], id);
    // A second operation while one is pending or running is refused.
    let busy = assert_problem(
        start(&app, &key, id, "download").await,
        409,
        "operation_in_progress",
    )
    .await;
    assert!(
        busy["detail"]
            .as_str()
            .unwrap()
            .contains(op["id"].as_str().unwrap()),
        "{busy}"
    );
    // So is deleting the package.
    let res = app
        .with_key(Method::DELETE, &format!("/api/v1/packages/{id}"), &key)
        .send()
        .await
        .unwrap();
    assert_problem(res, 409, "operation_in_progress").await;

    let done = wait_final(&app, &key, op["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], 100);
    assert!(done["finished_at"].is_string());
    assert!(done["error"].is_null());
    assert_eq!(
        get_json(&app, &key, &format!("/api/v1/packages/{id}")).await["status"],
        "downloaded"
    );

    assert_eq!(
        run_op(&app, &key, id, "activate").await["status"],
        "succeeded"
    );
    assert_eq!(
        get_json(&app, &key, &format!("/api/v1/packages/{id}")).await["status"],
        "active"
    );
    assert_problem(
        start(&app, &key, id, "download").await,
        409,
        "invalid_transition",
    )
    .await;
    assert_eq!(
        run_op(&app, &key, id, "deactivate").await["status"],
        "succeeded"
    );
    assert_eq!(
        get_json(&app, &key, &format!("/api/v1/packages/{id}")).await["status"],
        "downloaded"
    );

    let ops = get_json(&app, &key, &format!("/api/v1/operations?package_id={id}")).await;
    let kinds: Vec<&str> = ops["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["deactivate", "activate", "download"]);
    let succeeded = get_json(&app, &key, "/api/v1/operations?status=succeeded&limit=2").await;
    assert_eq!(succeeded["items"].as_array().unwrap().len(), 2);
    assert!(succeeded["next_cursor"].is_string());
    assert_eq!(
        app.with_key(Method::DELETE, &format!("/api/v1/packages/{id}"), &key)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}

#[tokio::test]
async fn a_failed_operation_keeps_the_status_and_records_the_problem() {
    let app = spawn_app_with(|s| s.executor.simulated_failure_rate = 1.0).await;
    let key = app.writer_key().await;
    let p = create_ok(&app, &key, "doomed", "1").await;
    let id = p["id"].as_str().unwrap();
    let op = run_op(&app, &key, id, "download").await;
    assert_eq!(op["status"], "failed");
    assert_eq!(op["error"]["code"], "simulated_failure");
    assert!(
        op["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("simulated")
    );
    assert_eq!(
        get_json(&app, &key, &format!("/api/v1/packages/{id}")).await["status"],
        "created"
    );
    // The package is free for another try.
    assert_eq!(start(&app, &key, id, "download").await.status(), 202);
}

#[tokio::test]
async fn operations_can_be_cancelled() {
    let app = spawn_app_with(|s| {
        s.executor.simulated_duration_ms = 3000;
        s.executor.simulated_steps = 30;
    })
    .await;
    let key = app.writer_key().await;
    let p = create_ok(&app, &key, "slow", "1").await;
    let id = p["id"].as_str().unwrap();
    let op: Value = start(&app, &key, id, "download")
        .await
        .json()
        .await
        .unwrap();
    let op_id = op["id"].as_str().unwrap();
    // Wait until it runs, then cancel.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_json(&app, &key, &format!("/api/v1/operations/{op_id}")).await["status"] != "running"
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = app
        .with_key(
            Method::POST,
            &format!("/api/v1/operations/{op_id}/cancel"),
            &key,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let done = wait_final(&app, &key, op_id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(
        get_json(&app, &key, &format!("/api/v1/packages/{id}")).await["status"],
        "created"
    );
    let res = app
        .with_key(
            Method::POST,
            &format!("/api/v1/operations/{op_id}/cancel"),
            &key,
        )
        .send()
        .await
        .unwrap();
    let p = assert_problem(res, 409, "operation_finished").await;
    assert!(p["detail"].as_str().unwrap().contains("cancelled"));
}

#[tokio::test]
async fn events_stream_progress_and_close_after_the_final_state() {
    let app = spawn_app_with(|s| {
        s.executor.simulated_duration_ms = 1000;
        s.executor.simulated_steps = 5;
    })
    .await;
    let key = app.writer_key().await;
    let p = create_ok(&app, &key, "streamed", "1").await;
    let op: Value = start(&app, &key, p["id"].as_str().unwrap(), "download")
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .get_with_key(
            &format!("/api/v1/operations/{}/events", op["id"].as_str().unwrap()),
            &key,
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let body = tokio::time::timeout(Duration::from_secs(15), res.text())
        .await
        .expect("the stream closes")
        .unwrap();
    let events: Vec<Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(events.len() >= 3, "{body}");
    assert_eq!(events.last().unwrap()["status"], "succeeded");
    let progress: Vec<u64> = events
        .iter()
        .map(|e| e["progress"].as_u64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(
        progress.iter().any(|p| (1..100).contains(p)),
        "intermediate progress: {progress:?}"
    );
    assert!(body.contains("event: operation"));
}

#[tokio::test]
async fn packages_are_documented() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    for (path, method) in [
        ("/api/v1/packages", "post"),
        ("/api/v1/packages", "get"),
        ("/api/v1/packages/{id}", "get"),
        ("/api/v1/packages/{id}", "patch"),
        ("/api/v1/packages/{id}", "delete"),
        ("/api/v1/packages/{id}/download", "post"),
        ("/api/v1/packages/{id}/activate", "post"),
        ("/api/v1/packages/{id}/deactivate", "post"),
        ("/api/v1/operations", "get"),
        ("/api/v1/operations/{id}", "get"),
        ("/api/v1/operations/{id}/cancel", "post"),
        ("/api/v1/operations/{id}/events", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_answer() {
    let app = spawn_app().await;
    let key = app.writer_key().await;
    let idem = uuid::Uuid::new_v4().to_string();
    let post = |body: Value, idem: String| {
        app.with_key(Method::POST, "/api/v1/packages", &key)
            .header("Idempotency-Key", idem)
            .json(&body)
            .send()
    };
    let first = post(json!({"name": "once", "version": "1"}), idem.clone())
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].clone();
    let first_body: Value = first.json().await.unwrap();

    let again = post(json!({"name": "once", "version": "1"}), idem.clone())
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);
    let all = get_json(&app, &key, "/api/v1/packages?name=once").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "created once");

    let p = assert_problem(
        post(json!({"name": "other", "version": "1"}), idem.clone())
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "Idempotency-Key");
    let p = assert_problem(
        post(json!({"name": "x", "version": "1"}), "not-a-uuid".into())
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "Idempotency-Key");

    // Keys belong to the caller: another key holder's identical key is independent.
    let other = app.writer_key().await;
    let res = app
        .with_key(Method::POST, "/api/v1/packages", &other)
        .header("Idempotency-Key", &idem)
        .json(&json!({"name": "theirs", "version": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());

    // Operations too: a retried download answers the same operation.
    let id = first_body["id"].as_str().unwrap();
    let op_key = uuid::Uuid::new_v4().to_string();
    let start_once = || {
        app.with_key(
            Method::POST,
            &format!("/api/v1/packages/{id}/download"),
            &key,
        )
        .header("Idempotency-Key", &op_key)
        .send()
    };
    let a: Value = start_once().await.unwrap().json().await.unwrap();
    let res = start_once().await.unwrap();
    assert_eq!(res.status(), 202);
    let b: Value = res.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
}

/// `depot packages …` against a running Depot, as an operator would use it. It follows each
/// operation on its event stream (no polling).
#[tokio::test]
async fn the_command_line_drives_the_lifecycle() {
    let app = spawn_app().await;
    let (key_id, key) = app
        .create_key(
            &["packages:read", "packages:write", "operations:read"],
            json!({}),
        )
        .await;
    let id = cli_lifecycle(&app, &key).await;
    let out = cli(&app, &key, &["list", "--status", "active"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("cli-pkg"));
    // A refused transition exits 2 with the problem's detail.
    let out = cli(&app, &key, &["download", &id]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_transition"));
    let routes = routes_used(&app, &key_id, 5).await;
    let count = |route: &str| routes.iter().filter(|r| *r == route).count();
    assert_eq!(count("/api/v1/operations/{id}/events"), 2, "{routes:?}");
    assert_eq!(
        count("/api/v1/operations/{id}"),
        0,
        "no polling: {routes:?}"
    );
}

/// When the server gives no event stream (all taken), the command line polls instead.
#[tokio::test]
async fn the_command_line_polls_when_no_event_stream_is_free() {
    let app = spawn_app_with(|s| s.operations.max_event_streams = 0).await;
    let (key_id, key) = app
        .create_key(
            &["packages:read", "packages:write", "operations:read"],
            json!({}),
        )
        .await;
    cli_lifecycle(&app, &key).await;
    let routes = routes_used(&app, &key_id, 5).await;
    assert!(
        routes.iter().any(|r| r == "/api/v1/operations/{id}"),
        "{routes:?}"
    );
}

async fn cli(app: &TestApp, key: &str, args: &[&str]) -> std::process::Output {
    let (url, key) = (app.address.clone(), key.to_owned());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_depot"))
            .arg("packages")
            .args(["--url", &url, "--api-key", &key])
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Creates `cli-pkg`, downloads and activates it through the command line; returns its id.
async fn cli_lifecycle(app: &TestApp, key: &str) -> String {
    let out = cli(
        app,
        key,
        &["create", "--name", "cli-pkg", "--version", "0.1"],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    for kind in ["download", "activate"] {
        let out = cli(app, key, &[kind, &id]).await;
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        get_json(app, key, &format!("/api/v1/packages/{id}")).await["status"],
        "active"
    );
    id
}

/// The route templates in a key's usage log, once it holds at least `at_least` records (the
/// log is written in batches).
async fn routes_used(app: &TestApp, key_id: &str, at_least: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = app
            .admin(
                Method::GET,
                &format!("/api/v1/api-keys/{key_id}/usage?limit=200"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let routes: Vec<String> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["route"].as_str().unwrap_or_default().to_owned())
            .collect();
        if routes.len() >= at_least || Instant::now() > deadline {
            return routes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Embedded topology (SQLite, in-process queue, embedded worker): reads come from memory and
/// are never stale, because every write — the API's and the worker's — passes the cache. With
/// PostgreSQL/RabbitMQ (several writing processes) there is no cache.
#[tokio::test]
async fn the_embedded_read_cache_never_serves_a_stale_package() {
    let app = spawn_app().await;
    let key = app.writer_key().await;
    let p: Value = app
        .with_key(Method::POST, "/api/v1/packages", &key)
        .json(&json!({"name": "cached", "version": "1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/packages/{}", p["id"].as_str().unwrap());
    let get = async || -> Value { app.get_with_key(&path, &key).await.json().await.unwrap() };
    let list = async || -> Value {
        app.get_with_key("/api/v1/packages?name=cached", &key)
            .await
            .json()
            .await
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(get().await["status"], "created");
        assert_eq!(list().await["items"][0]["status"], "created");
    }
    // A write by the API…
    let res = app
        .with_key(Method::PATCH, &path, &key)
        .json(&json!({"description": "changed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(get().await["description"], "changed");
    assert_eq!(list().await["items"][0]["description"], "changed");
    // …and one by the worker (the operation's status change).
    let op: Value = app
        .with_key(Method::POST, &format!("{path}/download"), &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    wait_final(&app, &key, op["id"].as_str().unwrap()).await;
    assert_eq!(get().await["status"], "downloaded");
    assert_eq!(list().await["items"][0]["status"], "downloaded");

    let metrics = app.get("/metrics").await.text().await.unwrap();
    let hits = metrics
        .lines()
        .find(|l| l.starts_with("depot_package_cache_hits_total "))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap());
    if crate::helpers::postgres_url().is_some() || crate::helpers::amqp_url().is_some() {
        assert_eq!(hits, None, "no cache when several processes may write");
    } else {
        assert!(hits.unwrap() >= 4, "{metrics}");
    }
}

#[tokio::test]
async fn event_streams_are_capped_and_their_slot_is_released() {
    let app = spawn_app_with(|s| {
        s.executor.simulated_duration_ms = 1000;
        s.executor.simulated_steps = 2;
        s.operations.max_event_streams = 1;
    })
    .await;
    let key = app.writer_key().await;
    let p = create_ok(&app, &key, "capped", "1").await;
    let op: Value = start(&app, &key, p["id"].as_str().unwrap(), "download")
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/operations/{}/events", op["id"].as_str().unwrap());
    let first = app.get_with_key(&path, &key).await;
    assert_eq!(first.status(), 200);
    let second = app.get_with_key(&path, &key).await;
    assert_problem(second, 503, "service_unavailable").await;
    // The first stream ends with the operation, and its slot is free again.
    tokio::time::timeout(Duration::from_secs(15), first.text())
        .await
        .expect("the stream closes")
        .unwrap();
    let third = app.get_with_key(&path, &key).await;
    assert_eq!(third.status(), 200);
}

/// Concurrent requests are coalesced into shared statements under load (group commit); each
/// still gets its own answer: duplicates within one burst conflict, one start per package wins
/// and the rest name it, a forbidden transition and a missing package are told apart.
#[tokio::test]
async fn a_burst_of_concurrent_requests_gets_one_right_answer_each() {
    let app = spawn_app().await;
    let key = app.writer_key().await;
    // 30 distinct packages and 6 copies of one more, all at once.
    let bodies: Vec<Value> = (0..30)
        .map(|i| json!({"name": format!("burst-{i}"), "version": "1.0"}))
        .chain((0..6).map(|_| json!({"name": "burst-dup", "version": "1.0"})))
        .collect();
    let answers =
        futures::future::join_all(bodies.iter().map(|b| create(&app, &key, b.clone()))).await;
    let mut ids = Vec::new();
    let mut dup_created = 0;
    for (body, res) in bodies.iter().zip(answers) {
        let status = res.status().as_u16();
        let v: Value = res.json().await.unwrap();
        if body["name"] == "burst-dup" {
            match status {
                201 => dup_created += 1,
                409 => assert_eq!(v["code"], "duplicate_package", "{v}"),
                other => panic!("{other}: {v}"),
            }
        } else {
            assert_eq!(status, 201, "{v}");
            assert_eq!(v["name"], body["name"]);
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(dup_created, 1, "exactly one copy is created");

    // One burst: 8 downloads each of ids[0] and ids[1], interleaved in both orders (batches
    // holding both must not deadlock), one download of each other package, an activate of a
    // created package and a download of a package that does not exist.
    let missing = uuid::Uuid::now_v7().to_string();
    let mut calls: Vec<(String, &str)> = [0, 1, 1, 0]
        .iter()
        .cycle()
        .take(16)
        .map(|&i| (ids[i].clone(), "download"))
        .collect();
    calls.extend(ids[2..].iter().map(|id| (id.clone(), "download")));
    calls.push((ids[2].clone(), "activate"));
    calls.push((missing, "download"));
    let answers =
        futures::future::join_all(calls.iter().map(|(id, kind)| start(&app, &key, id, kind))).await;
    let hot = |id: &String| ids[..2].contains(id);
    let mut winners: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut busy_named: Vec<(String, String)> = Vec::new();
    let mut started = Vec::new();
    for ((id, kind), res) in calls.iter().zip(answers) {
        let status = res.status().as_u16();
        let v: Value = res.json().await.unwrap();
        match (hot(id), *kind, status) {
            (true, "download", 202) => winners
                .entry(id.clone())
                .or_default()
                .push(v["id"].as_str().unwrap().to_owned()),
            (true, "download", 409) => {
                assert_eq!(v["code"], "operation_in_progress", "{v}");
                busy_named.push((id.clone(), v["detail"].as_str().unwrap().to_owned()));
            }
            (false, "download", 202) => started.push(v["id"].as_str().unwrap().to_owned()),
            (false, "download", 404) => assert_eq!(v["code"], "not_found", "{v}"),
            // The activate races the download of the same package: refused either way.
            (false, "activate", 409) => assert!(
                ["invalid_transition", "operation_in_progress"]
                    .contains(&v["code"].as_str().unwrap()),
                "{v}"
            ),
            other => panic!("unexpected answer {other:?}: {v}"),
        }
    }
    for id in &ids[..2] {
        assert_eq!(
            winners[id].len(),
            1,
            "one of the 8 downloads of {id} starts"
        );
    }
    assert_eq!(busy_named.len(), 14);
    for (id, detail) in &busy_named {
        assert!(
            detail.contains(&winners[id][0]),
            "the 409 names the running operation: {detail}"
        );
    }
    assert_eq!(started.len(), ids.len() - 2);
    for op in winners.values().flatten().chain(&started) {
        let done = wait_final(&app, &key, op).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    for id in &ids {
        let p = get_json(&app, &key, &format!("/api/v1/packages/{id}")).await;
        assert_eq!(p["status"], "downloaded", "{p}");
    }
}

/// At-least-once delivery can hand one operation to several runners at the same moment; their
/// finishes may land in one batch or in concurrent ones. Exactly one wins, and the package moves
/// once (or not at all, when the winner failed).
#[tokio::test]
async fn racing_finishes_of_one_operation_end_it_exactly_once() {
    use depot_packages::ports::{OperationRepository, Outcome, PackageRepository};
    let app = spawn_app_with(|s| s.worker.embedded = false).await;
    let db = depot_api::bootstrap::connect_database(&app.settings)
        .await
        .unwrap();
    let db_for_edits = db.clone();
    let repo = depot_store::SeaOrmPackageRepository::new(db);
    let key = app.writer_key().await;
    for round in 0..4 {
        let p = create_ok(&app, &key, &format!("race-{round}"), "1.0").await;
        let package_id: uuid::Uuid = p["id"].as_str().unwrap().parse().unwrap();
        let before = PackageRepository::get(&repo, package_id)
            .await
            .unwrap()
            .revision;
        let res = start(&app, &key, p["id"].as_str().unwrap(), "download").await;
        assert_eq!(res.status(), 202);
        let op: Value = res.json().await.unwrap();
        let op_id: uuid::Uuid = op["id"].as_str().unwrap().parse().unwrap();
        let claim = repo.claim(op_id, chrono::Utc::now()).await.unwrap();
        assert_eq!(
            claim.package.as_ref().map(|p| p.id),
            Some(package_id),
            "claimed with its package"
        );
        let claimed = claim.operation;
        let again = repo.claim(op_id, chrono::Utc::now()).await.unwrap();
        assert_eq!(
            again.operation.attempts, 2,
            "a second delivery claims it again"
        );
        // 6 runners succeed, 2 fail; round 3 lets a failure go first.
        let outcomes: Vec<Outcome> = (0..8)
            .map(|i| {
                if (round == 3 && i == 0) || i == 7 {
                    Outcome::Failed(depot_packages::OperationError {
                        code: "boom".into(),
                        detail: "simulated".into(),
                    })
                } else {
                    Outcome::Succeeded
                }
            })
            .collect();
        let results = futures::future::join_all(
            outcomes
                .iter()
                .map(|o| repo.finish(&claimed, o, chrono::Utc::now())),
        )
        .await;
        let winners: Vec<_> = results.into_iter().filter_map(|r| r.unwrap()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let package = PackageRepository::get(&repo, claimed.package_id)
            .await
            .unwrap();
        let stored = repo.get_many(&[op_id]).await.unwrap();
        assert_eq!(stored[0].status, winners[0].status);
        match winners[0].status {
            depot_packages::OperationStatus::Succeeded => {
                assert_eq!(package.status, depot_packages::PackageStatus::Downloaded);
                assert_eq!(package.revision, before + 1, "the package moved once");
            }
            depot_packages::OperationStatus::Failed => {
                assert_eq!(package.status, depot_packages::PackageStatus::Created);
                assert_eq!(package.revision, before);
            }
            other => panic!("{other:?}"),
        }
    }

    // A package that left the expected status while its operation ran (only a hand-edited
    // database does that): the operation fails with `invalid_transition`, the package stays.
    let p = create_ok(&app, &key, "race-edited", "1.0").await;
    let package_id: uuid::Uuid = p["id"].as_str().unwrap().parse().unwrap();
    let res = start(&app, &key, p["id"].as_str().unwrap(), "download").await;
    let op: Value = res.json().await.unwrap();
    let claimed = repo
        .claim(
            op["id"].as_str().unwrap().parse().unwrap(),
            chrono::Utc::now(),
        )
        .await
        .unwrap()
        .operation;
    use depot_store::entities::package;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let edited = package::Entity::update_many()
        .col_expr(package::Column::Status, Expr::value("active"))
        .filter(package::Column::Id.eq(package_id))
        .exec(&db_for_edits)
        .await
        .unwrap();
    assert_eq!(edited.rows_affected, 1);
    let ended = repo
        .finish(&claimed, &Outcome::Succeeded, chrono::Utc::now())
        .await
        .unwrap()
        .expect("this call ends it");
    assert_eq!(ended.status, depot_packages::OperationStatus::Failed);
    let error = ended.error.expect("the problem is recorded");
    assert_eq!(error.code, "invalid_transition");
    assert!(
        error.detail.contains("no longer created"),
        "{}",
        error.detail
    );
    let package = PackageRepository::get(&repo, package_id).await.unwrap();
    assert_eq!(package.status, depot_packages::PackageStatus::Active);
}

/// Deleting a package while a burst of starts is in flight answers that start 404 or the delete
/// 409, and never fails the other starts that shared its batch.
#[tokio::test]
async fn a_deletion_racing_a_burst_of_starts_fails_no_other_start() {
    let app = spawn_app().await;
    let key = app.writer_key().await;
    for round in 0..3 {
        let mut ids = Vec::new();
        for i in 0..12 {
            let p = create_ok(&app, &key, &format!("del-race-{round}-{i}"), "1.0").await;
            ids.push(p["id"].as_str().unwrap().to_owned());
        }
        let victim = ids[round * 3].clone();
        let delete = app
            .with_key(Method::DELETE, &format!("/api/v1/packages/{victim}"), &key)
            .send();
        let starts =
            futures::future::join_all(ids.iter().map(|id| start(&app, &key, id, "download")));
        let (deleted, answers) = tokio::join!(delete, starts);
        let deleted = deleted.unwrap().status().as_u16();
        for (id, res) in ids.iter().zip(answers) {
            let status = res.status().as_u16();
            let body = res.text().await.unwrap();
            if id == &victim {
                match (deleted, status) {
                    (204, 404) | (409, 202) => {}
                    // Started, finished and then deleted: both won, one after the other.
                    (204, 202) => {}
                    other => panic!("round {round}: delete and start answered {other:?}: {body}"),
                }
            } else {
                assert_eq!(
                    status, 202,
                    "round {round}: a bystander's start failed: {body}"
                );
            }
        }
    }
}
