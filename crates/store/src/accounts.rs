//! The sea-orm adapter of the accounts ports: users and identities, refresh tokens, login
//! throttle states and pending OpenID Connect sign-ins.

use crate::entities::{login_throttle, oidc_login, refresh_token, user, user_identity};
use crate::error::{begin_write, is_unique_violation, repo_err};
use crate::keyset::{newest_first, page_by_id};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use depot_accounts::throttle::{self, Decision, ThrottleState};
use depot_accounts::{
    Email, Identity, InsertUserError, NewRefreshToken, PendingLogin, PendingLoginRepository,
    RefreshTokenRepository, Role, Rotation, ThrottleRepository, UpdateUserError, User, UserPatch,
    UserRepository,
};
use depot_core::{Page, PageRequest, RepoError};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
};
use uuid::Uuid;

#[derive(Clone)]
pub struct SeaOrmAccountRepository {
    db: DatabaseConnection,
}

impl SeaOrmAccountRepository {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Housekeeping: expired refresh tokens and pending sign-ins, forgotten throttle states.
    pub async fn purge_expired_state(&self, now: DateTime<Utc>) -> Result<u64, RepoError> {
        Ok(RefreshTokenRepository::purge_expired(self, now).await?
            + ThrottleRepository::purge(self, now - throttle::WINDOW, now - throttle::TRUSTED_FOR)
                .await?
            + PendingLoginRepository::purge(self, now).await?)
    }
}

fn to_domain(m: user::Model) -> Result<User, RepoError> {
    let unexpected = |what: String| RepoError::Unexpected(what.into());
    Ok(User {
        id: m.id,
        email: Email::parse(&m.email)
            .map_err(|_| unexpected(format!("user {} has an invalid stored e-mail", m.id)))?,
        password_hash: m.password_hash,
        role: m
            .role
            .parse::<Role>()
            .map_err(|_| unexpected(format!("user {} has an unknown role", m.id)))?,
        disabled: m.disabled,
        created_at: m.created_at,
        updated_at: m.updated_at,
        revision: m.revision,
    })
}

/// A unique violation as the port's `taken` variant; any other error as a store error.
fn unique_or(e: sea_orm::DbErr, taken: InsertUserError) -> InsertUserError {
    if is_unique_violation(&e) {
        taken
    } else {
        repo_err(e).into()
    }
}

fn identity_active(
    user_id: Uuid,
    identity: &Identity,
    now: DateTime<Utc>,
) -> user_identity::ActiveModel {
    user_identity::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        issuer: Set(identity.issuer.clone()),
        subject: Set(identity.subject.clone()),
        created_at: Set(now),
    }
}

