//! The `http` executor: downloads a package's `source_url` into the artifact store, streaming,
//! verifying `size_bytes` and `sha256` (and recording both when the package left them unset);
//! activation points `active/<name>` at the version's directory and deactivation removes that
//! link. A signature the package carries (or its `signature_url` serves) is checked as the
//! download streams, against the keys trusted for its name. Every step is idempotent, so a worker that crashed mid-way can simply run it again.
//!
//! Layout (the filesystem adapter's, [`super::artifacts::FsArtifacts`]):
//! `<storage>/packages/<package id>/artifact` and `<storage>/active/<link name>`, a
//! symbolic link to `../packages/<package id>` (relative, so it resolves from anywhere and
//! survives moving the storage directory). A link name is bounded and collision-free whatever
//! the package name ([`link_name`]). After every activation and deactivation the link is made to
//! agree with the database ([`Executor::sync_active`]); `depot fsck` reports (and with
//! `--repair` fixes) whatever still drifts.

use super::artifacts::hex;
use crate::http::egress::{Egress, EgressClient, EgressError, redact, refusal};
use async_trait::async_trait;
use depot_packages::artifacts::{ArtifactError, ArtifactStore, Staged};
use depot_packages::executor::{ExecError, Executor, Progress};
use depot_packages::model::PackageSignature;
use depot_packages::model::VerifiedArtifact;
use depot_packages::ports::PackageRepository;
use depot_packages::signature::{
    MAX_SIGNATURE_BYTES, Signature, SignatureCheck, SignatureError, Trust, TrustedKey,
};
use depot_packages::{OperationKind, Package};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where the executor keeps what it fetches.
pub struct Storage {
    /// The artifacts (downloads go in through it, as uploads do).
    pub artifacts: Arc<dyn ArtifactStore>,
    /// The directory of the `active/` links (the filesystem adapter's); object storage keeps
    /// none (the database says which version is active).
    pub links: Option<PathBuf>,
    /// Where a download records the sha256 and size it verified.
    pub packages: Arc<dyn PackageRepository>,
    /// The keys a download checks a package's signature against.
    pub trust: Arc<Trust>,
}

pub struct HttpExecutor {
    client: EgressClient,
    storage: Option<PathBuf>,
    artifacts: Arc<dyn ArtifactStore>,
    packages: Arc<dyn PackageRepository>,
    trust: Arc<Trust>,
    max_bytes: u64,
    /// Held while a name's link is synced with the database: one sync at a time, each reading
    /// the database inside it, so the last one leaves the last committed state.
    syncing: tokio::sync::Mutex<()>,
}

fn failed(code: &str, detail: impl Into<String>) -> ExecError {
    ExecError::Failed {
        code: code.to_owned(),
        detail: detail.into(),
    }
}

/// Redirects a download follows (each hop checked by the egress policy).
const MAX_REDIRECTS: usize = 5;

fn forbidden(site: &str, reason: &dyn std::fmt::Display) -> ExecError {
    tracing::warn!(source = %site, %reason, "download refused by the egress policy");
    failed(
        "destination_forbidden",
        "the source_url's destination is not allowed by the egress policy",
    )
}

fn unreachable_source() -> ExecError {
    ExecError::Retryable("unreachable: the source could not be reached".into())
}

fn size_mismatch() -> ExecError {
    failed(
        "size_mismatch",
        "the artifact's size is not the declared size_bytes",
    )
}

