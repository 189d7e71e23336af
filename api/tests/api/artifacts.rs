//! Artifact bytes in and out: `PUT /packages/{id}/artifact` (streamed, verified, nothing kept
//! unless it checks out), `GET`/`HEAD` of it with ranges and conditional requests, and the
//! active version's bytes by name.

use crate::helpers::{TestApp, assert_api_problem, fields, spawn_app, spawn_app_with, wait_final};
use crate::http_executor::sha256_hex;
use depot_client::wire::{CreatePackageRequest, OperationKind, OperationStatus, PackageStatus};
use depot_client::{Client, UploadOptions};
use reqwest::header;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use uuid::Uuid;

const BYTES: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz: an artifact's bytes\n";

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// What the test's storage keeps of a package: its directory's entries on the filesystem
/// (`artifact`, `artifact.part-…`), or on the S3 server (s3s-fs keeps a bucket as a directory,
/// `DEPOT_TEST_S3_ROOT`): `artifact` and `staging/…`.
fn files_of(app: &TestApp, id: Uuid) -> Vec<String> {
    let url = app.settings.artifacts.url.as_deref().unwrap_or_default();
    let dir = if let Some(dir) = url.strip_prefix("file://") {
        PathBuf::from(dir)
    } else if let Some(rest) = url.strip_prefix("s3://") {
        PathBuf::from(std::env::var("DEPOT_TEST_S3_ROOT").expect("DEPOT_TEST_S3_ROOT")).join(rest)
    } else {
        panic!("the tests' artifacts are files or on the test S3 server: {url}")
    };
    let list = |dir: PathBuf| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let dir = dir.join("packages").join(id.to_string());
    let mut names = Vec::new();
    for name in list(dir.clone()) {
        if name == "staging" {
            names.extend(
                list(dir.join("staging"))
                    .into_iter()
                    .map(|n| format!("staging/{n}")),
            );
        } else {
            names.push(name);
        }
    }
    names.sort();
    names
}

