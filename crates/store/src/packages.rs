//! The sea-orm adapter of the package ports: packages, operations (started together with their
//! outbox message, finished together with the package's status change) and the outbox.

use crate::batch::{Batcher, each_alone_on_failure, lost, shared};
use crate::entities::{operation, outbox, package};
use crate::error::{any_of, begin_write, is_unique_violation, repo_err};
use crate::keyset::{newest_first, page_by_id};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_core::{Cursor, Page, PageRequest, RepoError};
use depot_packages::model::PackageFields;
use depot_packages::ports::{
    BusyWith, CancelError, Claimed, DeleteError, InsertError, OperationFilter, OperationRepository,
    OutboxMessage, OutboxRepository, Outcome, PackageFilter, PackageRepository, PackageSort,
    StartError, UpdateError,
};
use depot_packages::{
    Operation, OperationError, OperationKind, OperationStatus, Package, PackageStatus,
};
use sea_orm::sea_query::{Expr, ExprTrait, LockType, OnConflict};
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
struct Batches {
    insert: Batcher<Package, Result<(), InsertError>>,
    get_package: Batcher<Uuid, Result<Package, RepoError>>,
    get_operation: Batcher<Uuid, Result<Operation, RepoError>>,
    start: Batcher<(Operation, OutboxMessage), Result<(), StartError>>,
    claim: Batcher<(Uuid, DateTime<Utc>), Result<Claimed, RepoError>>,
    finish: Batcher<FinishCall, Result<Option<Operation>, RepoError>>,
}

struct FinishCall {
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

fn unexpected(msg: String) -> RepoError {
    RepoError::Unexpected(msg.into())
}

fn package_of(m: package::Model) -> Result<Package, RepoError> {
    Ok(Package {
        status: PackageStatus::parse(&m.status)
            .ok_or_else(|| unexpected(format!("unknown package status `{}`", m.status)))?,
        id: m.id,
        name: m.name,
        version: m.version,
        description: m.description,
        source_url: m.source_url,
        sha256: m.sha256,
        size_bytes: m.size_bytes,
        created_at: m.created_at,
        updated_at: m.updated_at,
        revision: m.revision,
    })
}

fn operation_of(m: operation::Model) -> Result<Operation, RepoError> {
    Ok(Operation {
        kind: OperationKind::parse(&m.kind)
            .ok_or_else(|| unexpected(format!("unknown operation kind `{}`", m.kind)))?,
        status: OperationStatus::parse(&m.status)
            .ok_or_else(|| unexpected(format!("unknown operation status `{}`", m.status)))?,
        id: m.id,
        package_id: m.package_id,
        progress: u8::try_from(m.progress.clamp(0, 100)).unwrap_or(0),
        error: m.error_code.map(|code| OperationError {
            code,
            detail: m.error_detail.unwrap_or_default(),
        }),
        cancel_requested: m.cancel_requested,
        attempts: m.attempts,
        created_at: m.created_at,
        updated_at: m.updated_at,
        finished_at: m.finished_at,
    })
}

/// Operations that are not over (pending or running). Every final status is written with
/// `finished_at`, so "not finished" is `finished_at IS NULL`: the predicate of the
/// one-active-per-package index, which such queries can then use.
fn not_finished() -> Expr {
    Expr::col(operation::Column::FinishedAt).is_null()
}

#[async_trait]
impl PackageRepository for SeaOrmPackageRepository {
    #[tracing::instrument(skip_all)]
    async fn insert(&self, p: &Package) -> Result<(), InsertError> {
        self.batches()
            .insert
            .call(p.clone())
            .await
            .unwrap_or_else(|| Err(lost().into()))
    }

    #[tracing::instrument(skip_all)]
    async fn get(&self, id: Uuid) -> Result<Package, RepoError> {
        self.batches()
            .get_package
            .call(id)
            .await
            .unwrap_or_else(|| Err(lost()))
    }

