//! The S3-compatible adapter of [`ArtifactStore`] (`artifacts.url = s3://bucket/prefix`),
//! through the `object_store` crate: `<prefix>/packages/<package id>/artifact`, staged as a
//! multipart upload to `<prefix>/packages/<id>/staging/<uuid>` (hashed and counted as its parts
//! go) and copied into place. Every API replica and worker sees the same artifacts.
//!
//! S3 has no rename: promotion is a server-side copy (readers see the old object or the new
//! one, S3 copies are atomic) and a delete of the staged object. A promotion that may not
//! replace checks the target first; the window between that check and the copy is the
//! adapter's one gap against the filesystem's link(2) (a download whose lease ran out racing
//! an upload of the same version within it).

use super::artifacts::hex;
use async_trait::async_trait;
use depot_packages::artifacts::{
    ArtifactError, ArtifactStore, ByteStream, OpenedArtifact, PendingArtifact, ReadArtifact,
    Staged, StoredArtifact,
};
use depot_packages::ports::ArtifactFiles;
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, PutMultipartOptions, WriteMultipart};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use uuid::Uuid;

/// Bytes per uploaded part (S3 wants at least 5 MiB for every part but the last).
const PART: usize = 8 * 1024 * 1024;
/// Parts in flight at once while staging.
const PARTS_IN_FLIGHT: usize = 2;

/// Where the bucket is and how to sign in (the keys come from the secret store).
#[derive(Clone)]
pub struct S3Config {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub allow_http: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<secrecy::SecretString>,
}

pub struct S3Artifacts {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    prefix: String,
}

