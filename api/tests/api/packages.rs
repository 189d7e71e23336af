use crate::helpers::{
    TestApp, assert_api_problem, assert_raw_problem, detail, fields, spawn_app, spawn_app_with,
    status_of, wait_final,
};
use depot_client::wire::{
    Collection, CreatePackageRequest, OperationKind, OperationStatus, OperationView, PackageStatus,
    PackageView, PatchPackageRequest,
};
use depot_client::{Client, Error, Response};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use uuid::Uuid;

use OperationKind::{Activate, Deactivate, Download};

/// Creates `name version`, which must answer 201.
async fn create_ok(depot: &Client, name: &str, version: &str) -> PackageView {
    let res = depot
        .create_package_with(&CreatePackageRequest::new(name, version), None)
        .await
        .unwrap_or_else(|e| panic!("creating {name} {version}: {e}"));
    assert_eq!(res.status, 201, "{res:?}");
    res.body
}

/// A package's status, read with a GET.
async fn status_of_package(depot: &Client, id: Uuid) -> PackageStatus {
    depot.get_package(id).await.unwrap().body.status
}

/// Starts an operation, which must answer 202, and waits for its end.
async fn run_op(depot: &Client, id: Uuid, kind: OperationKind) -> OperationView {
    let res = depot
        .start_with(id, kind, None)
        .await
        .unwrap_or_else(|e| panic!("starting {kind:?}: {e}"));
    assert_eq!(res.status, 202, "{res:?}");
    wait_final(depot, res.body.id).await
}

/// `DELETE /api/v1/packages/{id}` through the client's transport, for the exact status
/// (`delete_package` answers `()`).
async fn delete(depot: &Client, id: Uuid) -> Result<Response<()>, Error> {
    depot
        .send(depot.request(Method::DELETE, &format!("/api/v1/packages/{id}")))
        .await
}

/// `POST /api/v1/operations/{id}/cancel` through the client's transport, for the exact status
/// (`cancel_operation` answers the operation alone).
async fn cancel(depot: &Client, op_id: Uuid) -> Result<Response<OperationView>, Error> {
    depot
        .send(depot.request(Method::POST, &format!("/api/v1/operations/{op_id}/cancel")))
        .await
}

fn q(name: &'static str, value: impl ToString) -> (&'static str, Option<String>) {
    (name, Some(value.to_string()))
}

#[tokio::test]
async fn create_normalises_and_the_body_equals_a_get() {
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
    let e = depot.get_package(Uuid::now_v7()).await.unwrap_err();
    assert_eq!(e.status_and_code(), Some((404, "not_found")));
}

