//! What the package component needs from storage.

use crate::model::{
    Activation, Operation, OperationError, OperationStatus, Package, PackageFields, PackageStatus,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_core::{Owner, Page, PageRequest, RepoError};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PackageSort {
    /// Newest first (the default).
    #[default]
    CreatedAt,
    /// By name, then version, ascending.
    Name,
}

#[derive(Debug, Clone, Default)]
pub struct PackageFilter {
    pub status: Option<PackageStatus>,
    pub name_prefix: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct OperationFilter {
    pub package_id: Option<Uuid>,
    pub status: Option<OperationStatus>,
}

/// A message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: Uuid,
    pub queue: String,
    pub payload: Vec<u8>,
    pub created_at: DateTime<Utc>,
    /// Published with the message (the creating request's trace context).
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Why registering a package was refused.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// A package with this name and version exists (the adapter's unique constraint).
    #[error("a package with this name and version exists")]
    Duplicate,
    /// The name belongs to another owner than the package's (claimed by someone else since
    /// the caller read it).
    #[error("the package name belongs to another owner")]
    NameClaimed,
    /// This name and version belonged to a sealed package that was deleted: never again.
    #[error("this name and version were retired")]
    Retired,
    #[error(transparent)]
    Store(#[from] RepoError),
}

/// Why a conditional update of a package was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("no such package")]
    NotFound,
    /// The package is no longer at the expected revision (the update touched no row).
    #[error("the package is no longer at the expected revision")]
    StaleRevision,
    /// The new name and version belong to another package.
    #[error("another package has this name and version")]
    Duplicate,
    /// The new name belongs to another owner than `fields.owner`.
    #[error("the package name belongs to another owner")]
    NameClaimed,
    /// A frozen field (see `PackageFields::frozen`) of a package that has left Created.
    #[error("the package's verified fields are frozen")]
    Frozen,
    /// The new name and version were retired (see `InsertError::Retired`).
    #[error("this name and version were retired")]
    Retired,
    /// A frozen field while an operation is pending or running on the package (a download
    /// verifies what it read when it started).
    #[error("operation {} ({}) is {}", .0.id, .0.kind.as_str(), .0.status.as_str())]
    Busy(BusyWith),
    #[error(transparent)]
    Store(#[from] RepoError),
}

/// Why deleting a package was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no such package")]
    NotFound,
    #[error("the package is no longer at the expected revision")]
    StaleRevision,
    /// An operation on the package is pending or running.
    #[error("operation {} ({}) is {} on this package", .0.id, .0.kind.as_str(), .0.status.as_str())]
    Busy(BusyWith),
    /// The package is its name's active version (checked in the delete itself).
    #[error("the package is the active version")]
    Active,
    #[error(transparent)]
    Store(#[from] RepoError),
}

/// Why an uploaded artifact did not become the package's.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no such package")]
    NotFound,
    /// The package is no longer at the revision the upload was checked against.
    #[error("the package is no longer at the expected revision")]
    StaleRevision,
    /// Only a Created package takes an artifact.
    #[error("the package is {}", .0.as_str())]
    WrongStatus(PackageStatus),
    #[error("the version is yanked")]
    Yanked,
    /// An operation on the package is pending or running.
    #[error("operation {} ({}) is {} on this package", .0.id, .0.kind.as_str(), .0.status.as_str())]
    Busy(BusyWith),
    /// Moving the bytes into place failed: nothing changed.
    #[error(transparent)]
    Place(crate::artifacts::ArtifactError),
    #[error(transparent)]
    Store(#[from] RepoError),
}

/// The unfinished operation that keeps a package busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyWith {
    pub id: Uuid,
    pub kind: crate::model::OperationKind,
    pub status: OperationStatus,
}

/// Why cancelling an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no such operation")]
    NotFound,
    /// The operation had already ended with this status.
    #[error("the operation has already {}", .0.as_str())]
    Finished(OperationStatus),
    #[error(transparent)]
    Store(#[from] RepoError),
}

/// Why starting an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no such package")]
    NotFound,
    /// The state machine forbids the operation from the package's current status.
    #[error(transparent)]
    WrongStatus(crate::model::InvalidTransition),
    /// Another operation on the package is pending or running.
    #[error("operation {0} is already in progress on this package")]
    Busy(Uuid),
    /// A download or activation of a yanked version.
    #[error("the version is yanked")]
    Yanked,
    #[error(transparent)]
    Repo(RepoError),
}

/// An operation a runner claimed, with its package as it is now (`None`: deleted). The package
/// is not read for an operation that is already final.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub operation: Operation,
    pub package: Option<Package>,
}

/// How an operation ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Apply the kind's transition to the package.
    Succeeded,
    Failed(OperationError),
    Cancelled,
}

