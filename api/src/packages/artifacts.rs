//! The filesystem adapter of [`ArtifactStore`] (the embedded default, `artifacts.url =
//! file://<dir>`): `<dir>/packages/<package id>/artifact`, staged beside it as
//! `artifact.part-<uuid>` and renamed into place, so a reader sees the old file or the new one.

use super::file_body;
use async_trait::async_trait;
use depot_packages::artifacts::{
    ArtifactError, ArtifactStore, ByteStream, OpenedArtifact, PendingArtifact, Staged,
    StoredArtifact,
};
use depot_packages::ports::ArtifactFiles;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

/// Bytes read from or written to a file at a time.
const CHUNK: usize = 256 * 1024;

pub struct FsArtifacts {
    root: PathBuf,
}

impl FsArtifacts {
    /// Artifacts under `root` (created when missing; made absolute, so links and logs name it
    /// whatever the working directory).
    pub fn new(root: &Path) -> Result<Self, String> {
        let packages = root.join("packages");
        std::fs::create_dir_all(&packages)
            .map_err(|e| format!("cannot create {}: {e}", packages.display()))?;
        let root = std::path::absolute(root)
            .map_err(|e| format!("cannot resolve {}: {e}", root.display()))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, id: Uuid) -> PathBuf {
        self.root.join("packages").join(id.to_string())
    }

    fn file(&self, id: Uuid) -> PathBuf {
        self.dir(id).join("artifact")
    }
}

/// A staged file: removed when dropped, on every path but the one that renames it into place.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

struct FsPending {
    partial: Partial,
    target: PathBuf,
}

#[async_trait]
impl PendingArtifact for FsPending {
    async fn promote(mut self: Box<Self>, replace: bool) -> Result<(), ArtifactError> {
        let from = self.partial.0.clone().expect("a staged file");
        if replace {
            tokio::fs::rename(&from, &self.target)
                .await
                .map_err(ArtifactError::storage)?;
            self.partial.0 = None;
        } else {
            // A second name for the staged file, refused when one is there (link(2) never
            // replaces); the staged name goes when `partial` is dropped.
            match tokio::fs::hard_link(&from, &self.target).await {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(ArtifactError::Exists);
                }
                other => other.map_err(ArtifactError::storage)?,
            }
        }
        // The rename itself survives a crash once the directory is synced.
        if let Some(dir) = self.target.parent().map(Path::to_owned) {
            let _ = tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all()).await;
        }
        Ok(())
    }
}

