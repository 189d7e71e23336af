//! The sea-orm adapter of the package ports: packages, operations (started together with their
//! outbox message, finished together with the package's status change) and the outbox.
//!
//! One file per concern: `rows` (mapping), `registry` (the package port), `operations`,
//! `start`, `claim` and `finish` (the operation port and its batches), `messages` (the outbox port),
//! `names` (the name port: names, versions, activation history).

mod claim;
mod finish;
mod messages;
mod names;
pub use names::reset_missing_artifacts;
mod operations;
mod registry;
mod rows;
mod start;

use claim::*;
use finish::*;
use operations::*;
use registry::*;
use rows::*;
use start::*;

use crate::batch::{Batcher, each_alone_on_failure, lost, shared};
use crate::entities::{
    operation, outbox, package, package_activation, package_name, retired_version,
};
use crate::error::{any_of, begin_write, is_unique_violation, repo_err};
use crate::keyset::{newest_first, page_by_id};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_core::{Cursor, Owner, OwnerKind, Page, PageRequest, RepoError};
use depot_packages::model::{PackageFields, PackageSignature, VerifiedArtifact};
use depot_packages::ports::{
    AttachError, BusyWith, CancelError, Claimed, DeleteError, InsertError, OperationFilter,
    OperationRepository, OutboxMessage, OutboxRepository, Outcome, PackageFilter,
    PackageRepository, PackageSort, StartError, UpdateError,
};
use depot_packages::{
    Operation, OperationError, OperationKind, OperationStatus, Package, PackageStatus,
};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LockType, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

/// Clones share their batches.
#[derive(Clone)]
pub struct SeaOrmPackageRepository {
    db: DatabaseConnection,
    batches: Arc<BatchSets>,
    /// Where the batchers' tasks run: the runtime the repository was made on (the process's
    /// main one), so that they outlive any HTTP worker's runtime.
    runtime: Option<tokio::runtime::Handle>,
}

/// The calls the lifecycle makes once per package or operation, coalesced under load (see
/// [`crate::batch`]): creating packages, starting operations (with their outbox messages),
/// claiming and finishing them, and reading single packages and operations.
pub(super) struct Batches {
    insert: Batcher<Package, Result<(), InsertError>>,
    get_package: Batcher<Uuid, Result<Package, RepoError>>,
    get_operation: Batcher<Uuid, Result<Operation, RepoError>>,
    start: Batcher<(Operation, OutboxMessage), Result<(), StartError>>,
    claim: Batcher<(Uuid, DateTime<Utc>), Result<Claimed, RepoError>>,
    finish: Batcher<FinishCall, Result<Option<Operation>, RepoError>>,
}

pub(super) struct FinishCall {
    op: Operation,
    outcome: Outcome,
    now: DateTime<Utc>,
}

#[derive(Default)]
struct BatchSets {
    shared: OnceLock<Arc<Batches>>,
    per_thread: std::sync::Mutex<HashMap<std::thread::ThreadId, Arc<Batches>>>,
    /// Batches of one kind in flight at once, whichever set runs them: as many sets as HTTP
    /// workers put no more statements at once on the pool than one set did.
    slots: Slots,
}

/// Per kind, as [`Batches`] names them.
struct Slots {
    insert: Arc<tokio::sync::Semaphore>,
    get_package: Arc<tokio::sync::Semaphore>,
    get_operation: Arc<tokio::sync::Semaphore>,
    start: Arc<tokio::sync::Semaphore>,
    claim: Arc<tokio::sync::Semaphore>,
    finish: Arc<tokio::sync::Semaphore>,
}

impl Default for Slots {
    fn default() -> Self {
        let slots = |n| Arc::new(tokio::sync::Semaphore::new(n));
        Self {
            insert: slots(2),
            get_package: slots(4),
            get_operation: slots(4),
            start: slots(2),
            claim: slots(2),
            finish: slots(2),
        }
    }
}

/// Calls per batch: bounded so a statement's parameters stay far below SQLite's limit, and the
/// ids a finish batch announces fit one notification (37 bytes each, under 8,000).
const MAX_BATCH: usize = 128;

const _: () = assert!(MAX_BATCH * 37 < 8000);

