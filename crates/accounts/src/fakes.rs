//! An in-memory implementation of the accounts ports, for the service's unit tests: users with
//! unique e-mails and identities, revisions and the last-administrator rule; refresh tokens
//! that rotate once and revoke their family on reuse; a throttle that always lets through.

use crate::model::{Email, Identity, Role, User};
use crate::ports::{
    InsertUserError, NewRefreshToken, RefreshTokenRepository, Rotation, ThrottleRepository,
    UpdateUserError, UserPatch, UserRepository,
};
use crate::throttle::Decision;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_core::{AuditEvent, Cursor, Page, PageRequest, RepoError};
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

#[derive(Default)]
pub struct InMemoryAccounts {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    users: HashMap<Uuid, User>,
    identities: HashMap<(String, String), Uuid>,
    /// By hash: the token, and whether it was used or revoked.
    tokens: HashMap<[u8; 32], (NewRefreshToken, bool)>,
    audit: Vec<AuditEvent>,
}

impl InMemoryAccounts {
    /// The actions recorded in the audit log, oldest first.
    pub fn audit_actions(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.audit.iter().map(|e| e.action.clone()).collect()
    }
}

impl State {
    fn revoke_family(&mut self, family: Uuid) {
        for (t, spent) in self.tokens.values_mut() {
            if t.family_id == family {
                *spent = true;
            }
        }
    }
}

#[async_trait]
impl UserRepository for InMemoryAccounts {
    async fn insert(&self, u: &User, identity: Option<&Identity>) -> Result<(), InsertUserError> {
        let mut s = self.state.lock().unwrap();
        if s.users.values().any(|o| o.email == u.email) {
            return Err(InsertUserError::EmailTaken);
        }
        if let Some(i) = identity {
            let key = (i.issuer.clone(), i.subject.clone());
            if s.identities.contains_key(&key) {
                return Err(InsertUserError::IdentityTaken);
            }
            s.identities.insert(key, u.id);
        }
        s.users.insert(u.id, u.clone());
        Ok(())
    }

    async fn get(&self, id: Uuid) -> Result<User, RepoError> {
        let s = self.state.lock().unwrap();
        s.users.get(&id).cloned().ok_or(RepoError::NotFound)
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepoError> {
        let s = self.state.lock().unwrap();
        Ok(s.users.values().find(|u| &u.email == email).cloned())
    }

    async fn find_by_identity(&self, i: &Identity) -> Result<Option<User>, RepoError> {
        let s = self.state.lock().unwrap();
        Ok(s.identities
            .get(&(i.issuer.clone(), i.subject.clone()))
            .and_then(|id| s.users.get(id).cloned()))
    }

    async fn link_identity(
        &self,
        user_id: Uuid,
        i: &Identity,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<User, InsertUserError> {
        let mut s = self.state.lock().unwrap();
        let key = (i.issuer.clone(), i.subject.clone());
        if s.identities.contains_key(&key) {
            return Err(InsertUserError::IdentityTaken);
        }
        s.identities.insert(key, user_id);
        let u = s.users.get_mut(&user_id).ok_or(RepoError::NotFound)?;
        u.password_hash = None;
        u.revision += 1;
        u.updated_at = now;
        let linked = u.clone();
        s.audit.push(audit.clone());
        Ok(linked)
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<User>, RepoError> {
        let s = self.state.lock().unwrap();
        let mut rows: Vec<User> = s.users.values().cloned().collect();
        rows.sort_by_key(|u| std::cmp::Reverse(u.id));
        Ok(Page::from_overfetch(rows, page.limit(), |u| {
            Cursor::new("", u.id)
        }))
    }

    async fn update(
        &self,
        id: Uuid,
        patch: &UserPatch,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<User, UpdateUserError> {
        let mut s = self.state.lock().unwrap();
        let current = s.users.get(&id).ok_or(UpdateUserError::NotFound)?.clone();
        if expected_revision.is_some_and(|r| r != current.revision) {
            return Err(UpdateUserError::StaleRevision);
        }
        let mut next = current.clone();
        if let Some(role) = patch.role {
            next.role = role;
        }
        if let Some(disabled) = patch.disabled {
            next.disabled = disabled;
        }
        let admins_left = s
            .users
            .values()
            .filter(|u| u.id != id && u.role == Role::Admin && !u.disabled)
            .count()
            + usize::from(next.role == Role::Admin && !next.disabled);
        if admins_left == 0 && current.role == Role::Admin && !current.disabled {
            return Err(UpdateUserError::LastAdmin);
        }
        next.revision += 1;
        next.updated_at = now;
        if next.disabled {
            for (t, spent) in s.tokens.values_mut() {
                if t.user_id == id {
                    *spent = true;
                }
            }
        }
        s.users.insert(id, next.clone());
        s.audit.push(audit.clone());
        Ok(next)
    }

    async fn changed_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, DateTime<Utc>)>, RepoError> {
        let s = self.state.lock().unwrap();
        Ok(s.users
            .values()
            .filter(|u| u.updated_at > since && (u.role != Role::Admin || u.disabled))
            .map(|u| (u.id, u.updated_at))
            .collect())
    }
}

#[async_trait]
impl RefreshTokenRepository for InMemoryAccounts {
    async fn insert(&self, token: &NewRefreshToken) -> Result<(), RepoError> {
        let mut s = self.state.lock().unwrap();
        s.tokens.insert(token.hash, (token.clone(), false));
        Ok(())
    }

    async fn rotate(
        &self,
        presented: &[u8; 32],
        next: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> Result<Rotation, RepoError> {
        let mut s = self.state.lock().unwrap();
        let Some((token, spent)) = s.tokens.get(presented).cloned() else {
            return Ok(Rotation::Invalid);
        };
        if spent {
            s.revoke_family(token.family_id);
            return Ok(Rotation::Reused);
        }
        if token.expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        let user = s
            .users
            .get(&token.user_id)
            .cloned()
            .ok_or(RepoError::NotFound)?;
        if user.disabled {
            s.revoke_family(token.family_id);
            return Ok(Rotation::UserDisabled);
        }
        s.tokens.get_mut(presented).expect("read above").1 = true;
        let mut next = next.clone();
        next.family_id = token.family_id;
        next.user_id = token.user_id;
        next.family_expires_at = token.family_expires_at;
        next.expires_at = next.expires_at.min(token.family_expires_at);
        s.tokens.insert(next.hash, (next, false));
        Ok(Rotation::Rotated(user))
    }

    async fn revoke_family(
        &self,
        presented: &[u8; 32],
        _: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        let mut s = self.state.lock().unwrap();
        let Some(family) = s.tokens.get(presented).map(|(t, _)| t.family_id) else {
            return Ok(false);
        };
        s.revoke_family(family);
        Ok(true)
    }

    async fn purge_expired(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let mut s = self.state.lock().unwrap();
        let n = s.tokens.len();
        s.tokens.retain(|_, (t, _)| t.expires_at >= before);
        Ok((n - s.tokens.len()) as u64)
    }
}

#[async_trait]
impl ThrottleRepository for InMemoryAccounts {
    async fn attempt(
        &self,
        _: &[u8; 32],
        _: &[u8; 32],
        _: DateTime<Utc>,
    ) -> Result<Decision, RepoError> {
        Ok(Decision::Proceed)
    }

    async fn succeeded(
        &self,
        _: &[u8; 32],
        _: &[u8; 32],
        _: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        Ok(())
    }

    async fn purge(&self, _: DateTime<Utc>, _: DateTime<Utc>) -> Result<u64, RepoError> {
        Ok(0)
    }
}