/// Stages a stream that borrows from the caller (the operation's progress reporter): the
/// store's port takes a `'static` stream, so this one is driven through a channel while the
/// caller's future polls both.
async fn stage_borrowed(
    store: &dyn ArtifactStore,
    id: uuid::Uuid,
    body: impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send,
    max_bytes: u64,
    signed: Option<&(Signature, TrustedKey)>,
) -> (Result<Staged, ArtifactError>, Option<SignatureCheck>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let forward = async move {
        futures::pin_mut!(body);
        while let Some(chunk) = body.next().await {
            let stop = chunk.is_err();
            if tx.send(chunk).await.is_err() || stop {
                break;
            }
        }
    };
    let received: depot_packages::artifacts::ByteStream =
        Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    // A signature is checked as the bytes go by, with their hash.
    let (received, check) = match signed {
        Some((signature, key)) => {
            let (body, check) = Trust::verifying(key, signature, received);
            (body, Some(check))
        }
        None => (received, None),
    };
    // The forwarding stops with the store (past the limit, say), not at the source's next chunk.
    let staged =
        crate::packages::transfer::drive_until(store.stage(id, received, max_bytes), forward).await;
    (staged, check)
}

fn signature_invalid(e: impl std::fmt::Display) -> ExecError {
    failed("signature_invalid", e.to_string())
}

fn io_retryable(what: &str, e: std::io::Error) -> ExecError {
    ExecError::Retryable(format!("{what}: {e}"))
}

/// The longest readable head of a link name, in bytes (the whole name stays far below the
/// 255-byte limit of common file systems).
const LINK_HEAD_BYTES: usize = 64;

/// The file name of `name`'s active link: a readable head (the escaped name, cut at
/// [`LINK_HEAD_BYTES`]) and 16 hex digits of the name's SHA-256, so that any valid name fits the
/// file system and two names (`A` and `a` on a case-insensitive one included) never share a
/// link.
pub fn link_name(name: &str) -> String {
    let escaped = escape_name(name);
    let mut head = escaped.as_str();
    if head.len() > LINK_HEAD_BYTES {
        head = &head[..LINK_HEAD_BYTES];
        // Not in the middle of a `%XX`.
        if let Some(pos) = head.rfind('%')
            && head.len() - pos < 3
        {
            head = &head[..pos];
        }
    }
    let digest = hex(&Sha256::digest(name.as_bytes()));
    format!("{head}-{}", &digest[..16])
}

/// The link's target: relative to the `active` directory.
pub fn link_target(id: uuid::Uuid) -> PathBuf {
    Path::new("..").join("packages").join(id.to_string())
}

/// A file-name-safe form of a package name: `[A-Za-z0-9._-]` kept, other bytes as `%XX`.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.starts_with('.') {
        out.replace_range(0..1, "%2E");
    }
    out
}

