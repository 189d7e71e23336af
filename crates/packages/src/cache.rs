//! A read cache in front of the package repository, for the embedded topology only: one process
//! holds the database and does every write (API and worker alike), so every write passes here
//! and reads stay exactly as fresh as the database. Scaled deployments (several processes
//! writing) do not use it.
//!
//! Packages are cached by id, and list pages by their query. Each write bumps a generation:
//! list pages filled in an older generation are stale, and the written package is evicted. A
//! read that raced with a write (the generation moved while it read the database) does not fill
//! the cache, so an old row never outlives the write that replaced it.

use crate::model::{Operation, Package, PackageFields};
use crate::ports::{
    CancelError, Claimed, DeleteError, InsertError, OperationFilter, OperationRepository,
    OutboxMessage, Outcome, PackageFilter, PackageRepository, PackageSort, StartError, UpdateError,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_core::{Owner, Page, PageRequest, RepoError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use uuid::Uuid;

/// The shared state: one per process, used by every repository decorator of that process.
pub struct PackageCache {
    generation: AtomicU64,
    packages: RwLock<HashMap<Uuid, Package>>,
    lists: RwLock<HashMap<String, (u64, Page<Package>)>>,
    max_packages: usize,
    max_lists: usize,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl PackageCache {
    pub fn new(max_packages: usize, max_lists: usize) -> Self {
        Self {
            generation: AtomicU64::new(0),
            packages: RwLock::new(HashMap::new()),
            lists: RwLock::new(HashMap::new()),
            max_packages: max_packages.max(1),
            max_lists: max_lists.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Moves on every write: anything derived from the cache's data at one generation (a list
    /// page, its rendered JSON) is current exactly while the generation has not moved.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// After a write that changed `package` and may have changed the other versions of its
    /// name: every cached version of the name goes (everything, when the name is unknown here).
    fn written_name_of(&self, package: Uuid) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut packages = self.packages.write().expect("cache lock");
        match packages.get(&package).map(|p| p.name.clone()) {
            Some(name) => packages.retain(|_, p| p.name != name),
            None => packages.clear(),
        }
    }

    /// After a write to the database: every list is stale, and so is `package`.
    fn written(&self, package: Option<Uuid>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(id) = package {
            self.packages.write().expect("cache lock").remove(&id);
        }
    }

    fn get(&self, id: Uuid) -> Option<Package> {
        let hit = self.packages.read().expect("cache lock").get(&id).cloned();
        self.count(hit.is_some());
        hit
    }

    /// Keeps `package`, read when the generation was `read_at`, unless a write happened since.
    fn fill(&self, read_at: u64, package: &Package) {
        let mut map = self.packages.write().expect("cache lock");
        if self.generation() != read_at {
            return;
        }
        if map.len() >= self.max_packages {
            map.clear();
        }
        map.insert(package.id, package.clone());
    }

    fn get_list(&self, key: &str) -> Option<Page<Package>> {
        let current = self.generation();
        let hit = self
            .lists
            .read()
            .expect("cache lock")
            .get(key)
            .filter(|(generation, _)| *generation == current)
            .map(|(_, page)| page.clone());
        self.count(hit.is_some());
        hit
    }

    fn fill_list(&self, read_at: u64, key: String, page: &Page<Package>) {
        let mut map = self.lists.write().expect("cache lock");
        if self.generation() != read_at {
            return;
        }
        if map.len() >= self.max_lists {
            map.clear();
        }
        map.insert(key, (read_at, page.clone()));
    }

    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The package and operation repositories, through the cache.
pub struct Cached<R> {
    inner: Arc<R>,
    cache: Arc<PackageCache>,
}

impl<R> Cached<R> {
    pub fn new(inner: Arc<R>, cache: Arc<PackageCache>) -> Self {
        Self { inner, cache }
    }
}

fn list_key(filter: &PackageFilter, sort: PackageSort, page: &PageRequest) -> String {
    format!("{filter:?}|{sort:?}|{page:?}")
}

#[async_trait]
impl<R: PackageRepository + 'static> PackageRepository for Cached<R> {
    async fn insert(&self, package: &Package) -> Result<(), InsertError> {
        let r = self.inner.insert(package).await;
        self.cache.written(None);
        r
    }

    /// Not cached: read once per create or rename, and owners never change.
    async fn name_owner(&self, name: &str) -> Result<Option<Option<Owner>>, RepoError> {
        self.inner.name_owner(name).await
    }

    async fn get(&self, id: Uuid) -> Result<Package, RepoError> {
        if let Some(p) = self.cache.get(id) {
            return Ok(p);
        }
        let read_at = self.cache.generation();
        let p = self.inner.get(id).await?;
        self.cache.fill(read_at, &p);
        Ok(p)
    }

    async fn list(
        &self,
        filter: &PackageFilter,
        sort: PackageSort,
        page: &PageRequest,
    ) -> Result<Page<Package>, RepoError> {
        let key = list_key(filter, sort, page);
        if let Some(hit) = self.cache.get_list(&key) {
            return Ok(hit);
        }
        let read_at = self.cache.generation();
        let result = self.inner.list(filter, sort, page).await?;
        self.cache.fill_list(read_at, key, &result);
        Ok(result)
    }

    async fn update(
        &self,
        id: Uuid,
        fields: &PackageFields,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Package, UpdateError> {
        let r = self.inner.update(id, fields, expected_revision, now).await;
        self.cache.written(Some(id));
        r
    }

    async fn attach_artifact(
        &self,
        id: Uuid,
        expected_revision: i64,
        artifact: &crate::model::VerifiedArtifact,
        now: DateTime<Utc>,
        place: crate::artifacts::Placement<'_>,
    ) -> Result<Package, crate::ports::AttachError> {
        let r = self
            .inner
            .attach_artifact(id, expected_revision, artifact, now, place)
            .await;
        self.cache.written(Some(id));
        r
    }

    async fn record_artifact(
        &self,
        id: Uuid,
        artifact: &crate::model::VerifiedArtifact,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let r = self.inner.record_artifact(id, artifact, now).await;
        self.cache.written(Some(id));
        r
    }

    async fn set_signature(
        &self,
        id: Uuid,
        expected_revision: i64,
        signature: &crate::model::PackageSignature,
        now: DateTime<Utc>,
    ) -> Result<Package, crate::ports::AttachError> {
        let r = self
            .inner
            .set_signature(id, expected_revision, signature, now)
            .await;
        self.cache.written(Some(id));
        r
    }

    async fn record_verification(
        &self,
        id: Uuid,
        text: &str,
        verified_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let r = self
            .inner
            .record_verification(id, text, verified_at, now)
            .await;
        self.cache.written(Some(id));
        r
    }

    async fn set_yank(
        &self,
        id: Uuid,
        yank: Option<&crate::model::Yank>,
        now: DateTime<Utc>,
    ) -> Result<Package, RepoError> {
        let r = self.inner.set_yank(id, yank, now).await;
        self.cache.written(Some(id));
        r
    }

    async fn delete(&self, id: Uuid, expected_revision: Option<i64>) -> Result<(), DeleteError> {
        let r = self.inner.delete(id, expected_revision).await;
        self.cache.written(Some(id));
        r
    }
}

#[async_trait]
impl<R: OperationRepository + 'static> OperationRepository for Cached<R> {
    async fn start(
        &self,
        operation: &Operation,
        message: &OutboxMessage,
    ) -> Result<(), StartError> {
        self.inner.start(operation, message).await
    }

    async fn start_on_name(
        &self,
        operation: &Operation,
        message: &OutboxMessage,
    ) -> Result<(), StartError> {
        self.inner.start_on_name(operation, message).await
    }

    /// Moves packages back to Created: each is evicted.
    async fn finish_prune(
        &self,
        op: &Operation,
        ids: &[Uuid],
        now: DateTime<Utc>,
        files: &dyn crate::ports::ArtifactFiles,
    ) -> Result<Option<(Operation, Vec<Uuid>)>, RepoError> {
        let r = self.inner.finish_prune(op, ids, now, files).await;
        match &r {
            Ok(Some((_, pruned))) => {
                for id in pruned {
                    self.cache.written(Some(*id));
                }
            }
            Ok(None) => {}
            Err(_) => {
                self.cache.written(None);
                self.cache.packages.write().expect("cache lock").clear();
            }
        }
        r
    }

    async fn get(&self, id: Uuid) -> Result<Operation, RepoError> {
        self.inner.get(id).await
    }

    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Operation>, RepoError> {
        self.inner.get_many(ids).await
    }

    async fn list(
        &self,
        filter: &OperationFilter,
        page: &PageRequest,
    ) -> Result<Page<Operation>, RepoError> {
        self.inner.list(filter, page).await
    }

    async fn claim(&self, id: Uuid, now: DateTime<Utc>) -> Result<Claimed, RepoError> {
        self.inner.claim(id, now).await
    }

    async fn progress(
        &self,
        id: Uuid,
        progress: u8,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        self.inner.progress(id, progress, now).await
    }

    /// The one operation write that changes a package (its status, on success).
    async fn finish(
        &self,
        op: &Operation,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<Option<Operation>, RepoError> {
        let r = self.inner.finish(op, outcome, now).await;
        match &r {
            // An activation also made the name's active version Downloaded.
            Ok(Some(op))
                if op.kind == crate::model::OperationKind::Activate
                    && op.status == crate::model::OperationStatus::Succeeded =>
            {
                match op.package_id {
                    Some(id) => self.cache.written_name_of(id),
                    None => self.cache.written(None),
                }
            }
            Ok(Some(op)) => self.cache.written(op.package_id),
            Ok(None) => {}
            // Unknown whether the package changed: forget everything.
            Err(_) => {
                self.cache.written(None);
                self.cache.packages.write().expect("cache lock").clear();
            }
        }
        r
    }

    async fn request_cancel(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        abandoned_before: DateTime<Utc>,
    ) -> Result<Operation, CancelError> {
        self.inner.request_cancel(id, now, abandoned_before).await
    }

    async fn heartbeat(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, RepoError> {
        self.inner.heartbeat(id, now).await
    }

    // Failing or cancelling an operation changes no package.
    async fn reap(
        &self,
        abandoned_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Operation>, RepoError> {
        self.inner.reap(abandoned_before, now).await
    }

    async fn unfinished(&self) -> Result<Vec<Operation>, RepoError> {
        self.inner.unfinished().await
    }

    async fn purge_finished(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        self.inner.purge_finished(before).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An in-memory package store that counts reads (the cache's backing store in these tests).
    #[derive(Default)]
    struct Store {
        rows: Mutex<HashMap<Uuid, Package>>,
        reads: AtomicU64,
    }

    fn package(name: &str) -> Package {
        Package::created(name.into(), "1".into(), Utc::now())
    }

    #[async_trait]
    impl PackageRepository for Store {
        async fn insert(&self, p: &Package) -> Result<(), InsertError> {
            self.rows.lock().unwrap().insert(p.id, p.clone());
            Ok(())
        }
        async fn name_owner(&self, _: &str) -> Result<Option<Option<Owner>>, RepoError> {
            Ok(None)
        }
        async fn get(&self, id: Uuid) -> Result<Package, RepoError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.rows
                .lock()
                .unwrap()
                .get(&id)
                .cloned()
                .ok_or(RepoError::NotFound)
        }
        async fn list(
            &self,
            _: &PackageFilter,
            _: PackageSort,
            _: &PageRequest,
        ) -> Result<Page<Package>, RepoError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let mut items: Vec<Package> = self.rows.lock().unwrap().values().cloned().collect();
            items.sort_by_key(|p| p.id);
            Ok(Page {
                items,
                next_cursor: None,
            })
        }
        async fn update(
            &self,
            id: Uuid,
            fields: &PackageFields,
            _: Option<i64>,
            _: DateTime<Utc>,
        ) -> Result<Package, UpdateError> {
            let mut rows = self.rows.lock().unwrap();
            let p = rows.get_mut(&id).ok_or(UpdateError::NotFound)?;
            if let Some(name) = &fields.name {
                p.name = name.clone();
            }
            p.revision += 1;
            Ok(p.clone())
        }
        async fn delete(&self, id: Uuid, _: Option<i64>) -> Result<(), DeleteError> {
            self.rows.lock().unwrap().remove(&id);
            Ok(())
        }
        async fn set_yank(
            &self,
            _: Uuid,
            _: Option<&crate::model::Yank>,
            _: DateTime<Utc>,
        ) -> Result<Package, RepoError> {
            unimplemented!("not used by these tests")
        }
        async fn set_signature(
            &self,
            _: Uuid,
            _: i64,
            _: &crate::model::PackageSignature,
            _: DateTime<Utc>,
        ) -> Result<Package, crate::ports::AttachError> {
            unimplemented!("not used by these tests")
        }
        async fn record_verification(
            &self,
            _: Uuid,
            _: &str,
            _: Option<DateTime<Utc>>,
            _: DateTime<Utc>,
        ) -> Result<(), RepoError> {
            unimplemented!("not used by these tests")
        }
        async fn attach_artifact(
            &self,
            _: Uuid,
            _: i64,
            _: &crate::model::VerifiedArtifact,
            _: DateTime<Utc>,
            _: crate::artifacts::Placement<'_>,
        ) -> Result<Package, crate::ports::AttachError> {
            unimplemented!("not used by these tests")
        }
        async fn record_artifact(
            &self,
            _: Uuid,
            _: &crate::model::VerifiedArtifact,
            _: DateTime<Utc>,
        ) -> Result<(), RepoError> {
            unimplemented!("not used by these tests")
        }
    }

    fn cached() -> (Arc<Store>, Cached<Store>) {
        let store = Arc::new(Store::default());
        let cached = Cached::new(store.clone(), Arc::new(PackageCache::new(100, 10)));
        (store, cached)
    }

    #[tokio::test]
    async fn reads_are_served_from_memory_until_a_write() {
        let (store, repo) = cached();
        let p = package("a");
        repo.insert(&p).await.unwrap();
        for _ in 0..3 {
            assert_eq!(repo.get(p.id).await.unwrap().name, "a");
        }
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        let fields = PackageFields {
            name: Some("b".into()),
            ..Default::default()
        };
        repo.update(p.id, &fields, None, Utc::now()).await.unwrap();
        assert_eq!(repo.get(p.id).await.unwrap().name, "b", "never the old row");
        repo.delete(p.id, None).await.unwrap();
        assert!(matches!(repo.get(p.id).await, Err(RepoError::NotFound)));
    }

    #[tokio::test]
    async fn lists_are_stale_after_any_write() {
        let (store, repo) = cached();
        repo.insert(&package("a")).await.unwrap();
        let page = PageRequest::parse(None, None).unwrap();
        let filter = PackageFilter::default();
        let first = repo
            .list(&filter, PackageSort::default(), &page)
            .await
            .unwrap();
        let again = repo
            .list(&filter, PackageSort::default(), &page)
            .await
            .unwrap();
        assert_eq!(first.items, again.items);
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
        repo.insert(&package("b")).await.unwrap();
        let after = repo
            .list(&filter, PackageSort::default(), &page)
            .await
            .unwrap();
        assert_eq!(after.items.len(), 2);
    }

    #[test]
    fn a_read_that_raced_a_write_does_not_fill_the_cache() {
        let cache = PackageCache::new(10, 10);
        let p = package("old");
        let read_at = cache.generation();
        // A write lands while the read is in flight…
        cache.written(Some(p.id));
        // …so the row the read returns is not kept.
        cache.fill(read_at, &p);
        assert!(cache.get(p.id).is_none());
        cache.fill(cache.generation(), &p);
        assert!(cache.get(p.id).is_some());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = PackageCache::new(2, 1);
        for i in 0..5 {
            cache.fill(cache.generation(), &package(&i.to_string()));
        }
        assert!(cache.packages.read().unwrap().len() <= 2);
    }
}