fn storage(e: object_store::Error) -> ArtifactError {
    ArtifactError::storage(e)
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl S3Artifacts {
    pub fn new(config: S3Config) -> Result<Self, String> {
        use secrecy::ExposeSecret;
        crate::install_tls_provider();
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_allow_http(config.allow_http);
        if let Some(endpoint) = &config.endpoint {
            // S3-compatible servers are addressed by path (`endpoint/bucket/key`).
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(id) = &config.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose_secret());
        }
        let store = builder
            .build()
            .map_err(|e| format!("cannot configure the S3 client: {e}"))?;
        Ok(Self {
            store: Arc::new(store),
            bucket: config.bucket,
            prefix: config.prefix.trim_matches('/').to_owned(),
        })
    }

    fn key(&self, rest: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rest)
        } else {
            Key::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn dir(&self, id: Uuid) -> Key {
        self.key(&format!("packages/{id}"))
    }

    fn artifact(&self, id: Uuid) -> Key {
        self.key(&format!("packages/{id}/artifact"))
    }

    async fn delete(store: &dyn ObjectStore, key: Key) -> Result<(), object_store::Error> {
        let mut deleted = store.delete_stream(futures::stream::iter([Ok(key)]).boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Err(e) if !is_not_found(&e) => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks that the bucket answers (at start-up: a wrong endpoint or key stops the process
    /// with a message instead of failing every upload later).
    pub async fn check(&self) -> Result<(), String> {
        let probe = self.key(".depot-probe");
        match self
            .store
            .get_opts(
                &probe,
                GetOptions {
                    head: true,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(format!("the bucket {} does not answer: {e}", self.bucket)),
        }
    }
}

/// A staged object: promoted once, or deleted when dropped.
struct S3Pending {
    store: Arc<dyn ObjectStore>,
    staged: Option<Key>,
    target: Key,
}

impl Drop for S3Pending {
    fn drop(&mut self) {
        if let (Some(key), Ok(runtime)) =
            (self.staged.take(), tokio::runtime::Handle::try_current())
        {
            let store = self.store.clone();
            runtime.spawn(async move {
                if let Err(e) = S3Artifacts::delete(&*store, key.clone()).await {
                    tracing::warn!(key = %key, error = %e, "removing a staged artifact failed");
                }
            });
        }
    }
}

#[async_trait]
impl PendingArtifact for S3Pending {
    async fn promote(mut self: Box<Self>, replace: bool) -> Result<(), ArtifactError> {
        let from = self.staged.clone().expect("a staged object");
        if !replace {
            let present = self
                .store
                .get_opts(
                    &self.target,
                    GetOptions {
                        head: true,
                        ..Default::default()
                    },
                )
                .await;
            match present {
                Ok(_) => return Err(ArtifactError::Exists),
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(storage(e)),
            }
        }
        self.store
            .copy_opts(&from, &self.target, Default::default())
            .await
            .map_err(storage)?;
        // The staged object goes when `self` is dropped.
        Ok(())
    }
}

#[async_trait]
impl ArtifactFiles for S3Artifacts {
    async fn remove(&self, package_id: Uuid) -> Result<(), depot_core::RepoError> {
        let unavailable = |e: object_store::Error| depot_core::RepoError::Unavailable(Box::new(e));
        let keys: Vec<Key> = self
            .store
            .list(Some(&self.dir(package_id)))
            .map(|m| m.map(|m| m.location))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        for key in keys {
            Self::delete(&*self.store, key).await.map_err(unavailable)?;
        }
        Ok(())
    }
}

#[async_trait]
impl ArtifactStore for S3Artifacts {
    async fn stage(
        &self,
        package_id: Uuid,
        mut body: ByteStream,
        max_bytes: u64,
    ) -> Result<Staged, ArtifactError> {
        let key = self.key(&format!("packages/{package_id}/staging/{}", Uuid::now_v7()));
        let upload = self
            .store
            .put_multipart_opts(&key, PutMultipartOptions::default())
            .await
            .map_err(storage)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let failed = async |writer: WriteMultipart, e: ArtifactError| {
            let _ = writer.abort().await;
            Err(e)
        };
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return failed(writer, ArtifactError::Body(e)).await,
            };
            size += chunk.len() as u64;
            if size > max_bytes {
                return failed(writer, ArtifactError::TooLarge { limit: max_bytes }).await;
            }
            hasher.update(&chunk);
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                return failed(writer, storage(e)).await;
            }
            writer.put(chunk);
        }
        if size == 0 {
            // A multipart upload of no part is refused by S3: an empty object is one put.
            let _ = writer.abort().await;
            self.store
                .put_opts(&key, Default::default(), Default::default())
                .await
                .map_err(storage)?;
        } else {
            writer.finish().await.map_err(storage)?;
        }
        Ok(Staged::new(
            hex(&hasher.finalize()),
            size,
            Box::new(S3Pending {
                store: self.store.clone(),
                staged: Some(key),
                target: self.artifact(package_id),
            }),
        ))
    }

    async fn head(&self, package_id: Uuid) -> Result<Option<StoredArtifact>, ArtifactError> {
        // Opening an object is its HEAD; the GET waits for a read.
        Ok(self
            .open(package_id)
            .await?
            .map(|o| StoredArtifact { size: o.size }))
    }

    async fn open(&self, package_id: Uuid) -> Result<Option<OpenedArtifact>, ArtifactError> {
        let key = self.artifact(package_id);
        let head = GetOptions {
            head: true,
            ..Default::default()
        };
        let meta = match self.store.get_opts(&key, head).await {
            Ok(got) => got.meta,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(storage(e)),
        };
        Ok(Some(OpenedArtifact::new(
            meta.size,
            ObjectReader {
                store: self.store.clone(),
                key,
                e_tag: meta.e_tag,
            },
        )))
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Reads an object when its bytes are asked for: one ranged GET of the very object the HEAD
/// saw (`If-Match` its ETag), so a replaced object is never served under the old one's size.
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    key: Key,
    e_tag: Option<String>,
}

#[async_trait]
impl ReadArtifact for ObjectReader {
    async fn read(
        self: Box<Self>,
        range: std::ops::Range<u64>,
    ) -> Result<ByteStream, ArtifactError> {
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            if_match: self.e_tag,
            ..Default::default()
        };
        let got = self
            .store
            .get_opts(&self.key, options)
            .await
            .map_err(storage)?;
        Ok(got
            .into_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other))
            .boxed())
    }
}
