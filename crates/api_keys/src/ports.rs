//! What the API-key component needs from storage.

use crate::key::KeyHash;
use crate::model::{ApiKey, AuditEvent, KeyStatus, UsageRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_core::{Page, PageRequest, RepoError};
use std::collections::HashMap;
use uuid::Uuid;

/// A key to insert: everything but the usage counters.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key: ApiKey,
    pub hash: KeyHash,
}

#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub status: Option<KeyStatus>,
    pub name: Option<String>,
}

/// Usage accumulated in memory and written in one batch.
#[derive(Debug, Clone, Default)]
pub struct UsageBatch {
    /// Per key: how many uses to add and the latest use.
    pub counts: HashMap<Uuid, (i64, DateTime<Utc>)>,
    pub records: Vec<UsageRecord>,
}

impl UsageBatch {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.records.is_empty()
    }
}

/// A change to a key, written with its audit event and a change-log row in one transaction.
#[derive(Debug, Clone)]
pub enum KeyChange {
    Revoke { at: DateTime<Utc> },
    Reactivate,
    Renew { expires_at: Option<DateTime<Utc>> },
}

/// Why a conditional write to a key (change, rotate, delete) was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyWriteError {
    #[error("no API key with this id")]
    NotFound,
    /// The key is no longer at the expected revision, or (rotate) no longer rotatable: the
    /// conditional update touched no row.
    #[error("the key has changed since it was read")]
    StaleRevision,
    #[error(transparent)]
    Store(#[from] RepoError),
}

#[async_trait]
pub trait ApiKeyRepository: Send + Sync {
    /// Inserts a key and its audit event atomically.
    async fn insert(&self, new: &NewApiKey, audit: &AuditEvent) -> Result<(), RepoError>;
    async fn get(&self, id: Uuid) -> Result<ApiKey, RepoError>;
    async fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, RepoError>;
    /// Newest first; `now` decides which keys count as expired.
    async fn list(
        &self,
        filter: &KeyFilter,
        page: &PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Page<ApiKey>, RepoError>;
    /// Applies a change if the key is still at `expected_revision` (when given):
    /// `StaleRevision` otherwise, `NotFound` when there is no such key. Returns the updated key.
    async fn change(
        &self,
        id: Uuid,
        change: &KeyChange,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<ApiKey, KeyWriteError>;
    /// Inserts `new` and sets the old key's expiry to `old_expires_at`, atomically, if the old
    /// key is still at `expected_revision` and not revoked; `StaleRevision` otherwise (revoked
    /// or changed meanwhile — by a concurrent rotation, say: a key rotates into one successor).
    async fn rotate(
        &self,
        old_id: Uuid,
        expected_revision: i64,
        old_expires_at: Option<DateTime<Utc>>,
        new: &NewApiKey,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<(), KeyWriteError>;
    /// `StaleRevision` when the key is not at `expected_revision` (when given).
    async fn delete(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<(), KeyWriteError>;
    /// Adds the batch's counts atomically (`total_uses = total_uses + n`) and stores its records.
    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), RepoError>;
    /// A key's usage log, newest first.
    async fn usage(&self, key_id: Uuid, page: &PageRequest)
    -> Result<Page<UsageRecord>, RepoError>;
    /// Keys changed at or after `since` (revoked, renewed, rotated, deleted…).
    async fn changed_since(&self, since: DateTime<Utc>) -> Result<Vec<Uuid>, RepoError>;
    /// Deletes usage records and change-log rows older than the cut-offs; returns rows removed.
    async fn purge(
        &self,
        usage_before: DateTime<Utc>,
        changes_before: DateTime<Utc>,
    ) -> Result<u64, RepoError>;
}

#[async_trait]
pub trait AuditRepository: Send + Sync {
    /// Newest first.
    async fn list(
        &self,
        action: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>, RepoError>;
}
