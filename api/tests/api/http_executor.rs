//! The `http` executor against a local HTTP server started by the test (never the internet).

use crate::helpers::{spawn_app_with, wait_final};
use actix_web::{App, HttpResponse, HttpServer, web};
use depot_client::Client;
use depot_client::wire::{
    CreatePackageRequest, OperationKind, OperationStatus, OperationView, PackageStatus,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const ARTIFACT: &[u8] = b"a package's bytes, streamed in chunks by the test server\n";

/// Serves `/artifact.tgz` (the bytes above) and `/broken` (a 404) on a random port.
pub fn artifact_server() -> String {
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
            // Some bytes, then the connection breaks.
            .route(
                "/truncated",
                web::get().to(|| async {
                    // The first chunk reaches the client before the connection breaks.
                    let chunks = futures::stream::unfold(0, |step| async move {
                        match step {
                            0 => Some((Ok(web::Bytes::from_static(b"the first half")), 1)),
                            1 => {
                                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                                Some((Err(std::io::Error::other("the server went away")), 2))
                            }
                            _ => None,
                        }
                    });
                    HttpResponse::Ok().streaming(chunks)
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
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
        s.artifacts.url = Some(format!("file://{}", dir.display()));
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
    let link = storage
        .path()
        .join("active")
        .join(depot_api::packages::executor::link_name("@scope/tool"));
    // Relative: it resolves from anywhere, whatever the storage directory's spelling.
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::path::Path::new("../packages").join(&id)
    );
    assert_eq!(std::fs::read(link.join("artifact")).unwrap(), ARTIFACT);

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
        s.artifacts.url = Some(format!("file://{}", dir.display()));
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
        s.artifacts.url = Some(format!("file://{}", dir.display()));
        s.artifacts.max_bytes = Some(16);
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

/// A loopback server that counts its connections and answers `/redirect` with a 302 to
/// `location` and anything else with the artifact.
fn counting_server(
    location: Option<String>,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let server = HttpServer::new(move || {
        let counter = counter.clone();
        let location = location.clone();
        App::new().default_service(web::to(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let location = location.clone();
            async move {
                match location {
                    Some(to) => HttpResponse::Found()
                        .insert_header(("location", to))
                        .finish(),
                    None => HttpResponse::Ok().body(ARTIFACT),
                }
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (port, hits)
}

/// The review's SSRF: a `packages:write` holder made Depot fetch loopback in several spellings
/// and through a redirect, and read the answer's details back from the operation's error. With
/// the default egress policy no such request leaves Depot, and the error is only a code.
#[tokio::test]
async fn the_default_egress_policy_refuses_internal_destinations_in_every_spelling() {
    use std::sync::atomic::Ordering;
    let (port, hits) = counting_server(None);
    // A first hop the policy allows (`localhost` exempted by name) that redirects inside.
    let (hop, hop_hits) = counting_server(Some(format!("http://127.0.0.1:{port}/internal")));
    let storage = tempfile::tempdir().unwrap();
    let dir = storage.path().to_owned();
    let app = spawn_app_with(move |s| {
        s.executor.kind = depot_api::settings::ExecutorKind::Http;
        s.artifacts.url = Some(format!("file://{}", dir.display()));
        s.egress = Default::default();
        s.egress.allowed_hosts = vec!["localhost".into()];
    })
    .await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let urls = [
        format!("http://127.0.0.1:{port}/artifact.tgz"),
        format!("http://2130706433:{port}/artifact.tgz"),
        format!("http://0x7f.0.0.1:{port}/artifact.tgz"),
        format!("http://[::ffff:127.0.0.1]:{port}/artifact.tgz"),
        format!("http://[::1]:{port}/artifact.tgz"),
        format!("http://localhost:{hop}/redirect"),
    ];
    for (i, url) in urls.iter().enumerate() {
        let p = depot
            .create_package(&CreatePackageRequest {
                source_url: Some(url.clone()),
                ..CreatePackageRequest::new("internal", format!("1.0.{i}"))
            })
            .await
            .unwrap();
        let op = lifecycle_op(&depot, p.id, OperationKind::Download).await;
        assert_eq!(op.status, OperationStatus::Failed, "{url}: {op:?}");
        assert_eq!(
            error_code(&op),
            Some("destination_forbidden"),
            "{url}: {op:?}"
        );
        let detail = &op.error.as_ref().unwrap().detail;
        for leak in [port.to_string(), "127.0.0.1".into(), "loopback".into()] {
            assert!(
                !detail.contains(&leak),
                "{url}: the error names {leak}: {detail}"
            );
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the internal server"
    );
    assert_eq!(
        hop_hits.load(Ordering::SeqCst),
        1,
        "the allowed hop was asked once"
    );
    // Credentials in the URL are refused up front.
    let e = depot
        .create_package(&CreatePackageRequest {
            source_url: Some("https://user:secret@example.com/a.tgz".into()),
            ..CreatePackageRequest::new("internal", "2.0.0")
        })
        .await
        .unwrap_err();
    assert_eq!(e.status_and_code(), Some((422, "validation_failed")));
    assert_eq!(e.problem().unwrap().errors[0].field, "source_url");
}

/// What a remote answered (a checksum, a size, a status, a connection error) never reaches the
/// operation's error: it would make Depot an oracle for whoever chose the URL.
#[tokio::test]
async fn failed_downloads_say_only_what_failed() {
    let base = artifact_server();
    let storage = tempfile::tempdir().unwrap();
    let dir = storage.path().to_owned();
    let app = spawn_app_with(move |s| {
        s.executor.kind = depot_api::settings::ExecutorKind::Http;
        s.artifacts.url = Some(format!("file://{}", dir.display()));
    })
    .await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let actual = sha256_hex(ARTIFACT);
    for (version, url, sha, size, code) in [
        (
            "1",
            format!("{base}/artifact.tgz"),
            Some("0".repeat(64)),
            None,
            "checksum_mismatch",
        ),
        (
            "2",
            format!("{base}/artifact.tgz"),
            None,
            Some(3),
            "size_mismatch",
        ),
        (
            "3",
            format!("{base}/artifact.tgz"),
            None,
            Some(9999),
            "size_mismatch",
        ),
        ("4", format!("{base}/broken"), None, None, "download_failed"),
    ] {
        let p = depot
            .create_package(&CreatePackageRequest {
                source_url: Some(url),
                sha256: sha,
                size_bytes: size,
                ..CreatePackageRequest::new("oracle", version)
            })
            .await
            .unwrap();
        let op = lifecycle_op(&depot, p.id, OperationKind::Download).await;
        assert_eq!(error_code(&op), Some(code), "{op:?}");
        let detail = &op.error.as_ref().unwrap().detail;
        for leak in [
            actual.as_str(),
            &ARTIFACT.len().to_string(),
            "404",
            "Not Found",
            "127.0.0.1",
        ] {
            assert!(!detail.contains(leak), "the error names {leak}: {detail}");
        }
    }
}

/// `storage` as a path relative to the working directory (the default `data/artifacts` is one).
fn relative_to_cwd(storage: &std::path::Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut rel = std::path::PathBuf::new();
    for _ in cwd.components().skip(1) {
        rel.push("..");
    }
    rel.join(storage.strip_prefix("/").unwrap())
}

/// An app on the http executor, its storage directory given relative to the working directory
/// (as the default is: the review found every link dangling then).
async fn http_app(storage: &tempfile::TempDir) -> crate::helpers::TestApp {
    let dir = relative_to_cwd(storage.path());
    assert!(dir.is_relative());
    spawn_app_with(move |s| {
        s.executor.kind = depot_api::settings::ExecutorKind::Http;
        s.artifacts.url = Some(format!("file://{}", dir.display()));
        s.operations.max_attempts = 2;
    })
    .await
}

async fn artifact_package(depot: &Client, base: &str, name: &str, version: &str) -> Uuid {
    depot
        .create_package(&CreatePackageRequest {
            source_url: Some(format!("{base}/artifact.tgz")),
            sha256: Some(sha256_hex(ARTIFACT)),
            ..CreatePackageRequest::new(name, version)
        })
        .await
        .unwrap()
        .id
}

/// The link of a name follows its active version (switching, deactivating), resolves with a
/// relative storage directory, and exists for names whose escaped form is too long for a file
/// name; a failed or interrupted download leaves no partial file; deleting a version removes
/// its files.
#[tokio::test]
async fn the_disk_follows_the_database() {
    let base = artifact_server();
    let storage = tempfile::tempdir().unwrap();
    let app = http_app(&storage).await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let long = "a name with spaces ".repeat(5);
    let cyrillic = "пакет-".repeat(8);
    for name in ["switch", long.trim(), cyrillic.as_str()] {
        let v1 = artifact_package(&depot, &base, name, "1").await;
        let v2 = artifact_package(&depot, &base, name, "2").await;
        for id in [v1, v2] {
            let op = lifecycle_op(&depot, id, OperationKind::Download).await;
            assert_eq!(op.status, OperationStatus::Succeeded, "{name}: {op:?}");
        }
        let link = storage
            .path()
            .join("active")
            .join(depot_api::packages::executor::link_name(name));
        for id in [v1, v2] {
            let op = lifecycle_op(&depot, id, OperationKind::Activate).await;
            assert_eq!(op.status, OperationStatus::Succeeded, "{name}: {op:?}");
            assert_eq!(
                std::fs::read_link(&link).unwrap(),
                std::path::Path::new("../packages").join(id.to_string())
            );
            assert_eq!(std::fs::read(link.join("artifact")).unwrap(), ARTIFACT);
        }
        let op = lifecycle_op(&depot, v2, OperationKind::Deactivate).await;
        assert_eq!(op.status, OperationStatus::Succeeded);
        assert!(
            std::fs::symlink_metadata(&link).is_err(),
            "{name}: no active version, no link"
        );
        // Deleting a version removes its files.
        depot.delete_package(v1, None).await.unwrap();
        assert!(
            !storage
                .path()
                .join("packages")
                .join(v1.to_string())
                .exists()
        );
    }

    let p = depot
        .create_package(&CreatePackageRequest {
            source_url: Some(format!("{base}/truncated")),
            ..CreatePackageRequest::new("cut-short", "1")
        })
        .await
        .unwrap();
    let op = lifecycle_op(&depot, p.id, OperationKind::Download).await;
    assert_eq!(op.status, OperationStatus::Failed, "{op:?}");
    let dir = storage.path().join("packages").join(p.id.to_string());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "partial files left after {} attempts: {left:?}",
        op.attempts
    );
}

fn fsck(app: &crate::helpers::TestApp, storage: &std::path::Path, repair: bool) -> (bool, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_depot"));
    cmd.arg("fsck");
    if repair {
        cmd.arg("--repair");
    }
    let out = cmd
        .env("DATABASE_URL", &app.settings.database.url)
        .env("DEPOT__DATABASE__AUTO_MIGRATE", "false")
        .env("DEPOT__EXECUTOR__KIND", "http")
        .env("DEPOT__EXECUTOR__STORAGE_DIR", storage)
        .env_remove("AMQP_URL")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `depot fsck` reports each kind of drift and changes nothing; `--repair` fixes it all; then
/// the check is clean. (The repair is another process's write: the embedded read cache, which
/// assumes one writer, is off here, as the README says to do or to stop Depot first.)
#[tokio::test]
async fn fsck_reports_drift_and_repairs_it_only_when_asked() {
    let base = artifact_server();
    let storage = tempfile::tempdir().unwrap();
    let dir = relative_to_cwd(storage.path());
    let app = spawn_app_with(move |s| {
        s.executor.kind = depot_api::settings::ExecutorKind::Http;
        s.artifacts.url = Some(format!("file://{}", dir.display()));
        s.packages.read_cache = false;
    })
    .await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let active = artifact_package(&depot, &base, "kept", "1").await;
    let lost = artifact_package(&depot, &base, "lost", "1").await;
    for id in [active, lost] {
        lifecycle_op(&depot, id, OperationKind::Download).await;
    }
    lifecycle_op(&depot, active, OperationKind::Activate).await;
    let (clean, report) = fsck(&app, storage.path(), false);
    assert!(clean, "{report}");

    let root = storage.path();
    std::fs::remove_file(
        root.join("packages")
            .join(lost.to_string())
            .join("artifact"),
    )
    .unwrap();
    // An orphan directory left long ago, and one just made (a package registered after fsck
    // read the list, its upload under way): only the old one is drift.
    let orphan = root.join("packages").join(Uuid::now_v7().to_string());
    std::fs::create_dir_all(&orphan).unwrap();
    std::fs::File::open(&orphan)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    let fresh = root.join("packages").join(Uuid::now_v7().to_string());
    std::fs::create_dir_all(&fresh).unwrap();
    let partial = root
        .join("packages")
        .join(active.to_string())
        .join("artifact.part-x");
    std::fs::write(&partial, b"x").unwrap();
    // Left by a crash an hour ago (a partial file written to recently is an upload or a
    // download in flight, which fsck leaves alone).
    std::fs::File::options()
        .write(true)
        .open(&partial)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    let in_flight = root
        .join("packages")
        .join(active.to_string())
        .join("artifact.part-in-flight");
    std::fs::write(&in_flight, b"y").unwrap();
    std::os::unix::fs::symlink(
        "../packages/nowhere",
        root.join("active").join("%40old-style"),
    )
    .unwrap();
    let link = root
        .join("active")
        .join(depot_api::packages::executor::link_name("kept"));
    std::fs::remove_file(&link).unwrap();

    let (clean, report) = fsck(&app, root, false);
    assert!(!clean, "{report}");
    for expected in [
        "is downloaded but its artifact is missing",
        "belongs to no package",
        "stale partial file",
        "stray link",
        "has an active version",
    ] {
        assert!(
            report.contains(expected),
            "{expected:?} missing from:\n{report}"
        );
    }
    assert!(
        !report.contains("artifact.part-in-flight"),
        "a partial file in flight is no drift:\n{report}"
    );
    assert!(!link.exists(), "a check alone repairs nothing");
    assert_eq!(
        depot.get_package(lost).await.unwrap().body.status,
        PackageStatus::Downloaded
    );

    let (ok, report) = fsck(&app, root, true);
    assert!(ok, "{report}");
    assert!(
        in_flight.exists(),
        "a repair leaves an upload in flight alone"
    );
    assert!(!partial.exists());
    std::fs::remove_file(&in_flight).unwrap();
    assert!(fresh.exists() && !orphan.exists());
    std::fs::remove_dir(&fresh).unwrap();
    assert_eq!(std::fs::read(link.join("artifact")).unwrap(), ARTIFACT);
    assert_eq!(
        depot.get_package(lost).await.unwrap().body.status,
        PackageStatus::Created
    );
    let (clean, report) = fsck(&app, root, false);
    assert!(clean, "{report}");
    // Downloaded again, it verifies the same bytes.
    let op = lifecycle_op(&depot, lost, OperationKind::Download).await;
    assert_eq!(op.status, OperationStatus::Succeeded);
}