impl HttpExecutor {
    pub fn new(
        store: Storage,
        timeout: Duration,
        max_bytes: u64,
        egress: &Egress,
    ) -> Result<Self, String> {
        let storage = store.links;
        for dir in storage
            .iter()
            .flat_map(|s| [s.join("packages"), s.join("active")])
        {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("depot/", env!("CARGO_PKG_VERSION")));
        let client = egress
            .client(builder, Some(MAX_REDIRECTS))
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            storage,
            artifacts: store.artifacts,
            packages: store.packages,
            trust: store.trust,
            max_bytes,
            syncing: tokio::sync::Mutex::new(()),
        })
    }

    /// Points `name`'s link at `id` (atomically: readers see the old target or the new one),
    /// or removes it.
    async fn point(&self, name: &str, id: Option<uuid::Uuid>) -> Result<(), ExecError> {
        let Some(storage) = &self.storage else {
            return Ok(());
        };
        let link = storage.join("active").join(link_name(name));
        match id {
            Some(id) => {
                let target = link_target(id);
                if tokio::fs::read_link(&link).await.is_ok_and(|t| t == target) {
                    return Ok(());
                }
                let tmp = link.with_extension(format!("tmp-{}", uuid::Uuid::now_v7()));
                tokio::fs::symlink(&target, &tmp)
                    .await
                    .map_err(|e| io_retryable("creating the active link", e))?;
                // rename() replaces an existing link atomically.
                if let Err(e) = tokio::fs::rename(&tmp, &link).await {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(io_retryable("switching the active link", e));
                }
                Ok(())
            }
            None => match tokio::fs::remove_file(&link).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io_retryable("removing the active link", e))
                }
                _ => Ok(()),
            },
        }
    }

    /// The SHA-256 of the artifact the store holds for `id` (read through, hashed as it
    /// streams), if it holds one that reads to its end.
    async fn stored_sha256(&self, id: uuid::Uuid) -> Result<Option<String>, ExecError> {
        let storage = ExecError::store_unreadable;
        let Some(opened) = self.artifacts.open(id).await.map_err(storage)? else {
            return Ok(None);
        };
        let mut bytes = opened.whole().await.map_err(storage)?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = bytes.next().await {
            match chunk {
                Ok(chunk) => hasher.update(&chunk),
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(hex(&hasher.finalize())))
    }

    /// True when the store holds the package's artifact and it is what the package declares.
    async fn verified(&self, p: &Package) -> Result<bool, ExecError> {
        let stored = self
            .artifacts
            .head(p.id)
            .await
            .map_err(ExecError::store_unreadable)?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        if p.size_bytes.is_some_and(|s| s as u64 != stored.size) {
            return Ok(false);
        }
        let Some(want) = p.sha256.as_deref() else {
            return Ok(false);
        };
        Ok(self.stored_sha256(p.id).await?.as_deref() == Some(want))
    }

    async fn download(&self, p: &Package, progress: &dyn Progress) -> Result<(), ExecError> {
        let url = p
            .source_url
            .as_deref()
            .ok_or_else(|| failed("no_source_url", "the package has no source_url to download"))?;
        let signed = self.signature_of(p).await?;
        if self.verified(p).await? {
            // Already in place (a redelivery after a crash): its signature is checked there.
            if let Some((signature, _)) = &signed {
                let storage = ExecError::store_unreadable;
                let body = self
                    .artifacts
                    .open(p.id)
                    .await
                    .map_err(storage)?
                    .ok_or_else(unreachable_source)?
                    .whole()
                    .await
                    .map_err(storage)?;
                match self.trust.verify(&p.name, signature, body).await {
                    Ok(_) => {}
                    Err(SignatureError::Unreadable) => {
                        return Err(ExecError::Retryable(
                            "the stored artifact could not be read back to check its signature"
                                .into(),
                        ));
                    }
                    Err(e) => {
                        // Bytes that do not verify are not kept, as on the first delivery.
                        self.artifacts.remove(p.id).await.map_err(|e| {
                            ExecError::Retryable(format!("clearing the artifact store: {e}"))
                        })?;
                        return Err(signature_invalid(e));
                    }
                }
                let size = self
                    .artifacts
                    .head(p.id)
                    .await
                    .map_err(storage)?
                    .map(|s| s.size as i64)
                    .ok_or_else(unreachable_source)?;
                let artifact = VerifiedArtifact {
                    sha256: p.sha256.clone().unwrap_or_default(),
                    size,
                    signature: None,
                };
                self.record(p, signed.as_ref(), artifact).await?;
            }
            return Ok(());
        }
        // Bytes in place that are not the declared ones (a crash mid-write of an older layout,
        // an undeclared earlier attempt): they go, as no upload can commit while this runs.
        let held = self
            .artifacts
            .head(p.id)
            .await
            .map_err(ExecError::store_unreadable)?;
        if held.is_some() {
            self.artifacts
                .remove(p.id)
                .await
                .map_err(|e| ExecError::Retryable(format!("clearing the artifact store: {e}")))?;
        }
        // What the remote said or how it failed goes to the log (the URL redacted); the
        // operation's error carries only a code and a fixed sentence, so neither the answer nor a
        // connection error can be read back by whoever chose the URL.
        let site = redact(url);
        let request = self
            .client
            .request(reqwest::Method::GET, url)
            .map_err(|e| forbidden(&site, &e))?;
        let response = request.send().await.map_err(|e| match refusal(&e) {
            Some(too_many @ EgressError::TooManyRedirects(_)) => {
                tracing::warn!(package_id = %p.id, source = %site, error = %too_many, "download failed");
                failed("download_failed", "the source did not hand over the artifact")
            }
            Some(refused) => forbidden(&site, refused),
            None => {
                tracing::warn!(package_id = %p.id, source = %site, error = %e.without_url(), "download failed");
                unreachable_source()
            }
        })?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            tracing::warn!(package_id = %p.id, source = %site, %status, "download answered a temporary error");
            return Err(unreachable_source());
        }
        if !status.is_success() {
            tracing::warn!(package_id = %p.id, source = %site, %status, "download refused");
            return Err(failed(
                "download_failed",
                "the source did not hand over the artifact",
            ));
        }
        let expected = p.size_bytes.map(|s| s as u64).or(response.content_length());
        // The body streams into the store; why a stream stopped (cancelled, past the declared
        // size, the source gone) is kept here, the store sees only that it ended.
        let stopped: Arc<std::sync::Mutex<Option<ExecError>>> = Arc::default();
        let declared = p.size_bytes.map(|s| s as u64);
        let body = {
            let stopped = stopped.clone();
            let site = site.clone();
            let id = p.id;
            let mut received: u64 = 0;
            response.bytes_stream().then(move |chunk| {
                let stopped = stopped.clone();
                let site = site.clone();
                let chunk = chunk.map(|c| {
                    received += c.len() as u64;
                    (c, received)
                });
                async move {
                    let stop = |e: ExecError| {
                        *stopped.lock().expect("a lock") = Some(e);
                        Err(std::io::Error::other("stopped"))
                    };
                    let (chunk, received) = match chunk {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(package_id = %id, source = %site, error = %e.without_url(), "download interrupted");
                            return stop(unreachable_source());
                        }
                    };
                    if declared.is_some_and(|size| received > size) {
                        return stop(size_mismatch());
                    }
                    if let Some(total) = expected.filter(|t| *t > 0)
                        && progress
                            .report((received * 100 / total).min(99) as u8)
                            .await
                    {
                        return stop(ExecError::Cancelled);
                    }
                    Ok(chunk)
                }
            })
        };
        // `progress` is borrowed by the stream: it is driven to its end here, not spawned.
        let (staged, check) = stage_borrowed(
            &*self.artifacts,
            p.id,
            body,
            self.max_bytes,
            signed.as_ref(),
        )
        .await;
        let staged = match staged {
            Ok(staged) => staged,
            Err(ArtifactError::TooLarge { limit }) => {
                return Err(failed(
                    "too_large",
                    format!("more than artifacts.max_bytes ({limit} bytes)"),
                ));
            }
            Err(ArtifactError::Body(_)) => {
                return Err(stopped
                    .lock()
                    .expect("a lock")
                    .take()
                    .unwrap_or_else(unreachable_source));
            }
            Err(e @ (ArtifactError::Storage(_) | ArtifactError::Exists)) => {
                return Err(ExecError::Retryable(format!("storing the download: {e}")));
            }
        };
        if declared.is_some_and(|size| staged.size != size) {
            return Err(size_mismatch());
        }
        if let Some(want) = p.sha256.as_deref()
            && staged.sha256 != want
        {
            return Err(failed(
                "checksum_mismatch",
                "the artifact's sha256 is not the declared one",
            ));
        }
        if let Some(check) = check {
            // The staged bytes go when this refuses them.
            check.finish().await.map_err(signature_invalid)?;
        }
        let artifact = VerifiedArtifact {
            sha256: staged.sha256.clone(),
            size: staged.size as i64,
            signature: None,
        };
        // Never over bytes already there: when this download's lease ran out, an upload may
        // have given the version its artifact meanwhile, and that one stays.
        match staged.promote_new().await {
            Ok(()) => {}
            Err(ArtifactError::Exists) => {
                return if self.stored_sha256(p.id).await?.as_deref()
                    == Some(artifact.sha256.as_str())
                {
                    Ok(())
                } else {
                    Err(failed(
                        "artifact_conflict",
                        "another artifact was stored for this version while it downloaded",
                    ))
                };
            }
            Err(e) => return Err(ExecError::Retryable(format!("storing the artifact: {e}"))),
        }
        // What was verified becomes what the package says it is (when it did not say).
        self.record(p, signed.as_ref(), artifact).await
    }

    /// Records what a download verified: the hash and size where the package did not declare
    /// them, and the signature that verified (fetched, or the one it held) with when.
    async fn record(
        &self,
        p: &Package,
        signed: Option<&(Signature, TrustedKey)>,
        mut artifact: VerifiedArtifact,
    ) -> Result<(), ExecError> {
        artifact.signature = signed.map(|(signature, _)| PackageSignature {
            text: signature.text().to_owned(),
            verified_at: Some(chrono::Utc::now()),
        });
        if p.sha256.is_none() || p.size_bytes.is_none() || artifact.signature.is_some() {
            self.packages
                .record_artifact(p.id, &artifact, chrono::Utc::now())
                .await
                .map_err(|e| ExecError::Retryable(format!("recording the artifact: {e}")))?;
        }
        Ok(())
    }

    /// The signature a download checks, with the trusted key that made it: the one the package
    /// holds, else the one `signature_url` serves (fetched through the egress policy, at most
    /// `MAX_SIGNATURE_BYTES`); `None` when it has neither. A signature that does not parse or
    /// is by no key trusted for the name fails the download `signature_invalid`.
    async fn signature_of(
        &self,
        p: &Package,
    ) -> Result<Option<(Signature, TrustedKey)>, ExecError> {
        let (text, fetched) = match (&p.signature, &p.signature_url) {
            (Some(held), _) => (held.text.clone(), false),
            (None, Some(url)) => (self.fetch_signature(p, url).await?, true),
            (None, None) => return Ok(None),
        };
        // What a remote served is described by a fixed sentence, never echoed (not even the
        // key id it names).
        let refused = |e: SignatureError| {
            if fetched {
                tracing::warn!(package_id = %p.id, error = %e, "the signature_url's signature was refused");
                failed(
                    "signature_invalid",
                    "the signature_url did not hand over a minisign signature by a key trusted \
                     for this name",
                )
            } else {
                signature_invalid(e)
            }
        };
        let signature = Signature::parse(&text).map_err(refused)?;
        let key = match self.trust.signer(&p.name, &signature) {
            Ok(key) => key.clone(),
            Err(e) => return Err(refused(e)),
        };
        Ok(Some((signature, key)))
    }

    /// The text `signature_url` serves. As for the artifact, what the remote said goes to the
    /// log only; the operation's error is a fixed sentence.
    async fn fetch_signature(&self, p: &Package, url: &str) -> Result<String, ExecError> {
        let site = redact(url);
        let refused = || {
            failed(
                "signature_invalid",
                "the signature_url did not hand over a minisign signature",
            )
        };
        let forbidden = |reason: &dyn std::fmt::Display| {
            tracing::warn!(source = %site, %reason, "fetching the signature refused by the egress policy");
            failed(
                "destination_forbidden",
                "the signature_url's destination is not allowed by the egress policy",
            )
        };
        let request = self
            .client
            .request(reqwest::Method::GET, url)
            .map_err(|e| forbidden(&e))?;
        let response = request.send().await.map_err(|e| match refusal(&e) {
            Some(EgressError::TooManyRedirects(_)) => {
                tracing::warn!(package_id = %p.id, source = %site, error = %e.without_url(), "fetching the signature failed");
                refused()
            }
            None => {
                tracing::warn!(package_id = %p.id, source = %site, error = %e.without_url(), "fetching the signature failed");
                unreachable_source()
            }
            Some(reason) => forbidden(reason),
        })?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            tracing::warn!(package_id = %p.id, source = %site, %status, "the signature_url answered a temporary error");
            return Err(unreachable_source());
        }
        if !status.is_success() {
            tracing::warn!(package_id = %p.id, source = %site, %status, "the signature_url refused");
            return Err(refused());
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| {
                tracing::warn!(package_id = %p.id, source = %site, error = %e.without_url(), "fetching the signature was interrupted");
                unreachable_source()
            })?;
            if body.len() + chunk.len() > MAX_SIGNATURE_BYTES {
                return Err(refused());
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| refused())
    }

    async fn activate(&self, p: &Package) -> Result<(), ExecError> {
        let held = self
            .artifacts
            .head(p.id)
            .await
            .map_err(ExecError::store_unreadable)?;
        if held.is_none() {
            return Err(failed(
                "artifact_missing",
                "the downloaded artifact is not in storage; download it again",
            ));
        }
        // The link moves with the activation; `sync_active` settles it once committed.
        self.point(&p.name, Some(p.id)).await
    }

    async fn deactivate(&self, p: &Package) -> Result<(), ExecError> {
        let Some(storage) = &self.storage else {
            return Ok(());
        };
        let link = storage.join("active").join(link_name(&p.name));
        match tokio::fs::read_link(&link).await {
            Ok(target) if target == link_target(p.id) => self.point(&p.name, None).await,
            // Another version is the active one now, or there is no link: nothing to undo.
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Executor for HttpExecutor {
    async fn execute(
        &self,
        kind: OperationKind,
        package: &Package,
        progress: &dyn Progress,
    ) -> Result<(), ExecError> {
        match kind {
            OperationKind::Download => self.download(package, progress).await,
            OperationKind::Activate => self.activate(package).await,
            OperationKind::Deactivate => self.deactivate(package).await,
            // The runner prunes (a name, not one package); its files go through the store.
            OperationKind::Prune => Err(ExecError::Failed {
                code: "not_a_package_operation".into(),
                detail: "a prune acts on a name, not on one package".into(),
            }),
        }
    }

    async fn sync_active(
        &self,
        name: &str,
        active: depot_packages::executor::ActiveNow<'_>,
    ) -> Result<(), ExecError> {
        let _one_at_a_time = self.syncing.lock().await;
        let active = active
            .await
            .map_err(|e| ExecError::Retryable(format!("reading the active version: {e}")))?;
        self.point(name, active.map(|p| p.id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::{escape_name, link_name};

    /// The review: a valid 90-character name with spaces (or `пакет-` eight times) mapped to a
    /// file name over the file-system limit, so the version downloaded and never activated.
    #[test]
    fn link_names_are_bounded_and_distinct() {
        let long = "a name with spaces ".repeat(5);
        let cyrillic = "пакет-".repeat(8);
        for name in [long.as_str(), cyrillic.as_str(), "%".repeat(200).as_str()] {
            let link = link_name(name);
            assert!(link.len() <= 81, "{} bytes: {link}", link.len());
            assert!(!link.contains('/') && !link.starts_with('.'), "{link}");
            assert!(
                !link
                    .trim_end_matches(|c: char| c.is_ascii_hexdigit())
                    .ends_with('%')
            );
        }
        assert_ne!(
            link_name("A"),
            link_name("a"),
            "case-insensitive file systems"
        );
        assert_ne!(link_name("a/b"), link_name("a%2Fb"));
        assert!(link_name("left-pad").starts_with("left-pad-"));
    }

    #[test]
    fn names_become_safe_file_names() {
        assert_eq!(escape_name("left-pad"), "left-pad");
        assert_eq!(escape_name("@scope/pkg"), "%40scope%2Fpkg");
        assert_eq!(escape_name("../etc"), "%2E.%2Fetc");
        assert_eq!(escape_name("a b"), "a%20b");
    }
}
