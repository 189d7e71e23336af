//! The sea-orm adapter of the API-key ports. Every change is written in one transaction with its
//! audit event and a change-log row (which other replicas poll to evict their caches).

use crate::entities::{api_key, api_key_change, api_key_usage, audit_event};
use crate::error::{begin_write, repo_err};
use crate::keyset::{newest_first, page_by_id};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_api_keys::model::{scopes_from_string, scopes_to_string};
use depot_api_keys::{
    ApiKey, ApiKeyRepository, AuditEvent, AuditRepository, KeyChange, KeyFilter, KeyHash,
    KeyStatus, KeyWriteError, NewApiKey, UsageBatch, UsageRecord,
};
use depot_core::{Page, PageRequest, RepoError};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    QueryFilter, QuerySelect,
};
use std::collections::HashSet;
use uuid::Uuid;

#[derive(Clone)]
pub struct SeaOrmApiKeyRepository {
    db: DatabaseConnection,
}

impl SeaOrmApiKeyRepository {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

fn to_domain(m: api_key::Model) -> ApiKey {
    ApiKey {
        id: m.id,
        name: m.name,
        prefix: m.key_prefix,
        scopes: scopes_from_string(&m.scopes),
        rate_limit_per_minute: m
            .rate_limit_per_minute
            .map(|n| u32::try_from(n).unwrap_or(0)),
        created_at: m.created_at,
        updated_at: m.updated_at,
        expires_at: m.expires_at,
        revoked_at: m.revoked_at,
        last_used_at: m.last_used_at,
        total_uses: m.total_uses,
        rotated_from: m.rotated_from,
        lineage_id: m.lineage_id.unwrap_or(m.id),
        revision: m.revision,
    }
}

fn to_active(new: &NewApiKey) -> api_key::ActiveModel {
    let k = &new.key;
    api_key::ActiveModel {
        id: Set(k.id),
        name: Set(k.name.clone()),
        key_hash: Set(new.hash.0.to_vec()),
        key_prefix: Set(k.prefix.clone()),
        scopes: Set(scopes_to_string(&k.scopes)),
        rate_limit_per_minute: Set(k.rate_limit_per_minute.map(|n| n as i32)),
        created_at: Set(k.created_at),
        updated_at: Set(k.updated_at),
        expires_at: Set(k.expires_at),
        revoked_at: Set(k.revoked_at),
        last_used_at: Set(k.last_used_at),
        total_uses: Set(k.total_uses),
        rotated_from: Set(k.rotated_from),
        revision: Set(k.revision),
        lineage_id: Set(Some(k.lineage_id)),
    }
}

async fn log_change<C: ConnectionTrait>(
    db: &C,
    key_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), RepoError> {
    api_key_change::Entity::insert(api_key_change::ActiveModel {
        id: Set(Uuid::now_v7()),
        key_id: Set(key_id),
        at: Set(at),
    })
    .exec_without_returning(db)
    .await
    .map_err(repo_err)?;
    Ok(())
}

/// After a conditional update touched no row: was the row missing, or at another revision?
async fn missing_or_stale<C: ConnectionTrait>(db: &C, id: Uuid) -> KeyWriteError {
    match api_key::Entity::find_by_id(id).one(db).await {
        Ok(Some(_)) => KeyWriteError::StaleRevision,
        Ok(None) => KeyWriteError::NotFound,
        Err(e) => repo_err(e).into(),
    }
}

#[async_trait]
impl ApiKeyRepository for SeaOrmApiKeyRepository {
    #[tracing::instrument(skip_all)]
    async fn insert(&self, new: &NewApiKey, audit: &AuditEvent) -> Result<(), RepoError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        api_key::Entity::insert(to_active(new))
            .exec_without_returning(&txn)
            .await
            .map_err(repo_err)?;
        crate::audit::record(&txn, audit).await?;
        txn.commit().await.map_err(repo_err)
    }

    async fn get(&self, id: Uuid) -> Result<ApiKey, RepoError> {
        api_key::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .map(to_domain)
            .ok_or(RepoError::NotFound)
    }

