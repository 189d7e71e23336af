//! The `http` executor against a local HTTP server started by the test (never the internet).

use crate::helpers::{spawn_app_with, wait_final};
use actix_web::{App, HttpResponse, HttpServer, web};
use depot_client::Client;
use depot_client::wire::{
    CreatePackageRequest, OperationKind, OperationStatus, OperationView, PackageStatus,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

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

/// Starts an operation, which must answer 202, and waits for its end.
async fn lifecycle_op(depot: &Client, id: Uuid, kind: OperationKind) -> OperationView {
    let res = depot.start_with(id, kind, None).await.unwrap();
    assert_eq!(res.status, 202);
    wait_final(depot, res.body.id).await
}

/// The operation's failure code, if it failed.
fn error_code(op: &OperationView) -> Option<&str> {
    op.error.as_ref().map(|e| e.code.as_str())
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
    let depot = app.depot_with_key(&app.writer_key().await);
    let p = depot
        .create_package(&CreatePackageRequest {
            source_url: Some(format!("{base}/artifact.tgz")),
            sha256: Some(sha256_hex(ARTIFACT)),
            size_bytes: Some(ARTIFACT.len() as i64),
            ..CreatePackageRequest::new("@scope/tool", "2.0.0")
        })
        .await
        .unwrap();
    let id = p.id.to_string();

    let op = lifecycle_op(&depot, p.id, OperationKind::Download).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
    let artifact = storage.path().join("packages").join(&id).join("artifact");
    assert_eq!(std::fs::read(&artifact).unwrap(), ARTIFACT);

    let op = lifecycle_op(&depot, p.id, OperationKind::Activate).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
    let link = storage.path().join("active").join("%40scope%2Ftool");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        storage.path().join("packages").join(&id)
    );

    let op = lifecycle_op(&depot, p.id, OperationKind::Deactivate).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
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
    let depot = app.depot_with_key(&app.writer_key().await);
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
        let p = depot
            .create_package(&CreatePackageRequest {
                source_url: Some(url),
                sha256: Some(sha),
                ..CreatePackageRequest::new("bad", version)
            })
            .await
            .unwrap();
        let op = lifecycle_op(&depot, p.id, OperationKind::Download).await;
        assert_eq!(op.status, OperationStatus::Failed, "{op:?}");
        assert_eq!(error_code(&op), Some(code), "{op:?}");
        let now = depot.get_package(p.id).await.unwrap().body;
        assert_eq!(now.status, PackageStatus::Created);
        assert!(
            !storage
                .path()
                .join("packages")
                .join(p.id.to_string())
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
    let depot = app.depot_with_key(&app.writer_key().await);
    // No size_bytes declared: only the limit stops an endless or huge body.
    let p = depot
        .create_package(&CreatePackageRequest {
            source_url: Some(format!("{base}/artifact.tgz")),
            ..CreatePackageRequest::new("big", "1")
        })
        .await
        .unwrap();
    let op = lifecycle_op(&depot, p.id, OperationKind::Download).await;
    assert_eq!(op.status, OperationStatus::Failed, "{op:?}");
    assert_eq!(error_code(&op), Some("too_large"), "{op:?}");
    let dir = storage.path().join("packages").join(p.id.to_string());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "no partial file is left: {left:?}");
}
