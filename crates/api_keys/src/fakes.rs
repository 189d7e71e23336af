//! An in-memory implementation of the API-key ports, for the service's unit tests: keys with
//! revisions and conditional writes, as the real adapter keeps them, and the audit log.

use crate::key::KeyHash;
use crate::model::{ApiKey, AuditEvent, UsageRecord};
use crate::ports::{
    ApiKeyRepository, AuditRepository, KeyChange, KeyFilter, KeyWriteError, NewApiKey, UsageBatch,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_core::{Cursor, Page, PageRequest, RepoError};
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

#[derive(Default)]
pub struct InMemoryKeys {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: HashMap<Uuid, (ApiKey, KeyHash)>,
    audit: Vec<AuditEvent>,
    /// Revoked behind the service's back just before its next write (a concurrent request).
    revoke_before_next_write: Option<Uuid>,
}

impl InMemoryKeys {
    pub fn audit_actions(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.audit.iter().map(|e| e.action.clone()).collect()
    }

    /// Another request revokes `id` between the service's read and its write.
    pub fn revoke_concurrently(&self, id: Uuid) {
        self.state.lock().unwrap().revoke_before_next_write = Some(id);
    }
}

impl State {
    fn race(&mut self, now: DateTime<Utc>) {
        if let Some(id) = self.revoke_before_next_write.take()
            && let Some((k, _)) = self.keys.get_mut(&id)
        {
            k.revoked_at = Some(now);
            k.revision += 1;
        }
    }

    fn conditional(&self, id: Uuid, expected: Option<i64>) -> Result<(), KeyWriteError> {
        let (k, _) = self.keys.get(&id).ok_or(KeyWriteError::NotFound)?;
        if expected.is_some_and(|r| r != k.revision) {
            return Err(KeyWriteError::StaleRevision);
        }
        Ok(())
    }
}

#[async_trait]
impl ApiKeyRepository for InMemoryKeys {
    async fn insert(&self, new: &NewApiKey, audit: &AuditEvent) -> Result<(), RepoError> {
        let mut s = self.state.lock().unwrap();
        s.keys.insert(new.key.id, (new.key.clone(), new.hash));
        s.audit.push(audit.clone());
        Ok(())
    }

    async fn get(&self, id: Uuid) -> Result<ApiKey, RepoError> {
        let s = self.state.lock().unwrap();
        s.keys
            .get(&id)
            .map(|(k, _)| k.clone())
            .ok_or(RepoError::NotFound)
    }

    async fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, RepoError> {
        let s = self.state.lock().unwrap();
        Ok(s.keys
            .values()
            .find(|(_, h)| h == hash)
            .map(|(k, _)| k.clone()))
    }

    async fn list(
        &self,
        filter: &KeyFilter,
        page: &PageRequest,
        now: DateTime<Utc>,
    ) -> Result<Page<ApiKey>, RepoError> {
        let s = self.state.lock().unwrap();
        let mut rows: Vec<ApiKey> = s
            .keys
            .values()
            .map(|(k, _)| k.clone())
            .filter(|k| filter.status.is_none_or(|st| k.status(now) == st))
            .filter(|k| filter.name.as_deref().is_none_or(|n| k.name == n))
            .collect();
        rows.sort_by_key(|k| std::cmp::Reverse(k.id));
        Ok(Page::from_overfetch(rows, page.limit(), |k| {
            Cursor::new("", k.id)
        }))
    }

    async fn change(
        &self,
        id: Uuid,
        change: &KeyChange,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<ApiKey, KeyWriteError> {
        let mut s = self.state.lock().unwrap();
        s.race(now);
        s.conditional(id, expected_revision)?;
        let (k, _) = s.keys.get_mut(&id).expect("checked");
        match change {
            KeyChange::Revoke { at } => k.revoked_at = Some(*at),
            KeyChange::Reactivate => k.revoked_at = None,
            KeyChange::Renew { expires_at } => k.expires_at = *expires_at,
        }
        k.revision += 1;
        k.updated_at = now;
        let k = k.clone();
        s.audit.push(audit.clone());
        Ok(k)
    }

    async fn rotate(
        &self,
        old_id: Uuid,
        expected_revision: i64,
        old_expires_at: Option<DateTime<Utc>>,
        new: &NewApiKey,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<(), KeyWriteError> {
        let mut s = self.state.lock().unwrap();
        s.race(now);
        let rotated_before = s.keys.values().any(|(k, _)| k.rotated_from == Some(old_id));
        let (old, _) = s.keys.get_mut(&old_id).ok_or(KeyWriteError::NotFound)?;
        if rotated_before {
            return Err(KeyWriteError::StaleRevision);
        }
        if old.revoked_at.is_some() || old.revision != expected_revision {
            return Err(KeyWriteError::StaleRevision);
        }
        old.expires_at = old_expires_at;
        old.revision += 1;
        old.updated_at = now;
        s.keys.insert(new.key.id, (new.key.clone(), new.hash));
        s.audit.push(audit.clone());
        Ok(())
    }

    async fn delete(
        &self,
        id: Uuid,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<(), KeyWriteError> {
        let mut s = self.state.lock().unwrap();
        s.race(now);
        s.conditional(id, expected_revision)?;
        s.keys.remove(&id);
        s.audit.push(audit.clone());
        Ok(())
    }

    async fn record_usage(&self, _: &UsageBatch) -> Result<(), RepoError> {
        Ok(())
    }

    async fn usage(&self, _: Uuid, _: &PageRequest) -> Result<Page<UsageRecord>, RepoError> {
        Ok(Page {
            items: vec![],
            next_cursor: None,
        })
    }

    async fn changed_since(&self, _: DateTime<Utc>) -> Result<Vec<Uuid>, RepoError> {
        Ok(vec![])
    }

    async fn purge(&self, _: DateTime<Utc>, _: DateTime<Utc>) -> Result<u64, RepoError> {
        Ok(0)
    }
}

#[async_trait]
impl AuditRepository for InMemoryKeys {
    async fn list(
        &self,
        action: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>, RepoError> {
        let s = self.state.lock().unwrap();
        let mut rows: Vec<AuditEvent> = s
            .audit
            .iter()
            .filter(|e| action.is_none_or(|a| e.action == a))
            .cloned()
            .collect();
        rows.sort_by_key(|e| std::cmp::Reverse(e.id));
        Ok(Page::from_overfetch(rows, page.limit(), |e| {
            Cursor::new("", e.id)
        }))
    }
}