    #[tracing::instrument(skip_all)]
    async fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, RepoError> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::KeyHash.eq(hash.0.to_vec()))
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .map(to_domain))
    }

    async fn list(
        &self,
        filter: &KeyFilter,
        page: &PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Page<ApiKey>, RepoError> {
        let mut q = api_key::Entity::find();
        if let Some(name) = &filter.name {
            q = q.filter(api_key::Column::Name.eq(name.as_str()));
        }
        q = match filter.status {
            None => q,
            Some(KeyStatus::Revoked) => q.filter(api_key::Column::RevokedAt.is_not_null()),
            Some(KeyStatus::Expired) => q
                .filter(api_key::Column::RevokedAt.is_null())
                .filter(api_key::Column::ExpiresAt.lte(now)),
            Some(KeyStatus::Active) => q.filter(api_key::Column::RevokedAt.is_null()).filter(
                Condition::any()
                    .add(api_key::Column::ExpiresAt.is_null())
                    .add(api_key::Column::ExpiresAt.gt(now)),
            ),
        };
        let rows = newest_first(q, api_key::Column::Id, page)
            .all(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(page_by_id(
            rows.into_iter().map(to_domain).collect(),
            page,
            |k: &ApiKey| k.id,
        ))
    }

    #[tracing::instrument(skip_all, fields(key_id = %id))]
    async fn change(
        &self,
        id: Uuid,
        change: &KeyChange,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<ApiKey, KeyWriteError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let mut update = api_key::Entity::update_many()
            .col_expr(
                api_key::Column::Revision,
                Expr::col(api_key::Column::Revision).add(1),
            )
            .col_expr(api_key::Column::UpdatedAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(id));
        if let Some(rev) = expected_revision {
            update = update.filter(api_key::Column::Revision.eq(rev));
        }
        update = match change {
            KeyChange::Revoke { at } => {
                update.col_expr(api_key::Column::RevokedAt, Expr::value(Some(*at)))
            }
            KeyChange::Reactivate => update.col_expr(
                api_key::Column::RevokedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            ),
            KeyChange::Renew { expires_at } => {
                update.col_expr(api_key::Column::ExpiresAt, Expr::value(*expires_at))
            }
        };
        let result = update.exec(&txn).await.map_err(repo_err)?;
        if result.rows_affected == 0 {
            return Err(missing_or_stale(&txn, id).await);
        }
        crate::audit::record(&txn, audit).await?;
        log_change(&txn, id, now).await?;
        let updated = api_key::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(repo_err)?
            .ok_or(KeyWriteError::NotFound)?;
        txn.commit().await.map_err(repo_err)?;
        Ok(to_domain(updated))
    }

    #[tracing::instrument(skip_all, fields(key_id = %old_id))]
    async fn rotate(
        &self,
        old_id: Uuid,
        expected_revision: i64,
        old_expires_at: Option<DateTime<Utc>>,
        new: &NewApiKey,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<(), KeyWriteError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let result = api_key::Entity::update_many()
            .col_expr(api_key::Column::ExpiresAt, Expr::value(old_expires_at))
            .col_expr(
                api_key::Column::Revision,
                Expr::col(api_key::Column::Revision).add(1),
            )
            .col_expr(api_key::Column::UpdatedAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(old_id))
            .filter(api_key::Column::Revision.eq(expected_revision))
            .filter(api_key::Column::RevokedAt.is_null())
            // A key rotates once: into one successor, whatever the revision.
            .filter(Expr::cust(
                "NOT EXISTS (SELECT 1 FROM api_keys s WHERE s.rotated_from = api_keys.id)",
            ))
            .exec(&txn)
            .await
            .map_err(repo_err)?;
        if result.rows_affected == 0 {
            return Err(missing_or_stale(&txn, old_id).await);
        }
        api_key::Entity::insert(to_active(new))
            .exec_without_returning(&txn)
            .await
            .map_err(repo_err)?;
        crate::audit::record(&txn, audit).await?;
        log_change(&txn, old_id, now).await?;
        Ok(txn.commit().await.map_err(repo_err)?)
    }

    #[tracing::instrument(skip_all, fields(key_id = %id))]
    async fn delete(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<(), KeyWriteError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let mut q = api_key::Entity::delete_many().filter(api_key::Column::Id.eq(id));
        if let Some(rev) = expected_revision {
            q = q.filter(api_key::Column::Revision.eq(rev));
        }
        let result = q.exec(&txn).await.map_err(repo_err)?;
        if result.rows_affected == 0 {
            return Err(missing_or_stale(&txn, id).await);
        }
        crate::audit::record(&txn, audit).await?;
        log_change(&txn, id, now).await?;
        Ok(txn.commit().await.map_err(repo_err)?)
    }

    #[tracing::instrument(skip_all, fields(keys = batch.counts.len(), records = batch.records.len()))]
    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), RepoError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        for (id, (n, at)) in &batch.counts {
            api_key::Entity::update_many()
                .col_expr(
                    api_key::Column::TotalUses,
                    Expr::col(api_key::Column::TotalUses).add(*n),
                )
                .filter(api_key::Column::Id.eq(*id))
                .exec(&txn)
                .await
                .map_err(repo_err)?;
            api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedAt, Expr::value(Some(*at)))
                .filter(api_key::Column::Id.eq(*id))
                .filter(
                    Condition::any()
                        .add(api_key::Column::LastUsedAt.is_null())
                        .add(api_key::Column::LastUsedAt.lt(*at)),
                )
                .exec(&txn)
                .await
                .map_err(repo_err)?;
        }
        // Keys deleted since their use have nothing to attach records to.
        let ids: Vec<Uuid> = batch.counts.keys().copied().collect();
        let existing: HashSet<Uuid> = api_key::Entity::find()
            .select_only()
            .column(api_key::Column::Id)
            .filter(api_key::Column::Id.is_in(ids))
            .into_tuple::<Uuid>()
            .all(&txn)
            .await
            .map_err(repo_err)?
            .into_iter()
            .collect();
        let rows: Vec<api_key_usage::ActiveModel> = batch
            .records
            .iter()
            .filter(|r| existing.contains(&r.key_id))
            .map(|r| api_key_usage::ActiveModel {
                id: Set(r.id),
                key_id: Set(r.key_id),
                at: Set(r.at),
                method: Set(r.method.clone()),
                route: Set(r.route.chars().take(200).collect()),
                status: Set(r.status as i16),
                client_ip: Set(r.client_ip.clone()),
                user_agent: Set(r.user_agent.as_ref().map(|u| u.chars().take(300).collect())),
            })
            .collect();
        for chunk in rows.chunks(500) {
            api_key_usage::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&txn)
                .await
                .map_err(repo_err)?;
        }
        txn.commit().await.map_err(repo_err)
    }

    async fn usage(
        &self,
        key_id: Uuid,
        page: &PageRequest,
    ) -> Result<Page<UsageRecord>, RepoError> {
        let q = api_key_usage::Entity::find().filter(api_key_usage::Column::KeyId.eq(key_id));
        let rows = newest_first(q, api_key_usage::Column::Id, page)
            .all(&self.db)
            .await
            .map_err(repo_err)?;
        let records = rows
            .into_iter()
            .map(|m| UsageRecord {
                id: m.id,
                key_id: m.key_id,
                at: m.at,
                method: m.method,
                route: m.route,
                status: u16::try_from(m.status).unwrap_or(0),
                client_ip: m.client_ip,
                user_agent: m.user_agent,
            })
            .collect();
        Ok(page_by_id(records, page, |r: &UsageRecord| r.id))
    }

    async fn changed_since(&self, since: DateTime<Utc>) -> Result<Vec<Uuid>, RepoError> {
        let ids: Vec<Uuid> = api_key_change::Entity::find()
            .select_only()
            .column(api_key_change::Column::KeyId)
            .filter(api_key_change::Column::At.gte(since))
            .into_tuple::<Uuid>()
            .all(&self.db)
            .await
            .map_err(repo_err)?;
        let unique: HashSet<Uuid> = ids.into_iter().collect();
        Ok(unique.into_iter().collect())
    }

    async fn purge(
        &self,
        usage_before: DateTime<Utc>,
        changes_before: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        // Usage ids are UUIDv7, ordered by the time they were recorded: the primary key finds
        // the old rows without an index on `at`.
        let first_kept = uuid::Builder::from_unix_timestamp_millis(
            u64::try_from(usage_before.timestamp_millis()).unwrap_or(0),
            &[0; 10],
        )
        .into_uuid();
        let a = api_key_usage::Entity::delete_many()
            .filter(api_key_usage::Column::Id.lt(first_kept))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        let b = api_key_change::Entity::delete_many()
            .filter(api_key_change::Column::At.lt(changes_before))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(a.rows_affected + b.rows_affected)
    }
}

#[async_trait]
impl AuditRepository for SeaOrmApiKeyRepository {
    async fn list(
        &self,
        action: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>, RepoError> {
        let mut q = audit_event::Entity::find();
        if let Some(action) = action {
            q = q.filter(audit_event::Column::Action.eq(action));
        }
        let rows = newest_first(q, audit_event::Column::Id, page)
            .all(&self.db)
            .await
            .map_err(repo_err)?;
        let events = rows
            .into_iter()
            .map(|m| AuditEvent {
                id: m.id,
                at: m.at,
                actor: m.actor,
                action: m.action,
                target_id: m.target_id,
                client_ip: m.client_ip,
                details: m.details,
            })
            .collect();
        Ok(page_by_id(events, page, |e: &AuditEvent| e.id))
    }
}
