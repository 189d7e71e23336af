//! Refresh tokens: sessions that rotate on every use and are revoked by family.

use super::*;

pub(super) async fn revoke_family<C: ConnectionTrait>(
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
pub(super) async fn revoke_sessions<C: ConnectionTrait>(
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

pub(super) async fn insert_refresh<C: ConnectionTrait>(
    db: &C,
    t: &NewRefreshToken,
) -> Result<(), RepoError> {
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
