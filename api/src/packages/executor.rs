//! The `http` executor: downloads a package's `source_url` into the storage directory, streaming,
//! verifying `size_bytes` and `sha256`; activation points `active/<name>` at the version's
//! directory and deactivation removes that link. Every step is idempotent, so a worker that
//! crashed mid-way can simply run it again.
//!
//! Layout: `<storage>/packages/<package id>/artifact` and `<storage>/active/<escaped name>`.

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
        })
    }

    fn package_dir(&self, p: &Package) -> PathBuf {
        self.storage.join("packages").join(p.id.to_string())
    }

    fn active_link(&self, p: &Package) -> PathBuf {
        self.storage.join("active").join(escape_name(&p.name))
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
        let partial = dir.join(format!("artifact.part-{}", uuid::Uuid::now_v7()));
        let mut file = tokio::fs::File::create(&partial)
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
                let _ = tokio::fs::remove_file(&partial).await;
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
                let _ = tokio::fs::remove_file(&partial).await;
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
                let _ = tokio::fs::remove_file(&partial).await;
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
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(size_mismatch());
        }
        let digest = hex(&hasher.finalize());
        if let Some(want) = p.sha256.as_deref()
            && digest != want
        {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(failed(
                "checksum_mismatch",
                "the artifact's sha256 is not the declared one",
            ));
        }
        tokio::fs::rename(&partial, &target)
            .await
            .map_err(|e| io_retryable("storing the artifact", e))?;
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
        let link = self.active_link(p);
        let tmp = link.with_extension(format!("tmp-{}", uuid::Uuid::now_v7()));
        tokio::fs::symlink(&dir, &tmp)
            .await
            .map_err(|e| io_retryable("creating the active link", e))?;
        // rename() replaces an existing link atomically: readers see the old or the new target.
        tokio::fs::rename(&tmp, &link)
            .await
            .map_err(|e| io_retryable("switching the active link", e))?;
        Ok(())
    }

    async fn deactivate(&self, p: &Package) -> Result<(), ExecError> {
        let link = self.active_link(p);
        match tokio::fs::read_link(&link).await {
            Ok(target) if target == self.package_dir(p) => tokio::fs::remove_file(&link)
                .await
                .map_err(|e| io_retryable("removing the active link", e)),
            // Another version is the active one now, or there is no link: nothing to undo.
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::escape_name;

    #[test]
    fn names_become_safe_file_names() {
        assert_eq!(escape_name("left-pad"), "left-pad");
        assert_eq!(escape_name("@scope/pkg"), "%40scope%2Fpkg");
        assert_eq!(escape_name("../etc"), "%2E.%2Fetc");
        assert_eq!(escape_name("a b"), "a%20b");
    }
}
