//! The audit log's table, written by every repository that records an administrative action,
//! inside the transaction of the change.

use crate::entities::audit_event;
use crate::error::repo_err;
use depot_core::{AuditEvent, RepoError};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};

/// Inserts `e` on `db` (a transaction, so that the event and its change commit together).
pub(crate) async fn record<C: ConnectionTrait>(db: &C, e: &AuditEvent) -> Result<(), RepoError> {
    audit_event::Entity::insert(audit_event::ActiveModel {
        id: Set(e.id),
        at: Set(e.at),
        actor: Set(e.actor.clone()),
        action: Set(e.action.clone()),
        target_id: Set(e.target_id),
        client_ip: Set(e.client_ip.clone()),
        details: Set(e.details.clone()),
    })
    .exec_without_returning(db)
    .await
    .map_err(repo_err)?;
    Ok(())
}
