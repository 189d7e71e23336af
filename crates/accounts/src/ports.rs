//! What the accounts component needs from storage.

use crate::model::{Email, Identity, Role, User};
use crate::throttle::Decision;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_core::{AuditEvent, Page, PageRequest, RepoError};
use uuid::Uuid;

/// A refresh token to store: only its hash.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub id: Uuid,
    /// Every token issued by rotation from one login shares the family.
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub hash: [u8; 32],
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The session's end, whatever the rotations: set at login, inherited by every rotation.
    pub family_expires_at: DateTime<Utc>,
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is now used, and `next` (same family) replaces it.
    Rotated(User),
    /// The token had been used or revoked before: the whole family is now revoked.
    Reused,
    /// Unknown or expired.
    Invalid,
    /// The user is disabled: the family is now revoked.
    UserDisabled,
}

/// A change an administrator makes to a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// Why inserting a user, or linking an identity to one, was refused.
#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    /// Another account has this e-mail address.
    #[error("a user with this e-mail already exists")]
    EmailTaken,
    /// The external identity (issuer, subject) is linked to an account already.
    #[error("this identity is already linked to an account")]
    IdentityTaken,
    #[error(transparent)]
    Store(#[from] RepoError),
}

/// Why an administrator's change to a user was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpdateUserError {
    #[error("no user with this id")]
    NotFound,
    /// The user is no longer at the expected revision.
    #[error("the user has changed since it was read")]
    StaleRevision,
    /// The change would leave no enabled administrator (it was rolled back).
    #[error("this is the last enabled administrator")]
    LastAdmin,
    #[error(transparent)]
    Store(#[from] RepoError),
}

#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Inserts a user (and its external identity, when given) atomically: `EmailTaken` when the
    /// e-mail belongs to another account, `IdentityTaken` when the identity is linked already.
    async fn insert(&self, user: &User, identity: Option<&Identity>)
    -> Result<(), InsertUserError>;
    async fn get(&self, id: Uuid) -> Result<User, RepoError>;
    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepoError>;
    async fn find_by_identity(&self, identity: &Identity) -> Result<Option<User>, RepoError>;
    /// Links an external identity to an existing account and, in the same transaction, removes
    /// the account's local password and revokes its sessions: whoever set that password never
    /// proved they own the address (an attacker may have registered it first). `IdentityTaken`
    /// when the identity got linked to an account meanwhile (a concurrent sign-in).
    /// `audit` is recorded in the same transaction.
    async fn link_identity(
        &self,
        user_id: Uuid,
        identity: &Identity,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<User, InsertUserError>;
    /// Newest first.
    async fn list(&self, page: &PageRequest) -> Result<Page<User>, RepoError>;
    /// Applies `patch` if the user is still at `expected_revision` (when given;
    /// `StaleRevision` otherwise; `NotFound`). Disabling revokes every refresh token of the user
    /// in the same transaction. A change that would leave no enabled administrator is refused
    /// (`LastAdmin`), checked in the same transaction with the administrators' rows locked, so
    /// two concurrent demotions cannot both pass. `audit` is recorded in the same transaction
    /// (and not at all when the change is refused).
    async fn update(
        &self,
        id: Uuid,
        patch: &UserPatch,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
        audit: &AuditEvent,
    ) -> Result<User, UpdateUserError>;
    /// The users changed (role, disabled, sign-in method) after `since` who may now have fewer
    /// rights than their older tokens say (all but enabled administrators), with when they
    /// changed (their `updated_at`): their access tokens issued before are void.
    async fn changed_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, DateTime<Utc>)>, RepoError>;
}

#[async_trait]
pub trait RefreshTokenRepository: Send + Sync {
    async fn insert(&self, token: &NewRefreshToken) -> Result<(), RepoError>;
    /// In one transaction: looks the presented token up by hash and either marks it used and
    /// stores `next` in its family, or (reuse, disabled user) revokes the family.
    /// `next.family_id`, `next.user_id` and `next.family_expires_at` are taken from the presented
    /// token, and `next.expires_at` is capped at the family's end.
    async fn rotate(
        &self,
        presented: &[u8; 32],
        next: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> Result<Rotation, RepoError>;
    /// Revokes the family of the presented token; false when the token is unknown.
    async fn revoke_family(
        &self,
        presented: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError>;
    /// Deletes tokens that expired before `before`.
    async fn purge_expired(&self, before: DateTime<Utc>) -> Result<u64, RepoError>;
}

/// Login throttle states, each key's row read and written under a lock so that concurrent
/// attempts are counted one by one.
#[async_trait]
pub trait ThrottleRepository: Send + Sync {
    /// Applies [`crate::throttle::attempt`] to the two keys atomically and returns its decision.
    async fn attempt(
        &self,
        account: &[u8; 32],
        client: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Decision, RepoError>;
    /// Applies [`crate::throttle::succeeded`].
    async fn succeeded(
        &self,
        account: &[u8; 32],
        client: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<(), RepoError>;
    /// Deletes states with no failure since `failures_before` and no success since
    /// `successes_before`.
    async fn purge(
        &self,
        failures_before: DateTime<Utc>,
        successes_before: DateTime<Utc>,
    ) -> Result<u64, RepoError>;
}

/// An OpenID Connect sign-in between the redirect to the provider and the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    pub state_hash: [u8; 32],
    pub nonce: String,
    pub code_verifier: String,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait PendingLoginRepository: Send + Sync {
    async fn save(&self, login: &PendingLogin) -> Result<(), RepoError>;
    /// Removes and returns the pending login (each state is usable once); `None` when unknown
    /// or expired.
    async fn take(
        &self,
        state_hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<PendingLogin>, RepoError>;
    async fn purge(&self, before: DateTime<Utc>) -> Result<u64, RepoError>;
}
