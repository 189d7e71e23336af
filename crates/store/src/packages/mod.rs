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
use depot_packages::model::PackageFields;
use depot_packages::ports::{
    BusyWith, CancelError, Claimed, DeleteError, InsertError, OperationFilter, OperationRepository,
    OutboxMessage, OutboxRepository, Outcome, PackageFilter, PackageRepository, PackageSort,
    StartError, UpdateError,
};
use depot_packages::{
    Operation, OperationError, OperationKind, OperationStatus, Package, PackageStatus,
};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LockType, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

/// Clones share their batches.
#[derive(Clone)]
pub struct SeaOrmPackageRepository {
    db: DatabaseConnection,
    batches: Arc<OnceLock<Batches>>,
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

/// Calls per batch: bounded so a statement's parameters stay far below SQLite's limit, and the
/// ids a finish batch announces fit one notification (37 bytes each, under 8,000).
const MAX_BATCH: usize = 128;

const _: () = assert!(MAX_BATCH * 37 < 8000);

impl SeaOrmPackageRepository {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            batches: Arc::new(OnceLock::new()),
        }
    }

    /// Started on first use, so the batchers' tasks run on the caller's runtime.
    fn batches(&self) -> &Batches {
        self.batches.get_or_init(|| {
            let db = self.db.clone();
            macro_rules! batcher {
                ($in_flight:expr, $f:ident) => {{
                    let db = db.clone();
                    Batcher::start(stringify!($f), MAX_BATCH, $in_flight, move |calls| {
                        let db = db.clone();
                        async move { $f(&db, calls).await }
                    })
                }};
            }
            Batches {
                insert: batcher!(2, insert_batch),
                get_package: batcher!(4, get_package_batch),
                get_operation: batcher!(4, get_operation_batch),
                start: batcher!(2, start_batch),
                claim: batcher!(2, claim_batch),
                finish: batcher!(2, finish_batch),
            }
        })
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