async fn revoke_family<C: ConnectionTrait>(
    db: &C,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), RepoError> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(Some(now)))
        .filter(refresh_token::Column::FamilyId.eq(family_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await
        .map_err(repo_err)?;
    Ok(())
}

/// Revokes every refresh token of a user (all their sessions).
async fn revoke_sessions<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), RepoError> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(Some(now)))
        .filter(refresh_token::Column::UserId.eq(user_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(db)
        .await
        .map_err(repo_err)?;
    Ok(())
}

#[async_trait]
impl UserRepository for SeaOrmAccountRepository {
    async fn insert(&self, u: &User, identity: Option<&Identity>) -> Result<(), InsertUserError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        // The id is new: the e-mail is the only unique key the user row can violate, and
        // (issuer, subject) the only one the identity row can.
        user::Entity::insert(user::ActiveModel {
            id: Set(u.id),
            email: Set(u.email.as_str().to_owned()),
            password_hash: Set(u.password_hash.clone()),
            role: Set(u.role.as_str().to_owned()),
            disabled: Set(u.disabled),
            created_at: Set(u.created_at),
            updated_at: Set(u.updated_at),
            revision: Set(u.revision),
        })
        .exec_without_returning(&txn)
        .await
        .map_err(|e| unique_or(e, InsertUserError::EmailTaken))?;
        if let Some(identity) = identity {
            user_identity::Entity::insert(identity_active(u.id, identity, u.created_at))
                .exec_without_returning(&txn)
                .await
                .map_err(|e| unique_or(e, InsertUserError::IdentityTaken))?;
        }
        Ok(txn.commit().await.map_err(repo_err)?)
    }

    async fn get(&self, id: Uuid) -> Result<User, RepoError> {
        user::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .ok_or(RepoError::NotFound)
            .and_then(to_domain)
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepoError> {
        user::Entity::find()
            .filter(user::Column::Email.eq(email.as_str()))
            .one(&self.db)
            .await
            .map_err(repo_err)?
            .map(to_domain)
            .transpose()
    }

    async fn find_by_identity(&self, identity: &Identity) -> Result<Option<User>, RepoError> {
        let link = user_identity::Entity::find()
            .filter(user_identity::Column::Issuer.eq(identity.issuer.as_str()))
            .filter(user_identity::Column::Subject.eq(identity.subject.as_str()))
            .one(&self.db)
            .await
            .map_err(repo_err)?;
        match link {
            Some(l) => self.get(l.user_id).await.map(Some),
            None => Ok(None),
        }
    }

    async fn link_identity(
        &self,
        user_id: Uuid,
        identity: &Identity,
        now: DateTime<Utc>,
    ) -> Result<User, InsertUserError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        user_identity::Entity::insert(identity_active(user_id, identity, now))
            .exec_without_returning(&txn)
            .await
            .map_err(|e| unique_or(e, InsertUserError::IdentityTaken))?;
        user::Entity::update_many()
            .col_expr(
                user::Column::PasswordHash,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                user::Column::Revision,
                Expr::col(user::Column::Revision).add(1),
            )
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(user_id))
            .exec(&txn)
            .await
            .map_err(repo_err)?;
        revoke_sessions(&txn, user_id, now).await?;
        let linked = user::Entity::find_by_id(user_id)
            .one(&txn)
            .await
            .map_err(repo_err)?
            .ok_or(RepoError::NotFound)?;
        txn.commit().await.map_err(repo_err)?;
        Ok(to_domain(linked)?)
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<User>, RepoError> {
        let rows = newest_first(user::Entity::find(), user::Column::Id, page)
            .all(&self.db)
            .await
            .map_err(repo_err)?;
        let users = rows
            .into_iter()
            .map(to_domain)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page_by_id(users, page, |u| u.id))
    }

    async fn update(
        &self,
        id: Uuid,
        patch: &UserPatch,
        expected_revision: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<User, UpdateUserError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let demotes = patch.role == Some(Role::User) || patch.disabled == Some(true);
        let active_admins = || {
            user::Entity::find()
                .filter(user::Column::Role.eq(Role::Admin.as_str()))
                .filter(user::Column::Disabled.eq(false))
        };
        if demotes && self.db.get_database_backend() == DatabaseBackend::Postgres {
            // Serialises concurrent demotions (SQLite's write transaction is exclusive already).
            active_admins()
                .lock_exclusive()
                .all(&txn)
                .await
                .map_err(repo_err)?;
        }
        // Only taking away an enabled administrator can leave none.
        let demoting = demotes
            && user::Entity::find_by_id(id)
                .one(&txn)
                .await
                .map_err(repo_err)?
                .is_some_and(|u| u.role == Role::Admin.as_str() && !u.disabled);
        let mut q = user::Entity::update_many()
            .col_expr(
                user::Column::Revision,
                Expr::col(user::Column::Revision).add(1),
            )
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::Id.eq(id));
        if let Some(rev) = expected_revision {
            q = q.filter(user::Column::Revision.eq(rev));
        }
        if let Some(role) = patch.role {
            q = q.col_expr(user::Column::Role, Expr::value(role.as_str()));
        }
        if let Some(disabled) = patch.disabled {
            q = q.col_expr(user::Column::Disabled, Expr::value(disabled));
        }
        let result = q.exec(&txn).await.map_err(repo_err)?;
        if result.rows_affected == 0 {
            let exists = user::Entity::find_by_id(id)
                .one(&txn)
                .await
                .map_err(repo_err)?
                .is_some();
            return Err(if exists {
                UpdateUserError::StaleRevision
            } else {
                UpdateUserError::NotFound
            });
        }
        if demoting && active_admins().count(&txn).await.map_err(repo_err)? == 0 {
            // Dropping the transaction rolls the change back.
            return Err(UpdateUserError::LastAdmin);
        }
        if patch.disabled == Some(true) {
            revoke_sessions(&txn, id, now).await?;
        }
        let updated = user::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(repo_err)?
            .ok_or(UpdateUserError::NotFound)?;
        txn.commit().await.map_err(repo_err)?;
        Ok(to_domain(updated)?)
    }

    async fn changed_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, DateTime<Utc>)>, RepoError> {
        user::Entity::find()
            .select_only()
            .column(user::Column::Id)
            .column(user::Column::UpdatedAt)
            .filter(user::Column::UpdatedAt.gt(since))
            .filter(
                Condition::any()
                    .add(user::Column::Role.ne(Role::Admin.as_str()))
                    .add(user::Column::Disabled.eq(true)),
            )
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(repo_err)
    }
}