    #[tracing::instrument(skip_all)]
    async fn list(
        &self,
        filter: &PackageFilter,
        sort: PackageSort,
        page: &PageRequest,
    ) -> Result<Page<Package>, RepoError> {
        let mut q = package::Entity::find();
        if let Some(status) = filter.status {
            q = q.filter(package::Column::Status.eq(status.as_str()));
        }
        if let Some(prefix) = &filter.name_prefix {
            q = q.filter(package::Column::Name.starts_with(prefix.as_str()));
        }
        q = match (sort, &page.after) {
            (PackageSort::CreatedAt, after) => {
                if let Some(after) = after {
                    q = q.filter(package::Column::Id.lt(after.id));
                }
                q.order_by_desc(package::Column::Id)
            }
            (PackageSort::Name, after) => {
                if let Some(after) = after {
                    q = q.filter(
                        Condition::any()
                            .add(package::Column::Name.gt(after.key.as_str()))
                            .add(
                                Condition::all()
                                    .add(package::Column::Name.eq(after.key.as_str()))
                                    .add(package::Column::Id.gt(after.id)),
                            ),
                    );
                }
                q.order_by_asc(package::Column::Name)
                    .order_by_asc(package::Column::Id)
            }
        };
        let rows = q
            .limit(u64::from(page.limit()) + 1)
            .all(&self.db)
            .await
            .map_err(repo_err)?
            .into_iter()
            .map(package_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(
            rows,
            page.limit(),
            |p: &Package| match sort {
                PackageSort::CreatedAt => Cursor::new("", p.id),
                PackageSort::Name => Cursor::new(p.name.clone(), p.id),
            },
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn update(
        &self,
        id: Uuid,
        f: &PackageFields,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<Package, UpdateError> {
        let mut update = package::Entity::update_many()
            .col_expr(
                package::Column::Revision,
                Expr::col(package::Column::Revision).add(1),
            )
            .col_expr(package::Column::UpdatedAt, Expr::value(now))
            .filter(package::Column::Id.eq(id));
        if let Some(rev) = expected_revision {
            update = update.filter(package::Column::Revision.eq(rev));
        }
        if let Some(name) = &f.name {
            update = update.col_expr(package::Column::Name, Expr::value(name.clone()));
        }
        if let Some(version) = &f.version {
            update = update.col_expr(package::Column::Version, Expr::value(version.clone()));
        }
        if let Some(v) = &f.description {
            update = update.col_expr(package::Column::Description, Expr::value(v.clone()));
        }
        if let Some(v) = &f.source_url {
            update = update.col_expr(package::Column::SourceUrl, Expr::value(v.clone()));
        }
        if let Some(v) = &f.sha256 {
            update = update.col_expr(package::Column::Sha256, Expr::value(v.clone()));
        }
        if let Some(v) = f.size_bytes {
            update = update.col_expr(package::Column::SizeBytes, Expr::value(v));
        }
        // (name, version) is the only unique key an update can change.
        let result = update.exec(&self.db).await.map_err(|e| {
            if is_unique_violation(&e) {
                UpdateError::Duplicate
            } else {
                repo_err(e).into()
            }
        })?;
        if result.rows_affected == 0 {
            return match package::Entity::find_by_id(id)
                .one(&self.db)
                .await
                .map_err(repo_err)?
            {
                Some(_) => Err(UpdateError::StaleRevision),
                None => Err(UpdateError::NotFound),
            };
        }
        PackageRepository::get(self, id).await.map_err(|e| match e {
            RepoError::NotFound => UpdateError::NotFound,
            e => e.into(),
        })
    }

    #[tracing::instrument(skip_all)]
    async fn delete(&self, id: Uuid, expected_revision: Option<i64>) -> Result<(), DeleteError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let active = operation::Entity::find()
            .filter(operation::Column::PackageId.eq(id))
            .filter(not_finished())
            .one(&txn)
            .await
            .map_err(repo_err)?;
        if let Some(op) = active {
            let op = operation_of(op)?;
            return Err(DeleteError::Busy(BusyWith {
                id: op.id,
                kind: op.kind,
                status: op.status,
            }));
        }
        let mut q = package::Entity::delete_many().filter(package::Column::Id.eq(id));
        if let Some(rev) = expected_revision {
            q = q.filter(package::Column::Revision.eq(rev));
        }
        let result = q.exec(&txn).await.map_err(repo_err)?;
        if result.rows_affected == 0 {
            return match package::Entity::find_by_id(id)
                .one(&txn)
                .await
                .map_err(repo_err)?
            {
                Some(_) => Err(DeleteError::StaleRevision),
                None => Err(DeleteError::NotFound),
            };
        }
        Ok(txn.commit().await.map_err(repo_err)?)
    }
}

#[async_trait]
impl OperationRepository for SeaOrmPackageRepository {
    #[tracing::instrument(skip_all)]
    async fn start(&self, op: &Operation, message: &OutboxMessage) -> Result<(), StartError> {
        self.batches()
            .start
            .call((op.clone(), message.clone()))
            .await
            .unwrap_or_else(|| Err(StartError::Repo(lost())))
    }

    async fn get(&self, id: Uuid) -> Result<Operation, RepoError> {
        self.batches()
            .get_operation
            .call(id)
            .await
            .unwrap_or_else(|| Err(lost()))
    }

    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Operation>, RepoError> {
        operations_by_id(&self.db, ids.iter().copied())
            .await?
            .into_values()
            .map(operation_of)
            .collect()
    }

    async fn list(
        &self,
        filter: &OperationFilter,
        page: &PageRequest,
    ) -> Result<Page<Operation>, RepoError> {
        let mut q = operation::Entity::find();
        if let Some(p) = filter.package_id {
            q = q.filter(operation::Column::PackageId.eq(p));
        }
        if let Some(s) = filter.status {
            q = q.filter(operation::Column::Status.eq(s.as_str()));
            if !s.is_final() {
                // Implied by the status; lets the database read the small partial index of
                // unfinished operations instead of scanning.
                q = q.filter(not_finished());
            }
        }
        let rows = newest_first(q, operation::Column::Id, page)
            .all(&self.db)
            .await
            .map_err(repo_err)?
            .into_iter()
            .map(operation_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page_by_id(rows, page, |o: &Operation| o.id))
    }

    #[tracing::instrument(skip_all)]
    async fn claim(&self, id: Uuid, now: DateTime<Utc>) -> Result<Claimed, RepoError> {
        self.batches()
            .claim
            .call((id, now))
            .await
            .unwrap_or_else(|| Err(lost()))
    }

    async fn progress(
        &self,
        id: Uuid,
        progress: u8,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        operation::Entity::update_many()
            .col_expr(
                operation::Column::Progress,
                Expr::value(i16::from(progress)),
            )
            .col_expr(operation::Column::UpdatedAt, Expr::value(now))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::Status.eq("running"))
            .filter(operation::Column::Progress.lt(i16::from(progress)))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        let cancel = operation::Entity::find_by_id(id)
            .select_only()
            .column(operation::Column::CancelRequested)
            .into_tuple::<bool>()
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .unwrap_or(true);
        Ok(cancel)
    }

    #[tracing::instrument(skip_all)]
    async fn finish(
        &self,
        op: &Operation,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<Option<Operation>, RepoError> {
        self.batches()
            .finish
            .call(FinishCall {
                op: op.clone(),
                outcome: outcome.clone(),
                now,
            })
            .await
            .unwrap_or_else(|| Err(lost()))
    }

    async fn request_cancel(&self, id: Uuid, now: DateTime<Utc>) -> Result<Operation, CancelError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let op = operation::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(repo_err)?
            .ok_or(CancelError::NotFound)?;
        match op.status.as_str() {
            "pending" => {
                operation::Entity::update_many()
                    .col_expr(operation::Column::Status, Expr::value("cancelled"))
                    .col_expr(operation::Column::CancelRequested, Expr::value(true))
                    .col_expr(operation::Column::UpdatedAt, Expr::value(now))
                    .col_expr(operation::Column::FinishedAt, Expr::value(Some(now)))
                    .filter(operation::Column::Id.eq(id))
                    .filter(operation::Column::Status.eq("pending"))
                    .exec(&txn)
                    .await
                    .map_err(repo_err)?;
            }
            "running" => {
                operation::Entity::update_many()
                    .col_expr(operation::Column::CancelRequested, Expr::value(true))
                    .col_expr(operation::Column::UpdatedAt, Expr::value(now))
                    .filter(operation::Column::Id.eq(id))
                    .exec(&txn)
                    .await
                    .map_err(repo_err)?;
            }
            other => {
                let status = OperationStatus::parse(other)
                    .ok_or_else(|| unexpected(format!("unknown operation status `{other}`")))?;
                return Err(CancelError::Finished(status));
            }
        }
        txn.commit().await.map_err(repo_err)?;
        let op = OperationRepository::get(self, id)
            .await
            .map_err(|e| match e {
                RepoError::NotFound => CancelError::NotFound,
                e => e.into(),
            })?;
        if op.status.is_final() {
            crate::notify::announce_later(&self.db, vec![id]);
        }
        Ok(op)
    }

    async fn unfinished(&self) -> Result<Vec<Operation>, RepoError> {
        operation::Entity::find()
            .filter(not_finished())
            .order_by_asc(operation::Column::Id)
            .all(&self.db)
            .await
            .map_err(repo_err)?
            .into_iter()
            .map(operation_of)
            .collect()
    }

    async fn purge_finished(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let r = operation::Entity::delete_many()
            .filter(operation::Column::FinishedAt.lt(before))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(r.rows_affected)
    }
}

#[async_trait]
impl OutboxRepository for SeaOrmPackageRepository {
    #[tracing::instrument(skip_all)]
    async fn lease(
        &self,
        limit: u64,
        now: DateTime<Utc>,
        lease_for: chrono::Duration,
    ) -> Result<Vec<OutboxMessage>, RepoError> {
        let backend = self.db.get_database_backend();
        let until = now + lease_for;
        let mut rows = if backend == DatabaseBackend::Postgres {
            // One statement: the rows other relays hold are skipped, not waited for.
            let rows = self
                .db
                .query_all_raw(sea_orm::Statement::from_sql_and_values(
                    backend,
                    "UPDATE outbox SET locked_until = $1 WHERE id IN (SELECT id FROM outbox \
                     WHERE locked_until IS NULL OR locked_until < $2 ORDER BY id LIMIT $3 \
                     FOR UPDATE SKIP LOCKED) RETURNING *",
                    [until.into(), now.into(), (limit as i64).into()],
                ))
                .await
                .map_err(repo_err)?;
            rows.iter()
                .map(|r| outbox::Model::from_query_result(r, ""))
                .collect::<Result<Vec<_>, _>>()
                .map_err(repo_err)?
        } else {
            let txn = begin_write(&self.db).await.map_err(repo_err)?;
            let rows = outbox::Entity::find()
                .filter(
                    Condition::any()
                        .add(outbox::Column::LockedUntil.is_null())
                        .add(outbox::Column::LockedUntil.lt(now)),
                )
                .order_by_asc(outbox::Column::Id)
                .limit(limit)
                .all(&txn)
                .await
                .map_err(repo_err)?;
            if !rows.is_empty() {
                outbox::Entity::update_many()
                    .col_expr(outbox::Column::LockedUntil, Expr::value(Some(until)))
                    .filter(any_of(
                        backend,
                        outbox::Column::Id,
                        rows.iter().map(|r| r.id),
                    ))
                    .exec(&txn)
                    .await
                    .map_err(repo_err)?;
                txn.commit().await.map_err(repo_err)?;
            }
            rows
        };
        rows.sort_by_key(|r| r.id);
        Ok(rows
            .into_iter()
            .map(|r| OutboxMessage {
                id: r.id,
                queue: r.queue,
                payload: r.payload,
                created_at: r.created_at,
                // Unreadable headers only lose the trace link, never the message.
                headers: r
                    .headers
                    .as_deref()
                    .and_then(|h| serde_json::from_str(h).ok())
                    .unwrap_or_default(),
            })
            .collect())
    }

    async fn remove_sent(&self, ids: &[Uuid]) -> Result<(), RepoError> {
        if ids.is_empty() {
            return Ok(());
        }
        outbox::Entity::delete_many()
            .filter(any_of(
                self.db.get_database_backend(),
                outbox::Column::Id,
                ids.iter().copied(),
            ))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(())
    }

    async fn release(&self, ids: &[Uuid]) -> Result<(), RepoError> {
        if ids.is_empty() {
            return Ok(());
        }
        outbox::Entity::update_many()
            .col_expr(
                outbox::Column::LockedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(any_of(
                self.db.get_database_backend(),
                outbox::Column::Id,
                ids.iter().copied(),
            ))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(())
    }

    async fn backlog(&self) -> Result<u64, RepoError> {
        outbox::Entity::find()
            .count(&self.db)
            .await
            .map_err(repo_err)
    }
}

/// Answers every call of a batch with the batch's error.
fn all_failed<T>(n: usize, e: &RepoError) -> Vec<Result<T, RepoError>> {
    (0..n).map(|_| Err(shared(e))).collect()
}

fn package_model(p: &Package) -> package::ActiveModel {
    package::ActiveModel {
        id: Set(p.id),
        name: Set(p.name.clone()),
        version: Set(p.version.clone()),
        status: Set(p.status.as_str().to_owned()),
        description: Set(p.description.clone()),
        source_url: Set(p.source_url.clone()),
        sha256: Set(p.sha256.clone()),
        size_bytes: Set(p.size_bytes),
        created_at: Set(p.created_at),
        updated_at: Set(p.updated_at),
        revision: Set(p.revision),
    }
}

/// Inserts packages in one statement; a duplicate (name, version), also within the batch, is
/// skipped by the database and answered `Conflict`.
async fn insert_batch(
    db: &DatabaseConnection,
    packages: Vec<Package>,
) -> Vec<Result<(), InsertError>> {
    each_alone_on_failure(
        "insert",
        &packages,
        |packages| Box::pin(insert_batch_inner(db, packages)),
        |e| Err(e.into()),
    )
    .await
}

async fn insert_batch_inner(
    db: &DatabaseConnection,
    packages: &[Package],
) -> Result<Vec<Result<(), InsertError>>, RepoError> {
    // One insertion order (by the unique key) for every batch: concurrent batches holding the
    // same names wait for each other instead of deadlocking.
    let mut ordered: Vec<&Package> = packages.iter().collect();
    ordered.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    let inserted = package::Entity::insert_many(ordered.into_iter().map(package_model))
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_with_returning_keys(db)
        .await;
    let ids: HashSet<Uuid> = inserted.map_err(repo_err)?.into_iter().collect();
    Ok(packages
        .iter()
        .map(|p| {
            if ids.contains(&p.id) {
                Ok(())
            } else {
                // Skipped by `ON CONFLICT DO NOTHING`: (name, version) exists (the id is new).
                Err(InsertError::Duplicate)
            }
        })
        .collect())
}

async fn get_package_batch(
    db: &DatabaseConnection,
    ids: Vec<Uuid>,
) -> Vec<Result<Package, RepoError>> {
    let found =
        rows_by_id::<package::Entity>(db, package::Column::Id, ids.iter().copied(), |m| m.id).await;
    answer_each(&ids, found, package_of)
}

/// Each asked id's row, converted; `NotFound` for an id with none.
fn answer_each<M: Clone, T>(
    ids: &[Uuid],
    found: Result<HashMap<Uuid, M>, RepoError>,
    convert: fn(M) -> Result<T, RepoError>,
) -> Vec<Result<T, RepoError>> {
    match found {
        Ok(found) => ids
            .iter()
            .map(|id| {
                found
                    .get(id)
                    .cloned()
                    .ok_or(RepoError::NotFound)
                    .and_then(convert)
            })
            .collect(),
        Err(e) => all_failed(ids.len(), &e),
    }
}

/// The rows of `E` with these ids (one statement), by id.
async fn rows_by_id<E: EntityTrait>(
    db: &impl ConnectionTrait,
    column: E::Column,
    ids: impl IntoIterator<Item = Uuid>,
    id_of: impl Fn(&E::Model) -> Uuid,
) -> Result<HashMap<Uuid, E::Model>, RepoError> {
    let ids: HashSet<Uuid> = ids.into_iter().collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(E::find()
        .filter(any_of(db.get_database_backend(), column, ids))
        .all(db)
        .await
        .map_err(repo_err)?
        .into_iter()
        .map(|m| (id_of(&m), m))
        .collect())
}

async fn operations_by_id(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<HashMap<Uuid, operation::Model>, RepoError> {
    rows_by_id::<operation::Entity>(db, operation::Column::Id, ids, |m| m.id).await
}

async fn get_operation_batch(
    db: &DatabaseConnection,
    ids: Vec<Uuid>,
) -> Vec<Result<Operation, RepoError>> {
    let found = operations_by_id(db, ids.iter().copied()).await;
    answer_each(&ids, found, operation_of)
}

/// Starts operations in one transaction: reads their packages, checks each against the state
/// machine, inserts the operations (the one-active-per-package index skips a busy package's,
/// also a second one for the same package within the batch) and the outbox messages of those
/// inserted.
async fn start_batch(
    db: &DatabaseConnection,
    calls: Vec<(Operation, OutboxMessage)>,
) -> Vec<Result<(), StartError>> {
    each_alone_on_failure(
        "start",
        &calls,
        |calls| Box::pin(start_batch_inner(db, calls)),
        |e| Err(StartError::Repo(e)),
    )
    .await
}

async fn start_batch_inner(
    db: &DatabaseConnection,
    calls: &[(Operation, OutboxMessage)],
) -> Result<Vec<Result<(), StartError>>, RepoError> {
    let txn = begin_write(db).await.map_err(repo_err)?;
    let package_ids: HashSet<Uuid> = calls.iter().map(|(op, _)| op.package_id).collect();
    let mut packages = package::Entity::find()
        .select_only()
        .column(package::Column::Id)
        .column(package::Column::Status)
        .filter(any_of(
            db.get_database_backend(),
            package::Column::Id,
            package_ids,
        ));
    if db.get_database_backend() == DatabaseBackend::Postgres {
        // A package deleted between this read and the inserts would fail the operations'
        // foreign key, and with it every start in the batch. KEY SHARE holds deletions off
        // until the commit (a deletion that came first makes the package missing here) and
        // does not stop status changes. (On SQLite the transaction already excludes writers.)
        packages = packages.lock(LockType::KeyShare);
    }
    let statuses: HashMap<Uuid, String> = packages
        .into_tuple::<(Uuid, String)>()
        .all(&txn)
        .await
        .map_err(repo_err)?
        .into_iter()
        .collect();
    let mut results: Vec<Option<Result<(), StartError>>> = Vec::with_capacity(calls.len());
    for (op, _) in calls {
        let checked = match statuses.get(&op.package_id) {
            None => Some(Err(StartError::NotFound)),
            Some(status) => match PackageStatus::parse(status) {
                None => Some(Err(StartError::Repo(unexpected(format!(
                    "unknown package status `{status}`"
                ))))),
                Some(status) => op
                    .kind
                    .check(status)
                    .err()
                    .map(|e| Err(StartError::WrongStatus(e))),
            },
        };
        results.push(checked);
    }
    let mut candidates: Vec<&Operation> = calls
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_none())
        .map(|((op, _), _)| op)
        .collect();
    // Rows are inserted in this order, each taking the one-active-per-package index entry of its
    // package: one order for every batch, so two batches with the same packages wait for each
    // other instead of deadlocking.
    candidates.sort_by_key(|op| op.package_id);
    let inserted: HashSet<Uuid> = if candidates.is_empty() {
        HashSet::new()
    } else {
        operation::Entity::insert_many(candidates.iter().map(|op| operation::ActiveModel {
            id: Set(op.id),
            kind: Set(op.kind.as_str().to_owned()),
            package_id: Set(op.package_id),
            status: Set(op.status.as_str().to_owned()),
            progress: Set(i16::from(op.progress)),
            error_code: Set(None),
            error_detail: Set(None),
            cancel_requested: Set(false),
            attempts: Set(0),
            created_at: Set(op.created_at),
            updated_at: Set(op.updated_at),
            finished_at: Set(None),
        }))
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_with_returning_keys(&txn)
        .await
        .map_err(repo_err)?
        .into_iter()
        .collect()
    };
    let messages: Vec<&OutboxMessage> = calls
        .iter()
        .filter(|(op, _)| inserted.contains(&op.id))
        .map(|(_, m)| m)
        .collect();
    if !messages.is_empty() {
        outbox::Entity::insert_many(messages.iter().map(|m| {
            outbox::ActiveModel {
                id: Set(m.id),
                queue: Set(m.queue.clone()),
                payload: Set(m.payload.clone()),
                created_at: Set(m.created_at),
                locked_until: Set(None),
                headers: Set((!m.headers.is_empty())
                    .then(|| serde_json::to_string(&m.headers).expect("headers serialise"))),
            }
        }))
        .exec_without_returning(&txn)
        .await
        .map_err(repo_err)?;
    }
    txn.commit().await.map_err(repo_err)?;
    // Those skipped by the index: name the operation in progress (best effort, after commit).
    let busy_packages: Vec<Uuid> = calls
        .iter()
        .zip(&results)
        .filter(|((op, _), r)| r.is_none() && !inserted.contains(&op.id))
        .map(|((op, _), _)| op.package_id)
        .collect();
    let busy: HashMap<Uuid, Uuid> = if busy_packages.is_empty() {
        HashMap::new()
    } else {
        operation::Entity::find()
            .select_only()
            .column(operation::Column::PackageId)
            .column(operation::Column::Id)
            .filter(any_of(
                db.get_database_backend(),
                operation::Column::PackageId,
                busy_packages,
            ))
            .filter(not_finished())
            .into_tuple::<(Uuid, Uuid)>()
            .all(db)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect()
    };
    Ok(calls
        .iter()
        .zip(results)
        .map(|((op, _), r)| match r {
            Some(r) => r,
            None if inserted.contains(&op.id) => Ok(()),
            None => Err(StartError::Busy(
                busy.get(&op.package_id).copied().unwrap_or(Uuid::nil()),
            )),
        })
        .collect())
}

/// Marks pending (or abandoned running) operations running, counts the attempt and reads their
/// packages: on PostgreSQL in one statement, elsewhere in two. Final operations are read and
/// returned unchanged.
async fn claim_batch(
    db: &DatabaseConnection,
    calls: Vec<(Uuid, DateTime<Utc>)>,
) -> Vec<Result<Claimed, RepoError>> {
    // Not run call by call on failure: the claim is one UPDATE, which refuses no single row,
    // and it is not one transaction with the reads after it, so running it again would count
    // an attempt twice.
    match claim_batch_inner(db, &calls).await {
        Ok(found) => calls
            .iter()
            .map(|(id, _)| found.get(id).cloned().ok_or(RepoError::NotFound))
            .collect(),
        Err(e) => all_failed(calls.len(), &e),
    }
}

async fn claim_batch_inner(
    db: &DatabaseConnection,
    calls: &[(Uuid, DateTime<Utc>)],
) -> Result<HashMap<Uuid, Claimed>, RepoError> {
    let Some(now) = calls.iter().map(|(_, now)| *now).max() else {
        return Ok(HashMap::new());
    };
    let backend = db.get_database_backend();
    let ids: HashSet<Uuid> = calls.iter().map(|(id, _)| *id).collect();
    let mut claimed: HashMap<Uuid, Claimed> = HashMap::new();
    if backend == DatabaseBackend::Postgres {
        let sql = format!(
            r#"WITH c AS (UPDATE operations SET status = 'running', attempts = attempts + 1,
                 updated_at = $2 WHERE id = ANY($1) AND finished_at IS NULL RETURNING *)
               SELECT {}, {} FROM c LEFT JOIN packages p ON p.id = c.package_id"#,
            prefixed::<operation::Entity>("c", "o_"),
            prefixed::<package::Entity>("p", "p_"),
        );
        let rows = db
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                sql,
                [
                    ids.iter().copied().collect::<Vec<Uuid>>().into(),
                    now.into(),
                ],
            ))
            .await
            .map_err(repo_err)?;
        for row in rows {
            let op = operation::Model::from_query_result(&row, "o_").map_err(repo_err)?;
            let package =
                package::Model::from_query_result_optional(&row, "p_").map_err(repo_err)?;
            claimed.insert(op.id, claimed_of(op, package)?);
        }
    } else {
        let ops = operation::Entity::update_many()
            .col_expr(operation::Column::Status, Expr::value("running"))
            .col_expr(
                operation::Column::Attempts,
                Expr::col(operation::Column::Attempts).add(1),
            )
            .col_expr(operation::Column::UpdatedAt, Expr::value(now))
            .filter(any_of(backend, operation::Column::Id, ids.iter().copied()))
            .filter(not_finished())
            .exec_with_returning(db)
            .await
            .map_err(repo_err)?;
        let mut packages = rows_by_id::<package::Entity>(
            db,
            package::Column::Id,
            ops.iter().map(|o| o.package_id),
            |m| m.id,
        )
        .await?;
        for op in ops {
            let package = packages.remove(&op.package_id);
            claimed.insert(op.id, claimed_of(op, package)?);
        }
    }
    // Not claimable: final (returned as they are, without their package) or gone.
    let missing: Vec<Uuid> = ids
        .into_iter()
        .filter(|id| !claimed.contains_key(id))
        .collect();
    for (id, op) in operations_by_id(db, missing).await? {
        claimed.insert(id, claimed_of(op, None)?);
    }
    Ok(claimed)
}

fn claimed_of(op: operation::Model, package: Option<package::Model>) -> Result<Claimed, RepoError> {
    Ok(Claimed {
        operation: operation_of(op)?,
        package: package.map(package_of).transpose()?,
    })
}

/// `alias.col AS "prefixcol"` for every column of `E`, for reading a joined row with
/// `FromQueryResult::from_query_result(row, prefix)`.
fn prefixed<E: EntityTrait>(alias: &str, prefix: &str) -> String {
    use sea_orm::{IdenStatic, Iterable};
    E::Column::iter()
        .map(|c| format!(r#"{alias}."{0}" AS "{prefix}{0}""#, c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ends operations exactly once, in one transaction. The operations that succeeded are made
/// final first, conditional on still running: that locks them and says which were. Their
/// packages then move, conditional on their status; an operation whose package moved away
/// meanwhile fails with `invalid_transition` instead. Failures and cancellations follow, one
/// statement each (they are rare). Of several calls for one operation (redeliveries), the
/// first to make it final gets it; the others get `None`, as does any call for an operation
/// that was no longer running.
async fn finish_batch(
    db: &DatabaseConnection,
    calls: Vec<FinishCall>,
) -> Vec<Result<Option<Operation>, RepoError>> {
    each_alone_on_failure(
        "finish",
        &calls,
        |calls| {
            Box::pin(async move {
                Ok(finish_batch_inner(db, calls)
                    .await?
                    .into_iter()
                    .map(Ok)
                    .collect())
            })
        },
        Err,
    )
    .await
}

async fn finish_batch_inner(
    db: &DatabaseConnection,
    calls: &[FinishCall],
) -> Result<Vec<Option<Operation>>, RepoError> {
    let Some(now) = calls.iter().map(|c| c.now).max() else {
        return Ok(Vec::new());
    };
    let backend = db.get_database_backend();
    if backend == DatabaseBackend::Postgres {
        return finish_batch_postgres(db, calls, now).await;
    }
    let txn = begin_write(db).await.map_err(repo_err)?;
    let mut ending = Ending::default();
    let succeeded = succeeded_ids(calls);
    if !succeeded.is_empty() {
        for m in final_update("succeeded", None, now)
            .col_expr(operation::Column::Progress, Expr::value(100i16))
            .filter(any_of(backend, operation::Column::Id, succeeded))
            .exec_with_returning(&txn)
            .await
            .map_err(repo_err)?
        {
            ending.succeeded(calls, m);
        }
    }
    for kind in OperationKind::ALL {
        let packages: HashMap<Uuid, Uuid> = ending
            .ended
            .values()
            .filter(|m| m.kind == kind.as_str())
            .map(|m| (m.package_id, m.id))
            .collect();
        if packages.is_empty() {
            continue;
        }
        let (from, to) = kind.transition();
        let moved: HashSet<Uuid> = package::Entity::update_many()
            .col_expr(package::Column::Status, Expr::value(to.as_str()))
            .col_expr(
                package::Column::Revision,
                Expr::col(package::Column::Revision).add(1),
            )
            .col_expr(package::Column::UpdatedAt, Expr::value(now))
            .filter(any_of(
                backend,
                package::Column::Id,
                packages.keys().copied(),
            ))
            .filter(package::Column::Status.eq(from.as_str()))
            .exec_with_returning(&txn)
            .await
            .map_err(repo_err)?
            .into_iter()
            .map(|m| m.id)
            .collect();
        for (package_id, op_id) in packages {
            if moved.contains(&package_id) {
                continue;
            }
            // The package left `from` while its operation ran (nothing in Depot does that
            // while an operation is active; a hand-edited database could).
            let progress = calls[ending.winner[&op_id]].op.progress;
            let error = OperationError {
                code: "invalid_transition".into(),
                detail: format!(
                    "the package was no longer {} when the {} finished",
                    from.as_str(),
                    kind.as_str()
                ),
            };
            let failed = operation::Entity::update_many()
                .col_expr(operation::Column::Status, Expr::value("failed"))
                .col_expr(
                    operation::Column::Progress,
                    Expr::value(i16::from(progress)),
                )
                .col_expr(operation::Column::ErrorCode, Expr::value(Some(error.code)))
                .col_expr(
                    operation::Column::ErrorDetail,
                    Expr::value(Some(error.detail)),
                )
                .filter(operation::Column::Id.eq(op_id))
                .exec_with_returning(&txn)
                .await
                .map_err(repo_err)?;
            if let Some(m) = failed.into_iter().next() {
                ending.ended.insert(op_id, m);
            }
        }
    }
    ending.the_others(&txn, calls, now).await?;
    txn.commit().await.map_err(repo_err)?;
    ending.answers(calls)
}

/// `CASE <alias>.kind WHEN 'download' THEN '<status>' ... END`, from the state machine.
fn by_kind(alias: &str, status: impl Fn(OperationKind) -> PackageStatus) -> String {
    let arms: String = OperationKind::ALL
        .into_iter()
        .map(|k| format!("WHEN '{}' THEN '{}' ", k.as_str(), status(k).as_str()))
        .collect();
    format!("CASE {alias}.kind {arms}END")
}

/// [`finish_batch`] on PostgreSQL: the succeeded operations in one statement (atomic on its
/// own): lock those still running, move their packages, and make each final: succeeded when
/// its package moved, `invalid_transition` when it had left the expected status.
async fn finish_batch_postgres(
    db: &DatabaseConnection,
    calls: &[FinishCall],
    now: DateTime<Utc>,
) -> Result<Vec<Option<Operation>>, RepoError> {
    let mut ending = Ending::default();
    let succeeded = succeeded_ids(calls);
    if !succeeded.is_empty() {
        let moved = "o.package_id IN (SELECT id FROM m)";
        let sql = format!(
            r#"WITH r AS (SELECT id, package_id, kind FROM operations
                          WHERE id = ANY($1) AND status = 'running' ORDER BY id FOR UPDATE),
                    m AS (UPDATE packages p SET status = {to}, revision = p.revision + 1, updated_at = $2
                          FROM r WHERE p.id = r.package_id AND p.status = {from} RETURNING p.id),
                    u AS (UPDATE operations o SET
                 status = CASE WHEN {moved} THEN 'succeeded' ELSE 'failed' END,
                 progress = CASE WHEN {moved} THEN 100 ELSE o.progress END,
                 error_code = CASE WHEN {moved} THEN NULL ELSE 'invalid_transition' END,
                 error_detail = CASE WHEN {moved} THEN NULL ELSE 'the package was no longer '
                   || {from_o} || ' when the ' || o.kind || ' finished' END,
                 updated_at = $2, finished_at = $2
               FROM r WHERE o.id = r.id RETURNING o.*),
                    -- Other processes' watches hear of them with this commit (see notify.rs).
                    n AS ({notify})
               SELECT u.* FROM u LEFT JOIN n ON true"#,
            notify = crate::notify::notify_ids("u"),
            to = by_kind("r", |k| k.transition().1),
            from = by_kind("r", |k| k.transition().0),
            from_o = by_kind("o", |k| k.transition().0),
        );
        let rows = db
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                sql,
                [
                    succeeded.into_iter().collect::<Vec<Uuid>>().into(),
                    now.into(),
                ],
            ))
            .await
            .map_err(repo_err)?;
        for row in rows {
            let m = operation::Model::from_query_result(&row, "").map_err(repo_err)?;
            ending.succeeded(calls, m);
        }
    }
    let announced: HashSet<Uuid> = ending.ended.keys().copied().collect();
    ending.the_others(db, calls, now).await?;
    // Failures and cancellations (rare) are announced apart, without holding up the answers.
    let others: Vec<Uuid> = ending
        .ended
        .keys()
        .filter(|id| !announced.contains(id))
        .copied()
        .collect();
    crate::notify::announce_later(db, others);
    ending.answers(calls)
}

fn succeeded_ids(calls: &[FinishCall]) -> HashSet<Uuid> {
    calls
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Succeeded))
        .map(|c| c.op.id)
        .collect()
}

