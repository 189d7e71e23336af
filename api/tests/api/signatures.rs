//! Detached minisign signatures: uploaded (`PUT /packages/{id}/signature`) or fetched from
//! `signature_url` beside `source_url`, checked against the keys trusted for the name as the
//! bytes stream in, and required at activation with `packages.require_signatures`.

use crate::helpers::{TestApp, assert_api_problem, fields, spawn_app_with, wait_final};
use actix_web::{App, HttpResponse, HttpServer, web};
use depot_client::UploadOptions;
use depot_client::wire::{CreatePackageRequest, OperationKind, OperationStatus, PackageStatus};
use std::io::Cursor;
use uuid::Uuid;

/// A minisign key pair made for the test.
pub struct Signer(minisign::KeyPair);

impl Signer {
    pub fn new() -> Self {
        Self(minisign::KeyPair::generate_unencrypted_keypair().unwrap())
    }

    /// The public key as `packages.trusted_keys` takes it.
    pub fn public(&self) -> String {
        self.0.pk.to_base64()
    }

    /// Its key id, as minisign prints it.
    pub fn key_id(&self) -> String {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.public())
            .unwrap();
        format!(
            "{:016X}",
            u64::from_le_bytes(raw[2..10].try_into().unwrap())
        )
    }

    /// A `.minisig` file of `data`.
    pub fn sign(&self, data: &[u8]) -> String {
        minisign::sign(
            Some(&self.0.pk),
            &self.0.sk,
            Cursor::new(data),
            Some("depot test"),
            None,
        )
        .unwrap()
        .to_string()
    }
}

/// Depot trusting `signer` for names `signed-*`, requiring signatures at activation, its
/// artifacts in a directory of the test's.
async fn strict_app(signer: &Signer, dir: &std::path::Path) -> TestApp {
    let (key, dir) = (signer.public(), dir.to_owned());
    spawn_app_with(move |s| {
        s.packages.trusted_keys = vec![format!("{key} signed-*")];
        s.packages.require_signatures = true;
        s.artifacts.url = Some(format!("file://{}", dir.display()));
    })
    .await
}

async fn activate(depot: &depot_client::Client, id: Uuid) -> depot_client::wire::OperationView {
    let op = depot.start(id, OperationKind::Activate).await.unwrap();
    wait_final(depot, op.id).await
}

#[tokio::test]
async fn uploads_and_activations_check_signatures_by_keys_trusted_for_the_name() {
    let signer = Signer::new();
    let stranger = Signer::new();
    let storage = tempfile::tempdir().unwrap();
    let app = strict_app(&signer, storage.path()).await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let bytes = b"signed bytes\n".to_vec();
    let new = |name: &str, version: &str| CreatePackageRequest::new(name, version);
    let p = depot
        .create_package(&new("signed-tool", "1.0.0"))
        .await
        .unwrap();

    // Not a signature; by a key nobody trusts; by the trusted key for another name.
    for bad in ["not a signature".to_owned(), stranger.sign(&bytes)] {
        let problem = assert_api_problem(
            depot.put_signature(p.id, &bad).await,
            422,
            "validation_failed",
        );
        assert_eq!(fields(&problem), ["signature"]);
    }
    let other = depot.create_package(&new("plain", "1.0.0")).await.unwrap();
    let problem = assert_api_problem(
        depot.put_signature(other.id, &signer.sign(&bytes)).await,
        422,
        "validation_failed",
    );
    assert!(
        problem.errors[0]
            .message
            .contains("not trusted for `plain`"),
        "{problem:?}"
    );

    // Kept before the bytes, unverified; then the bytes must be the signed ones.
    let text = signer.sign(&bytes);
    let signed = depot.put_signature(p.id, &text).await.unwrap();
    let view = signed.signature.clone().unwrap();
    assert_eq!(
        (view.key_id.as_str(), view.verified),
        (&*signer.key_id(), false)
    );
    assert_eq!(depot.signature(p.id).await.unwrap(), text);
    let problem = assert_api_problem(
        depot
            .upload_artifact(p.id, b"other bytes\n".to_vec(), &UploadOptions::default())
            .await,
        422,
        "validation_failed",
    );
    assert_eq!(fields(&problem), ["signature"]);
    assert!(
        !storage
            .path()
            .join("packages")
            .join(p.id.to_string())
            .join("artifact")
            .exists(),
        "nothing was kept"
    );
    let up = depot
        .upload_artifact(p.id, bytes.clone(), &UploadOptions::default())
        .await
        .unwrap()
        .body;
    assert_eq!(up.status, PackageStatus::Downloaded);
    let view = up.signature.unwrap();
    assert!(view.verified && view.verified_at.is_some(), "{view:?}");
    let op = activate(&depot, p.id).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
    // The version in use keeps what it was activated with.
    assert_api_problem(
        depot.put_signature(p.id, &signer.sign(&bytes)).await,
        409,
        "invalid_transition",
    );

    // Unsigned: the activation fails, the version stays Downloaded.
    let unsigned = depot
        .create_package(&new("signed-tool", "1.1.0"))
        .await
        .unwrap();
    depot
        .upload_artifact(unsigned.id, bytes.clone(), &UploadOptions::default())
        .await
        .unwrap();
    let op = activate(&depot, unsigned.id).await;
    assert_eq!(op.status, OperationStatus::Failed);
    assert_eq!(op.error.unwrap().code, "signature_invalid");
    assert_eq!(
        depot.get_package(unsigned.id).await.unwrap().body.status,
        PackageStatus::Downloaded
    );
    // Signed afterwards, against the bytes it holds: activates.
    let later = depot
        .put_signature(unsigned.id, &signer.sign(&bytes))
        .await
        .unwrap();
    assert!(later.signature.unwrap().verified);
    let op = activate(&depot, unsigned.id).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");

    // Bytes changed in storage after they were checked: the activation reads them back.
    let tampered = depot
        .create_package(&new("signed-tool", "1.2.0"))
        .await
        .unwrap();
    depot
        .put_signature(tampered.id, &signer.sign(&bytes))
        .await
        .unwrap();
    depot
        .upload_artifact(tampered.id, bytes.clone(), &UploadOptions::default())
        .await
        .unwrap();
    let file = storage
        .path()
        .join("packages")
        .join(tampered.id.to_string())
        .join("artifact");
    std::fs::write(&file, b"SIGNED bytes\n").unwrap();
    let op = activate(&depot, tampered.id).await;
    assert_eq!(op.status, OperationStatus::Failed);
    assert_eq!(op.error.unwrap().code, "signature_invalid");
    let view = depot.get_package(tampered.id).await.unwrap().body;
    assert!(!view.signature.unwrap().verified, "no longer verified");
    // The active version is still the one that verified.
    assert_eq!(
        depot.get_package(unsigned.id).await.unwrap().body.status,
        PackageStatus::Active
    );
}