/// `files_of` once it settles on `want` (object storage removes staged objects in the
/// background), at most 5 s.
async fn settled(app: &TestApp, id: Uuid, want: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while files_of(app, id) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "kept {:?}, expected {want:?}",
            files_of(app, id)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Artifacts on the S3-compatible server scripts/s3.sh starts, under a prefix of the test's own.
pub fn on_s3(s: &mut depot_api::settings::Settings) {
    let endpoint = std::env::var("DEPOT_TEST_S3_URL")
        .expect("DEPOT_TEST_S3_URL must be set: scripts/test.sh starts an S3-compatible server");
    let bucket = std::env::var("DEPOT_TEST_S3_BUCKET").unwrap_or_else(|_| "depot-test".into());
    s.artifacts.url = Some(format!("s3://{bucket}/{}", Uuid::now_v7().simple()));
    s.artifacts.s3_endpoint = Some(endpoint);
    s.artifacts.s3_allow_http = true;
}

async fn package(depot: &Client, name: &str, declared: Option<&[u8]>) -> Uuid {
    depot
        .create_package(&CreatePackageRequest {
            name: name.into(),
            version: "1.0.0".into(),
            sha256: declared.map(sha256_hex),
            size_bytes: declared.map(|b| b.len() as i64),
            ..Default::default()
        })
        .await
        .unwrap()
        .id
}

fn header_of<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn an_uploaded_artifact_is_verified_kept_and_served_back_with_ranges_and_conditions() {
    served_back(spawn_app().await).await;
}

/// Upload, serve and refuse on S3-compatible object storage, the same as on the filesystem.
#[tokio::test]
#[ignore = "needs an S3-compatible server; run with --include-ignored (scripts/test.sh starts one)"]
async fn object_storage_keeps_serves_and_refuses_artifacts_as_the_filesystem_does() {
    served_back(spawn_app_with(on_s3).await).await;
    checked(
        spawn_app_with(|s| {
            on_s3(s);
            s.artifacts.max_bytes = Some(BYTES.len() as u64);
        })
        .await,
    )
    .await;
}

async fn served_back(app: TestApp) {
    let depot = app.depot().with_api_key(app.writer_key().await);
    let id = package(&depot, "served", Some(BYTES)).await;

    let uploaded = depot
        .upload_artifact(
            id,
            BYTES.to_vec(),
            &UploadOptions {
                sha256: Some(sha(BYTES)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(uploaded.status, 200);
    assert_eq!(uploaded.body.status, PackageStatus::Downloaded);
    assert_eq!(uploaded.body.sha256.as_deref(), Some(&*sha256_hex(BYTES)));
    assert_eq!(uploaded.body.size_bytes, Some(BYTES.len() as i64));
    assert_eq!(
        depot.get_package(id).await.unwrap().body.status,
        PackageStatus::Downloaded
    );
    settled(&app, id, &["artifact"]).await;

    // The whole artifact.
    let etag = format!("\"{}\"", sha256_hex(BYTES));
    let res = depot.artifact(id, &[]).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header_of(&res, "etag"), Some(&*etag));
    assert_eq!(header_of(&res, "accept-ranges"), Some("bytes"));
    assert_eq!(
        header_of(&res, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        header_of(&res, "content-length"),
        Some(&*BYTES.len().to_string())
    );
    assert_eq!(
        header_of(&res, "content-digest"),
        Some(&*depot_client::content_digest(&sha(BYTES)))
    );
    assert_eq!(
        header_of(&res, "content-disposition"),
        Some("attachment; filename=\"served-1.0.0\"; filename*=UTF-8''served-1.0.0")
    );
    assert_eq!(res.bytes().await.unwrap(), BYTES);

    // HEAD: the same headers, no body.
    let res = depot.artifact_head(id, &[]).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        header_of(&res, "content-length"),
        Some(&*BYTES.len().to_string())
    );
    assert_eq!(header_of(&res, "etag"), Some(&*etag));
    assert!(res.bytes().await.unwrap().is_empty());
    let res = depot
        .artifact_head(id, &[(header::RANGE, "bytes=0-1")])
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a HEAD ignores Range");

    // Ranges.
    let n = BYTES.len();
    for (asked, want, content_range) in [
        ("bytes=2-5", &BYTES[2..6], format!("bytes 2-5/{n}")),
        ("bytes=10-", &BYTES[10..], format!("bytes 10-{}/{n}", n - 1)),
        (
            "bytes=-3",
            &BYTES[n - 3..],
            format!("bytes {}-{}/{n}", n - 3, n - 1),
        ),
    ] {
        let res = depot.artifact(id, &[(header::RANGE, asked)]).await.unwrap();
        assert_eq!(res.status(), 206, "{asked}");
        assert_eq!(
            header_of(&res, "content-range"),
            Some(&*content_range),
            "{asked}"
        );
        assert_eq!(
            header_of(&res, "content-length"),
            Some(&*want.len().to_string())
        );
        assert_eq!(
            header_of(&res, "content-digest"),
            None,
            "a part has no digest of the whole"
        );
        assert_eq!(res.bytes().await.unwrap(), want, "{asked}");
    }
    let past = format!("bytes={n}-");
    let refused = depot.artifact(id, &[(header::RANGE, &past)]).await;
    let e = refused.expect_err("416");
    assert_eq!(e.status(), Some(416));
    assert_eq!(
        e.headers()
            .and_then(|h| h.get("content-range"))
            .and_then(|v| v.to_str().ok()),
        Some(&*format!("bytes */{n}"))
    );
    // Several ranges are not served as multipart: the whole artifact comes back.
    let res = depot
        .artifact(id, &[(header::RANGE, "bytes=0-1,4-5")])
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Conditional requests.
    let res = depot
        .artifact(id, &[(header::IF_NONE_MATCH, &etag)])
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(header_of(&res, "etag"), Some(&*etag));
    let res = depot
        .artifact(id, &[(header::IF_NONE_MATCH, "\"something-else\"")])
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = depot
        .artifact(
            id,
            &[(header::RANGE, "bytes=0-0"), (header::IF_RANGE, &etag)],
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 206, "If-Range names the current ETag");
    let res = depot
        .artifact(
            id,
            &[(header::RANGE, "bytes=0-0"), (header::IF_RANGE, "\"old\"")],
        )
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "If-Range names another: the whole artifact"
    );
    assert_eq!(res.bytes().await.unwrap(), BYTES);

    // The bytes of a version are uploaded once.
    assert_api_problem(
        depot
            .upload_artifact(id, BYTES.to_vec(), &UploadOptions::default())
            .await,
        409,
        "invalid_transition",
    );

    // The active version's bytes, by name: 404 until one is active.
    assert_api_problem(depot.active_artifact("served", &[]).await, 404, "not_found");
    let op = depot.start(id, OperationKind::Activate).await.unwrap();
    assert_eq!(
        wait_final(&depot, op.id).await.status,
        OperationStatus::Succeeded
    );
    let res = depot.active_artifact("served", &[]).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header_of(&res, "cache-control"), Some("no-cache"));
    assert_eq!(header_of(&res, "etag"), Some(&*etag));
    assert_eq!(
        header_of(&res, "content-location"),
        Some(&*format!("/api/v1/packages/{id}/artifact"))
    );
    assert_eq!(res.bytes().await.unwrap(), BYTES);
    let res = depot
        .active_artifact("served", &[(header::RANGE, "bytes=0-3")])
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap(), &BYTES[..4]);
}