#[async_trait]
pub trait PackageRepository: Send + Sync {
    /// Registers the package, and its name with the package's `owner` when the name is new:
    /// `Duplicate` when (name, version) exists, `NameClaimed` when the name's owner is not the
    /// package's.
    async fn insert(&self, package: &Package) -> Result<(), InsertError>;
    /// The owner of a package name: `None` when the name was never registered, `Some(None)`
    /// for a name registered before owners existed.
    async fn name_owner(&self, name: &str) -> Result<Option<Option<Owner>>, RepoError>;
    async fn get(&self, id: Uuid) -> Result<Package, RepoError>;
    async fn list(
        &self,
        filter: &PackageFilter,
        sort: PackageSort,
        page: &PageRequest,
    ) -> Result<Page<Package>, RepoError>;
    /// Applies the given fields if the package is at `expected_revision` (when given):
    /// `NotFound` when there is no such package, `StaleRevision` when it is at another revision,
    /// `Duplicate` when the new (name, version) belongs to another package; a new name is
    /// claimed for `fields.owner` (`NameClaimed` when it belongs to another). Frozen fields
    /// change only while the package was never sealed (`Frozen`) and no operation is pending or
    /// running (`Busy`).
    async fn update(
        &self,
        id: Uuid,
        fields: &PackageFields,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Package, UpdateError>;
    /// Deletes the package with its finished operations: `Busy` while an operation is pending or
    /// running, `StaleRevision` when it is not at `expected_revision`, `NotFound`.
    async fn delete(&self, id: Uuid, expected_revision: Option<i64>) -> Result<(), DeleteError>;
    /// Makes uploaded bytes the package's artifact. In one transaction that holds the package,
    /// conditional on its being at `expected_revision`, Created, not yanked and with no
    /// operation pending or running, it becomes Downloaded (and sealed) with `sha256` and
    /// `size`; `place`, which moves the bytes into place, runs before the commit, and when it
    /// fails nothing changes. Returns the package as it now is.
    async fn attach_artifact(
        &self,
        id: Uuid,
        expected_revision: i64,
        artifact: &crate::model::VerifiedArtifact,
        now: DateTime<Utc>,
        place: crate::artifacts::Placement<'_>,
    ) -> Result<Package, AttachError>;
    /// What a download verified: `sha256` and `size_bytes` are set where the package left them
    /// unset, and the signature it verified against (fetched from `signature_url`, or the one
    /// it held) with when, while it is Created (its download running, so nobody can change
    /// them meanwhile).
    async fn record_artifact(
        &self,
        id: Uuid,
        artifact: &crate::model::VerifiedArtifact,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError>;
    /// Gives the package `signature` (replacing one it had), in one transaction that holds
    /// it, conditional on its being at `expected_revision`, Created or Downloaded (not Active:
    /// the version in use keeps what it was activated with) and with no operation pending or
    /// running. Errors: `NotFound`, `StaleRevision`, `WrongStatus`, `Busy`, `Store`.
    async fn set_signature(
        &self,
        id: Uuid,
        expected_revision: i64,
        signature: &crate::model::PackageSignature,
        now: DateTime<Utc>,
    ) -> Result<Package, AttachError>;
    /// Records when the package's signature, if it is still `text`, last verified (`None`: it
    /// no longer does).
    async fn record_verification(
        &self,
        id: Uuid,
        text: &str,
        verified_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), RepoError>;
    /// Yanks the package (`Some`) or takes the yank back (`None`); returns it as it now is.
    async fn set_yank(
        &self,
        id: Uuid,
        yank: Option<&crate::model::Yank>,
        now: DateTime<Utc>,
    ) -> Result<Package, RepoError>;
}

#[async_trait]
pub trait OperationRepository: Send + Sync {
    /// In one transaction: checks the package's status against the state machine
    /// (`OperationKind::check`) and that no other operation is in progress, inserts the operation
    /// and its outbox message.
    async fn start(&self, operation: &Operation, message: &OutboxMessage)
    -> Result<(), StartError>;
    /// Starts a name-level operation (no `package_id`; its `package_name` says which) with its
    /// outbox message, in one transaction: `NotFound` for a name never registered, `Busy` when
    /// one of the same kind is unfinished on the name.
    async fn start_on_name(
        &self,
        operation: &Operation,
        message: &OutboxMessage,
    ) -> Result<(), StartError>;
    /// Ends a running prune with success, in one transaction: of the versions `ids`, those
    /// still Downloaded, not yanked and with no operation unfinished return to Created, their
    /// files are removed from `files` before it commits (so no download or activation of
    /// them can start until they are gone), and the operation succeeds. Returns it and the ids
    /// that moved, or `None` when it was no longer running.
    async fn finish_prune(
        &self,
        op: &Operation,
        ids: &[Uuid],
        now: DateTime<Utc>,
        files: &dyn ArtifactFiles,
    ) -> Result<Option<(Operation, Vec<Uuid>)>, RepoError>;
    async fn get(&self, id: Uuid) -> Result<Operation, RepoError>;
    /// The operations among `ids` that exist, in no particular order (one query).
    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Operation>, RepoError>;
    /// Newest first.
    async fn list(
        &self,
        filter: &OperationFilter,
        page: &PageRequest,
    ) -> Result<Page<Operation>, RepoError>;
    /// Marks a pending (or abandoned running) operation running, counts the attempt and reads
    /// its package. Returns the operation as it now is; a final one is returned unchanged.
    async fn claim(&self, id: Uuid, now: DateTime<Utc>) -> Result<Claimed, RepoError>;
    /// Records progress of a running operation; returns whether cancellation was requested.
    async fn progress(&self, id: Uuid, progress: u8, now: DateTime<Utc>)
    -> Result<bool, RepoError>;
    /// Ends a running operation exactly once: in one transaction the operation becomes final and,
    /// on success, the package moves `kind`'s transition (conditional on its current status).
    /// `op` is the operation as claimed (its id, kind and package). Returns `None` when the
    /// operation was no longer running (someone else finished it).
    async fn finish(
        &self,
        op: &Operation,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<Option<Operation>, RepoError>;
    /// Pending → cancelled at once; running → cancellation requested, or cancelled at once when
    /// its lease ran out (its `updated_at` is before `abandoned_before`: no worker holds it).
    /// `Finished` when the operation had already ended, `NotFound` when there is none.
    async fn request_cancel(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        abandoned_before: DateTime<Utc>,
    ) -> Result<Operation, CancelError>;
    /// Renews a running operation's lease (its `updated_at`); returns whether cancellation was
    /// requested.
    async fn heartbeat(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, RepoError>;
    /// Ends the running operations whose lease ran out (`updated_at` before
    /// `abandoned_before`): failed with `abandoned`, or cancelled when that was requested.
    /// Returns them as they ended.
    async fn reap(
        &self,
        abandoned_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Operation>, RepoError>;
    /// Operations not yet final (for recovery after a restart in embedded mode).
    async fn unfinished(&self) -> Result<Vec<Operation>, RepoError>;
    /// Deletes operations that finished before `before`; returns how many.
    async fn purge_finished(&self, before: DateTime<Utc>) -> Result<u64, RepoError>;
}

/// The files a package's artifact occupies, where the executor keeps them: removed when the
/// package is deleted. (The simulated executor keeps none: [`NoFiles`].)
#[async_trait]
pub trait ArtifactFiles: Send + Sync {
    /// Removes whatever is kept for the package; nothing kept is not an error.
    async fn remove(&self, package_id: Uuid) -> Result<(), RepoError>;
}

/// No files are kept.
pub struct NoFiles;

#[async_trait]
impl ArtifactFiles for NoFiles {
    async fn remove(&self, _: Uuid) -> Result<(), RepoError> {
        Ok(())
    }
}

/// A registered package name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRecord {
    pub name: String,
    /// `None` for a name registered before owners existed.
    pub owner: Option<Owner>,
    pub created_at: DateTime<Utc>,
}

/// Package names as resources: who owns them, their versions, what was active when.
#[async_trait]
pub trait NameRepository: Send + Sync {
    /// The name's record, when it was ever registered (it stays when its versions are deleted).
    async fn name(&self, name: &str) -> Result<Option<NameRecord>, RepoError>;
    /// Names ascending; `prefix` is literal and case-sensitive.
    async fn names(
        &self,
        prefix: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<NameRecord>, RepoError>;
    /// Every version of the name, whatever its status, in no particular order; at most
    /// `limit` (the caller says what is too many).
    async fn versions_of(&self, name: &str, limit: u64) -> Result<Vec<Package>, RepoError>;
    /// The name's active version, if it has one.
    async fn active_version(&self, name: &str) -> Result<Option<Package>, RepoError>;
    /// Every package whose name starts with `prefix` (literal), at most `limit`.
    async fn with_prefix(&self, prefix: &str, limit: u64) -> Result<Vec<Package>, RepoError>;
    /// The name's activations and deactivations, newest first.
    async fn history(&self, name: &str, page: &PageRequest) -> Result<Page<Activation>, RepoError>;
}

#[async_trait]
pub trait OutboxRepository: Send + Sync {
    /// Leases up to `limit` unsent messages whose lease is free (`FOR UPDATE SKIP LOCKED` where
    /// supported, so several relays never lease the same row). A relay that dies mid-batch leaves
    /// its leases to expire; the messages are then sent again (at-least-once).
    async fn lease(
        &self,
        limit: u64,
        now: DateTime<Utc>,
        lease_for: chrono::Duration,
    ) -> Result<Vec<OutboxMessage>, RepoError>;
    /// Removes messages the broker confirmed: the outbox holds only what is still to be sent.
    async fn remove_sent(&self, ids: &[Uuid]) -> Result<(), RepoError>;
    /// Gives leased messages back (their publish failed) so the next round retries them at once.
    async fn release(&self, ids: &[Uuid]) -> Result<(), RepoError>;
    /// Unsent messages.
    async fn backlog(&self) -> Result<u64, RepoError>;
}
