//! Infrastructure errors → domain `RepoError`.

use depot_core::RepoError;
use sea_orm::{DbErr, SqlErr};

pub fn repo_err(e: DbErr) -> RepoError {
    if let Some(SqlErr::UniqueConstraintViolation(detail)) = e.sql_err() {
        tracing::debug!(%detail, "unique violation");
        return RepoError::Conflict("a resource with these unique fields already exists".into());
    }
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => RepoError::Unavailable(Box::new(e)),
        DbErr::RecordNotFound(_) => RepoError::NotFound,
        other => RepoError::Unexpected(Box::new(other)),
    }
}
