//! Artifacts in and out: an upload streams into the artifact store, is checked against what
//! the package declares (and the request's digest), and becomes the package's artifact in the
//! transaction that makes it Downloaded; a download reads it back.

use crate::artifacts::{ArtifactError, ArtifactStore, ByteStream, OpenedArtifact};
use crate::model::{Package, PackageSignature, PackageStatus, VerifiedArtifact};
use crate::ports::{AttachError, OperationFilter};
use crate::service::{PackageError, not_owner, repo};
use crate::signature::{Signature, SignatureError, Trust};
use crate::{OperationStatus, PackageService};
use depot_core::{PageRequest, Permission, Principal, ValidationError};
use std::sync::Arc;
use uuid::Uuid;

/// What an upload's request says about its body, beside what the package declares.
#[derive(Debug, Clone, Default)]
pub struct UploadClaims {
    /// The SHA-256 of `Content-Digest: sha-256=:…:` (RFC 9530), when sent.
    pub content_digest: Option<[u8; 32]>,
    /// `If-Match`: the revision the client read.
    pub if_match: Option<i64>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn conflict(code: &'static str, detail: String) -> PackageError {
    PackageError::Conflict { code, detail }
}

fn not_created(p: &Package, status: PackageStatus) -> PackageError {
    conflict(
        "invalid_transition",
        format!(
            "{} {} is {}: an artifact is uploaded to a version in `created` (register another \
             version for other bytes)",
            p.name,
            p.version,
            status.as_str()
        ),
    )
}

fn yanked() -> PackageError {
    conflict(
        "yanked",
        "this version is yanked: it takes no artifact (unyank it, or use another version)".into(),
    )
}

/// A 422 naming `signature`.
fn signature_refused(e: SignatureError) -> PackageError {
    let mut v = ValidationError { errors: vec![] };
    v.push("signature", e.to_string());
    PackageError::Validation(v)
}

trait Hint {
    fn with_hint(self, hint: &str) -> Self;
}

impl Hint for PackageError {
    /// Adds `hint` to the message of a validation error.
    fn with_hint(mut self, hint: &str) -> Self {
        if let PackageError::Validation(v) = &mut self {
            for e in &mut v.errors {
                e.message = format!("{}; {hint}", e.message);
            }
        }
        self
    }
}

fn active_keeps_its_signature(p: &Package) -> PackageError {
    conflict(
        "invalid_transition",
        format!(
            "{} {} is active: the version in use keeps the signature it was activated with \
             (deactivate it first)",
            p.name, p.version
        ),
    )
}

/// What a refused `attach_artifact` or `set_signature` was attaching.
#[derive(Clone, Copy)]
enum Attaching {
    Artifact,
    Signature,
}

/// The answer to a store's refusal to attach an artifact or a signature to package `p`, read
/// at `if_match` when the client sent one.
fn attach_refused(
    e: AttachError,
    p: &Package,
    if_match: Option<i64>,
    what: Attaching,
) -> PackageError {
    match e {
        AttachError::NotFound => PackageError::NotFound("no package with this id"),
        AttachError::StaleRevision if if_match.is_some() => PackageError::PreconditionFailed,
        // Changed meanwhile (another upload won, say).
        AttachError::StaleRevision => conflict(
            "package_changed",
            match what {
                Attaching::Artifact => {
                    "the package changed while the body was being sent; read it and upload again"
                }
                Attaching::Signature => {
                    "the package changed while its signature was checked; read it and send \
                     the signature again"
                }
            }
            .into(),
        ),
        AttachError::WrongStatus(status) => match what {
            Attaching::Artifact => not_created(p, status),
            Attaching::Signature => active_keeps_its_signature(p),
        },
        AttachError::Yanked => yanked(),
        e @ AttachError::Busy(_) => conflict("operation_in_progress", e.to_string()),
        AttachError::Place(e) => artifact_error(e),
        AttachError::Store(e) => repo(e, "no package with this id"),
    }
}

fn artifact_error(e: ArtifactError) -> PackageError {
    match e {
        ArtifactError::TooLarge { limit } => PackageError::TooLarge { limit },
        ArtifactError::Body(e) => PackageError::BodyIncomplete(format!(
            "the request body ended before it was complete ({e}); nothing was kept"
        )),
        e @ (ArtifactError::Storage(_) | ArtifactError::Exists) => PackageError::Storage(e),
    }
}

impl PackageService {
    fn store(&self) -> Result<&Arc<dyn ArtifactStore>, PackageError> {
        self.store
            .as_ref()
            .ok_or_else(|| PackageError::ArtifactMissing("this server keeps no artifacts".into()))
    }

