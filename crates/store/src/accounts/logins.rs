//! Pending OpenID Connect sign-ins (each state usable once).

use super::*;

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
