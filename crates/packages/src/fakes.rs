//! An in-memory implementation of the package and operation ports, for the services' unit
//! tests. It keeps the rules the real adapter keeps (unique name and version, revisions, one
//! unfinished operation per package, the state machine, finishing exactly once) so that a
//! service tested against it meets the same outcomes it meets against the database.

use crate::model::{
    Activation, Operation, OperationError, OperationKind, OperationStatus, Package, PackageFields,
    PackageStatus, VersionRef,
};
use crate::ports::{
    AttachError, BusyWith, CancelError, Claimed, DeleteError, InsertError, NameRecord,
    NameRepository, OperationFilter, OperationRepository, OutboxMessage, Outcome, PackageFilter,
    PackageRepository, PackageSort, StartError, UpdateError,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_core::{Cursor, Owner, Page, PageRequest, RepoError};
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

#[derive(Default)]
pub struct InMemoryPackages {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    packages: HashMap<Uuid, Package>,
    /// Package names and their owners, as the adapter's `package_names`.
    names: HashMap<String, Option<Owner>>,
    /// (name, version) of sealed packages that were deleted.
    retired: std::collections::HashSet<(String, String)>,
    operations: HashMap<Uuid, Operation>,
    outbox: Vec<OutboxMessage>,
    /// Every activation and deactivation, oldest first.
    history: Vec<Activation>,
}

/// A package service over one in-memory store (every port), at a fixed clock, for unit tests.
pub fn service() -> (std::sync::Arc<InMemoryPackages>, crate::PackageService) {
    use std::sync::Arc;
    let store = Arc::new(InMemoryPackages::default());
    let svc = crate::PackageService::new(
        store.clone(),
        store.clone(),
        store.clone(),
        Arc::new(depot_core::FixedClock::new(chrono::Utc::now())),
        Arc::new(tokio::sync::Notify::new()),
    );
    (store, svc)
}

impl InMemoryPackages {
    /// The outbox messages recorded so far.
    pub fn outbox(&self) -> Vec<OutboxMessage> {
        self.state.lock().unwrap().outbox.clone()
    }

    /// A package whose name has no owner, as names registered before owners existed.
    pub fn legacy_package(&self, name: &str, version: &str) -> Package {
        let p = Package::created(name.into(), version.into(), chrono::Utc::now());
        let mut s = self.state.lock().unwrap();
        s.names.insert(name.into(), None);
        s.packages.insert(p.id, p.clone());
        p
    }

    /// Sets a package's status directly (a test's shortcut past the lifecycle).
    pub fn set_status(&self, id: Uuid, status: crate::model::PackageStatus) {
        self.state
            .lock()
            .unwrap()
            .packages
            .get_mut(&id)
            .expect("a package")
            .status = status;
    }
}

impl State {
    /// Claims `name` for `owner` when it is new; false when it belongs to another owner.
    fn claim(&mut self, name: &str, owner: Option<Owner>) -> bool {
        *self.names.entry(name.to_owned()).or_insert(owner) == owner
    }

    fn busy_with(&self, package_id: Uuid) -> Option<&Operation> {
        self.operations
            .values()
            .find(|o| o.package_id == Some(package_id) && o.finished_at.is_none())
    }
}

#[async_trait]
impl PackageRepository for InMemoryPackages {
    async fn insert(&self, p: &Package) -> Result<(), InsertError> {
        let mut s = self.state.lock().unwrap();
        if s.packages
            .values()
            .any(|o| o.name == p.name && o.version == p.version)
        {
            return Err(InsertError::Duplicate);
        }
        if !s.claim(&p.name, p.owner) {
            return Err(InsertError::NameClaimed);
        }
        if s.retired.contains(&(p.name.clone(), p.version.clone())) {
            return Err(InsertError::Retired);
        }
        s.packages.insert(p.id, p.clone());
        Ok(())
    }

    async fn name_owner(&self, name: &str) -> Result<Option<Option<Owner>>, RepoError> {
        Ok(self.state.lock().unwrap().names.get(name).copied())
    }

    async fn get(&self, id: Uuid) -> Result<Package, RepoError> {
        let s = self.state.lock().unwrap();
        s.packages.get(&id).cloned().ok_or(RepoError::NotFound)
    }

    async fn list(
        &self,
        filter: &PackageFilter,
        sort: PackageSort,
        page: &PageRequest,
    ) -> Result<Page<Package>, RepoError> {
        let s = self.state.lock().unwrap();
        let mut rows: Vec<Package> = s
            .packages
            .values()
            .filter(|p| filter.status.is_none_or(|st| p.status == st))
            .filter(|p| {
                filter
                    .name_prefix
                    .as_deref()
                    .is_none_or(|pre| p.name.starts_with(pre))
            })
            .cloned()
            .collect();
        match sort {
            PackageSort::CreatedAt => rows.sort_by_key(|o| std::cmp::Reverse(o.id)),
            PackageSort::Name => rows.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id))),
        }
        Ok(Page::from_overfetch(rows, page.limit(), |p| {
            Cursor::new(p.name.clone(), p.id)
        }))
    }

    async fn update(
        &self,
        id: Uuid,
        f: &PackageFields,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Package, UpdateError> {
        let mut s = self.state.lock().unwrap();
        let current = s.packages.get(&id).ok_or(UpdateError::NotFound)?.clone();
        if expected_revision.is_some_and(|r| r != current.revision) {
            return Err(UpdateError::StaleRevision);
        }
        if !f.frozen().is_empty() {
            if current.sealed_at.is_some() {
                return Err(UpdateError::Frozen);
            }
            if let Some(op) = s.busy_with(id) {
                return Err(UpdateError::Busy(BusyWith {
                    id: op.id,
                    kind: op.kind,
                    status: op.status,
                }));
            }
        }
        let name = f.name.clone().unwrap_or(current.name.clone());
        let version = f.version.clone().unwrap_or(current.version.clone());
        if s.retired.contains(&(name.clone(), version.clone())) {
            return Err(UpdateError::Retired);
        }
        if s.packages
            .values()
            .any(|o| o.id != id && o.name == name && o.version == version)
        {
            return Err(UpdateError::Duplicate);
        }
        let owner = f.owner.unwrap_or(current.owner);
        if f.name.is_some() && !s.claim(&name, owner) {
            return Err(UpdateError::NameClaimed);
        }
        let p = s.packages.get_mut(&id).expect("read above");
        p.owner = owner;
        p.name = name;
        p.version = version;
        if let Some(v) = &f.description {
            p.description = v.clone();
        }
        if let Some(v) = &f.source_url {
            p.source_url = v.clone();
        }
        if let Some(v) = &f.signature_url {
            p.signature_url = v.clone();
        }
        if let Some(v) = &f.sha256 {
            p.sha256 = v.clone();
        }
        if let Some(v) = f.size_bytes {
            p.size_bytes = v;
        }
        p.revision += 1;
        p.updated_at = now;
        Ok(p.clone())
    }

    async fn attach_artifact(
        &self,
        id: Uuid,
        expected_revision: i64,
        artifact: &crate::model::VerifiedArtifact,
        now: DateTime<Utc>,
        place: crate::artifacts::Placement<'_>,
    ) -> Result<Package, AttachError> {
        let check = |s: &State| -> Result<(), AttachError> {
            let p = s.packages.get(&id).ok_or(AttachError::NotFound)?;
            if p.revision != expected_revision {
                return Err(AttachError::StaleRevision);
            }
            if p.status != PackageStatus::Created {
                return Err(AttachError::WrongStatus(p.status));
            }
            if p.yanked.is_some() {
                return Err(AttachError::Yanked);
            }
            if let Some(op) = s.busy_with(id) {
                return Err(AttachError::Busy(BusyWith {
                    id: op.id,
                    kind: op.kind,
                    status: op.status,
                }));
            }
            Ok(())
        };
        check(&self.state.lock().unwrap())?;
        place.await.map_err(AttachError::Place)?;
        let mut s = self.state.lock().unwrap();
        check(&s)?;
        let p = s.packages.get_mut(&id).expect("checked");
        p.status = PackageStatus::Downloaded;
        p.sha256 = Some(artifact.sha256.clone());
        p.size_bytes = Some(artifact.size);
        if let Some(signature) = &artifact.signature {
            p.signature = Some(signature.clone());
        }
        p.sealed_at = p.sealed_at.or(Some(now));
        p.revision += 1;
        p.updated_at = now;
        Ok(p.clone())
    }

    async fn record_artifact(
        &self,
        id: Uuid,
        artifact: &crate::model::VerifiedArtifact,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let mut s = self.state.lock().unwrap();
        let p = s.packages.get_mut(&id).ok_or(RepoError::NotFound)?;
        if p.status == PackageStatus::Created
            && (p.sha256.is_none() || p.size_bytes.is_none() || artifact.signature.is_some())
        {
            p.sha256.get_or_insert_with(|| artifact.sha256.clone());
            p.size_bytes.get_or_insert(artifact.size);
            if let Some(signature) = &artifact.signature {
                p.signature = Some(signature.clone());
            }
            p.revision += 1;
            p.updated_at = now;
        }
        Ok(())
    }

    async fn set_signature(
        &self,
        id: Uuid,
        expected_revision: i64,
        signature: &crate::model::PackageSignature,
        now: DateTime<Utc>,
    ) -> Result<Package, AttachError> {
        let mut s = self.state.lock().unwrap();
        let p = s.packages.get(&id).ok_or(AttachError::NotFound)?;
        if p.revision != expected_revision {
            return Err(AttachError::StaleRevision);
        }
        if p.status == PackageStatus::Active {
            return Err(AttachError::WrongStatus(p.status));
        }
        if let Some(op) = s.busy_with(id) {
            return Err(AttachError::Busy(BusyWith {
                id: op.id,
                kind: op.kind,
                status: op.status,
            }));
        }
        let p = s.packages.get_mut(&id).expect("checked");
        p.signature = Some(signature.clone());
        p.revision += 1;
        p.updated_at = now;
        Ok(p.clone())
    }

    async fn record_verification(
        &self,
        id: Uuid,
        text: &str,
        verified_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        let mut s = self.state.lock().unwrap();
        let p = s.packages.get_mut(&id).ok_or(RepoError::NotFound)?;
        if let Some(signature) = p.signature.as_mut().filter(|sig| sig.text == text) {
            signature.verified_at = verified_at;
            p.revision += 1;
            p.updated_at = now;
        }
        Ok(())
    }

    async fn set_yank(
        &self,
        id: Uuid,
        yank: Option<&crate::model::Yank>,
        now: DateTime<Utc>,
    ) -> Result<Package, RepoError> {
        let mut s = self.state.lock().unwrap();
        let p = s.packages.get_mut(&id).ok_or(RepoError::NotFound)?;
        p.yanked = yank.cloned();
        p.revision += 1;
        p.updated_at = now;
        Ok(p.clone())
    }

    async fn delete(&self, id: Uuid, expected_revision: Option<i64>) -> Result<(), DeleteError> {
        let mut s = self.state.lock().unwrap();
        if let Some(op) = s.busy_with(id) {
            return Err(DeleteError::Busy(BusyWith {
                id: op.id,
                kind: op.kind,
                status: op.status,
            }));
        }
        let current = s.packages.get(&id).ok_or(DeleteError::NotFound)?;
        if current.status == PackageStatus::Active {
            return Err(DeleteError::Active);
        }
        if expected_revision.is_some_and(|r| r != current.revision) {
            return Err(DeleteError::StaleRevision);
        }
        if let Some(p) = s.packages.remove(&id)
            && p.sealed_at.is_some()
        {
            s.retired.insert((p.name, p.version));
        }
        s.operations.retain(|_, o| o.package_id != Some(id));
        Ok(())
    }
}

