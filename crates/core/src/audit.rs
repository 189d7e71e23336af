//! The audit log's record: one administrative action, written in the same transaction as the
//! change it describes (each component's repository takes the event with its change).

use crate::Principal;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Who acts, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    pub client_ip: Option<String>,
}

impl Actor {
    /// The event of `action` by this actor on `target` at `at`.
    pub fn event(
        &self,
        action: &str,
        target: Option<Uuid>,
        details: serde_json::Value,
        at: DateTime<Utc>,
    ) -> AuditEvent {
        AuditEvent {
            id: Uuid::now_v7(),
            at,
            actor: self.principal.actor(),
            action: action.to_owned(),
            target_id: target,
            client_ip: self.client_ip.clone(),
            details: Some(details),
        }
    }
}

/// One admin action, recorded with the change it describes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// `admin`, `api_key:<id>`, `user:<id>`, or `system` (a change no principal asked for, such
    /// as an identity linked at a provider sign-in).
    pub actor: String,
    /// `api_key.create`, `api_key.revoke`, `user.update`, `user.link_identity`, …
    pub action: String,
    pub target_id: Option<Uuid>,
    pub client_ip: Option<String>,
    pub details: Option<serde_json::Value>,
}