    /// The largest artifact an upload may send (`artifacts.max_bytes`).
    pub fn max_artifact_bytes(&self) -> u64 {
        self.max_artifact_bytes
    }

    /// The checks an upload passes before its body is read (so a refused upload is refused
    /// before it is sent): the caller manages the package, which is Created, not yanked, with
    /// no operation under way, and at `if_match` when given.
    pub async fn check_upload(
        &self,
        principal: &Principal,
        id: Uuid,
        if_match: Option<i64>,
    ) -> Result<Package, PackageError> {
        let package = self.managed_at(principal, id, if_match).await?;
        if package.status != PackageStatus::Created {
            return Err(not_created(&package, package.status));
        }
        if package.yanked.is_some() {
            return Err(yanked());
        }
        self.not_busy(id).await?;
        Ok(package)
    }

    /// Package `id`, when `principal` manages its name (the owner or `packages:admin`) and it
    /// is at revision `if_match` when one is given.
    async fn managed_at(
        &self,
        principal: &Principal,
        id: Uuid,
        if_match: Option<i64>,
    ) -> Result<Package, PackageError> {
        let package = self.get(id).await?;
        if !principal.manages(package.owner.as_ref(), Permission::PackagesAdmin) {
            return Err(not_owner(&package.name));
        }
        if if_match.is_some_and(|r| r != package.revision) {
            return Err(PackageError::PreconditionFailed);
        }
        Ok(package)
    }

