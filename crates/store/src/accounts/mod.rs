//! The sea-orm adapter of the accounts ports: users and identities, refresh tokens, login
//! throttle states and pending OpenID Connect sign-ins.
//!
//! One file per port: `users`, `sessions` (refresh tokens), `throttles`, `logins`.

mod logins;
mod sessions;
mod throttles;
mod users;

use sessions::*;
use users::*;

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
use depot_core::{AuditEvent, Page, PageRequest, RepoError};
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