#[async_trait]
impl RefreshTokenRepository for SeaOrmAccountRepository {
    async fn insert(&self, t: &NewRefreshToken) -> Result<(), RepoError> {
        insert_refresh(&self.db, t).await
    }

    async fn rotate(
        &self,
        presented: &[u8; 32],
        next: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> Result<Rotation, RepoError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let Some(current) = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(presented.to_vec()))
            .one(&txn)
            .await
            .map_err(repo_err)?
        else {
            return Ok(Rotation::Invalid);
        };
        if current.used_at.is_some() {
            // Reuse: someone holds a token that was already exchanged. Revoke the session.
            revoke_family(&txn, current.family_id, now).await?;
            txn.commit().await.map_err(repo_err)?;
            return Ok(Rotation::Reused);
        }
        if current.revoked_at.is_some() || current.expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        let owner = user::Entity::find_by_id(current.user_id)
            .one(&txn)
            .await
            .map_err(repo_err)?
            .ok_or(RepoError::NotFound)?;
        if owner.disabled {
            revoke_family(&txn, current.family_id, now).await?;
            txn.commit().await.map_err(repo_err)?;
            return Ok(Rotation::UserDisabled);
        }
        // Conditional: of two concurrent uses of one token, exactly one marks it used.
        let marked = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(Some(now)))
            .filter(refresh_token::Column::Id.eq(current.id))
            .filter(refresh_token::Column::UsedAt.is_null())
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await
            .map_err(repo_err)?;
        if marked.rows_affected == 0 {
            revoke_family(&txn, current.family_id, now).await?;
            txn.commit().await.map_err(repo_err)?;
            return Ok(Rotation::Reused);
        }
        let next = NewRefreshToken {
            family_id: current.family_id,
            user_id: current.user_id,
            expires_at: Ord::min(next.expires_at, current.family_expires_at),
            family_expires_at: current.family_expires_at,
            ..next.clone()
        };
        insert_refresh(&txn, &next).await?;
        txn.commit().await.map_err(repo_err)?;
        Ok(Rotation::Rotated(to_domain(owner)?))
    }

    async fn revoke_family(
        &self,
        presented: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        let Some(t) = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(presented.to_vec()))
            .one(&self.db)
            .await
            .map_err(repo_err)?
        else {
            return Ok(false);
        };
        revoke_family(&self.db, t.family_id, now).await?;
        Ok(true)
    }

    async fn purge_expired(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let r = refresh_token::Entity::delete_many()
            .filter(refresh_token::Column::ExpiresAt.lt(before))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(r.rows_affected)
    }
}

async fn insert_refresh<C: ConnectionTrait>(db: &C, t: &NewRefreshToken) -> Result<(), RepoError> {
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        id: Set(t.id),
        family_id: Set(t.family_id),
        user_id: Set(t.user_id),
        token_hash: Set(t.hash.to_vec()),
        created_at: Set(t.created_at),
        expires_at: Set(t.expires_at),
        family_expires_at: Set(t.family_expires_at),
        used_at: Set(None),
        revoked_at: Set(None),
    })
    .exec_without_returning(db)
    .await
    .map_err(repo_err)?;
    Ok(())
}

fn state_of(m: &login_throttle::Model) -> ThrottleState {
    ThrottleState {
        failures: m.failures,
        last_failure_at: m.last_failure_at,
        locked_until: m.locked_until,
        last_success_at: m.last_success_at,
    }
}