/// The last two bodies (an unknown field, a missing one) are beyond the wire type: sent raw.
#[tokio::test]
async fn bad_input_names_every_field_and_status_cannot_be_set() {
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let p = assert_api_problem(
        depot
            .create_package(&CreatePackageRequest {
                source_url: Some("ftp://x/y".into()),
                sha256: Some("nothex".into()),
                size_bytes: Some(-5),
                ..CreatePackageRequest::new(" ", "x".repeat(51))
            })
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(
        fields(&p),
        ["name", "version", "source_url", "sha256", "size_bytes"]
    );
    // A NUL (PostgreSQL cannot store it) is refused up front, naming the field.
    let p = assert_api_problem(
        depot
            .create_package(&CreatePackageRequest {
                description: Some("a\u{0}b".into()),
                ..CreatePackageRequest::new("nul", "1")
            })
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(p.errors[0].field, "description", "{p:?}");
    let raw = |body: serde_json::Value| {
        depot
            .request(Method::POST, "/api/v1/packages")
            .json(&body)
            .send()
    };
    let p = assert_raw_problem(
        raw(json!({"name": "a", "version": "1", "status": "active"}))
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert!(p.errors[0].message.contains("status"), "{p:?}");
    let p = assert_raw_problem(
        raw(json!({"version": "1"})).await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert!(p.errors[0].message.contains("name"), "{p:?}");
}

#[tokio::test]
async fn scopes_guard_reads_and_writes() {
    let app = spawn_app().await;
    let reader = app.depot_with_key(&app.key_with_scopes(&["packages:read"]).await.key);
    assert_api_problem(
        reader
            .create_package(&CreatePackageRequest::new("a", "1"))
            .await,
        403,
        "insufficient_scope",
    );
    let listed = reader
        .get::<Collection<PackageView>>("/api/v1/packages")
        .await
        .unwrap();
    assert_eq!(listed.status, 200);
    let other = app.depot_with_key(&app.key_with_scopes(&["passwords:generate"]).await.key);
    assert_api_problem(other.list_packages(&[]).await, 403, "insufficient_scope");
    assert_api_problem(
        app.depot().list_packages(&[]).await,
        401,
        "credentials_missing",
    );
}

#[tokio::test]
async fn list_filters_sorts_and_paginates() {
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    for (name, version) in [("zeta", "1"), ("alpha", "1"), ("alpha", "2"), ("beta", "1")] {
        create_ok(&depot, name, version).await;
    }
    let page = depot.list_packages(&[q("limit", 3)]).await.unwrap();
    let names: Vec<&str> = page.items.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["beta", "alpha", "alpha"], "newest first");
    let cursor = page.next_cursor.clone().expect("a next cursor");
    let rest = depot
        .list_packages(&[q("limit", 3), q("cursor", cursor)])
        .await
        .unwrap();
    assert_eq!(rest.items[0].name, "zeta");
    assert!(rest.next_cursor.is_none());

    // Following the `Link` header, one package a page.
    let mut seen = Vec::new();
    let mut path = Some("/api/v1/packages?sort=name&limit=1".to_owned());
    while let Some(next) = path {
        let page = depot.get::<Collection<PackageView>>(&next).await.unwrap();
        seen.push(format!(
            "{} {}",
            page.body.items[0].name, page.body.items[0].version
        ));
        path = page.next_link();
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(
        &seen[..2].iter().map(|s| &s[..5]).collect::<Vec<_>>(),
        &["alpha", "alpha"]
    );
    assert_eq!(seen[3], "zeta 1");
    let prefixed = depot.list_packages(&[q("name", "al")]).await.unwrap();
    assert_eq!(prefixed.items.len(), 2);
    let created = depot
        .list_packages(&[q("status", "created")])
        .await
        .unwrap();
    assert_eq!(created.items.len(), 4);
    let active = depot.list_packages(&[q("status", "active")]).await.unwrap();
    assert!(active.items.is_empty());
    for bad in [q("status", "gone"), q("sort", "size"), q("limit", 500)] {
        assert_api_problem(depot.list_packages(&[bad]).await, 422, "validation_failed");
    }
}

/// `{"status": …}` is no field of the wire type: that one body is sent raw.
#[tokio::test]
async fn patch_and_delete_honour_if_match() {
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let p = create_ok(&depot, "pkg", "1").await;
    let etag = depot
        .get_package(p.id)
        .await
        .unwrap()
        .etag
        .expect("an ETag");
    let unchanged = depot.get_package_if_none_match(p.id, &etag).await.unwrap();
    assert!(unchanged.is_none(), "304 Not Modified: {unchanged:?}");

    let patched = depot
        .patch_package(
            p.id,
            &PatchPackageRequest {
                description: Some(Some("  new  ".into())),
                version: Some(" 1.0.1 ".into()),
                ..Default::default()
            },
            Some(&etag),
        )
        .await
        .unwrap();
    assert_eq!(patched.status, 200);
    let new_etag = patched.etag.clone().expect("an ETag");
    assert_eq!(patched.body.description.as_deref(), Some("new"));
    assert_eq!(patched.body.version, "1.0.1");
    let describe = |text: &str| PatchPackageRequest {
        description: Some(Some(text.into())),
        ..Default::default()
    };
    assert_api_problem(
        depot.patch_package(p.id, &describe("x"), Some(&etag)).await,
        412,
        "precondition_failed",
    );
    let res = depot
        .request(Method::PATCH, &format!("/api/v1/packages/{}", p.id))
        .json(&json!({"status": "active"}))
        .send()
        .await
        .unwrap();
    assert_raw_problem(res, 422, "validation_failed").await;
    let cleared = depot
        .patch_package(
            p.id,
            &PatchPackageRequest {
                description: Some(None),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert!(cleared.body.description.is_none());
    create_ok(&depot, "pkg", "2").await;
    let to_2 = PatchPackageRequest {
        version: Some("2".into()),
        ..Default::default()
    };
    assert_api_problem(
        depot.patch_package(p.id, &to_2, None).await,
        409,
        "duplicate_package",
    );

    assert_api_problem(
        depot.delete_package(p.id, Some(&etag)).await,
        412,
        "precondition_failed",
    );
    let _ = new_etag;
    assert_eq!(delete(&depot, p.id).await.unwrap().status, 204);
    assert_api_problem(depot.get_package(p.id).await, 404, "not_found");
}

#[tokio::test]
async fn the_lifecycle_runs_as_operations() {
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let id = create_ok(&depot, "lib", "1.0").await.id;

    // The state machine refuses what it forbids, naming the current status.
    let problem = assert_api_problem(depot.start(id, Activate).await, 409, "invalid_transition");
    assert!(detail(&problem).contains("created"), "{problem:?}");
    assert_api_problem(depot.start(id, Deactivate).await, 409, "invalid_transition");

    let res = depot.start_with(id, Download, None).await.unwrap();
    assert_eq!(res.status, 202);
    assert_eq!(res.headers["retry-after"], "1");
    let op = &res.body;
    assert_eq!(
        res.location.as_deref(),
        Some(format!("/api/v1/operations/{}", op.id).as_str())
    );
    assert_eq!(op.kind, Download);
    assert_eq!(op.status, OperationStatus::Pending);
    assert_eq!(op.package_id, Some(id));
    // A second operation while one is pending or running is refused.
    let busy = assert_api_problem(
        depot.start(id, Download).await,
        409,
        "operation_in_progress",
    );
    assert!(detail(&busy).contains(&op.id.to_string()), "{busy:?}");
    // So is deleting the package.
    assert_api_problem(
        depot.delete_package(id, None).await,
        409,
        "operation_in_progress",
    );

    let done = wait_final(&depot, op.id).await;
    assert_eq!(done.status, OperationStatus::Succeeded, "{done:?}");
    assert_eq!(done.progress, 100);
    assert!(done.finished_at.is_some());
    assert!(done.error.is_none());
    assert_eq!(
        status_of_package(&depot, id).await,
        PackageStatus::Downloaded
    );

    assert_eq!(
        run_op(&depot, id, Activate).await.status,
        OperationStatus::Succeeded
    );
    assert_eq!(status_of_package(&depot, id).await, PackageStatus::Active);
    assert_api_problem(depot.start(id, Download).await, 409, "invalid_transition");
    assert_eq!(
        run_op(&depot, id, Deactivate).await.status,
        OperationStatus::Succeeded
    );
    assert_eq!(
        status_of_package(&depot, id).await,
        PackageStatus::Downloaded
    );

    let ops = depot.list_operations(&[q("package_id", id)]).await.unwrap();
    let kinds: Vec<OperationKind> = ops.items.iter().map(|o| o.kind).collect();
    assert_eq!(kinds, [Deactivate, Activate, Download]);
    let succeeded = depot
        .list_operations(&[q("status", "succeeded"), q("limit", 2)])
        .await
        .unwrap();
    assert_eq!(succeeded.items.len(), 2);
    assert!(succeeded.next_cursor.is_some());
    assert_eq!(delete(&depot, id).await.unwrap().status, 204);
}

#[tokio::test]
async fn a_failed_operation_keeps_the_status_and_records_the_problem() {
    let app = spawn_app_with(|s| s.executor.simulated_failure_rate = 1.0).await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let id = create_ok(&depot, "doomed", "1").await.id;
    let op = run_op(&depot, id, Download).await;
    assert_eq!(op.status, OperationStatus::Failed);
    let error = op.error.expect("the problem is recorded");
    assert_eq!(error.code, "simulated_failure");
    assert!(error.detail.contains("simulated"));
    assert_eq!(status_of_package(&depot, id).await, PackageStatus::Created);
    // The package is free for another try.
    let again = depot.start_with(id, Download, None).await.unwrap();
    assert_eq!(again.status, 202);
}

#[tokio::test]
async fn operations_can_be_cancelled() {
    let app = spawn_app_with(|s| {
        s.executor.simulated_duration_ms = 3000;
        s.executor.simulated_steps = 30;
    })
    .await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let id = create_ok(&depot, "slow", "1").await.id;
    let op_id = depot.start(id, Download).await.unwrap().id;
    // Wait until it runs, then cancel.
    let deadline = Instant::now() + Duration::from_secs(10);
    while depot.get_operation(op_id).await.unwrap().status != OperationStatus::Running {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cancel(&depot, op_id).await.unwrap().status, 202);
    let done = wait_final(&depot, op_id).await;
    assert_eq!(done.status, OperationStatus::Cancelled, "{done:?}");
    assert_eq!(status_of_package(&depot, id).await, PackageStatus::Created);
    let p = assert_api_problem(cancel(&depot, op_id).await, 409, "operation_finished");
    assert!(detail(&p).contains("cancelled"));
}

/// The stream is read raw, to check its media type and event names; each event's data is read
/// through the wire type.
#[tokio::test]
async fn events_stream_progress_and_close_after_the_final_state() {
    let app = spawn_app_with(|s| {
        s.executor.simulated_duration_ms = 1000;
        s.executor.simulated_steps = 5;
    })
    .await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let p = create_ok(&depot, "streamed", "1").await;
    let op = depot.start(p.id, Download).await.unwrap();
    let res = depot
        .request(Method::GET, &format!("/api/v1/operations/{}/events", op.id))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let body = tokio::time::timeout(Duration::from_secs(15), res.text())
        .await
        .expect("the stream closes")
        .unwrap();
    let frames = depot_client::sse::Parser::new().feed(body.as_bytes());
    let events: Vec<OperationView> = frames
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert!(events.len() >= 3, "{body}");
    assert_eq!(events.last().unwrap().status, OperationStatus::Succeeded);
    let progress: Vec<u8> = events.iter().map(|e| e.progress).collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert!(
        progress.iter().any(|p| (1..100).contains(p)),
        "intermediate progress: {progress:?}"
    );
    assert!(body.contains("event: operation"));
}

#[tokio::test]
async fn packages_are_documented() {
    use utoipa::openapi::path::{HttpMethod, Paths};
    /// The part of the OpenAPI document read here, through utoipa's types (its schemas, which
    /// are Depot's own, do not all read back into them).
    #[derive(serde::Deserialize)]
    struct Doc {
        paths: Paths,
    }
    let app = spawn_app().await;
    let doc = app
        .depot()
        .get::<Doc>("/api/v1/openapi.json")
        .await
        .unwrap()
        .body;
    for (path, name, method) in [
        ("/api/v1/packages", "post", HttpMethod::Post),
        ("/api/v1/packages", "get", HttpMethod::Get),
        ("/api/v1/packages/{id}", "get", HttpMethod::Get),
        ("/api/v1/packages/{id}", "patch", HttpMethod::Patch),
        ("/api/v1/packages/{id}", "delete", HttpMethod::Delete),
        ("/api/v1/packages/{id}/download", "post", HttpMethod::Post),
        ("/api/v1/packages/{id}/activate", "post", HttpMethod::Post),
        ("/api/v1/packages/{id}/deactivate", "post", HttpMethod::Post),
        ("/api/v1/operations", "get", HttpMethod::Get),
        ("/api/v1/operations/{id}", "get", HttpMethod::Get),
        ("/api/v1/operations/{id}/cancel", "post", HttpMethod::Post),
        ("/api/v1/operations/{id}/events", "get", HttpMethod::Get),
    ] {
        assert!(
            doc.paths.get_path_operation(path, method).is_some(),
            "{name} {path} missing"
        );
    }
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_answer() {
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let idem = Uuid::new_v4().to_string();
    let once = CreatePackageRequest::new("once", "1");
    let first = depot.create_package_with(&once, Some(&idem)).await.unwrap();
    assert_eq!(first.status, 201);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let location = first.location.clone().expect("a Location");

    let again = depot.create_package_with(&once, Some(&idem)).await.unwrap();
    assert_eq!(again.status, 201);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.location.as_deref(), Some(location.as_str()));
    assert_eq!(again.body, first.body);
    let all = depot.list_packages(&[q("name", "once")]).await.unwrap();
    assert_eq!(all.items.len(), 1, "created once");

    let p = assert_api_problem(
        depot
            .create_package_with(&CreatePackageRequest::new("other", "1"), Some(&idem))
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(p.errors[0].field, "Idempotency-Key");
    let p = assert_api_problem(
        depot
            .create_package_with(&CreatePackageRequest::new("x", "1"), Some("not-a-uuid"))
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(p.errors[0].field, "Idempotency-Key");

    // Keys belong to the caller: another key holder's identical key is independent.
    let other = app.depot_with_key(&app.writer_key().await);
    let res = other
        .create_package_with(&CreatePackageRequest::new("theirs", "1"), Some(&idem))
        .await
        .unwrap();
    assert_eq!(res.status, 201);
    assert!(res.headers.get("idempotent-replayed").is_none());

    // Operations too: a retried download answers the same operation.
    let op_key = Uuid::new_v4().to_string();
    let start_once = || depot.start_with(first.body.id, Download, Some(&op_key));
    let a = start_once().await.unwrap().body;
    let res = start_once().await.unwrap();
    assert_eq!(res.status, 202);
    assert_eq!(a.id, res.body.id);
}

/// `depot packages …` against a running Depot, as an operator would use it. It follows each
/// operation on its event stream (no polling).
#[tokio::test]
async fn the_command_line_drives_the_lifecycle() {
    let app = spawn_app().await;
    let created = app
        .key_with_scopes(&["packages:read", "packages:write", "operations:read"])
        .await;
    let (key_id, key) = (created.api_key.id, created.key);
    let id = cli_lifecycle(&app, &key).await;
    let out = cli(&app, &key, &["list", "--status", "active"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("cli-pkg"));
    // A refused transition exits 2 with the problem's detail.
    let out = cli(&app, &key, &["download", &id.to_string()]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_transition"));
    let routes = routes_used(&app, key_id, 5).await;
    let count = |route: &str| routes.iter().filter(|r| *r == route).count();
    assert_eq!(count("/api/v1/operations/{id}/events"), 2, "{routes:?}");
    assert_eq!(
        count("/api/v1/operations/{id}"),
        0,
        "no polling: {routes:?}"
    );
}

/// `depot packages show NAME`, `depot packages rollback NAME` and `depot packages prune NAME`.
#[tokio::test]
async fn the_command_line_shows_a_name_and_rolls_it_back() {
    let app = spawn_app().await;
    let key = app
        .key_with_scopes(&["packages:read", "packages:write", "operations:read"])
        .await
        .key;
    let first = cli_lifecycle(&app, &key).await;
    let depot = app.depot_with_key(&key);
    let second = create_ok(&depot, "cli-pkg", "0.2").await;
    run_op(&depot, second.id, Download).await;
    run_op(&depot, second.id, Activate).await;
    let out = cli(&app, &key, &["show", "cli-pkg"]).await;
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert!(shown.contains("active    0.2"), "{shown}");
    assert!(shown.contains("previous  0.1"), "{shown}");
    let out = cli(&app, &key, &["rollback", "cli-pkg"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        status_of_package(&depot, first).await,
        PackageStatus::Active
    );
    assert_eq!(
        status_of_package(&depot, second.id).await,
        PackageStatus::Downloaded
    );
    let out = cli(&app, &key, &["show", "no-such-name"]).await;
    assert_eq!(out.status.code(), Some(2));

    // `depot packages prune NAME --keep N [--dry-run]`: 0.4 is kept, 0.2 is the previous
    // version and 0.1 the active one, so 0.3 goes.
    let mut later = vec![];
    for version in ["0.3", "0.4"] {
        let p = create_ok(&depot, "cli-pkg", version).await;
        run_op(&depot, p.id, Download).await;
        later.push(p);
    }
    let out = cli(
        &app,
        &key,
        &["prune", "cli-pkg", "--keep", "1", "--dry-run"],
    )
    .await;
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert!(
        listed.contains("1 version(s)") && listed.contains(&later[0].id.to_string()),
        "{listed}"
    );
    assert_eq!(
        status_of_package(&depot, later[0].id).await,
        PackageStatus::Downloaded
    );
    let out = cli(&app, &key, &["prune", "cli-pkg", "--keep", "1"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        status_of_package(&depot, later[0].id).await,
        PackageStatus::Created
    );
    assert_eq!(
        status_of_package(&depot, later[1].id).await,
        PackageStatus::Downloaded
    );
}

/// When the server gives no event stream (all taken), the command line polls instead.
#[tokio::test]
async fn the_command_line_polls_when_no_event_stream_is_free() {
    let app = spawn_app_with(|s| s.operations.max_event_streams = 0).await;
    let created = app
        .key_with_scopes(&["packages:read", "packages:write", "operations:read"])
        .await;
    cli_lifecycle(&app, &created.key).await;
    let routes = routes_used(&app, created.api_key.id, 5).await;
    assert!(
        routes.iter().any(|r| r == "/api/v1/operations/{id}"),
        "{routes:?}"
    );
}

pub async fn cli(app: &TestApp, key: &str, args: &[&str]) -> std::process::Output {
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
async fn cli_lifecycle(app: &TestApp, key: &str) -> Uuid {
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
    let created: PackageView = serde_json::from_slice(&out.stdout).unwrap();
    for kind in ["download", "activate"] {
        let out = cli(app, key, &[kind, &created.id.to_string()]).await;
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let depot = app.depot_with_key(key);
    assert_eq!(
        status_of_package(&depot, created.id).await,
        PackageStatus::Active
    );
    created.id
}

/// The route templates in a key's usage log, once it holds at least `at_least` records (the
/// log is written in batches).
async fn routes_used(app: &TestApp, key_id: Uuid, at_least: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let usage = app
            .admin_depot()
            .api_key_usage_with(key_id, &[q("limit", 200)])
            .await
            .unwrap();
        let routes: Vec<String> = usage.items.into_iter().map(|r| r.route).collect();
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
    let depot = app.depot_with_key(&app.writer_key().await);
    let p = depot
        .create_package(&CreatePackageRequest::new("cached", "1"))
        .await
        .unwrap();
    let get = async || depot.get_package(p.id).await.unwrap().body;
    let list = async || {
        depot
            .list_packages(&[q("name", "cached")])
            .await
            .unwrap()
            .items
    };
    for _ in 0..3 {
        assert_eq!(get().await.status, PackageStatus::Created);
        assert_eq!(list().await[0].status, PackageStatus::Created);
    }
    // A write by the API…
    let patch = PatchPackageRequest {
        description: Some(Some("changed".into())),
        ..Default::default()
    };
    let res = depot.patch_package(p.id, &patch, None).await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(get().await.description.as_deref(), Some("changed"));
    assert_eq!(list().await[0].description.as_deref(), Some("changed"));
    // …and one by the worker (the operation's status change).
    let op = depot.start(p.id, Download).await.unwrap();
    wait_final(&depot, op.id).await;
    assert_eq!(get().await.status, PackageStatus::Downloaded);
    assert_eq!(list().await[0].status, PackageStatus::Downloaded);

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
    use futures::StreamExt;
    let app = spawn_app_with(|s| {
        s.executor.simulated_duration_ms = 1000;
        s.executor.simulated_steps = 2;
        s.operations.max_event_streams = 1;
    })
    .await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let p = create_ok(&depot, "capped", "1").await;
    let op = depot.start(p.id, Download).await.unwrap();
    let first = depot.operation_events(op.id).await.unwrap();
    let second = depot.operation_events(op.id).await.map(|_| ());
    assert_api_problem(second, 503, "service_unavailable");
    // The first stream ends with the operation, and its slot is free again.
    tokio::time::timeout(Duration::from_secs(15), first.collect::<Vec<_>>())
        .await
        .expect("the stream closes");
    assert!(depot.operation_events(op.id).await.is_ok());
}

/// The review: one principal could hold every stream slot, and a slot came free ~15 s after its
/// client had left. A principal holds at most its share (429 past it, while others still get
/// theirs), and a closed connection frees its slot at once.
#[tokio::test]
async fn event_streams_are_shared_out_and_freed_when_the_client_leaves() {
    let app = spawn_app_with(|s| {
        // Long enough that no stream ends with its operation during the test.
        s.executor.simulated_duration_ms = 120_000;
        s.executor.simulated_steps = 2;
        s.operations.max_event_streams = 3;
        s.operations.max_event_streams_per_principal = 2;
    })
    .await;
    let a = app.depot_with_key(&app.writer_key().await);
    let b = app.depot_with_key(&app.writer_key().await);
    let p = create_ok(&a, "followed", "1").await;
    let op = a.start(p.id, Download).await.unwrap();
    let a1 = a.operation_events(op.id).await.unwrap();
    let _a2 = a.operation_events(op.id).await.unwrap();
    let refused = a.operation_events(op.id).await.map(|_| ());
    assert_api_problem(refused, 429, "rate_limited");
    let _b1 = b.operation_events(op.id).await.unwrap();
    let full = b.operation_events(op.id).await.map(|_| ());
    assert_api_problem(full, 503, "service_unavailable");
    drop(a1);
    let started = std::time::Instant::now();
    let again = loop {
        match a.operation_events(op.id).await {
            Ok(stream) => break stream,
            Err(e) if started.elapsed() < Duration::from_secs(3) => {
                assert_eq!(e.status_and_code(), Some((429, "rate_limited")), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the closed stream's slot is still held after 3 s: {e}"),
        }
    };
    drop(again);
}

/// A stream ends at `operations.max_event_stream_seconds`, however long its operation runs.
#[tokio::test]
async fn an_event_stream_ends_at_its_time_limit() {
    use futures::StreamExt;
    let app = spawn_app_with(|s| {
        s.executor.simulated_duration_ms = 120_000;
        s.executor.simulated_steps = 2;
        s.operations.max_event_stream_seconds = 1;
    })
    .await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let p = create_ok(&depot, "long", "1").await;
    let op = depot.start(p.id, Download).await.unwrap();
    let events = depot.operation_events(op.id).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), events.collect::<Vec<_>>())
        .await
        .expect("the stream ends at its time limit");
    assert!(!seen.is_empty(), "the current state came first");
    assert!(!depot.get_operation(op.id).await.unwrap().status.is_final());
}

/// Concurrent requests are coalesced into shared statements under load (group commit); each
/// still gets its own answer: duplicates within one burst conflict, one start per package wins
/// and the rest name it, a forbidden transition and a missing package are told apart.
#[tokio::test]
async fn a_burst_of_concurrent_requests_gets_one_right_answer_each() {
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    // 30 distinct packages and 6 copies of one more, all at once.
    let requests: Vec<CreatePackageRequest> = (0..30)
        .map(|i| CreatePackageRequest::new(format!("burst-{i}"), "1.0"))
        .chain((0..6).map(|_| CreatePackageRequest::new("burst-dup", "1.0")))
        .collect();
    let answers =
        futures::future::join_all(requests.iter().map(|r| depot.create_package_with(r, None)))
            .await;
    let mut ids = Vec::new();
    let mut dup_created = 0;
    for (request, answer) in requests.iter().zip(answers) {
        let status = status_of(&answer);
        if request.name == "burst-dup" {
            match (status, answer) {
                (201, Ok(_)) => dup_created += 1,
                (409, Err(e)) => {
                    assert_eq!(e.status_and_code(), Some((409, "duplicate_package")), "{e}")
                }
                other => panic!("{other:?}"),
            }
        } else {
            let created = answer.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(status, 201, "{created:?}");
            assert_eq!(created.body.name, request.name);
            ids.push(created.body.id);
        }
    }
    assert_eq!(dup_created, 1, "exactly one copy is created");

    // One burst: 8 downloads each of ids[0] and ids[1], interleaved in both orders (batches
    // holding both must not deadlock), one download of each other package, an activate of a
    // created package and a download of a package that does not exist.
    let missing = Uuid::now_v7();
    let mut calls: Vec<(Uuid, OperationKind)> = [0, 1, 1, 0]
        .iter()
        .cycle()
        .take(16)
        .map(|&i| (ids[i], Download))
        .collect();
    calls.extend(ids[2..].iter().map(|&id| (id, Download)));
    calls.push((ids[2], Activate));
    calls.push((missing, Download));
    let answers = futures::future::join_all(
        calls
            .iter()
            .map(|&(id, kind)| depot.start_with(id, kind, None)),
    )
    .await;
    let hot = |id: &Uuid| ids[..2].contains(id);
    let mut winners: std::collections::HashMap<Uuid, Vec<Uuid>> = Default::default();
    let mut busy_named: Vec<(Uuid, String)> = Vec::new();
    let mut started = Vec::new();
    for (&(id, kind), answer) in calls.iter().zip(answers) {
        let status = status_of(&answer);
        match (hot(&id), kind, status, answer) {
            (true, Download, 202, Ok(op)) => winners.entry(id).or_default().push(op.body.id),
            (true, Download, 409, Err(e)) => {
                assert_eq!(
                    e.status_and_code(),
                    Some((409, "operation_in_progress")),
                    "{e}"
                );
                busy_named.push((id, e.problem().unwrap().detail.clone().unwrap()));
            }
            (false, Download, 202, Ok(op)) => started.push(op.body.id),
            (false, Download, 404, Err(e)) => {
                assert_eq!(e.status_and_code(), Some((404, "not_found")), "{e}")
            }
            // The activate races the download of the same package: refused either way.
            (false, Activate, 409, Err(e)) => assert!(
                [
                    Some((409, "invalid_transition")),
                    Some((409, "operation_in_progress"))
                ]
                .contains(&e.status_and_code()),
                "{e}"
            ),
            other => panic!("unexpected answer {other:?}"),
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
            detail.contains(&winners[id][0].to_string()),
            "the 409 names the running operation: {detail}"
        );
    }
    assert_eq!(started.len(), ids.len() - 2);
    for &op in winners.values().flatten().chain(&started) {
        let done = wait_final(&depot, op).await;
        assert_eq!(done.status, OperationStatus::Succeeded, "{done:?}");
    }
    for &id in &ids {
        let p = depot.get_package(id).await.unwrap().body;
        assert_eq!(p.status, PackageStatus::Downloaded, "{p:?}");
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
    let depot = app.depot_with_key(&app.writer_key().await);
    for round in 0..4 {
        let package_id = create_ok(&depot, &format!("race-{round}"), "1.0").await.id;
        let before = PackageRepository::get(&repo, package_id)
            .await
            .unwrap()
            .revision;
        let res = depot.start_with(package_id, Download, None).await.unwrap();
        assert_eq!(res.status, 202);
        let op_id = res.body.id;
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
        let package = PackageRepository::get(&repo, claimed.package_id.unwrap())
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
    let package_id = create_ok(&depot, "race-edited", "1.0").await.id;
    let op = depot.start(package_id, Download).await.unwrap();
    let claimed = repo
        .claim(op.id, chrono::Utc::now())
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
    let depot = app.depot_with_key(&app.writer_key().await);
    for round in 0..3 {
        let mut ids = Vec::new();
        for i in 0..12 {
            ids.push(
                create_ok(&depot, &format!("del-race-{round}-{i}"), "1.0")
                    .await
                    .id,
            );
        }
        let victim = ids[round * 3];
        let starts =
            futures::future::join_all(ids.iter().map(|&id| depot.start_with(id, Download, None)));
        let (deleted, answers) = tokio::join!(delete(&depot, victim), starts);
        let deleted = status_of(&deleted);
        for (&id, answer) in ids.iter().zip(answers) {
            let status = status_of(&answer);
            let body = format!("{answer:?}");
            if id == victim {
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

/// The review's substitution: any `packages:write` holder could PATCH another's `source_url`
/// and `sha256` before its download, delete it, or cancel its operations. A name belongs to
/// whoever created its first version; others get 403 `not_owner`.
#[tokio::test]
async fn only_a_names_owner_or_packages_admin_manages_it() {
    use depot_client::wire::{OwnerKind, RotateRequest};
    let app = spawn_app_with(|s| s.executor.simulated_duration_ms = 3000).await;
    let writer = ["packages:read", "packages:write", "operations:read"];
    let alice = app.key_with_scopes(&writer).await;
    let mallory = app.key_with_scopes(&writer).await;
    let (alice_depot, mallory_depot) = (
        app.depot_with_key(&alice.key),
        app.depot_with_key(&mallory.key),
    );
    let p = create_ok(&alice_depot, "team-tool", "1.0.0").await;
    let owner = p.owner.expect("an owner");
    assert_eq!(
        (owner.kind, owner.id),
        (OwnerKind::ApiKey, Some(alice.api_key.id))
    );

    let swap = PatchPackageRequest {
        source_url: Some(Some("https://evil.example/tool.tgz".into())),
        sha256: Some(Some("ab".repeat(32))),
        ..Default::default()
    };
    let not_owner = |r: Result<_, Error>| assert_api_problem(r, 403, "not_owner");
    not_owner(
        mallory_depot
            .patch_package(p.id, &swap, None)
            .await
            .map(|_| ()),
    );
    not_owner(mallory_depot.delete_package(p.id, None).await);
    not_owner(mallory_depot.start(p.id, Download).await.map(|_| ()));
    not_owner(
        mallory_depot
            .create_package(&CreatePackageRequest::new("team-tool", "1.0.1"))
            .await
            .map(|_| ()),
    );
    let op = alice_depot.start(p.id, Download).await.unwrap();
    not_owner(mallory_depot.cancel_operation(op.id).await.map(|_| ()));
    // Reads stay open to packages:read.
    assert_eq!(mallory_depot.get_package(p.id).await.unwrap().body.id, p.id);
    // Nothing of Alice's changed.
    let now = alice_depot.get_package(p.id).await.unwrap().body;
    assert_eq!((now.source_url, now.sha256), (None, None));

    // The key's rotated successor keeps the ownership (the lineage owns, not the key id).
    let successor = app
        .admin_depot()
        .rotate_api_key(alice.api_key.id, &RotateRequest::default(), None)
        .await
        .unwrap();
    let heir = app.depot_with_key(&successor.key);
    heir.cancel_operation(op.id).await.unwrap();
    wait_final(&heir, op.id).await;
    create_ok(&heir, "team-tool", "1.0.1").await;
    // packages:admin manages every name; its versions keep the name's owner.
    let admin = app
        .key_with_scopes(&["packages:read", "packages:write", "packages:admin"])
        .await;
    let admin_depot = app.depot_with_key(&admin.key);
    let v2 = create_ok(&admin_depot, "team-tool", "2.0.0").await;
    assert_eq!(v2.owner, Some(owner));
    admin_depot.delete_package(p.id, None).await.unwrap();
}

/// Registration is off by default; switched on (and for OIDC sign-ins) an account is a
/// `reader`, which cannot create packages until an administrator grants more.
#[tokio::test]
async fn registration_is_off_by_default_and_gives_a_reader() {
    use depot_client::wire::CredentialsRequest;
    let closed = spawn_app_with(|s| {
        s.accounts.registration_enabled = depot_api::settings::Settings::defaults()
            .accounts
            .registration_enabled
    })
    .await;
    let credentials = CredentialsRequest {
        email: "reader@example.com".into(),
        password: "correct horse battery staple".into(),
    };
    assert_api_problem(
        closed.depot().register(&credentials).await,
        403,
        "registration_disabled",
    );
    let app = spawn_app().await;
    app.depot().register(&credentials).await.unwrap();
    let tokens = app.depot().login(&credentials).await.unwrap();
    let reader = app.depot().with_bearer(tokens.access_token);
    assert_api_problem(
        reader
            .create_package(&CreatePackageRequest::new("x", "1"))
            .await,
        403,
        "insufficient_scope",
    );
    reader.list_packages(&[]).await.unwrap();
}

/// The review's rewrite of verified integrity: `sha256`, `size_bytes`, `source_url` (and name,
/// version) could be PATCHed on a downloaded or active package. They freeze once it first
/// leaves Created (409 `field_frozen` naming the field); the description stays editable.
#[tokio::test]
async fn verified_fields_freeze_once_a_package_leaves_created() {
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let p = create_ok(&depot, "frozen", "1.0.0").await;
    let op = depot.start(p.id, Download).await.unwrap();
    assert_eq!(
        wait_final(&depot, op.id).await.status,
        OperationStatus::Succeeded
    );
    for (field, patch) in [
        (
            "sha256",
            PatchPackageRequest {
                sha256: Some(Some("ab".repeat(32))),
                ..Default::default()
            },
        ),
        (
            "size_bytes",
            PatchPackageRequest {
                size_bytes: Some(Some(1)),
                ..Default::default()
            },
        ),
        (
            "source_url",
            PatchPackageRequest {
                source_url: Some(Some("https://example.com/b".into())),
                ..Default::default()
            },
        ),
        (
            "version",
            PatchPackageRequest {
                version: Some("1.0.1".into()),
                ..Default::default()
            },
        ),
        (
            "name",
            PatchPackageRequest {
                name: Some("other".into()),
                ..Default::default()
            },
        ),
    ] {
        let res = depot.patch_package(p.id, &patch, None).await;
        let problem = assert_api_problem(res, 409, "field_frozen");
        assert!(detail(&problem).contains(field), "{problem:?}");
    }
    let described = PatchPackageRequest {
        description: Some(Some("notes may change".into())),
        ..Default::default()
    };
    depot.patch_package(p.id, &described, None).await.unwrap();
    // A frozen field sent with the value it has is no change (a client PATCHing the whole
    // object): accepted.
    let same = PatchPackageRequest {
        name: Some("frozen".into()),
        version: Some("1.0.0".into()),
        sha256: Some(None),
        description: Some(Some("and again".into())),
        ..Default::default()
    };
    depot.patch_package(p.id, &same, None).await.unwrap();
}

/// The review's finding: idempotent replays skipped authentication (revoked keys got their
/// stored answers replayed). The access check runs first; records are per principal.
#[tokio::test]
async fn a_replay_needs_the_credentials_to_be_valid_now() {
    let app = spawn_app().await;
    let writer = app
        .key_with_scopes(&["packages:read", "packages:write"])
        .await;
    let depot = app.depot_with_key(&writer.key);
    let key = Uuid::new_v4().to_string();
    let request = CreatePackageRequest::new("replayed", "1");
    let first = depot
        .create_package_with(&request, Some(&key))
        .await
        .unwrap();
    assert_eq!(first.status, 201);
    let again = depot
        .create_package_with(&request, Some(&key))
        .await
        .unwrap();
    assert_eq!(again.headers["idempotent-replayed"], "true");
    app.admin_depot()
        .revoke_api_key(writer.api_key.id, None)
        .await
        .unwrap();
    let after = depot.create_package_with(&request, Some(&key)).await;
    assert_api_problem(after, 401, "key_revoked");
    // Another principal's request with the same key is its own request, not a replay (and the
    // name is not theirs).
    let other = app.depot_with_key(&app.writer_key().await);
    let theirs = other.create_package_with(&request, Some(&key)).await;
    assert_api_problem(theirs, 403, "not_owner");
}

/// The review's bypass: `POST /api/v1/%61uth/login` with an Idempotency-Key stored tokens and
/// a hash of the password-bearing body. Which routes take part is decided by the matched route:
/// sign-in never does, however its path is spelled.
#[tokio::test]
async fn sign_in_is_never_stored_for_replay_however_its_path_is_spelled() {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let app = spawn_app().await;
    let body =
        serde_json::json!({"email": "eve@example.com", "password": "correct horse battery staple"});
    let depot = app.depot();
    depot
        .send::<serde_json::Value>(
            depot
                .request(Method::POST, "/api/v1/auth/register")
                .json(&body),
        )
        .await
        .unwrap();
    let key = Uuid::new_v4().to_string();
    for path in ["/api/v1/%61uth/login", "/api/v1/auth/login"] {
        let res = app
            .client
            .post(app.url(path))
            .header("Idempotency-Key", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.headers().get("idempotent-replayed").is_none());
    }
    let db = Database::connect(&app.settings.database.url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT owner FROM idempotency_keys",
        ))
        .await
        .unwrap();
    assert!(rows.is_empty(), "{} idempotency records", rows.len());
    db.close().await.ok();
}

/// From the security review: the owner (or a leaked owner key) deleted the active, verified
/// `tool 1.0` and registered `tool 1.0` again with other bytes. The active version cannot be
/// deleted (deactivate first; its link would dangle), and a deleted downloaded version is
/// retired: `name@version` names one artifact for good.
#[tokio::test]
async fn a_verified_version_cannot_be_swapped_by_deleting_and_registering_it_again() {
    let app = spawn_app().await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let p = create_ok(&depot, "swap", "1.0").await;
    for kind in [Download, Activate] {
        let op = depot.start(p.id, kind).await.unwrap();
        assert_eq!(
            wait_final(&depot, op.id).await.status,
            OperationStatus::Succeeded
        );
    }
    assert_api_problem(
        depot.delete_package(p.id, None).await,
        409,
        "package_active",
    );
    let op = depot.start(p.id, Deactivate).await.unwrap();
    wait_final(&depot, op.id).await;
    depot.delete_package(p.id, None).await.unwrap();
    let again = depot
        .create_package(&CreatePackageRequest {
            source_url: Some("https://evil.example/swap.tgz".into()),
            ..CreatePackageRequest::new("swap", "1.0")
        })
        .await;
    assert_api_problem(again, 409, "version_retired");
    create_ok(&depot, "swap", "1.0.1").await;
}

/// An operation claimed by a worker that then vanished (its message gone too) is ended by the
/// reaper once its lease runs out: failed `abandoned`, the package free again.
#[tokio::test]
async fn the_reaper_ends_an_operation_whose_worker_vanished() {
    use depot_packages::ports::OperationRepository;
    let app = spawn_app_with(|s| {
        s.worker.embedded = false;
        s.operations.lease_seconds = 1;
    })
    .await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let p = create_ok(&depot, "orphaned", "1").await;
    let op = depot.start(p.id, Download).await.unwrap();
    let db = sea_orm::Database::connect(&app.settings.database.url)
        .await
        .unwrap();
    let repo = depot_store::SeaOrmPackageRepository::new(db);
    repo.claim(op.id, chrono::Utc::now()).await.unwrap();
    let started = Instant::now();
    let ended = loop {
        let o = depot.get_operation(op.id).await.unwrap();
        if o.status.is_final() {
            break o;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never reaped: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ended.status, OperationStatus::Failed);
    assert_eq!(ended.error.unwrap().code, "abandoned");
    // The package is free for another try.
    assert_eq!(
        depot.start(p.id, Download).await.unwrap().status,
        OperationStatus::Pending
    );
}
