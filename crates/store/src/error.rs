//! Infrastructure errors → domain `RepoError`.

use depot_core::RepoError;
use sea_orm::{DbErr, SqlErr};

/// A database error as the domain sees it. A unique violation is unexpected here: a statement
/// that can meet one on purpose checks [`is_unique_violation`] first and answers its port's own
/// variant (`Duplicate`, `EmailTaken`…), knowing which constraint that statement can violate.
pub fn repo_err(e: DbErr) -> RepoError {
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => RepoError::Unavailable(Box::new(e)),
        DbErr::RecordNotFound(_) => RepoError::NotFound,
        other => RepoError::Unexpected(Box::new(other)),
    }
}

/// The statement violated a unique constraint (or primary key).
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Begins a write transaction. On SQLite it is `BEGIN IMMEDIATE`: a deferred transaction that
/// reads first cannot upgrade to a write once another connection has written (SQLITE_BUSY_SNAPSHOT,
/// which no busy timeout waits out); taking the write lock up front makes writers queue instead.
/// PostgreSQL ignores the option.
pub async fn begin_write(
    db: &sea_orm::DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// `column IN (ids)`. On PostgreSQL it is `column = ANY($1)` with the ids as one array
/// parameter, so a batch of any size is one prepared statement, parsed and planned once per
/// connection, instead of one per size (which also evicts the connection's other statements).
pub fn any_of<C: sea_orm::ColumnTrait>(
    backend: sea_orm::DatabaseBackend,
    column: C,
    ids: impl IntoIterator<Item = uuid::Uuid>,
) -> sea_orm::sea_query::Expr {
    match backend {
        sea_orm::DatabaseBackend::Postgres => column.eq_any(ids),
        _ => column.is_in(ids),
    }
}