impl SeaOrmPackageRepository {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            batches: Arc::default(),
            // Only a multi-thread runtime: a current-thread one runs only while it is driven.
            runtime: tokio::runtime::Handle::try_current()
                .ok()
                .filter(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread),
        }
    }

    /// The caller's batches. A current-thread runtime (an HTTP worker's) has its own, run on
    /// it: its calls never cross to another thread, and they end with it. The others share one
    /// set, on the runtime the repository was made on (the caller's when it was made outside
    /// one).
    fn batches(&self) -> Arc<Batches> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(here) if here.runtime_flavor() == RuntimeFlavor::CurrentThread => {
                let thread = std::thread::current().id();
                let mut sets = self
                    .batches
                    .per_thread
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if let Some(set) = sets.get(&thread) {
                    return set.clone();
                }
                // The sets of threads whose runtime ended (an HTTP worker that stopped or was
                // restarted: a new thread) go.
                sets.retain(|_, set| set.insert.is_running());
                let set = Arc::new(self.start_batches(Some(here)));
                sets.insert(thread, set.clone());
                set
            }
            _ => self
                .batches
                .shared
                .get_or_init(|| Arc::new(self.start_batches(self.runtime.clone())))
                .clone(),
        }
    }

    fn start_batches(&self, runtime: Option<tokio::runtime::Handle>) -> Batches {
        let db = self.db.clone();
        macro_rules! batcher {
            ($kind:ident, $f:ident) => {{
                let db = db.clone();
                Batcher::start(
                    stringify!($f),
                    MAX_BATCH,
                    self.batches.slots.$kind.clone(),
                    runtime.clone(),
                    move |calls| {
                        let db = db.clone();
                        async move { $f(&db, calls).await }
                    },
                )
            }};
        }
        Batches {
            insert: batcher!(insert, insert_batch),
            get_package: batcher!(get_package, get_package_batch),
            get_operation: batcher!(get_operation, get_operation_batch),
            start: batcher!(start, start_batch),
            claim: batcher!(claim, claim_batch),
            finish: batcher!(finish, finish_batch),
        }
    }
}

pub(super) fn unexpected(msg: String) -> RepoError {
    RepoError::Unexpected(msg.into())
}

/// Operations that are not over (pending or running). Every final status is written with
/// `finished_at`, so "not finished" is `finished_at IS NULL`: the predicate of the
/// one-active-per-package index, which such queries can then use.
pub(super) fn not_finished() -> Expr {
    Expr::col(operation::Column::FinishedAt).is_null()
}

/// The operation pending or running on package `id`, if any (read through `conn`, a
/// transaction that holds the package where the caller needs that).
pub(super) async fn busy_with(
    conn: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<BusyWith>, RepoError> {
    let Some(op) = operation::Entity::find()
        .filter(operation::Column::PackageId.eq(id))
        .filter(not_finished())
        .one(conn)
        .await
        .map_err(repo_err)?
    else {
        return Ok(None);
    };
    let op = operation_of(op)?;
    Ok(Some(BusyWith {
        id: op.id,
        kind: op.kind,
        status: op.status,
    }))
}

/// Package `id` read in `txn` and held until the commit, with its status, when its revision is
/// `expected_revision`. A start of an operation (which holds its package KEY SHARE until it
/// commits) either committed before, and the caller's `busy_with` sees it, or waits for this
/// transaction and then finds the package as it left it. (On SQLite the write transaction
/// excludes every other writer.)
pub(super) async fn held_row(
    txn: &DatabaseTransaction,
    id: Uuid,
    expected_revision: i64,
) -> Result<(package::Model, PackageStatus), AttachError> {
    let mut find = package::Entity::find_by_id(id);
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        find = find.lock(LockType::Update);
    }
    let row = find
        .one(txn)
        .await
        .map_err(repo_err)?
        .ok_or(AttachError::NotFound)?;
    if row.revision != expected_revision {
        return Err(AttachError::StaleRevision);
    }
    let status = PackageStatus::parse(&row.status)
        .ok_or_else(|| repo_err(sea_orm::DbErr::Custom("unknown package status".into())))?;
    Ok((row, status))
}
