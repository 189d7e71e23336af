//! The `http` executor: downloads a package's `source_url` into the storage directory, streaming,
//! verifying `size_bytes` and `sha256`; activation points `active/<name>` at the version's
//! directory and deactivation removes that link. Every step is idempotent, so a worker that
//! crashed mid-way can simply run it again.
//!
//! Layout: `<storage>/packages/<package id>/artifact` and `<storage>/active/<link name>`, a
//! symbolic link to `../packages/<package id>` (relative, so it resolves from anywhere and
//! survives moving the storage directory). A link name is bounded and collision-free whatever
//! the package name ([`link_name`]). After every activation and deactivation the link is made to
//! agree with the database ([`Executor::sync_active`]); `depot fsck` reports (and with
//! `--repair` fixes) whatever still drifts.

use crate::http::egress::{Egress, EgressClient, EgressError, redact, refusal};
use async_trait::async_trait;
use depot_packages::executor::{ExecError, Executor, Progress};
use depot_packages::{OperationKind, Package};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

pub struct HttpExecutor {
    client: EgressClient,
    storage: PathBuf,
    max_bytes: u64,
    /// Held while a name's link is synced with the database: one sync at a time, each reading
    /// the database inside it, so the last one leaves the last committed state.
    syncing: tokio::sync::Mutex<()>,
}

/// A download's partial file: removed when dropped, on every path but the one that renames it
/// into place.
struct Partial(Option<PathBuf>);

impl Partial {
    fn path(&self) -> &Path {
        self.0.as_deref().expect("a partial file")
    }

    /// The file was renamed into place: nothing to remove.
    fn kept(mut self) {
        self.0 = None;
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
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
        storage: PathBuf,
        timeout: Duration,
        max_bytes: u64,
        egress: &Egress,
    ) -> Result<Self, String> {
        for dir in [storage.join("packages"), storage.join("active")] {
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
            max_bytes,
            syncing: tokio::sync::Mutex::new(()),
        })
    }

    /// Points `name`'s link at `id` (atomically: readers see the old target or the new one),
    /// or removes it.
    async fn point(&self, name: &str, id: Option<uuid::Uuid>) -> Result<(), ExecError> {
        let link = self.storage.join("active").join(link_name(name));
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

    fn package_dir(&self, p: &Package) -> PathBuf {
        self.storage.join("packages").join(p.id.to_string())
    }

    async fn verified(path: &Path, p: &Package) -> Result<bool, ExecError> {
        let Ok(bytes) = tokio::fs::read(path).await else {
            return Ok(false);
        };
        let size_ok = p.size_bytes.is_none_or(|s| s == bytes.len() as i64);
        let sha_ok = p
            .sha256
            .as_deref()
            .is_none_or(|h| hex(&Sha256::digest(&bytes)) == h);
        Ok(size_ok && sha_ok)
    }

    async fn download(&self, p: &Package, progress: &dyn Progress) -> Result<(), ExecError> {
        let url = p
            .source_url
            .as_deref()
            .ok_or_else(|| failed("no_source_url", "the package has no source_url to download"))?;
        let dir = self.package_dir(p);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_retryable("creating the package directory", e))?;
        let target = dir.join("artifact");
        if Self::verified(&target, p).await? {
            return Ok(());
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
        // A name of its own per attempt: a redelivered operation may briefly run twice (crash
        // takeover), and two writers must not share one file. Only a verified file is renamed in.
        let partial = Partial(Some(
            dir.join(format!("artifact.part-{}", uuid::Uuid::now_v7())),
        ));
        let mut file = tokio::fs::File::create(partial.path())
            .await
            .map_err(|e| io_retryable("creating the download file", e))?;
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                tracing::warn!(package_id = %p.id, source = %site, error = %e.without_url(), "download interrupted");
                unreachable_source()
            })?;
            received += chunk.len() as u64;
            // Whatever the package or the server declare, a download stops at the limit.
            if received > self.max_bytes {
                return Err(failed(
                    "too_large",
                    format!(
                        "more than executor.max_download_bytes ({} bytes)",
                        self.max_bytes
                    ),
                ));
            }
            if let Some(size) = p.size_bytes
                && received > size as u64
            {
                return Err(size_mismatch());
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| io_retryable("writing the download", e))?;
            if let Some(total) = expected.filter(|t| *t > 0)
                && progress
                    .report((received * 100 / total).min(99) as u8)
                    .await
            {
                return Err(ExecError::Cancelled);
            }
        }
        file.flush()
            .await
            .map_err(|e| io_retryable("writing the download", e))?;
        file.sync_all()
            .await
            .map_err(|e| io_retryable("syncing the download", e))?;
        drop(file);
        if let Some(size) = p.size_bytes
            && received != size as u64
        {
            return Err(size_mismatch());
        }
        let digest = hex(&hasher.finalize());
        if let Some(want) = p.sha256.as_deref()
            && digest != want
        {
            return Err(failed(
                "checksum_mismatch",
                "the artifact's sha256 is not the declared one",
            ));
        }
        tokio::fs::rename(partial.path(), &target)
            .await
            .map_err(|e| io_retryable("storing the artifact", e))?;
        partial.kept();
        Ok(())
    }

    async fn activate(&self, p: &Package) -> Result<(), ExecError> {
        let dir = self.package_dir(p);
        if !tokio::fs::try_exists(dir.join("artifact"))
            .await
            .unwrap_or(false)
        {
            return Err(failed(
                "artifact_missing",
                "the downloaded artifact is not in storage; download it again",
            ));
        }
        // The link moves with the activation; `sync_active` settles it once committed.
        self.point(&p.name, Some(p.id)).await
    }

    async fn deactivate(&self, p: &Package) -> Result<(), ExecError> {
        let link = self.storage.join("active").join(link_name(&p.name));
        match tokio::fs::read_link(&link).await {
            Ok(target) if target == link_target(p.id) => self.point(&p.name, None).await,
            // Another version is the active one now, or there is no link: nothing to undo.
            _ => Ok(()),
        }
    }
}

/// The http executor's files of a package (`<storage>/packages/<id>`), for deletion.
pub struct LocalArtifacts {
    pub storage: PathBuf,
}

#[async_trait]
impl depot_packages::ports::ArtifactFiles for LocalArtifacts {
    async fn remove(&self, package_id: uuid::Uuid) -> Result<(), depot_core::RepoError> {
        let dir = self.storage.join("packages").join(package_id.to_string());
        match tokio::fs::remove_dir_all(&dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(depot_core::RepoError::Unavailable(Box::new(e)))
            }
            _ => Ok(()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
            // The runner prunes (a name, not one package); its files go through `ArtifactFiles`.
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
