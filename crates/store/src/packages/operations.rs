//! The operation port's reads, progress, cancellation, recovery and purge (starting,
//! claiming and finishing have files of their own).

use super::*;

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
        self.cancel_requested(id).await
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

    async fn start_on_name(
        &self,
        operation: &Operation,
        message: &OutboxMessage,
    ) -> Result<(), StartError> {
        start_on_name(&self.db, operation, message).await
    }

    async fn finish_prune(
        &self,
        op: &Operation,
        ids: &[Uuid],
        now: DateTime<Utc>,
        files: &dyn depot_packages::ports::ArtifactFiles,
    ) -> Result<Option<(Operation, Vec<Uuid>)>, RepoError> {
        finish_prune(&self.db, op, ids, now, files).await
    }

    async fn request_cancel(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        abandoned_before: DateTime<Utc>,
    ) -> Result<Operation, CancelError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let op = operation::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(repo_err)?
            .ok_or(CancelError::NotFound)?;
        // Pending, or running with no worker left to see the request: cancelled at once.
        let at_once =
            op.status == "pending" || (op.status == "running" && op.updated_at < abandoned_before);
        match op.status.as_str() {
            _ if at_once => {
                operation::Entity::update_many()
                    .col_expr(operation::Column::Status, Expr::value("cancelled"))
                    .col_expr(operation::Column::CancelRequested, Expr::value(true))
                    .col_expr(operation::Column::UpdatedAt, Expr::value(now))
                    .col_expr(operation::Column::FinishedAt, Expr::value(Some(now)))
                    .filter(operation::Column::Id.eq(id))
                    .filter(operation::Column::Status.eq(op.status.clone()))
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

    async fn heartbeat(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, RepoError> {
        operation::Entity::update_many()
            .col_expr(operation::Column::UpdatedAt, Expr::value(now))
            .filter(operation::Column::Id.eq(id))
            .filter(operation::Column::Status.eq("running"))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        self.cancel_requested(id).await
    }

    async fn reap(
        &self,
        abandoned_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Operation>, RepoError> {
        let error = depot_packages::runner::abandoned();
        let mut reaped = Vec::new();
        for (cancel_requested, status, error) in
            [(true, "cancelled", None), (false, "failed", Some(&error))]
        {
            let rows = final_update(status, error, now)
                .filter(operation::Column::UpdatedAt.lt(abandoned_before))
                .filter(operation::Column::CancelRequested.eq(cancel_requested))
                .exec_with_returning(&self.db)
                .await
                .map_err(repo_err)?;
            for m in rows {
                reaped.push(operation_of(m)?);
            }
        }
        if !reaped.is_empty() {
            crate::notify::announce_later(&self.db, reaped.iter().map(|o| o.id).collect());
        }
        Ok(reaped)
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

impl SeaOrmPackageRepository {
    /// Whether cancelling the operation was asked for (a missing one counts as asked: stop).
    async fn cancel_requested(&self, id: Uuid) -> Result<bool, RepoError> {
        Ok(operation::Entity::find_by_id(id)
            .select_only()
            .column(operation::Column::CancelRequested)
            .into_tuple::<bool>()
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .unwrap_or(true))
    }
}

pub(super) async fn get_operation_batch(
    db: &DatabaseConnection,
    ids: Vec<Uuid>,
) -> Vec<Result<Operation, RepoError>> {
    let found = operations_by_id(db, ids.iter().copied()).await;
    answer_each(&ids, found, operation_of)
}
