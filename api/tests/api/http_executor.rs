//! The `http` executor against a local HTTP server started by the test (never the internet).

use crate::helpers::wait_final_json as wait_final;
use crate::helpers::{TestApp, spawn_app_with};
use actix_web::{App, HttpResponse, HttpServer, web};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ARTIFACT: &[u8] = b"a package's bytes, streamed in chunks by the test server\n";

/// Serves `/artifact.tgz` (the bytes above) and `/broken` (a 404) on a random port.
fn artifact_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| {
        App::new()
            .route(
                "/artifact.tgz",
                web::get().to(|| async { HttpResponse::Ok().body(ARTIFACT) }),
            )
            .route(
                "/broken",
                web::get().to(|| async { HttpResponse::NotFound().finish() }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn lifecycle_op(app: &TestApp, key: &str, id: &str, kind: &str) -> Value {
    let res = app
        .with_key(Method::POST, &format!("/api/v1/packages/{id}/{kind}"), key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let op: Value = res.json().await.unwrap();
    wait_final(app, key, op["id"].as_str().unwrap()).await
}

#[tokio::test]
async fn downloads_verifies_activates_and_deactivates_on_disk() {
    let base = artifact_server();
    let storage = tempfile::tempdir().unwrap();
    let dir = storage.path().to_owned();
    let app = spawn_app_with(move |s| {
        s.executor.kind = depot_api::settings::ExecutorKind::Http;
        s.executor.storage_dir = dir;
    })
    .await;
    let key = app.writer_key().await;
    let res = app
        .with_key(Method::POST, "/api/v1/packages", &key)
        .json(&json!({"name": "@scope/tool", "version": "2.0.0", "source_url": format!("{base}/artifact.tgz"),
                      "sha256": sha256_hex(ARTIFACT), "size_bytes": ARTIFACT.len()}))
        .send()
        .await
        .unwrap();
    let p: Value = res.json().await.unwrap();
    let id = p["id"].as_str().unwrap();

    let op = lifecycle_op(&app, &key, id, "download").await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let artifact = storage.path().join("packages").join(id).join("artifact");
    assert_eq!(std::fs::read(&artifact).unwrap(), ARTIFACT);

    let op = lifecycle_op(&app, &key, id, "activate").await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let link = storage.path().join("active").join("%40scope%2Ftool");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        storage.path().join("packages").join(id)
    );

    let op = lifecycle_op(&app, &key, id, "deactivate").await;
    assert_eq!(op["status"], "succeeded", "{op}");
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the active link is gone"
    );
}

#[tokio::test]
async fn a_bad_checksum_or_a_404_fails_the_operation_and_keeps_the_status() {
    let base = artifact_server();
    let storage = tempfile::tempdir().unwrap();
    let dir = storage.path().to_owned();
    let app = spawn_app_with(move |s| {
        s.executor.kind = depot_api::settings::ExecutorKind::Http;
        s.executor.storage_dir = dir;
    })
    .await;
    let key = app.writer_key().await;
    for (version, url, sha, code) in [
        (
            "1",
            format!("{base}/artifact.tgz"),
            "0".repeat(64),
            "checksum_mismatch",
        ),
        (
            "2",
            format!("{base}/broken"),
            sha256_hex(ARTIFACT),
            "download_failed",
        ),
    ] {
        let p: Value = app
            .with_key(Method::POST, "/api/v1/packages", &key)
            .json(&json!({"name": "bad", "version": version, "source_url": url, "sha256": sha}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = p["id"].as_str().unwrap();
        let op = lifecycle_op(&app, &key, id, "download").await;
        assert_eq!(op["status"], "failed", "{op}");
        assert_eq!(op["error"]["code"], code, "{op}");
        let now: Value = app
            .get_with_key(&format!("/api/v1/packages/{id}"), &key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(now["status"], "created");
        assert!(
            !storage
                .path()
                .join("packages")
                .join(id)
                .join("artifact")
                .exists()
        );
    }
}

#[tokio::test]
async fn a_download_stops_at_the_configured_maximum_size() {
    let base = artifact_server();
    let storage = tempfile::tempdir().unwrap();
    let dir = storage.path().to_owned();
    let app = spawn_app_with(move |s| {
        s.executor.kind = depot_api::settings::ExecutorKind::Http;
        s.executor.storage_dir = dir;
        s.executor.max_download_bytes = 16;
    })
    .await;
    let key = app.writer_key().await;
    // No size_bytes declared: only the limit stops an endless or huge body.
    let p: Value = app
        .with_key(Method::POST, "/api/v1/packages", &key)
        .json(&json!({"name": "big", "version": "1", "source_url": format!("{base}/artifact.tgz")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = p["id"].as_str().unwrap();
    let op = lifecycle_op(&app, &key, id, "download").await;
    assert_eq!(op["status"], "failed", "{op}");
    assert_eq!(op["error"]["code"], "too_large", "{op}");
    let dir = storage.path().join("packages").join(id);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no partial file is left: {left:?}");
}
