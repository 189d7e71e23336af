//! The sea-orm adapter of `IdempotencyStore` (table `idempotency_keys`).

use crate::entities::idempotency_key as row;
use crate::error::{is_unique_violation, repo_err};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_core::RepoError;
use depot_core::idempotency::{Begin, IdempotencyStore, StoredResponse};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
};
use uuid::Uuid;

#[derive(Clone)]
pub struct SeaOrmIdempotencyStore {
    db: DatabaseConnection,
}

impl SeaOrmIdempotencyStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    async fn find(&self, owner: &str, key: Uuid) -> Result<Option<row::Model>, RepoError> {
        row::Entity::find()
            .filter(row::Column::Owner.eq(owner))
            .filter(row::Column::Key.eq(key))
            .one(&self.db)
            .await
            .map_err(repo_err)
    }
}

#[async_trait]
impl IdempotencyStore for SeaOrmIdempotencyStore {
    async fn begin(
        &self,
        owner: &str,
        key: Uuid,
        request_hash: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Begin, RepoError> {
        // An expired record no longer binds the key, nor does a claim whose process never
        // answered (crashed) within the lease.
        row::Entity::delete_many()
            .filter(row::Column::Owner.eq(owner))
            .filter(row::Column::Key.eq(key))
            .filter(
                Condition::any().add(row::Column::ExpiresAt.lt(now)).add(
                    Condition::all()
                        .add(row::Column::ResponseStatus.is_null())
                        .add(
                            row::Column::CreatedAt
                                .lt(now - depot_core::idempotency::IN_PROGRESS_LEASE),
                        ),
                ),
            )
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        let inserted = row::Entity::insert(row::ActiveModel {
            owner: Set(owner.to_owned()),
            key: Set(key),
            request_hash: Set(request_hash.to_owned()),
            response_status: Set(None),
            response_headers: Set(None),
            response_body: Set(None),
            created_at: Set(now),
            expires_at: Set(expires_at),
        })
        .exec_without_returning(&self.db)
        .await;
        match inserted {
            Ok(_) => return Ok(Begin::Started),
            // (owner, key) is the record's only unique key: the key is claimed already.
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(repo_err(e)),
        }
        let Some(existing) = self.find(owner, key).await? else {
            // Deleted between our insert and read (expired): treat as in progress; the client retries.
            return Ok(Begin::InProgress);
        };
        if existing.request_hash != request_hash {
            return Ok(Begin::Mismatch);
        }
        match existing.response_status {
            None => Ok(Begin::InProgress),
            Some(status) => Ok(Begin::Replay(StoredResponse {
                status: u16::try_from(status).unwrap_or(500),
                headers: existing
                    .response_headers
                    .and_then(|h| serde_json::from_value(h).ok())
                    .unwrap_or_default(),
                body: existing.response_body.unwrap_or_default(),
            })),
        }
    }

    async fn complete(
        &self,
        owner: &str,
        key: Uuid,
        response: &StoredResponse,
    ) -> Result<(), RepoError> {
        row::Entity::update_many()
            .col_expr(
                row::Column::ResponseStatus,
                Expr::value(Some(response.status as i16)),
            )
            .col_expr(
                row::Column::ResponseHeaders,
                Expr::value(Some(
                    serde_json::to_value(&response.headers).unwrap_or_default(),
                )),
            )
            .col_expr(
                row::Column::ResponseBody,
                Expr::value(Some(response.body.clone())),
            )
            .filter(row::Column::Owner.eq(owner))
            .filter(row::Column::Key.eq(key))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(())
    }

    async fn abandon(&self, owner: &str, key: Uuid) -> Result<(), RepoError> {
        row::Entity::delete_many()
            .filter(row::Column::Owner.eq(owner))
            .filter(row::Column::Key.eq(key))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(())
    }

    async fn purge(&self, now: DateTime<Utc>) -> Result<u64, RepoError> {
        let r = row::Entity::delete_many()
            .filter(row::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(r.rows_affected)
    }
}
