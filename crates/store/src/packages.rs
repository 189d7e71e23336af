//! The sea-orm adapter of the package ports: packages, operations (started together with their
//! outbox message, finished together with the package's status change) and the outbox.

use crate::entities::{operation, outbox, package};
use crate::error::{begin_write, repo_err};
use crate::keyset::{newest_first, page_by_id};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_core::{Cursor, Page, PageRequest, RepoError};
use depot_packages::model::PackageFields;
use depot_packages::ports::{
    OperationFilter, OperationRepository, OutboxMessage, OutboxRepository, Outcome, PackageFilter,
    PackageRepository, PackageSort, StartError,
};
use depot_packages::{
    Operation, OperationError, OperationKind, OperationStatus, Package, PackageStatus,
};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseBackend, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use uuid::Uuid;

#[derive(Clone)]
pub struct SeaOrmPackageRepository {
    db: DatabaseConnection,
}

impl SeaOrmPackageRepository {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
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

const ACTIVE: [&str; 2] = ["pending", "running"];

#[async_trait]
impl PackageRepository for SeaOrmPackageRepository {
    #[tracing::instrument(skip_all)]
    async fn insert(&self, p: &Package) -> Result<(), RepoError> {
        package::Entity::insert(package::ActiveModel {
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
        })
        .exec_without_returning(&self.db)
        .await
        .map_err(repo_err)?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn get(&self, id: Uuid) -> Result<Package, RepoError> {
        package::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .ok_or(RepoError::NotFound)
            .and_then(package_of)
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
    ) -> Result<Package, RepoError> {
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
        let result = update.exec(&self.db).await.map_err(|e| {
            if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                RepoError::Conflict("unique: name and version".into())
            } else {
                repo_err(e)
            }
        })?;
        if result.rows_affected == 0 {
            return match package::Entity::find_by_id(id)
                .one(&self.db)
                .await
                .map_err(repo_err)?
            {
                Some(_) => Err(RepoError::Conflict("stale revision".into())),
                None => Err(RepoError::NotFound),
            };
        }
        PackageRepository::get(self, id).await
    }

    #[tracing::instrument(skip_all)]
    async fn delete(&self, id: Uuid, expected_revision: Option<i64>) -> Result<(), RepoError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let active = operation::Entity::find()
            .filter(operation::Column::PackageId.eq(id))
            .filter(operation::Column::Status.is_in(ACTIVE))
            .one(&txn)
            .await
            .map_err(repo_err)?;
        if let Some(op) = active {
            return Err(RepoError::Conflict(format!(
                "operation {} ({}) is {} on this package",
                op.id, op.kind, op.status
            )));
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
                Some(_) => Err(RepoError::Conflict("stale revision".into())),
                None => Err(RepoError::NotFound),
            };
        }
        txn.commit().await.map_err(repo_err)
    }
}

