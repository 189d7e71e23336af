//! The registry and the starting, reading and cancelling of operations.

use crate::OPERATIONS_QUEUE;
use crate::artifacts::ArtifactStore;
use crate::model::{Operation, OperationKind, Package, PackageInput};
use crate::ports::{
    CancelError, DeleteError, InsertError, NameRepository, OperationFilter, OperationRepository,
    OutboxMessage, PackageFilter, PackageRepository, PackageSort, StartError, UpdateError,
};
use crate::runner::OperationMessage;
use depot_core::{
    Clock, Owner, Page, PageRequest, Permission, Principal, RepoError, ValidationError,
};
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error("{0}")]
    NotFound(&'static str),
    /// A state conflict; `code` is stable (`duplicate_package`, `invalid_transition`,
    /// `operation_in_progress`, `operation_finished`) and the detail names the current state.
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("the resource has changed since it was read")]
    PreconditionFailed,
    /// The caller neither owns the package's name nor holds `packages:admin`.
    #[error("{0}")]
    NotOwner(String),
    #[error("storage failed")]
    Repo(#[source] RepoError),
    /// An upload went past `artifacts.max_bytes`; nothing was kept.
    #[error("the artifact is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// An upload's body ended early (the client went away); nothing was kept.
    #[error("{0}")]
    BodyIncomplete(String),
    /// The package holds no artifact (it is Created, or its bytes are not in storage).
    #[error("{0}")]
    ArtifactMissing(String),
    /// The artifact storage failed.
    #[error("artifact storage failed")]
    Storage(#[source] crate::artifacts::ArtifactError),
}

/// 409: a deleted sealed version is never registered again (its bytes were the version).
fn retired(name: &str, version: &str) -> PackageError {
    PackageError::Conflict {
        code: "version_retired",
        detail: format!(
            "{name} {version} was downloaded once and then deleted; a version names one \
             artifact for good: register another version"
        ),
    }
}

/// 409 naming the frozen fields a change tried to set.
fn frozen_fields(fields: &[&str]) -> PackageError {
    PackageError::Conflict {
        code: "field_frozen",
        detail: format!(
            "{} cannot change once the package has left `created`: register a new version for \
             a different artifact",
            fields.join(", ")
        ),
    }
}

pub(crate) fn not_owner(name: &str) -> PackageError {
    PackageError::NotOwner(format!(
        "the package name `{name}` belongs to another principal; its owner or a holder of \
         packages:admin manages it"
    ))
}

pub(crate) fn repo(e: RepoError, what: &'static str) -> PackageError {
    match e {
        RepoError::NotFound => PackageError::NotFound(what),
        other => PackageError::Repo(other),
    }
}

/// The queue message that runs `operation` (with a prune's `keep`), recorded with it.
pub(crate) fn queued(operation: &Operation, keep: Option<u32>) -> OutboxMessage {
    OutboxMessage {
        id: Uuid::now_v7(),
        queue: OPERATIONS_QUEUE.to_owned(),
        payload: serde_json::to_vec(&OperationMessage {
            operation_id: operation.id,
            keep,
        })
        .expect("serialisable"),
        created_at: operation.created_at,
        headers: depot_core::trace::current(),
    }
}

pub struct PackageService {
    pub(crate) packages: Arc<dyn PackageRepository>,
    pub(crate) operations: Arc<dyn OperationRepository>,
    pub(crate) names: Arc<dyn NameRepository>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Wakes the outbox relay as soon as an operation is recorded.
    pub(crate) relay_wakeup: Arc<Notify>,
    /// A running operation whose worker has not renewed it for this long is abandoned.
    lease: chrono::Duration,
    /// Where artifacts are kept (and deleted packages' files go from); none keeps nothing.
    pub(crate) store: Option<Arc<dyn ArtifactStore>>,
    /// `artifacts.max_bytes`: the largest upload.
    pub(crate) max_artifact_bytes: u64,
    /// `packages.keep_versions`: how many versions a prune keeps (0: retention is off).
    pub(crate) keep_versions: u32,
    /// The keys trusted for signatures (`packages.trusted_keys`).
    pub(crate) trust: Arc<crate::signature::Trust>,
}

/// `artifacts.max_bytes` unless configured: 1 GiB.
pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// How long a running operation's lease lasts unless renewed (`operations.lease_seconds`).
pub const DEFAULT_LEASE: chrono::Duration = chrono::Duration::minutes(5);

impl PackageService {
    pub fn new(
        packages: Arc<dyn PackageRepository>,
        operations: Arc<dyn OperationRepository>,
        names: Arc<dyn NameRepository>,
        clock: Arc<dyn Clock>,
        relay_wakeup: Arc<Notify>,
    ) -> Self {
        Self {
            packages,
            operations,
            names,
            clock,
            relay_wakeup,
            lease: DEFAULT_LEASE,
            store: None,
            max_artifact_bytes: DEFAULT_MAX_ARTIFACT_BYTES,
            keep_versions: 0,
            trust: Arc::default(),
        }
    }

    /// Signatures are checked against `trust`'s keys.
    pub fn with_trust(mut self, trust: Arc<crate::signature::Trust>) -> Self {
        self.trust = trust;
        self
    }

    /// Artifacts are uploaded to and served from `store`, up to `max_bytes` each; deleting a
    /// package removes its files there.
    pub fn with_artifacts(mut self, store: Arc<dyn ArtifactStore>, max_bytes: u64) -> Self {
        self.store = Some(store);
        self.max_artifact_bytes = max_bytes;
        self
    }

    /// Sets how many versions of a name a prune keeps (`packages.keep_versions`; 0: all).
    pub fn with_keep_versions(mut self, keep: u32) -> Self {
        self.keep_versions = keep;
        self
    }

    /// Sets the lease of running operations (see [`DEFAULT_LEASE`]).
    pub fn with_lease(mut self, lease: chrono::Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The owner a package under `name` gets when `principal` puts it there: the name's owner
    /// when the name exists (and the principal manages it), the principal for a new name.
    async fn owner_for(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<Option<Owner>, PackageError> {
        match self
            .packages
            .name_owner(name)
            .await
            .map_err(|e| repo(e, "no such package"))?
        {
            None => Ok(principal.owner()),
            Some(owner) if principal.manages(owner.as_ref(), Permission::PackagesAdmin) => {
                Ok(owner)
            }
            Some(_) => Err(not_owner(name)),
        }
    }

    /// The package, if `principal` may change it: its name's owner, or `packages:admin`.
    async fn managed(&self, principal: &Principal, id: Uuid) -> Result<Package, PackageError> {
        let package = self.get(id).await?;
        if principal.manages(package.owner.as_ref(), Permission::PackagesAdmin) {
            Ok(package)
        } else {
            Err(not_owner(&package.name))
        }
    }

    /// Registers a version. A new name belongs to its creator; versions of an existing name are
    /// for its owner and for `packages:admin`, and keep the name's owner.
    #[tracing::instrument(skip_all)]
    pub async fn create(
        &self,
        principal: &Principal,
        input: PackageInput,
    ) -> Result<Package, PackageError> {
        let fields = input.validate(true)?;
        let name = fields.name.expect("required");
        let owner = self.owner_for(principal, &name).await?;
        let now = self.clock.now();
        let package = Package {
            description: fields.description.flatten(),
            source_url: fields.source_url.flatten(),
            sha256: fields.sha256.flatten(),
            size_bytes: fields.size_bytes.flatten(),
            signature_url: fields.signature_url.flatten(),
            owner,
            ..Package::created(name, fields.version.expect("required"), now)
        };
        self.packages.insert(&package).await.map_err(|e| match e {
            InsertError::Duplicate => PackageError::Conflict {
                code: "duplicate_package",
                detail: format!("{} {} is already registered", package.name, package.version),
            },
            InsertError::NameClaimed => not_owner(&package.name),
            InsertError::Retired => retired(&package.name, &package.version),
            InsertError::Store(e) => repo(e, "no such package"),
        })?;
        Ok(package)
    }

    pub async fn get(&self, id: Uuid) -> Result<Package, PackageError> {
        self.packages
            .get(id)
            .await
            .map_err(|e| repo(e, "no package with this id"))
    }

    pub async fn list(
        &self,
        filter: &PackageFilter,
        sort: PackageSort,
        page: &PageRequest,
    ) -> Result<Page<Package>, PackageError> {
        self.packages
            .list(filter, sort, page)
            .await
            .map_err(|e| repo(e, "no such package"))
    }

    /// Changes any field but `status` (which only operations change); for the name's owner
    /// and `packages:admin`. A rename puts the package under the new name's owner, as a
    /// creation there would.
    pub async fn patch(
        &self,
        principal: &Principal,
        id: Uuid,
        input: PackageInput,
        if_match: Option<i64>,
    ) -> Result<Package, PackageError> {
        let mut fields = input.validate(false)?;
        let current = self.managed(principal, id).await?;
        // A field sent with the value it has is no change (clients PATCH whole objects).
        if fields.name.as_ref() == Some(&current.name) {
            fields.name = None;
        }
        if fields.version.as_ref() == Some(&current.version) {
            fields.version = None;
        }
        if fields.source_url.as_ref() == Some(&current.source_url) {
            fields.source_url = None;
        }
        if fields.sha256.as_ref() == Some(&current.sha256) {
            fields.sha256 = None;
        }
        if fields.size_bytes == Some(current.size_bytes) {
            fields.size_bytes = None;
        }
        if fields.signature_url.as_ref() == Some(&current.signature_url) {
            fields.signature_url = None;
        }
        // Which of them are frozen (sealed package, or an operation under way) the adapter
        // decides in the update itself: `Frozen` and `Busy` below.
        let frozen = fields.frozen();
        if let Some(name) = &fields.name {
            fields.owner = Some(if *name == current.name {
                current.owner
            } else {
                self.owner_for(principal, name).await?
            });
        }
        self.packages
            .update(id, &fields, if_match, self.clock.now())
            .await
            .map_err(|e| match e {
                UpdateError::Duplicate => PackageError::Conflict {
                    code: "duplicate_package",
                    detail: "another package has this name and version".into(),
                },
                UpdateError::StaleRevision => PackageError::PreconditionFailed,
                UpdateError::NameClaimed => not_owner(fields.name.as_deref().unwrap_or_default()),
                UpdateError::Frozen => frozen_fields(&frozen),
                UpdateError::Retired => retired(
                    fields.name.as_deref().unwrap_or(&current.name),
                    fields.version.as_deref().unwrap_or(&current.version),
                ),
                UpdateError::Busy(op) => PackageError::Conflict {
                    code: "operation_in_progress",
                    detail: format!(
                        "{} cannot change while operation {} ({}) is {}",
                        frozen.join(", "),
                        op.id,
                        op.kind.as_str(),
                        op.status.as_str()
                    ),
                },
                UpdateError::NotFound => PackageError::NotFound("no package with this id"),
                UpdateError::Store(e) => repo(e, "no package with this id"),
            })
    }

    pub async fn delete(
        &self,
        principal: &Principal,
        id: Uuid,
        if_match: Option<i64>,
    ) -> Result<(), PackageError> {
        let package = self.managed(principal, id).await?;
        if package.status == crate::model::PackageStatus::Active {
            return Err(PackageError::Conflict {
                code: "package_active",
                detail: format!(
                    "{} {} is the active version; deactivate it first",
                    package.name, package.version
                ),
            });
        }
        let active = || PackageError::Conflict {
            code: "package_active",
            detail: format!(
                "{} {} is the active version; deactivate it first",
                package.name, package.version
            ),
        };
        self.packages
            .delete(id, if_match)
            .await
            .map_err(|e| match e {
                e @ DeleteError::Busy(_) => PackageError::Conflict {
                    code: "operation_in_progress",
                    detail: e.to_string(),
                },
                DeleteError::Active => active(),
                DeleteError::StaleRevision => PackageError::PreconditionFailed,
                DeleteError::NotFound => PackageError::NotFound("no package with this id"),
                DeleteError::Store(e) => repo(e, "no package with this id"),
            })?;
        // Its files go with it (what is left behind, `depot fsck` finds).
        if let Some(store) = &self.store
            && let Err(e) = store.remove(id).await
        {
            tracing::warn!(package_id = %id, error = %e, "removing a deleted package's files failed");
        }
        Ok(())
    }

    /// Records a download/activate/deactivate and its queue message in one transaction; the
    /// status changes only when a worker completes it.
    #[tracing::instrument(skip_all, fields(package_id = %package_id, kind = kind.as_str()))]
    pub async fn start(
        &self,
        principal: &Principal,
        package_id: Uuid,
        kind: OperationKind,
    ) -> Result<Operation, PackageError> {
        let package = self.managed(principal, package_id).await?;
        let now = self.clock.now();
        let operation = Operation::pending(kind, package_id, now)
            .started_by(principal.actor())
            .on_name(package.name);
        let message = queued(&operation, None);
        self.operations
            .start(&operation, &message)
            .await
            .map_err(|e| match e {
                StartError::NotFound => PackageError::NotFound("no package with this id"),
                StartError::WrongStatus(e) => PackageError::Conflict {
                    code: "invalid_transition",
                    detail: e.to_string(),
                },
                StartError::Yanked => PackageError::Conflict {
                    code: "yanked",
                    detail: "this version is yanked: it is not downloaded or activated anew \
                             (unyank it, or use another version)"
                        .into(),
                },
                StartError::Busy(other) => PackageError::Conflict {
                    code: "operation_in_progress",
                    detail: format!(
                        "operation {other} is already pending or running on this package"
                    ),
                },
                StartError::Repo(r) => PackageError::Repo(r),
            })?;
        self.relay_wakeup.notify_one();
        Ok(operation)
    }

    pub async fn operation(&self, id: Uuid) -> Result<Operation, PackageError> {
        self.operations
            .get(id)
            .await
            .map_err(|e| repo(e, "no operation with this id"))
    }

    pub async fn operations(
        &self,
        filter: &OperationFilter,
        page: &PageRequest,
    ) -> Result<Page<Operation>, PackageError> {
        self.operations
            .list(filter, page)
            .await
            .map_err(|e| repo(e, "no such operation"))
    }

    /// Best effort: a pending operation is cancelled at once, a running one is asked to stop.
    /// For the package name's owner and `packages:admin` (who alone can start one).
    pub async fn cancel(&self, principal: &Principal, id: Uuid) -> Result<Operation, PackageError> {
        let op = self.operation(id).await?;
        let managed = match (op.package_id, op.package_name.as_deref()) {
            (Some(package), _) => self.managed(principal, package).await.map(drop),
            // A name-level operation: the name's owner's.
            (None, Some(name)) => match self.names.name(name).await {
                Ok(Some(record))
                    if principal.manages(record.owner.as_ref(), Permission::PackagesAdmin) =>
                {
                    Ok(())
                }
                Ok(Some(_)) => Err(not_owner(name)),
                Ok(None) => Err(PackageError::NotFound("no such package name")),
                Err(e) => Err(repo(e, "no such package name")),
            },
            (None, None) => Err(PackageError::NotFound("no operation with this id")),
        };
        managed.map_err(|e| match e {
            PackageError::NotFound(_) => PackageError::NotFound("no operation with this id"),
            e => e,
        })?;
        self.operations
            .request_cancel(id, self.clock.now(), self.clock.now() - self.lease)
            .await
            .map_err(|e| match e {
                e @ CancelError::Finished(_) => PackageError::Conflict {
                    code: "operation_finished",
                    detail: e.to_string(),
                },
                CancelError::NotFound => PackageError::NotFound("no operation with this id"),
                CancelError::Store(e) => repo(e, "no operation with this id"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OperationStatus, PackageStatus};
    use depot_core::PrincipalKind;

    /// The admin secret: it manages everything (tests of other rules act as it).
    fn admin() -> Principal {
        Principal::admin()
    }

    use crate::fakes::service;

    fn input(name: &str, version: &str) -> PackageInput {
        PackageInput {
            name: Some(name.into()),
            version: Some(version.into()),
            ..Default::default()
        }
    }

    fn key(lineage: Uuid, scopes: &[Permission]) -> Principal {
        Principal {
            kind: PrincipalKind::ApiKey {
                key_id: Uuid::now_v7(),
                lineage_id: lineage,
            },
            scopes: scopes.iter().copied().collect(),
        }
    }

    fn is_not_owner<T: std::fmt::Debug>(r: Result<T, PackageError>) -> bool {
        matches!(r, Err(PackageError::NotOwner(_)))
    }

    #[tokio::test]
    async fn a_name_belongs_to_its_first_creator_and_packages_admin() {
        use Permission::*;
        let (store, svc) = service();
        let (alice, mallory) = (Uuid::now_v7(), Uuid::now_v7());
        let writer = [PackagesRead, PackagesWrite];
        let alice_key = key(alice, &writer);
        let mallory_key = key(mallory, &writer);
        let p = svc.create(&alice_key, input("tool", "1.0")).await.unwrap();
        assert_eq!(p.owner, alice_key.owner());
        // Another writer may not add versions, change, delete, operate on or cancel.
        assert!(is_not_owner(
            svc.create(&mallory_key, input("tool", "1.1")).await
        ));
        let swap = PackageInput {
            source_url: Some(Some("https://evil.example/x.tgz".into())),
            sha256: Some(Some("ab".repeat(32))),
            ..Default::default()
        };
        assert!(is_not_owner(
            svc.patch(&mallory_key, p.id, swap.clone(), None).await
        ));
        assert!(is_not_owner(svc.delete(&mallory_key, p.id, None).await));
        assert!(is_not_owner(
            svc.start(&mallory_key, p.id, OperationKind::Download).await
        ));
        let op = svc
            .start(&alice_key, p.id, OperationKind::Download)
            .await
            .unwrap();
        assert!(is_not_owner(svc.cancel(&mallory_key, op.id).await));
        // Nor move a package of theirs into the name.
        let own = svc.create(&mallory_key, input("mine", "1")).await.unwrap();
        let rename = PackageInput {
            name: Some("tool".into()),
            version: Some("9".into()),
            ..Default::default()
        };
        assert!(is_not_owner(
            svc.patch(&mallory_key, own.id, rename, None).await
        ));
        // A rotated successor (same lineage) is the owner; so is packages:admin, whose new
        // version keeps the name's owner.
        let successor = key(alice, &writer);
        let describe = PackageInput {
            description: Some(Some("the heir's words".into())),
            ..Default::default()
        };
        svc.patch(&successor, p.id, describe, None).await.unwrap();
        // (Not the verified fields while the download is pending: they cannot change then.)
        assert!(matches!(
            svc.patch(&successor, p.id, swap, None).await,
            Err(PackageError::Conflict {
                code: "operation_in_progress",
                ..
            })
        ));
        let admin_key = key(
            Uuid::now_v7(),
            &[PackagesRead, PackagesWrite, PackagesAdmin],
        );
        let v2 = svc.create(&admin_key, input("tool", "2.0")).await.unwrap();
        assert_eq!(v2.owner, alice_key.owner());
        svc.cancel(&admin_key, op.id).await.unwrap();
        // A name without an owner (registered before owners existed) is for packages:admin.
        let legacy = store.legacy_package("old", "1");
        assert!(is_not_owner(svc.delete(&alice_key, legacy.id, None).await));
        assert!(is_not_owner(
            svc.create(&alice_key, input("old", "2")).await
        ));
        svc.delete(&admin_key, legacy.id, None).await.unwrap();
    }

    fn conflict_code(e: PackageError) -> &'static str {
        match e {
            PackageError::Conflict { code, .. } => code,
            other => panic!("not a conflict: {other:?}"),
        }
    }

    #[tokio::test]
    async fn create_normalises_and_refuses_a_duplicate() {
        let (_, svc) = service();
        let p = svc
            .create(&admin(), input("  left-pad ", " 1.0 "))
            .await
            .unwrap();
        assert_eq!((p.name.as_str(), p.version.as_str()), ("left-pad", "1.0"));
        assert_eq!(p.status, PackageStatus::Created);
        let e = svc
            .create(&admin(), input("left-pad", "1.0"))
            .await
            .unwrap_err();
        assert_eq!(conflict_code(e), "duplicate_package");
        assert!(matches!(
            svc.create(&admin(), input(" ", "1")).await,
            Err(PackageError::Validation(_))
        ));
    }

    #[tokio::test]
    async fn patch_tells_a_stale_revision_from_a_duplicate_and_a_missing_package() {
        let (_, svc) = service();
        let a = svc.create(&admin(), input("a", "1")).await.unwrap();
        svc.create(&admin(), input("a", "2")).await.unwrap();
        let to = |v: &str| PackageInput {
            version: Some(v.into()),
            ..Default::default()
        };
        let e = svc.patch(&admin(), a.id, to("2"), None).await.unwrap_err();
        assert_eq!(conflict_code(e), "duplicate_package");
        assert!(matches!(
            svc.patch(&admin(), a.id, to("3"), Some(a.revision + 1))
                .await,
            Err(PackageError::PreconditionFailed)
        ));
        assert!(matches!(
            svc.patch(&admin(), Uuid::now_v7(), to("3"), None).await,
            Err(PackageError::NotFound(_))
        ));
        let patched = svc
            .patch(&admin(), a.id, to("3"), Some(a.revision))
            .await
            .unwrap();
        assert_eq!(patched.revision, a.revision + 1);
    }

    #[tokio::test]
    async fn starting_checks_the_state_machine_and_one_operation_at_a_time() {
        let (store, svc) = service();
        let p = svc.create(&admin(), input("a", "1")).await.unwrap();
        let e = svc
            .start(&admin(), p.id, OperationKind::Activate)
            .await
            .unwrap_err();
        assert_eq!(conflict_code(e), "invalid_transition");
        let op = svc
            .start(&admin(), p.id, OperationKind::Download)
            .await
            .unwrap();
        assert_eq!(op.status, OperationStatus::Pending);
        assert_eq!(store.outbox().len(), 1, "the message went with it");
        let e = svc
            .start(&admin(), p.id, OperationKind::Download)
            .await
            .unwrap_err();
        assert_eq!(conflict_code(e), "operation_in_progress");
        assert!(matches!(
            svc.start(&admin(), Uuid::now_v7(), OperationKind::Download)
                .await,
            Err(PackageError::NotFound(_))
        ));
        // Busy: the package cannot be deleted; once the operation is over, it can.
        let e = svc.delete(&admin(), p.id, None).await.unwrap_err();
        assert_eq!(conflict_code(e), "operation_in_progress");
        let cancelled = svc.cancel(&admin(), op.id).await.unwrap();
        assert_eq!(cancelled.status, OperationStatus::Cancelled);
        let e = svc.cancel(&admin(), op.id).await.unwrap_err();
        assert_eq!(conflict_code(e), "operation_finished");
        assert!(matches!(
            svc.delete(&admin(), p.id, Some(p.revision + 3)).await,
            Err(PackageError::PreconditionFailed)
        ));
        svc.delete(&admin(), p.id, None).await.unwrap();
        assert!(matches!(
            svc.get(p.id).await,
            Err(PackageError::NotFound(_))
        ));
    }
}