impl SeaOrmAccountRepository {
    /// In one write transaction: makes sure both rows exist, reads them locked (PostgreSQL
    /// `FOR UPDATE`; SQLite's write transaction is exclusive already), lets `decide` compute the
    /// new states, and stores them.
    async fn with_throttle_rows<T: Send>(
        &self,
        keys: [&[u8; 32]; 2],
        now: DateTime<Utc>,
        decide: impl FnOnce(ThrottleState, ThrottleState) -> (T, Option<[ThrottleState; 2]>) + Send,
    ) -> Result<T, RepoError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        // A fixed order keeps two transactions from locking the rows crosswise.
        let mut ordered = keys;
        ordered.sort();
        for key in ordered {
            login_throttle::Entity::insert(login_throttle::ActiveModel {
                key_hash: Set(key.to_vec()),
                failures: Set(0),
                last_failure_at: Set(now),
                locked_until: Set(None),
                last_success_at: Set(None),
            })
            .on_conflict(
                OnConflict::column(login_throttle::Column::KeyHash)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(repo_err)?;
        }
        let mut query = login_throttle::Entity::find()
            .filter(login_throttle::Column::KeyHash.is_in(ordered.iter().map(|k| k.to_vec())));
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            query = query.lock_exclusive();
        }
        let rows = query.all(&txn).await.map_err(repo_err)?;
        let find = |key: &[u8; 32]| {
            rows.iter()
                .find(|r| r.key_hash.as_slice() == key.as_slice())
                .map(state_of)
                .unwrap_or_else(|| ThrottleState::fresh(now))
        };
        let (result, store) = decide(find(keys[0]), find(keys[1]));
        if let Some(states) = store {
            for (key, st) in keys.iter().zip(states) {
                login_throttle::Entity::update_many()
                    .col_expr(login_throttle::Column::Failures, Expr::value(st.failures))
                    .col_expr(
                        login_throttle::Column::LastFailureAt,
                        Expr::value(st.last_failure_at),
                    )
                    .col_expr(
                        login_throttle::Column::LockedUntil,
                        Expr::value(st.locked_until),
                    )
                    .col_expr(
                        login_throttle::Column::LastSuccessAt,
                        Expr::value(st.last_success_at),
                    )
                    .filter(login_throttle::Column::KeyHash.eq(key.to_vec()))
                    .exec(&txn)
                    .await
                    .map_err(repo_err)?;
            }
        }
        txn.commit().await.map_err(repo_err)?;
        Ok(result)
    }
}

#[async_trait]
impl ThrottleRepository for SeaOrmAccountRepository {
    async fn attempt(
        &self,
        account: &[u8; 32],
        client: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Decision, RepoError> {
        self.with_throttle_rows([account, client], now, |a, c| {
            let (decision, states) = throttle::attempt(a, c, now);
            (decision, states.map(|(a, c)| [a, c]))
        })
        .await
    }

    async fn succeeded(
        &self,
        account: &[u8; 32],
        client: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        self.with_throttle_rows([account, client], now, |_, _| {
            let (a, c) = throttle::succeeded(now);
            ((), Some([a, c]))
        })
        .await
    }

    async fn purge(
        &self,
        failures_before: DateTime<Utc>,
        successes_before: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        let r = login_throttle::Entity::delete_many()
            .filter(login_throttle::Column::LastFailureAt.lt(failures_before))
            .filter(
                Condition::any()
                    .add(login_throttle::Column::LastSuccessAt.is_null())
                    .add(login_throttle::Column::LastSuccessAt.lt(successes_before)),
            )
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(r.rows_affected)
    }
}

#[async_trait]
impl PendingLoginRepository for SeaOrmAccountRepository {
    async fn save(&self, l: &PendingLogin) -> Result<(), RepoError> {
        oidc_login::Entity::insert(oidc_login::ActiveModel {
            state_hash: Set(l.state_hash.to_vec()),
            nonce: Set(l.nonce.clone()),
            code_verifier: Set(l.code_verifier.clone()),
            expires_at: Set(l.expires_at),
        })
        .exec_without_returning(&self.db)
        .await
        .map_err(repo_err)?;
        Ok(())
    }

    async fn take(
        &self,
        state_hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<PendingLogin>, RepoError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        let Some(row) = oidc_login::Entity::find_by_id(state_hash.to_vec())
            .one(&txn)
            .await
            .map_err(repo_err)?
        else {
            return Ok(None);
        };
        // Deleting is what makes the state single-use: of two concurrent callbacks, one wins.
        let deleted = oidc_login::Entity::delete_by_id(state_hash.to_vec())
            .exec(&txn)
            .await
            .map_err(repo_err)?;
        txn.commit().await.map_err(repo_err)?;
        if deleted.rows_affected == 0 || row.expires_at <= now {
            return Ok(None);
        }
        Ok(Some(PendingLogin {
            state_hash: *state_hash,
            nonce: row.nonce,
            code_verifier: row.code_verifier,
            expires_at: row.expires_at,
        }))
    }

    async fn purge(&self, before: DateTime<Utc>) -> Result<u64, RepoError> {
        let r = oidc_login::Entity::delete_many()
            .filter(oidc_login::Column::ExpiresAt.lt(before))
            .exec(&self.db)
            .await
            .map_err(repo_err)?;
        Ok(r.rows_affected)
    }
}