#[async_trait]
impl OperationRepository for InMemoryPackages {
    async fn start(&self, op: &Operation, message: &OutboxMessage) -> Result<(), StartError> {
        let mut s = self.state.lock().unwrap();
        let package = op
            .package_id
            .and_then(|id| s.packages.get(&id))
            .ok_or(StartError::NotFound)?;
        if package.yanked.is_some() && op.kind != OperationKind::Deactivate {
            return Err(StartError::Yanked);
        }
        op.kind
            .check(package.status)
            .map_err(StartError::WrongStatus)?;
        if let Some(other) = op.package_id.and_then(|id| s.busy_with(id)) {
            return Err(StartError::Busy(other.id));
        }
        s.operations.insert(op.id, op.clone());
        s.outbox.push(message.clone());
        Ok(())
    }

    async fn start_on_name(
        &self,
        op: &Operation,
        message: &OutboxMessage,
    ) -> Result<(), StartError> {
        let mut s = self.state.lock().unwrap();
        let name = op.package_name.as_deref().ok_or(StartError::NotFound)?;
        if !s.names.contains_key(name) {
            return Err(StartError::NotFound);
        }
        if let Some(other) = s.operations.values().find(|o| {
            o.kind == op.kind && o.package_name.as_deref() == Some(name) && o.finished_at.is_none()
        }) {
            return Err(StartError::Busy(other.id));
        }
        s.operations.insert(op.id, op.clone());
        s.outbox.push(message.clone());
        Ok(())
    }