#[tokio::test]
async fn an_upload_that_does_not_check_out_keeps_nothing_and_names_what_did_not_match() {
    checked(spawn_app_with(|s| s.artifacts.max_bytes = Some(BYTES.len() as u64)).await).await;
}

async fn checked(app: TestApp) {
    let depot = app.depot().with_api_key(app.writer_key().await);
    let id = package(&depot, "checked", Some(BYTES)).await;
    let unchanged = async |app: &TestApp, depot: Client, id: Uuid| {
        let p = depot.get_package(id).await.unwrap().body;
        assert_eq!(p.status, PackageStatus::Created);
        assert_eq!(
            p.sha256.as_deref(),
            Some(&*sha256_hex(BYTES)),
            "declared stays"
        );
        assert_api_problem(depot.artifact(id, &[]).await, 404, "artifact_missing");
        settled(app, id, &[]).await;
    };

    let mut other = BYTES.to_vec();
    other[0] = b'X';
    let problem = assert_api_problem(
        depot
            .upload_artifact(id, other.clone(), &UploadOptions::default())
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(fields(&problem), vec!["sha256"]);
    unchanged(&app, depot.clone(), id).await;

    // A Content-Length that cannot be the declared size is refused before the body is read;
    // streamed without one, the body is checked once it is in.
    let problem = assert_api_problem(
        depot
            .upload_artifact(id, BYTES[..10].to_vec(), &UploadOptions::default())
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(fields(&problem), vec!["size_bytes"]);
    let short = reqwest::Body::wrap_stream(futures::stream::iter([Ok::<_, std::io::Error>(
        BYTES[..10].to_vec(),
    )]));
    let problem = assert_api_problem(
        depot
            .upload_artifact(id, short, &UploadOptions::default())
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(fields(&problem), vec!["size_bytes", "sha256"]);
    unchanged(&app, depot.clone(), id).await;

    // The header's digest is checked too.
    let problem = assert_api_problem(
        depot
            .upload_artifact(
                id,
                BYTES.to_vec(),
                &UploadOptions {
                    sha256: Some(sha(b"something else")),
                    ..Default::default()
                },
            )
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(fields(&problem), vec!["Content-Digest"]);
    unchanged(&app, depot.clone(), id).await;

    // Past artifacts.max_bytes: refused on its Content-Length, and, streamed without one, at
    // the byte that passes the limit.
    let mut larger = BYTES.to_vec();
    larger.push(b'!');
    assert_api_problem(
        depot
            .upload_artifact(id, larger.clone(), &UploadOptions::default())
            .await,
        413,
        "payload_too_large",
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        larger.chunks(7).map(|c| Ok(c.to_vec())).collect();
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    assert_api_problem(
        depot
            .upload_artifact(id, stream, &UploadOptions::default())
            .await,
        413,
        "payload_too_large",
    );
    unchanged(&app, depot.clone(), id).await;

    // A malformed digest, another content type.
    let bad_digest = depot
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/packages/{id}/artifact"),
        )
        .header("content-digest", "sha-256=:not base64:")
        .body(BYTES.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(bad_digest.status(), 422);
    let body: serde_json::Value = bad_digest.json().await.unwrap();
    assert_eq!(body["errors"][0]["field"], "Content-Digest", "{body}");
    let json = depot
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/packages/{id}/artifact"),
        )
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);
    unchanged(&app, depot.clone(), id).await;

    // And the right bytes still go in afterwards.
    let ok = depot
        .upload_artifact(id, BYTES.to_vec(), &UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(ok.body.status, PackageStatus::Downloaded);
    settled(&app, id, &["artifact"]).await;
    // Deleting the version removes what the storage keeps of it.
    depot.delete_package(id, None).await.unwrap();
    settled(&app, id, &[]).await;
}

/// A client that goes away mid-body: nothing is kept, the package is as it was.
#[tokio::test]
async fn an_interrupted_upload_keeps_nothing() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let key = app.writer_key().await;
    let depot = app.depot().with_api_key(&key);
    let id = package(&depot, "interrupted", None).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "PUT /api/v1/packages/{id}/artifact HTTP/1.1\r\nHost: {address}\r\nX-API-Key: {key}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&[b'x'; 5000]).await.unwrap();
    socket.flush().await.unwrap();
    // Wait until the server holds a partial file, then hang up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while files_of(&app, id).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(socket);
    while !files_of(&app, id).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "a partial file stayed: {:?}",
            files_of(&app, id)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let p = depot.get_package(id).await.unwrap().body;
    assert_eq!(p.status, PackageStatus::Created);
    assert_eq!((p.sha256, p.size_bytes), (None, None));
}

#[tokio::test]
async fn uploads_are_for_the_names_owner_and_a_created_version_that_is_not_yanked() {
    let app = spawn_app().await;
    let owner = app.depot().with_api_key(app.writer_key().await);
    let stranger = app.depot().with_api_key(app.writer_key().await);
    let reader = app
        .depot()
        .with_api_key(app.key_with_scopes(&["packages:read"]).await.key);
    let id = package(&owner, "owned", None).await;

    assert_api_problem(
        stranger
            .upload_artifact(id, BYTES.to_vec(), &UploadOptions::default())
            .await,
        403,
        "not_owner",
    );
    assert_api_problem(
        reader
            .upload_artifact(id, BYTES.to_vec(), &UploadOptions::default())
            .await,
        403,
        "insufficient_scope",
    );
    assert_api_problem(
        owner
            .upload_artifact(Uuid::now_v7(), BYTES.to_vec(), &UploadOptions::default())
            .await,
        404,
        "not_found",
    );
    assert_api_problem(
        owner
            .upload_artifact(
                id,
                BYTES.to_vec(),
                &UploadOptions {
                    if_match: Some("\"999\""),
                    ..Default::default()
                },
            )
            .await,
        412,
        "precondition_failed",
    );
    assert_eq!(files_of(&app, id), Vec::<String>::new());

    let yanked = package(&owner, "owned-yanked", None).await;
    owner.yank(yanked, "broken build").await.unwrap();
    assert_api_problem(
        owner
            .upload_artifact(yanked, BYTES.to_vec(), &UploadOptions::default())
            .await,
        409,
        "yanked",
    );

    // The owner's upload, read by a reader; undeclared digests are recorded and then frozen.
    let etag = owner.get_package(id).await.unwrap().etag.unwrap();
    let done = owner
        .upload_artifact(
            id,
            BYTES.to_vec(),
            &UploadOptions {
                if_match: Some(&etag),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .body;
    assert_eq!(done.sha256.as_deref(), Some(&*sha256_hex(BYTES)));
    assert_eq!(done.size_bytes, Some(BYTES.len() as i64));
    let res = reader.artifact(id, &[]).await.unwrap();
    assert_eq!(res.bytes().await.unwrap(), BYTES);
    assert_api_problem(
        owner
            .patch_package(
                id,
                &depot_client::wire::PatchPackageRequest {
                    sha256: Some(Some("ab".repeat(32))),
                    ..Default::default()
                },
                None,
            )
            .await,
        409,
        "field_frozen",
    );

    // Deleting the version removes its bytes.
    owner.delete_package(id, None).await.unwrap();
    assert_eq!(files_of(&app, id), Vec::<String>::new());
}

/// The http executor's downloads go through the same store: what it verified is recorded and
/// served back.
#[tokio::test]
async fn a_download_lands_in_the_store_and_records_what_it_verified() {
    let base = crate::http_executor::artifact_server();
    let app = spawn_app_with(|s| s.executor.kind = depot_api::settings::ExecutorKind::Http).await;
    let depot = app.depot().with_api_key(app.writer_key().await);
    let id = depot
        .create_package(&CreatePackageRequest {
            name: "fetched".into(),
            version: "1.0.0".into(),
            source_url: Some(format!("{base}/artifact.tgz")),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    let op = depot.start(id, OperationKind::Download).await.unwrap();
    assert_eq!(
        wait_final(&depot, op.id).await.status,
        OperationStatus::Succeeded
    );
    let p = depot.get_package(id).await.unwrap().body;
    let want = crate::http_executor::ARTIFACT;
    assert_eq!(p.sha256.as_deref(), Some(&*sha256_hex(want)));
    assert_eq!(p.size_bytes, Some(want.len() as i64));
    let res = depot.artifact(id, &[]).await.unwrap();
    assert_eq!(
        header_of(&res, "etag"),
        Some(&*format!("\"{}\"", sha256_hex(want)))
    );
    assert_eq!(res.bytes().await.unwrap(), want);
}

/// `depot packages push FILE` then `pull NAME` and `pull NAME@VERSION`: the same bytes back,
/// verified; a push of a version that already holds its bytes is refused.
#[tokio::test]
async fn the_cli_pushes_and_pulls_an_artifact() {
    use crate::packages::cli;
    let app = spawn_app().await;
    let key = app.writer_key().await;
    let depot = app.depot().with_api_key(&key);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tool.tgz");
    let bytes: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let out = cli(
        &app,
        &key,
        &[
            "push",
            file.to_str().unwrap(),
            "--name",
            "tool",
            "--version",
            "2.1.0",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed: depot_client::wire::PackageView = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed.status, PackageStatus::Downloaded);
    assert_eq!(pushed.sha256.as_deref(), Some(&*sha256_hex(&bytes)));
    let again = cli(
        &app,
        &key,
        &[
            "push",
            file.to_str().unwrap(),
            "--name",
            "tool",
            "--version",
            "2.1.0",
        ],
    )
    .await;
    assert!(
        again.status.success(),
        "the same bytes again: done already; {}",
        String::from_utf8_lossy(&again.stderr)
    );
    let other = dir.path().join("other.tgz");
    std::fs::write(&other, b"other bytes").unwrap();
    let refused = cli(
        &app,
        &key,
        &[
            "push",
            other.to_str().unwrap(),
            "--name",
            "tool",
            "--version",
            "2.1.0",
        ],
    )
    .await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("another sha256"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let by_version = dir.path().join("by-version");
    let out = cli(
        &app,
        &key,
        &["pull", "tool@2.1.0", "-o", by_version.to_str().unwrap()],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&by_version).unwrap(), bytes);
    let out = cli(
        &app,
        &key,
        &["pull", "tool@2.1.0", "-o", by_version.to_str().unwrap()],
    )
    .await;
    assert!(
        !out.status.success(),
        "an existing file stays without --force"
    );

    // No version active yet: the name's channel is empty.
    let out = cli(
        &app,
        &key,
        &[
            "pull",
            "tool",
            "-o",
            dir.path().join("none").to_str().unwrap(),
        ],
    )
    .await;
    assert!(!out.status.success());
    let op = depot
        .start(pushed.id, OperationKind::Activate)
        .await
        .unwrap();
    assert_eq!(
        wait_final(&depot, op.id).await.status,
        OperationStatus::Succeeded
    );
    let active = dir.path().join("active");
    let out = cli(
        &app,
        &key,
        &["pull", "tool", "-o", active.to_str().unwrap()],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&active).unwrap(), bytes);
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".part-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
