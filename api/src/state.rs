//! What handlers share: the services and the adapters' health, wired by `bootstrap`.

use depot_core::queue::QueueHealth;
use depot_store::DatabaseConnection;
use std::sync::Arc;

pub struct AppState {
    pub db: DatabaseConnection,
    pub queue_health: Arc<dyn QueueHealth>,
    pub password_defaults: depot_password::Defaults,
}