    async fn finish_prune(
        &self,
        claimed: &Operation,
        ids: &[Uuid],
        now: DateTime<Utc>,
        files: &dyn crate::ports::ArtifactFiles,
    ) -> Result<Option<(Operation, Vec<Uuid>)>, RepoError> {
        let pruned = self.prune_rows(claimed, ids, now);
        if let Some((_, pruned)) = &pruned {
            for id in pruned {
                if let Err(e) = files.remove(*id).await {
                    tracing::warn!(package_id = %id, error = %e, "removing a pruned version's files failed");
                }
            }
        }
        Ok(pruned)
    }

    async fn get(&self, id: Uuid) -> Result<Operation, RepoError> {
        let s = self.state.lock().unwrap();
        s.operations.get(&id).cloned().ok_or(RepoError::NotFound)
    }

    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Operation>, RepoError> {
        let s = self.state.lock().unwrap();
        Ok(ids
            .iter()
            .filter_map(|id| s.operations.get(id).cloned())
            .collect())
    }

    async fn list(
        &self,
        filter: &OperationFilter,
        page: &PageRequest,
    ) -> Result<Page<Operation>, RepoError> {
        let s = self.state.lock().unwrap();
        let mut rows: Vec<Operation> = s
            .operations
            .values()
            .filter(|o| filter.package_id.is_none_or(|p| o.package_id == Some(p)))
            .filter(|o| filter.status.is_none_or(|st| o.status == st))
            .cloned()
            .collect();
        rows.sort_by_key(|o| std::cmp::Reverse(o.id));
        Ok(Page::from_overfetch(rows, page.limit(), |o| {
            Cursor::new("", o.id)
        }))
    }