/// What a finish batch ended: which call made each operation final, and the operation as it
/// ended.
#[derive(Default)]
struct Ending {
    winner: HashMap<Uuid, usize>,
    ended: HashMap<Uuid, operation::Model>,
}

impl Ending {
    /// `m` ended successfully: it is answered to the first call that asked for that.
    fn succeeded(&mut self, calls: &[FinishCall], m: operation::Model) {
        let first = calls
            .iter()
            .position(|c| c.op.id == m.id && matches!(c.outcome, Outcome::Succeeded))
            .expect("a returned operation was asked for");
        self.winner.insert(m.id, first);
        self.ended.insert(m.id, m);
    }

    /// Failures and cancellations (rare: one statement each), for operations no call of this
    /// batch has ended yet.
    async fn the_others(
        &mut self,
        conn: &impl ConnectionTrait,
        calls: &[FinishCall],
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        for (i, c) in calls.iter().enumerate() {
            let (status, error) = match &c.outcome {
                Outcome::Succeeded => continue,
                Outcome::Failed(e) => ("failed", Some(e)),
                Outcome::Cancelled => ("cancelled", None),
            };
            if self.winner.contains_key(&c.op.id) {
                continue;
            }
            if let Some(m) = final_update(status, error, now)
                .filter(operation::Column::Id.eq(c.op.id))
                .exec_with_returning(conn)
                .await
                .map_err(repo_err)?
                .into_iter()
                .next()
            {
                self.winner.insert(m.id, i);
                self.ended.insert(m.id, m);
            }
        }
        Ok(())
    }

    /// Each call's answer: the ended operation for the call that ended it, `None` for the
    /// others.
    fn answers(mut self, calls: &[FinishCall]) -> Result<Vec<Option<Operation>>, RepoError> {
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| match self.winner.get(&c.op.id) {
                Some(&w) if w == i => self.ended.remove(&c.op.id).map(operation_of).transpose(),
                _ => Ok(None),
            })
            .collect()
    }
}

/// The update making a running operation final (rows locked by the caller).
fn final_update(
    status: &'static str,
    error: Option<&OperationError>,
    now: DateTime<Utc>,
) -> sea_orm::UpdateMany<operation::Entity> {
    operation::Entity::update_many()
        .col_expr(operation::Column::Status, Expr::value(status))
        .col_expr(
            operation::Column::ErrorCode,
            Expr::value(error.map(|e| e.code.clone())),
        )
        .col_expr(
            operation::Column::ErrorDetail,
            Expr::value(error.map(|e| e.detail.clone())),
        )
        .col_expr(operation::Column::UpdatedAt, Expr::value(now))
        .col_expr(operation::Column::FinishedAt, Expr::value(Some(now)))
        .filter(operation::Column::Status.eq("running"))
}