/// `depot packages push FILE --signature FILE.minisig`: the signature goes first, so the upload
/// is checked against it.
#[tokio::test]
async fn the_cli_pushes_a_signed_artifact() {
    let signer = Signer::new();
    let storage = tempfile::tempdir().unwrap();
    let app = strict_app(&signer, storage.path()).await;
    let key = app.writer_key().await;
    let dir = tempfile::tempdir().unwrap();
    let (file, sig) = (dir.path().join("t.tgz"), dir.path().join("t.tgz.minisig"));
    std::fs::write(&file, b"pushed and signed").unwrap();
    std::fs::write(&sig, signer.sign(b"pushed and signed")).unwrap();
    let push = |version: &'static str, sig: std::path::PathBuf| {
        let (app, key, file) = (&app, key.clone(), file.clone());
        async move {
            crate::packages::cli(
                app,
                &key,
                &[
                    "push",
                    file.to_str().unwrap(),
                    "--name",
                    "signed-cli",
                    "--version",
                    version,
                    "--signature",
                    sig.to_str().unwrap(),
                ],
            )
            .await
        }
    };
    let out = push("1.0.0", sig.clone()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let depot = app.depot_with_key(&key);
    let page = depot
        .list_packages(&[("name", Some("signed-cli".into()))])
        .await
        .unwrap();
    let view = page.items[0].signature.clone().unwrap();
    assert!(view.verified, "{view:?}");
    // A signature of other bytes: refused before the bytes are sent.
    std::fs::write(&sig, signer.sign(b"something else")).unwrap();
    let out = push("1.0.1", sig).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serves `/a.tgz`, its signature at `/a.tgz.minisig`, a signature of other bytes at
/// `/wrong.minisig`, and a 404 at `/missing.minisig`.
fn signed_server(signer: &Signer) -> (String, String) {
    let good = signer.sign(crate::http_executor::ARTIFACT);
    let served = good.clone();
    let wrong = signer.sign(b"other bytes");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let (good, wrong) = (good.clone(), wrong.clone());
        App::new()
            .route(
                "/a.tgz",
                web::get().to(|| async { HttpResponse::Ok().body(crate::http_executor::ARTIFACT) }),
            )
            .route(
                "/a.tgz.minisig",
                web::get().to(move || {
                    let good = good.clone();
                    async move { HttpResponse::Ok().body(good) }
                }),
            )
            .route(
                "/wrong.minisig",
                web::get().to(move || {
                    let wrong = wrong.clone();
                    async move { HttpResponse::Ok().body(wrong) }
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), served)
}

#[tokio::test]
async fn a_download_fetches_the_signature_beside_the_source_and_checks_the_bytes_against_it() {
    let signer = Signer::new();
    let (base, served) = signed_server(&signer);
    let storage = tempfile::tempdir().unwrap();
    let (key, dir) = (signer.public(), storage.path().to_owned());
    let app = spawn_app_with(move |s| {
        s.executor.kind = depot_api::settings::ExecutorKind::Http;
        s.packages.trusted_keys = vec![key];
        s.packages.require_signatures = true;
        s.artifacts.url = Some(format!("file://{}", dir.display()));
    })
    .await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let create = |version: &str, sig: &str| CreatePackageRequest {
        source_url: Some(format!("{base}/a.tgz")),
        signature_url: Some(format!("{base}/{sig}")),
        ..CreatePackageRequest::new("fetched", version)
    };
    let download = async |id: Uuid| {
        let op = depot.start(id, OperationKind::Download).await.unwrap();
        wait_final(&depot, op.id).await
    };
    let good = depot
        .create_package(&create("1.0.0", "a.tgz.minisig"))
        .await
        .unwrap();
    let op = download(good.id).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
    let view = depot.get_package(good.id).await.unwrap().body;
    let sig = view.signature.unwrap();
    assert_eq!((sig.key_id, sig.verified), (signer.key_id(), true));
    assert_eq!(depot.signature(good.id).await.unwrap(), served);
    let op = activate(&depot, good.id).await;
    assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");

    for (version, sig) in [("1.0.1", "wrong.minisig"), ("1.0.2", "missing.minisig")] {
        let p = depot.create_package(&create(version, sig)).await.unwrap();
        let op = download(p.id).await;
        assert_eq!(op.status, OperationStatus::Failed, "{sig}");
        let error = op.error.unwrap();
        assert_eq!(error.code, "signature_invalid", "{sig}: {error:?}");
        let view = depot.get_package(p.id).await.unwrap().body;
        assert_eq!(view.status, PackageStatus::Created, "{sig}");
        assert!(view.signature.is_none(), "{sig}");
        assert!(
            !dir_has_artifact(storage.path(), p.id),
            "{sig}: nothing kept"
        );
    }
    // signature_url is a verified field: frozen once downloaded.
    assert_api_problem(
        depot
            .patch_package(
                good.id,
                &depot_client::wire::PatchPackageRequest {
                    signature_url: Some(Some(format!("{base}/wrong.minisig"))),
                    ..Default::default()
                },
                None,
            )
            .await,
        409,
        "field_frozen",
    );
}

fn dir_has_artifact(root: &std::path::Path, id: Uuid) -> bool {
    root.join("packages")
        .join(id.to_string())
        .join("artifact")
        .exists()
}

/// A download redelivered after a crash finds the bytes already in place: their signature is
/// checked there, what verified is recorded with the stored size (the package declared none),
/// and bytes that do not verify go.
#[tokio::test]
async fn a_redelivered_download_checks_the_bytes_already_in_place() {
    let signer = Signer::new();
    let (base, _) = signed_server(&signer);
    let storage = tempfile::tempdir().unwrap();
    let (key, dir) = (signer.public(), storage.path().to_owned());
    let app = spawn_app_with(move |s| {
        s.executor.kind = depot_api::settings::ExecutorKind::Http;
        s.packages.trusted_keys = vec![key];
        s.artifacts.url = Some(format!("file://{}", dir.display()));
    })
    .await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let bytes = crate::http_executor::ARTIFACT;
    for (version, sig, verifies) in [
        ("1.0.0", "a.tgz.minisig", true),
        ("1.0.1", "wrong.minisig", false),
    ] {
        let p = depot
            .create_package(&CreatePackageRequest {
                source_url: Some(format!("{base}/a.tgz")),
                signature_url: Some(format!("{base}/{sig}")),
                sha256: Some(crate::http_executor::sha256_hex(bytes)),
                ..CreatePackageRequest::new("redelivered", version)
            })
            .await
            .unwrap();
        // What the crashed delivery left: the bytes in place, nothing recorded.
        let place = storage.path().join("packages").join(p.id.to_string());
        std::fs::create_dir_all(&place).unwrap();
        std::fs::write(place.join("artifact"), bytes).unwrap();
        let op = depot.start(p.id, OperationKind::Download).await.unwrap();
        let op = wait_final(&depot, op.id).await;
        let view = depot.get_package(p.id).await.unwrap().body;
        if verifies {
            assert_eq!(op.status, OperationStatus::Succeeded, "{op:?}");
            assert_eq!(view.size_bytes, Some(bytes.len() as i64));
            assert!(view.signature.unwrap().verified);
        } else {
            assert_eq!(op.error.unwrap().code, "signature_invalid");
            assert_eq!(view.status, PackageStatus::Created);
            assert!(!dir_has_artifact(storage.path(), p.id), "the bytes went");
        }
    }
}