/// Lower-case hex, as sha256 digests are kept.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A package's directory goes whole: its artifact and any staged file.
#[async_trait]
impl ArtifactFiles for FsArtifacts {
    async fn remove(&self, package_id: Uuid) -> Result<(), depot_core::RepoError> {
        match tokio::fs::remove_dir_all(self.dir(package_id)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(depot_core::RepoError::Unavailable(Box::new(e)))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl ArtifactStore for FsArtifacts {
    async fn stage(
        &self,
        package_id: Uuid,
        mut body: ByteStream,
        max_bytes: u64,
    ) -> Result<Staged, ArtifactError> {
        let dir = self.dir(package_id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(ArtifactError::storage)?;
        // A name of its own per writer: two uploads, or a download redelivered during a crash
        // takeover, never share a file.
        let partial = Partial(Some(dir.join(format!("artifact.part-{}", Uuid::now_v7()))));
        let file = tokio::fs::File::create(partial.0.as_ref().expect("a staged file"))
            .await
            .map_err(ArtifactError::storage)?;
        let mut file = tokio::io::BufWriter::with_capacity(CHUNK, file);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(ArtifactError::Body)?;
            size += chunk.len() as u64;
            if size > max_bytes {
                return Err(ArtifactError::TooLarge { limit: max_bytes });
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(ArtifactError::storage)?;
        }
        file.flush().await.map_err(ArtifactError::storage)?;
        file.get_ref()
            .sync_all()
            .await
            .map_err(ArtifactError::storage)?;
        drop(file);
        Ok(Staged::new(
            hex(&hasher.finalize()),
            size,
            Box::new(FsPending {
                partial,
                target: self.file(package_id),
            }),
        ))
    }

    async fn head(&self, package_id: Uuid) -> Result<Option<StoredArtifact>, ArtifactError> {
        match tokio::fs::metadata(self.file(package_id)).await {
            Ok(m) if m.is_file() => Ok(Some(StoredArtifact { size: m.len() })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ArtifactError::storage(e)),
        }
    }

    async fn open(&self, package_id: Uuid) -> Result<Option<OpenedArtifact>, ArtifactError> {
        // From the page cache when it holds the file, else one trip to the blocking pool opens
        // it (and reads a small one whole).
        let path = self.file(package_id);
        if let Some(opened) = file_body::open_cached(&path) {
            return opened.map_err(ArtifactError::storage);
        }
        tokio::task::spawn_blocking(move || file_body::open(&path))
            .await
            .map_err(ArtifactError::storage)?
            .map_err(ArtifactError::storage)
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn body(parts: Vec<Result<&'static [u8], std::io::Error>>) -> ByteStream {
        futures::stream::iter(parts.into_iter().map(|p| p.map(Bytes::from_static))).boxed()
    }

    async fn read(store: &FsArtifacts, id: Uuid, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
        let mut stream = store
            .open(id)
            .await
            .unwrap()
            .expect("an artifact")
            .read(range)
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    fn files(store: &FsArtifacts, id: Uuid) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(store.dir(id))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test]
    async fn staged_bytes_are_the_artifact_only_once_promoted_and_nothing_stays_otherwise() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsArtifacts::new(tmp.path()).unwrap();
        let id = Uuid::now_v7();
        let staged = store
            .stage(id, body(vec![Ok(b"hello "), Ok(b"world")]), 100)
            .await
            .unwrap();
        assert_eq!(staged.size, 11);
        assert_eq!(
            staged.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(store.head(id).await.unwrap(), None, "not before promotion");
        staged.promote().await.unwrap();
        assert_eq!(
            store.head(id).await.unwrap(),
            Some(StoredArtifact { size: 11 })
        );
        assert_eq!(read(&store, id, None).await, b"hello world");
        assert_eq!(read(&store, id, Some(6..11)).await, b"world");
        assert_eq!(read(&store, id, Some(0..1)).await, b"h");
        assert_eq!(files(&store, id), vec!["artifact"]);

        // Dropped unpromoted, too large, or an interrupted body: the old artifact stays and no
        // partial file is left.
        drop(
            store
                .stage(id, body(vec![Ok(b"other")]), 100)
                .await
                .unwrap(),
        );
        let too_large = store.stage(id, body(vec![Ok(b"0123456789")]), 9).await;
        assert!(matches!(
            too_large,
            Err(ArtifactError::TooLarge { limit: 9 })
        ));
        let cut = store
            .stage(
                id,
                body(vec![
                    Ok(b"half"),
                    Err(std::io::ErrorKind::ConnectionReset.into()),
                ]),
                100,
            )
            .await;
        assert!(matches!(cut, Err(ArtifactError::Body(_))), "{cut:?}");
        assert_eq!(files(&store, id), vec!["artifact"]);
        assert_eq!(read(&store, id, None).await, b"hello world");

        // A promotion that may not replace leaves the artifact in place, and no staged file.
        let other = store
            .stage(id, body(vec![Ok(b"other")]), 100)
            .await
            .unwrap();
        assert!(matches!(
            other.promote_new().await,
            Err(ArtifactError::Exists)
        ));
        assert_eq!(read(&store, id, None).await, b"hello world");
        assert_eq!(files(&store, id), vec!["artifact"]);

        store.remove(id).await.unwrap();
        assert_eq!(store.head(id).await.unwrap(), None);
        let fresh = store
            .stage(id, body(vec![Ok(b"fresh")]), 100)
            .await
            .unwrap();
        fresh.promote_new().await.unwrap();
        assert_eq!(read(&store, id, None).await, b"fresh");
        assert_eq!(files(&store, id), vec!["artifact"]);
        store.remove(id).await.unwrap();
        assert_eq!(store.head(id).await.unwrap(), None);
        assert!(store.open(id).await.unwrap().is_none());
        store.remove(id).await.unwrap();
    }
}