    async fn claim(&self, id: Uuid, now: DateTime<Utc>) -> Result<Claimed, RepoError> {
        let mut s = self.state.lock().unwrap();
        let op = s.operations.get_mut(&id).ok_or(RepoError::NotFound)?;
        if op.status.is_final() {
            return Ok(Claimed {
                operation: op.clone(),
                package: None,
            });
        }
        op.status = OperationStatus::Running;
        op.attempts += 1;
        op.updated_at = now;
        let operation = op.clone();
        let package = operation
            .package_id
            .and_then(|id| s.packages.get(&id))
            .cloned();
        Ok(Claimed { operation, package })
    }

    async fn progress(
        &self,
        id: Uuid,
        progress: u8,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        let mut s = self.state.lock().unwrap();
        let op = s.operations.get_mut(&id).ok_or(RepoError::NotFound)?;
        if op.status == OperationStatus::Running && op.progress < progress {
            op.progress = progress;
            op.updated_at = now;
        }
        Ok(op.cancel_requested)
    }

    async fn finish(
        &self,
        claimed: &Operation,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<Option<Operation>, RepoError> {
        let mut s = self.state.lock().unwrap();
        let State {
            packages,
            operations,
            history: s_history,
            ..
        } = &mut *s;
        let Some(op) = operations
            .get_mut(&claimed.id)
            .filter(|o| o.status == OperationStatus::Running)
        else {
            return Ok(None);
        };
        match outcome {
            Outcome::Succeeded => {
                let (from, to) = op.kind.transition();
                let target = op
                    .package_id
                    .and_then(|id| packages.get(&id))
                    .filter(|p| p.status == from)
                    .map(|p| {
                        (
                            p.name.clone(),
                            VersionRef {
                                id: p.id,
                                version: p.version.clone(),
                            },
                        )
                    });
                // One active version per name: the one an activation replaces is Downloaded.
                let mut replaced = None;
                if let (OperationKind::Activate, Some((name, this))) = (op.kind, &target) {
                    for other in packages.values_mut() {
                        if other.name == *name
                            && other.id != this.id
                            && other.status == PackageStatus::Active
                        {
                            other.status = PackageStatus::Downloaded;
                            other.revision += 1;
                            other.updated_at = now;
                            replaced = Some(VersionRef {
                                id: other.id,
                                version: other.version.clone(),
                            });
                        }
                    }
                }
                if let Some((name, this)) = &target
                    && op.kind != OperationKind::Download
                {
                    let (from, to) = match op.kind {
                        OperationKind::Activate => (replaced, Some(this.clone())),
                        _ => (Some(this.clone()), None),
                    };
                    s_history.push(Activation {
                        id: Uuid::now_v7(),
                        name: name.clone(),
                        from,
                        to,
                        operation_id: Some(op.id),
                        actor: op.started_by.clone(),
                        at: now,
                    });
                }
                match op.package_id.and_then(|id| packages.get_mut(&id)) {
                    Some(p) if p.status == from => {
                        if from == crate::model::PackageStatus::Created {
                            p.sealed_at.get_or_insert(now);
                        }
                        p.status = to;
                        p.revision += 1;
                        p.updated_at = now;
                        op.status = OperationStatus::Succeeded;
                        op.progress = 100;
                    }
                    _ => {
                        op.status = OperationStatus::Failed;
                        op.error = Some(OperationError {
                            code: "invalid_transition".into(),
                            detail: format!("the package was no longer {}", from.as_str()),
                        });
                    }
                }
            }
            Outcome::Failed(e) => {
                op.status = OperationStatus::Failed;
                op.error = Some(e.clone());
            }
            Outcome::Cancelled => op.status = OperationStatus::Cancelled,
        }
        op.updated_at = now;
        op.finished_at = Some(now);
        Ok(Some(op.clone()))
    }

    async fn request_cancel(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        abandoned_before: DateTime<Utc>,
    ) -> Result<Operation, CancelError> {
        let mut s = self.state.lock().unwrap();
        let op = s.operations.get_mut(&id).ok_or(CancelError::NotFound)?;
        match op.status {
            OperationStatus::Pending => {
                op.status = OperationStatus::Cancelled;
                op.finished_at = Some(now);
            }
            OperationStatus::Running if op.updated_at < abandoned_before => {
                op.status = OperationStatus::Cancelled;
                op.finished_at = Some(now);
            }
            OperationStatus::Running => {}
            finished => return Err(CancelError::Finished(finished)),
        }
        op.cancel_requested = true;
        op.updated_at = now;
        Ok(op.clone())
    }

    async fn heartbeat(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, RepoError> {
        let mut s = self.state.lock().unwrap();
        let op = s.operations.get_mut(&id).ok_or(RepoError::NotFound)?;
        if op.status == OperationStatus::Running {
            op.updated_at = now;
        }
        Ok(op.cancel_requested)
    }

    async fn reap(
        &self,
        abandoned_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Operation>, RepoError> {
        let mut s = self.state.lock().unwrap();
        let mut reaped = vec![];
        for op in s.operations.values_mut() {
            if op.status == OperationStatus::Running && op.updated_at < abandoned_before {
                if op.cancel_requested {
                    op.status = OperationStatus::Cancelled;
                } else {
                    op.status = OperationStatus::Failed;
                    op.error = Some(crate::runner::abandoned());
                }
                op.updated_at = now;
                op.finished_at = Some(now);
                reaped.push(op.clone());
            }
        }
        Ok(reaped)
    }

    async fn unfinished(&self) -> Result<Vec<Operation>, RepoError> {
        let s = self.state.lock().unwrap();
        Ok(s.operations
            .values()
            .filter(|o| o.finished_at.is_none())
            .cloned()
            .collect())
    }

    async fn purge_finished(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let mut s = self.state.lock().unwrap();
        let n = s.operations.len();
        s.operations
            .retain(|_, o| o.finished_at.is_none_or(|f| f >= before));
        Ok((n - s.operations.len()) as u64)
    }
}

#[async_trait]
impl NameRepository for InMemoryPackages {
    async fn name(&self, name: &str) -> Result<Option<NameRecord>, RepoError> {
        let s = self.state.lock().unwrap();
        Ok(s.names.get(name).map(|owner| NameRecord {
            name: name.to_owned(),
            owner: *owner,
            created_at: chrono::DateTime::UNIX_EPOCH,
        }))
    }

    async fn names(
        &self,
        prefix: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<NameRecord>, RepoError> {
        let s = self.state.lock().unwrap();
        let mut rows: Vec<NameRecord> = s
            .names
            .iter()
            .filter(|(n, _)| prefix.is_none_or(|p| n.starts_with(p)))
            .filter(|(n, _)| {
                page.after
                    .as_ref()
                    .is_none_or(|a| n.as_str() > a.key.as_str())
            })
            .map(|(n, o)| NameRecord {
                name: n.clone(),
                owner: *o,
                created_at: chrono::DateTime::UNIX_EPOCH,
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows.truncate(page.limit() as usize + 1);
        Ok(Page::from_overfetch(rows, page.limit(), |r| {
            Cursor::new(r.name.clone(), Uuid::nil())
        }))
    }

    async fn versions_of(&self, name: &str, limit: u64) -> Result<Vec<Package>, RepoError> {
        let s = self.state.lock().unwrap();
        Ok(s.packages
            .values()
            .filter(|p| p.name == name)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn active_version(&self, name: &str) -> Result<Option<Package>, RepoError> {
        let s = self.state.lock().unwrap();
        Ok(s.packages
            .values()
            .find(|p| p.name == name && p.status == PackageStatus::Active)
            .cloned())
    }

    async fn with_prefix(&self, prefix: &str, limit: u64) -> Result<Vec<Package>, RepoError> {
        let s = self.state.lock().unwrap();
        Ok(s.packages
            .values()
            .filter(|p| p.name.starts_with(prefix))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn history(&self, name: &str, page: &PageRequest) -> Result<Page<Activation>, RepoError> {
        let s = self.state.lock().unwrap();
        let rows: Vec<Activation> = s
            .history
            .iter()
            .rev()
            .filter(|a| a.name == name)
            .filter(|a| page.after.as_ref().is_none_or(|c| a.id < c.id))
            .take(page.limit() as usize + 1)
            .cloned()
            .collect();
        Ok(Page::from_overfetch(rows, page.limit(), |a| {
            Cursor::new("", a.id)
        }))
    }
}

impl InMemoryPackages {
    fn prune_rows(
        &self,
        claimed: &Operation,
        ids: &[Uuid],
        now: DateTime<Utc>,
    ) -> Option<(Operation, Vec<Uuid>)> {
        let mut s = self.state.lock().unwrap();
        let busy: Vec<Uuid> = s
            .operations
            .values()
            .filter(|o| o.finished_at.is_none())
            .filter_map(|o| o.package_id)
            .collect();
        let State {
            packages,
            operations,
            ..
        } = &mut *s;
        let op = operations
            .get_mut(&claimed.id)
            .filter(|o| o.status == OperationStatus::Running)?;
        let mut pruned = Vec::new();
        for id in ids {
            if let Some(p) = packages.get_mut(id)
                && p.status == PackageStatus::Downloaded
                && p.yanked.is_none()
                && !busy.contains(id)
            {
                p.status = PackageStatus::Created;
                p.revision += 1;
                p.updated_at = now;
                pruned.push(*id);
            }
        }
        op.status = OperationStatus::Succeeded;
        op.progress = 100;
        op.updated_at = now;
        op.finished_at = Some(now);
        Some((op.clone(), pruned))
    }
}

/// Artifacts in memory, for the services' unit tests (the filesystem and S3 adapters have
/// tests of their own on real storage).
#[derive(Default)]
pub struct InMemoryArtifacts {
    pub files: std::sync::Arc<Mutex<HashMap<Uuid, Vec<u8>>>>,
}

struct PendingBytes {
    files: std::sync::Arc<Mutex<HashMap<Uuid, Vec<u8>>>>,
    id: Uuid,
    bytes: Vec<u8>,
}

#[async_trait]
impl crate::artifacts::PendingArtifact for PendingBytes {
    async fn promote(
        self: Box<Self>,
        replace: bool,
    ) -> Result<(), crate::artifacts::ArtifactError> {
        let mut files = self.files.lock().unwrap();
        if !replace && files.contains_key(&self.id) {
            return Err(crate::artifacts::ArtifactError::Exists);
        }
        files.insert(self.id, self.bytes);
        Ok(())
    }
}

#[async_trait]
impl crate::ports::ArtifactFiles for InMemoryArtifacts {
    async fn remove(&self, package_id: Uuid) -> Result<(), RepoError> {
        self.files.lock().unwrap().remove(&package_id);
        Ok(())
    }
}

#[async_trait]
impl crate::artifacts::ArtifactStore for InMemoryArtifacts {
    async fn stage(
        &self,
        package_id: Uuid,
        mut body: crate::artifacts::ByteStream,
        max_bytes: u64,
    ) -> Result<crate::artifacts::Staged, crate::artifacts::ArtifactError> {
        use futures::StreamExt;
        use sha2::Digest;
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk.map_err(crate::artifacts::ArtifactError::Body)?);
            if bytes.len() as u64 > max_bytes {
                return Err(crate::artifacts::ArtifactError::TooLarge { limit: max_bytes });
            }
        }
        let sha = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(crate::artifacts::Staged::new(
            sha,
            bytes.len() as u64,
            Box::new(PendingBytes {
                files: self.files.clone(),
                id: package_id,
                bytes,
            }),
        ))
    }

    async fn head(
        &self,
        package_id: Uuid,
    ) -> Result<Option<crate::artifacts::StoredArtifact>, crate::artifacts::ArtifactError> {
        Ok(self
            .files
            .lock()
            .unwrap()
            .get(&package_id)
            .map(|b| crate::artifacts::StoredArtifact {
                size: b.len() as u64,
            }))
    }

    async fn open(
        &self,
        package_id: Uuid,
    ) -> Result<Option<crate::artifacts::OpenedArtifact>, crate::artifacts::ArtifactError> {
        /// The bytes, held.
        struct Held(bytes::Bytes);
        #[async_trait::async_trait]
        impl crate::artifacts::ReadArtifact for Held {
            async fn read(
                self: Box<Self>,
                r: std::ops::Range<u64>,
            ) -> Result<crate::artifacts::ByteStream, crate::artifacts::ArtifactError> {
                use futures::StreamExt;
                let part = self.0.slice(r.start as usize..r.end as usize);
                Ok(futures::stream::iter([Ok(part)]).boxed())
            }
        }
        let Some(bytes) = self.files.lock().unwrap().get(&package_id).cloned() else {
            return Ok(None);
        };
        Ok(Some(crate::artifacts::OpenedArtifact::new(
            bytes.len() as u64,
            Held(bytes::Bytes::from(bytes)),
        )))
    }

    fn describe(&self) -> String {
        "memory:".into()
    }
}
