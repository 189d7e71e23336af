//! Where packages' artifacts are kept, as a port. Adapters (in the api crate's packages room):
//! the filesystem (the embedded default, `file://…`) and S3-compatible object storage.
//!
//! Bytes arrive as a stream and are staged: hashed and counted as they are written, never held
//! in memory, and kept only once promoted. A staged artifact that is dropped unpromoted (a
//! mismatch, an interrupted body, a refused commit) is removed.

use crate::ports::ArtifactFiles;
use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use std::pin::Pin;
use uuid::Uuid;

/// Moving staged bytes into place (what [`Staged::promote`] returns, boxed), run by the
/// repository inside the transaction that makes them the package's.
pub type Placement<'a> =
    Pin<Box<dyn std::future::Future<Output = Result<(), ArtifactError>> + Send + 'a>>;

/// Bytes in or out of storage.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The body went past the size limit (`artifacts.max_bytes`); nothing was kept.
    #[error("more than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The body could not be read to its end (the client or the source went away, or a
    /// check of the stream itself stopped it); nothing was kept.
    #[error("the body could not be read: {0}")]
    Body(#[source] std::io::Error),
    /// A promotion that may not replace found an artifact in place.
    #[error("the package already holds an artifact")]
    Exists,
    /// The storage failed.
    #[error("artifact storage failed: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ArtifactError {
    pub fn storage(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Storage(Box::new(e))
    }
}

/// A package's artifact as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredArtifact {
    pub size: u64,
}

/// Reads an opened artifact's bytes (what an adapter puts in an [`OpenedArtifact`]).
#[async_trait]
pub trait ReadArtifact: Send {
    /// The bytes of `range` (start inclusive, end exclusive, within the size): an error the
    /// storage answers before the first byte (the bytes went, or changed, since the opening)
    /// comes here, before an HTTP answer is committed to a status.
    async fn read(
        self: Box<Self>,
        range: std::ops::Range<u64>,
    ) -> Result<ByteStream, ArtifactError>;
}

/// An artifact opened for reading: its size now, its bytes (all or a range) when asked. One
/// look-up serves both, where a `head` and then an `open` would take two.
pub struct OpenedArtifact {
    pub size: u64,
    reader: Box<dyn ReadArtifact>,
}

impl std::fmt::Debug for OpenedArtifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedArtifact")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl OpenedArtifact {
    pub fn new(size: u64, reader: impl ReadArtifact + 'static) -> Self {
        Self {
            size,
            reader: Box::new(reader),
        }
    }

    /// The bytes of `range` (checked against the size by the caller: a range past it is
    /// cut to it), or all of them.
    pub async fn read(
        self,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<ByteStream, ArtifactError> {
        let range = match range {
            Some(r) => r.start.min(self.size)..r.end.min(self.size),
            None => 0..self.size,
        };
        self.reader.read(range).await
    }

    /// All of the bytes.
    pub async fn whole(self) -> Result<ByteStream, ArtifactError> {
        self.read(None).await
    }
}

/// Bytes written to storage, not yet the package's artifact.
pub struct Staged {
    /// Lower-case hex SHA-256 of what was written.
    pub sha256: String,
    pub size: u64,
    pending: Box<dyn PendingArtifact>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("sha256", &self.sha256)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Staged {
    pub fn new(sha256: String, size: u64, pending: Box<dyn PendingArtifact>) -> Self {
        Self {
            sha256,
            size,
            pending,
        }
    }

    /// Makes the staged bytes the package's artifact, replacing any it had (readers see the
    /// old bytes or the new, never a mix). For a caller that holds the package (an upload,
    /// inside the transaction that makes it Downloaded).
    pub async fn promote(self) -> Result<(), ArtifactError> {
        self.pending.promote(true).await
    }

    /// The same, unless the package holds an artifact already (`Exists`; the staged bytes go):
    /// for a caller that does not hold the package (a download, which an upload may have
    /// overtaken after the download's lease ran out).
    pub async fn promote_new(self) -> Result<(), ArtifactError> {
        self.pending.promote(false).await
    }
}

/// The adapter's handle on staged bytes: promoted once, or removed when dropped.
#[async_trait]
pub trait PendingArtifact: Send + Sync {
    /// Into place; over an artifact already there only when `replace`.
    async fn promote(self: Box<Self>, replace: bool) -> Result<(), ArtifactError>;
}

/// Removal (for deletions and prunes) comes from [`ArtifactFiles`], which the store extends.
#[async_trait]
pub trait ArtifactStore: ArtifactFiles {
    /// Writes `body` for `package_id`, computing its SHA-256 and size, and stops with
    /// `TooLarge` past `max_bytes`. Nothing is visible as the package's artifact until the
    /// result is promoted.
    async fn stage(
        &self,
        package_id: Uuid,
        body: ByteStream,
        max_bytes: u64,
    ) -> Result<Staged, ArtifactError>;
    /// The package's artifact, if it holds one.
    async fn head(&self, package_id: Uuid) -> Result<Option<StoredArtifact>, ArtifactError>;
    /// The artifact, opened: its size, and its bytes when read; `None` when the package holds
    /// none.
    async fn open(&self, package_id: Uuid) -> Result<Option<OpenedArtifact>, ArtifactError>;
    /// Where the artifacts are, for logs and `depot fsck` (`file:///…`, `s3://bucket/prefix`).
    fn describe(&self) -> String;
}