    /// `operation_in_progress` while an operation is pending or running on the package.
    async fn not_busy(&self, id: Uuid) -> Result<(), PackageError> {
        for status in [OperationStatus::Pending, OperationStatus::Running] {
            let busy = self
                .operations
                .list(
                    &OperationFilter {
                        package_id: Some(id),
                        status: Some(status),
                    },
                    &PageRequest::parse(Some(1), None).expect("a valid limit"),
                )
                .await
                .map_err(|e| repo(e, "no package with this id"))?;
            if let Some(op) = busy.items.first() {
                return Err(conflict(
                    "operation_in_progress",
                    format!(
                        "operation {} ({}) is {} on this package",
                        op.id,
                        op.kind.as_str(),
                        op.status.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The signature a package holds, parsed, and the trusted key that made it: a 422 naming
    /// `signature` when it is not by a key trusted for the name (any more).
    fn signed_by<'t>(
        trust: &'t Trust,
        package: &Package,
    ) -> Result<Option<(Signature, &'t crate::signature::TrustedKey)>, PackageError> {
        let Some(held) = &package.signature else {
            return Ok(None);
        };
        let signature = Signature::parse(&held.text).map_err(signature_refused)?;
        let key = trust.signer(&package.name, &signature).map_err(|e| {
            signature_refused(e).with_hint(
                "upload a signature by a trusted key (PUT /api/v1/packages/{id}/signature)",
            )
        })?;
        Ok(Some((signature, key)))
    }

    /// Gives the package a detached minisign signature over its artifact (`text`, the
    /// `.minisig` file). The signature must be by a key trusted for the package's name; when
    /// the package holds its artifact already, the signature must verify against those bytes
    /// (read back from storage) and is recorded as verified. A package in Created keeps it
    /// and checks it when its bytes arrive (an upload or a download is refused when they do
    /// not verify). The active version keeps the signature it was activated with.
    #[tracing::instrument(skip_all, fields(package_id = %id))]
    pub async fn sign(
        &self,
        principal: &Principal,
        id: Uuid,
        text: &str,
        if_match: Option<i64>,
    ) -> Result<Package, PackageError> {
        let package = self.managed_at(principal, id, if_match).await?;
        if package.status == PackageStatus::Active {
            return Err(active_keeps_its_signature(&package));
        }
        self.not_busy(id).await?;
        let signature = Signature::parse(text).map_err(signature_refused)?;
        let key = self
            .trust
            .signer(&package.name, &signature)
            .map_err(signature_refused)?;
        // The same signature again, already checked against these bytes (or waiting for
        // them): nothing to read back or write.
        if let Some(held) = &package.signature
            && held.text == signature.text()
            && (held.verified_at.is_some() || package.status == PackageStatus::Created)
        {
            return Ok(package);
        }
        let verified_at = if package.status == PackageStatus::Downloaded {
            let body = self
                .open_artifact(&package)
                .await?
                .whole()
                .await
                .map_err(PackageError::Storage)?;
            match self.trust.verify(&package.name, &signature, body).await {
                Ok(_) => Some(self.clock.now()),
                Err(SignatureError::Unreadable) => {
                    return Err(PackageError::ArtifactMissing(format!(
                        "{} {}'s artifact could not be read back to check the signature",
                        package.name, package.version
                    )));
                }
                Err(e) => return Err(signature_refused(e)),
            }
        } else {
            None
        };
        let stored = PackageSignature {
            text: signature.text().to_owned(),
            verified_at,
        };
        let signed = self
            .packages
            .set_signature(id, package.revision, &stored, self.clock.now())
            .await
            .map_err(|e| attach_refused(e, &package, if_match, Attaching::Signature))?;
        tracing::info!(
            package_id = %id,
            key_id = %key.key_id(),
            verified = verified_at.is_some(),
            actor = %principal.actor(),
            "signature recorded"
        );
        Ok(signed)
    }

    /// Uploads the package's artifact: `body` streams into the store (never whole in memory),
    /// its SHA-256 and size are checked against the package's `sha256`/`size_bytes` and the
    /// request's digest, and the package becomes Downloaded with them, in the transaction that
    /// moves the bytes into place. On any refusal or failure nothing is kept and the package
    /// is as it was.
    #[tracing::instrument(skip_all, fields(package_id = %id))]
    pub async fn upload(
        &self,
        principal: &Principal,
        id: Uuid,
        body: ByteStream,
        claims: &UploadClaims,
    ) -> Result<Package, PackageError> {
        let package = self.check_upload(principal, id, claims.if_match).await?;
        let store = self.store()?;
        // A signature the package holds is checked as the body streams, with its hash.
        let signed = Self::signed_by(&self.trust, &package)?;
        let (body, check) = match &signed {
            Some((signature, key)) => {
                let (body, check) = Trust::verifying(key, signature, body);
                (body, Some(check))
            }
            None => (body, None),
        };
        let staged = store
            .stage(id, body, self.max_artifact_bytes)
            .await
            .map_err(artifact_error)?;
        let mut mismatch = ValidationError { errors: vec![] };
        let mut signature = None;
        if let (Some(check), Some((held, _))) = (check, &signed) {
            match check.finish().await {
                Ok(_) => {
                    signature = Some(PackageSignature {
                        text: held.text().to_owned(),
                        verified_at: Some(self.clock.now()),
                    });
                }
                Err(e) => mismatch.push("signature", e.to_string()),
            }
        }
        if let Some(size) = package.size_bytes
            && size as u64 != staged.size
        {
            mismatch.push(
                "size_bytes",
                format!(
                    "the body is {} bytes; the package declares {size}",
                    staged.size
                ),
            );
        }
        if let Some(sha) = package.sha256.as_deref()
            && sha != staged.sha256
        {
            mismatch.push(
                "sha256",
                format!(
                    "the body's SHA-256 is {}; the package declares {sha}",
                    staged.sha256
                ),
            );
        }
        if let Some(digest) = claims.content_digest
            && hex(&digest) != staged.sha256
        {
            mismatch.push(
                "Content-Digest",
                format!(
                    "the body's SHA-256 is {}; the header says {}",
                    staged.sha256,
                    hex(&digest)
                ),
            );
        }
        if !mismatch.errors.is_empty() {
            // `staged` is dropped: its bytes go.
            return Err(PackageError::Validation(mismatch));
        }
        let artifact = VerifiedArtifact {
            sha256: staged.sha256.clone(),
            size: staged.size as i64,
            signature,
        };
        // On a task of its own: a client that hangs up once the bytes are moving into place
        // must not cancel the transaction between the rename and the commit.
        let (packages, revision, now) = (self.packages.clone(), package.revision, self.clock.now());
        let recorded = artifact.clone();
        let attached = tokio::spawn(async move {
            packages
                .attach_artifact(id, revision, &recorded, now, Box::pin(staged.promote()))
                .await
        })
        .await
        .map_err(|e| PackageError::Repo(depot_core::RepoError::Unexpected(Box::new(e))))?;
        let attached = attached
            .map_err(|e| attach_refused(e, &package, claims.if_match, Attaching::Artifact))?;
        tracing::info!(
            package_id = %id,
            size = artifact.size,
            sha256 = %artifact.sha256,
            actor = %principal.actor(),
            "artifact uploaded"
        );
        Ok(attached)
    }

    /// The package and its stored artifact, when it holds one (Downloaded or Active, and the
    /// bytes are there): `ArtifactMissing` otherwise.
    pub async fn artifact(&self, id: Uuid) -> Result<(Package, OpenedArtifact), PackageError> {
        let package = self.get(id).await?;
        self.artifact_of(package).await
    }

    /// The active version of `name` and its artifact: `NotFound` when none is active.
    pub async fn active_artifact(
        &self,
        name: &str,
    ) -> Result<(Package, OpenedArtifact), PackageError> {
        let active = self
            .names
            .active_version(name)
            .await
            .map_err(|e| repo(e, "no such package name"))?
            .ok_or(PackageError::NotFound(
                "the package name has no active version",
            ))?;
        self.artifact_of(active).await
    }

    async fn artifact_of(
        &self,
        package: Package,
    ) -> Result<(Package, OpenedArtifact), PackageError> {
        let missing = |p: &Package| {
            PackageError::ArtifactMissing(format!(
                "{} {} holds no artifact (it is {}); upload or download it first",
                p.name,
                p.version,
                p.status.as_str()
            ))
        };
        if package.status == PackageStatus::Created {
            return Err(missing(&package));
        }
        let opened = self
            .store()?
            .open(package.id)
            .await
            .map_err(PackageError::Storage)?;
        match opened {
            Some(opened) if package.size_bytes.is_none_or(|s| s as u64 == opened.size) => {
                Ok((package, opened))
            }
            other => {
                // The database and the storage disagree: `depot fsck` reports and repairs it.
                tracing::warn!(
                    package_id = %package.id,
                    stored = ?other.map(|s| s.size),
                    declared = ?package.size_bytes,
                    "a package that holds an artifact has none (or another size) in storage"
                );
                Err(missing(&package))
            }
        }
    }

    /// The artifact, opened for reading.
    async fn open_artifact(&self, package: &Package) -> Result<OpenedArtifact, PackageError> {
        self.store()?
            .open(package.id)
            .await
            .map_err(PackageError::Storage)?
            .ok_or_else(|| {
                PackageError::ArtifactMissing(format!(
                    "{} {} holds no artifact",
                    package.name, package.version
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{InMemoryArtifacts, service};
    use crate::model::{OperationKind, PackageInput};
    use depot_core::PrincipalKind;
    use futures::StreamExt;

    fn body(bytes: &'static [u8]) -> ByteStream {
        futures::stream::iter([Ok(bytes::Bytes::from_static(bytes))]).boxed()
    }

    fn setup() -> (
        Arc<crate::fakes::InMemoryPackages>,
        PackageService,
        Arc<InMemoryArtifacts>,
    ) {
        let (store, svc) = service();
        let files = Arc::new(InMemoryArtifacts::default());
        (store, svc.with_artifacts(files.clone(), 16), files)
    }

    async fn create(svc: &PackageService, sha256: Option<&str>) -> Package {
        svc.create(
            &Principal::admin(),
            PackageInput {
                name: Some("p".into()),
                version: Some("1".into()),
                sha256: Some(sha256.map(str::to_owned)),
                ..Default::default()
            },
        )
        .await
        .unwrap()
    }

    const HELLO_SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[tokio::test]
    async fn an_upload_that_matches_becomes_the_downloaded_versions_artifact() {
        let (_, svc, files) = setup();
        let p = create(&svc, Some(HELLO_SHA)).await;
        let done = svc
            .upload(
                &Principal::admin(),
                p.id,
                body(b"hello"),
                &UploadClaims::default(),
            )
            .await
            .unwrap();
        assert_eq!(done.status, PackageStatus::Downloaded);
        assert_eq!(done.size_bytes, Some(5));
        assert!(done.sealed_at.is_some());
        assert_eq!(files.files.lock().unwrap().get(&p.id).unwrap(), b"hello");
        let (_, stored) = svc.artifact(p.id).await.unwrap();
        assert_eq!(stored.size, 5);
    }

    #[tokio::test]
    async fn a_refused_upload_keeps_nothing() {
        let (store, svc, files) = setup();
        let p = create(&svc, Some(HELLO_SHA)).await;
        let admin = Principal::admin();
        let mismatch = svc
            .upload(&admin, p.id, body(b"jello"), &UploadClaims::default())
            .await;
        assert!(
            matches!(&mismatch, Err(PackageError::Validation(v)) if v.errors[0].field == "sha256"),
            "{mismatch:?}"
        );
        let digest = svc
            .upload(
                &admin,
                p.id,
                body(b"hello"),
                &UploadClaims {
                    content_digest: Some([0; 32]),
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(&digest, Err(PackageError::Validation(v)) if v.errors[0].field == "Content-Digest"),
            "{digest:?}"
        );
        let large = svc
            .upload(
                &admin,
                p.id,
                body(b"seventeen bytes!!"),
                &UploadClaims::default(),
            )
            .await;
        assert!(
            matches!(large, Err(PackageError::TooLarge { limit: 16 })),
            "{large:?}"
        );
        let cut = svc
            .upload(
                &admin,
                p.id,
                futures::stream::iter([Err(std::io::ErrorKind::ConnectionReset.into())]).boxed(),
                &UploadClaims::default(),
            )
            .await;
        assert!(
            matches!(cut, Err(PackageError::BodyIncomplete(_))),
            "{cut:?}"
        );
        // Someone else's name, an operation under way, a stale If-Match.
        let stranger = Principal {
            kind: PrincipalKind::ApiKey {
                key_id: Uuid::now_v7(),
                lineage_id: Uuid::now_v7(),
            },
            scopes: [Permission::PackagesWrite].into_iter().collect(),
        };
        let foreign = svc
            .upload(&stranger, p.id, body(b"hello"), &UploadClaims::default())
            .await;
        assert!(
            matches!(foreign, Err(PackageError::NotOwner(_))),
            "{foreign:?}"
        );
        let stale = svc
            .upload(
                &admin,
                p.id,
                body(b"hello"),
                &UploadClaims {
                    if_match: Some(p.revision + 1),
                    ..Default::default()
                },
            )
            .await;
        assert!(
            matches!(stale, Err(PackageError::PreconditionFailed)),
            "{stale:?}"
        );
        svc.start(&admin, p.id, OperationKind::Download)
            .await
            .unwrap();
        let busy = svc
            .upload(&admin, p.id, body(b"hello"), &UploadClaims::default())
            .await;
        assert!(
            matches!(&busy, Err(PackageError::Conflict { code, .. }) if *code == "operation_in_progress"),
            "{busy:?}"
        );
        assert!(files.files.lock().unwrap().is_empty());
        let now = crate::ports::PackageRepository::get(&*store, p.id)
            .await
            .unwrap();
        assert_eq!(
            (now.status, now.revision),
            (PackageStatus::Created, p.revision)
        );
        let missing = svc.artifact(p.id).await;
        assert!(
            matches!(missing, Err(PackageError::ArtifactMissing(_))),
            "{missing:?}"
        );
    }

    #[tokio::test]
    async fn a_signature_must_be_trusted_and_verify_against_the_bytes_it_travels_with() {
        use crate::signature::TrustedKey;
        use crate::signature::tests::TestSigner;
        let signer = TestSigner::new();
        let stranger = TestSigner::new();
        let (store, svc) = service();
        let files = Arc::new(InMemoryArtifacts::default());
        let trust = Trust::new(vec![TrustedKey::parse(&signer.public()).unwrap()], true);
        let svc = svc
            .with_artifacts(files.clone(), 16)
            .with_trust(Arc::new(trust));
        let admin = Principal::admin();
        let p = create(&svc, None).await;
        let field = |r: Result<Package, PackageError>| match r {
            Err(PackageError::Validation(v)) => {
                format!("{}: {}", v.errors[0].field, v.errors[0].message)
            }
            other => panic!("{other:?}"),
        };
        // Not a signature; a signature by a key nobody trusts.
        assert!(field(svc.sign(&admin, p.id, "hello", None).await).starts_with("signature:"));
        let untrusted = field(svc.sign(&admin, p.id, &stranger.sign(b"hello"), None).await);
        assert!(untrusted.contains("not trusted"), "{untrusted}");
        // Kept unverified while there are no bytes; the bytes must then be the signed ones.
        let signed = svc
            .sign(&admin, p.id, &signer.sign(b"hello"), None)
            .await
            .unwrap();
        let held = signed.signature.clone().unwrap();
        assert_eq!(held.verified_at, None);
        let wrong = field(
            svc.upload(&admin, p.id, body(b"jello"), &UploadClaims::default())
                .await,
        );
        assert!(wrong.contains("does not verify"), "{wrong}");
        assert!(files.files.lock().unwrap().is_empty());
        let done = svc
            .upload(&admin, p.id, body(b"hello"), &UploadClaims::default())
            .await
            .unwrap();
        assert!(done.signature.as_ref().unwrap().verified_at.is_some());
        assert_eq!(
            done.signature.as_ref().unwrap().key_id(),
            Some(signer_key(&signer))
        );
        // A Downloaded package's new signature is checked against its stored bytes.
        let other = field(svc.sign(&admin, p.id, &signer.sign(b"other"), None).await);
        assert!(other.contains("does not verify"), "{other}");
        let again = svc
            .sign(&admin, p.id, &signer.sign(b"hello"), None)
            .await
            .unwrap();
        assert!(again.signature.unwrap().verified_at.is_some());
        let now = crate::ports::PackageRepository::get(&*store, p.id)
            .await
            .unwrap();
        assert_eq!(now.revision, again.revision);
    }

    fn signer_key(signer: &crate::signature::tests::TestSigner) -> String {
        crate::signature::TrustedKey::parse(&signer.public())
            .unwrap()
            .key_id()
            .to_owned()
    }
}
