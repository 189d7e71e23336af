//! The outbox port: leases, release, removal and backlog of operation messages.

use super::*;

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
