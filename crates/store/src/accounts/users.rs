//! The user port: users and their external identities.

use super::*;

pub(super) fn to_domain(m: user::Model) -> Result<User, RepoError> {
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
pub(super) fn unique_or(e: sea_orm::DbErr, taken: InsertUserError) -> InsertUserError {
    if is_unique_violation(&e) {
        taken
    } else {
        repo_err(e).into()
    }
}

pub(super) fn identity_active(
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
        audit: &AuditEvent,
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
        crate::audit::record(&txn, audit).await?;
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
        audit: &AuditEvent,
    ) -> Result<User, UpdateUserError> {
        let txn = begin_write(&self.db).await.map_err(repo_err)?;
        // Any role but admin, or disabling, may take away an enabled administrator.
        let demotes = patch.role.is_some_and(|r| r != Role::Admin) || patch.disabled == Some(true);
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
        crate::audit::record(&txn, audit).await?;
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