#[async_trait]
impl OperationRepository for SeaOrmPackageRepository {
    #[tracing::instrument(skip_all)]
    async fn start(&self, op: &Operation, message: &OutboxMessage) -> Result<(), StartError> {
        let txn = begin_write(&self.db)
            .await
            .map_err(|e| StartError::Repo(repo_err(e)))?;
        let package = package::Entity::find_by_id(op.package_id)
            .one(&txn)
            .await
            .map_err(|e| StartError::Repo(repo_err(e)))?
            .ok_or(StartError::NotFound)?;
        let status = PackageStatus::parse(&package.status).ok_or_else(|| {
            StartError::Repo(unexpected(format!(
                "unknown package status `{}`",
                package.status
            )))
        })?;
        op.kind.check(status).map_err(StartError::WrongStatus)?;
        let inserted = operation::Entity::insert(operation::ActiveModel {
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
        })
        .exec_without_returning(&txn)
        .await;
        if let Err(e) = inserted {
            if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                drop(txn);
                let busy = operation::Entity::find()
                    .filter(operation::Column::PackageId.eq(op.package_id))
                    .filter(operation::Column::Status.is_in(ACTIVE))
                    .one(&self.db)
                    .await
                    .ok()
                    .flatten()
                    .map_or(Uuid::nil(), |o| o.id);
                return Err(StartError::Busy(busy));
            }
            return Err(StartError::Repo(repo_err(e)));
        }
        outbox::Entity::insert(outbox::ActiveModel {
            id: Set(message.id),
            queue: Set(message.queue.clone()),
            payload: Set(message.payload.clone()),
            created_at: Set(message.created_at),
            sent_at: Set(None),
            locked_until: Set(None),
            headers: Set((!message.headers.is_empty())
                .then(|| serde_json::to_string(&message.headers).expect("headers serialise"))),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(|e| StartError::Repo(repo_err(e)))?;
        txn.commit()
            .await
            .map_err(|e| StartError::Repo(repo_err(e)))
    }

    async fn get(&self, id: Uuid) -> Result<Operation, RepoError> {
        operation::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .ok_or(RepoError::NotFound)
            .and_then(operation_of)
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
    async fn claim(&self, id: Uuid, now: DateTime<Utc>) -> Result<Operation, RepoError> {
        operation::Entity::update_many()
            .col_expr(operation::Column::Status, Expr::value("running"))
            .col_expr(
                operation::Column::Attempts,
                Expr::col(operation::Column::Attempts).add(1),
            )
            .col_expr(operation::Column::UpdatedAt, Expr::value(now))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::Status.is_in(ACTIVE))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        OperationRepository::get(self, id).await
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
        id: Uuid,
        kind: OperationKind,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<Option<Operation>, RepoError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let op = match operation::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(repo_err)?
        {
            Some(op) if op.status == "running" => op,
            _ => return Ok(None),
        };
        let mut outcome = outcome.clone();
        if matches!(outcome, Outcome::Succeeded) {
            let (from, to) = kind.transition();
            let moved = package::Entity::update_many()
                .col_expr(package::Column::Status, Expr::value(to.as_str()))
                .col_expr(
                    package::Column::Revision,
                    Expr::col(package::Column::Revision).add(1),
                )
                .col_expr(package::Column::UpdatedAt, Expr::value(now))
                .filter(package::Column::Id.eq(op.package_id))
                .filter(package::Column::Status.eq(from.as_str()))
                .exec(&txn)
                .await
                .map_err(repo_err)?;
            if moved.rows_affected == 0 {
                outcome = Outcome::Failed(OperationError {
                    code: "invalid_transition".into(),
                    detail: format!(
                        "the package was no longer {} when the {} finished",
                        from.as_str(),
                        kind.as_str()
                    ),
                });
            }
        }
        let (status, progress, error) = match &outcome {
            Outcome::Succeeded => ("succeeded", 100i16, None),
            Outcome::Failed(e) => ("failed", op.progress, Some(e.clone())),
            Outcome::Cancelled => ("cancelled", op.progress, None),
        };
        let result = operation::Entity::update_many()
            .col_expr(operation::Column::Status, Expr::value(status))
            .col_expr(operation::Column::Progress, Expr::value(progress))
            .col_expr(
                operation::Column::ErrorCode,
                Expr::value(error.as_ref().map(|e| e.code.clone())),
            )
            .col_expr(
                operation::Column::ErrorDetail,
                Expr::value(error.as_ref().map(|e| e.detail.clone())),
            )
            .col_expr(operation::Column::UpdatedAt, Expr::value(now))
            .col_expr(operation::Column::FinishedAt, Expr::value(Some(now)))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::Status.eq("running"))
            .exec(&txn)
            .await
            .map_err(repo_err)?;
        if result.rows_affected == 0 {
            // Another worker finished it between our read and write: its transaction won.
            return Ok(None);
        }
        txn.commit().await.map_err(repo_err)?;
        OperationRepository::get(self, id).await.map(Some)
    }

    async fn request_cancel(&self, id: Uuid, now: DateTime<Utc>) -> Result<Operation, RepoError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let op = operation::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(repo_err)?
            .ok_or(RepoError::NotFound)?;
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
                return Err(RepoError::Conflict(format!(
                    "the operation has already {other}"
                )));
            }
        }
        txn.commit().await.map_err(repo_err)?;
        OperationRepository::get(self, id).await
    }

    async fn unfinished(&self) -> Result<Vec<Operation>, RepoError> {
        operation::Entity::find()
            .filter(operation::Column::Status.is_in(ACTIVE))
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
            .filter(operation::Column::Status.is_not_in(ACTIVE))
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
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let mut q = outbox::Entity::find()
            .filter(outbox::Column::SentAt.is_null())
            .filter(
                Condition::any()
                    .add(outbox::Column::LockedUntil.is_null())
                    .add(outbox::Column::LockedUntil.lt(now)),
            )
            .order_by_asc(outbox::Column::Id)
            .limit(limit);
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let rows = q.all(&txn).await.map_err(repo_err)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        outbox::Entity::update_many()
            .col_expr(
                outbox::Column::LockedUntil,
                Expr::value(Some(now + lease_for)),
            )
            .filter(outbox::Column::Id.is_in(ids))
            .exec(&txn)
            .await
            .map_err(repo_err)?;
        txn.commit().await.map_err(repo_err)?;
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

    async fn mark_sent(&self, ids: &[Uuid], now: DateTime<Utc>) -> Result<(), RepoError> {
        if ids.is_empty() {
            return Ok(());
        }
        outbox::Entity::update_many()
            .col_expr(outbox::Column::SentAt, Expr::value(Some(now)))
            .filter(outbox::Column::Id.is_in(ids.to_vec()))
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
            .filter(outbox::Column::Id.is_in(ids.to_vec()))
            .filter(outbox::Column::SentAt.is_null())
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(())
    }

    async fn backlog(&self) -> Result<u64, RepoError> {
        outbox::Entity::find()
            .filter(outbox::Column::SentAt.is_null())
            .count(&self.db)
            .await
            .map_err(repo_err)
    }

    async fn purge_sent(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let r = outbox::Entity::delete_many()
            .filter(outbox::Column::SentAt.lt(before))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(r.rows_affected)
    }
}
