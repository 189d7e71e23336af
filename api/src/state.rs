//! What handlers share: the services and the adapters' health, wired by `bootstrap`.

use depot_api_keys::{ApiKeyService, Verifier};
use depot_core::queue::QueueHealth;
use depot_core::secrets::SecretString;
use depot_store::DatabaseConnection;
use std::sync::Arc;

pub struct AppState {
    pub db: DatabaseConnection,
    pub queue_health: Arc<dyn QueueHealth>,
    pub password_defaults: depot_password::Defaults,
    pub password_require_scope: bool,
    pub api_keys: Arc<ApiKeyService>,
    pub verifier: Arc<Verifier>,
    pub admin_secret: SecretString,
    pub allow_query_keys: bool,
    pub packages: Arc<depot_packages::PackageService>,
    pub idempotency: Arc<dyn depot_core::idempotency::IdempotencyStore>,
    pub clock: Arc<dyn depot_core::Clock>,
    pub metrics: Arc<crate::http::metrics::Metrics>,
    pub packages_relay: Arc<depot_packages::relay::OutboxRelay>,
    pub accounts: Arc<depot_accounts::AccountService>,
    pub pending_logins: Arc<dyn depot_accounts::PendingLoginRepository>,
    pub oidc: Option<Arc<crate::accounts::oidc::OidcClient>>,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub package_cache: Option<Arc<depot_packages::cache::PackageCache>>,
    /// Rendered package list pages (only with the package cache, whose generation they follow).
    pub package_lists: crate::http::collection::RenderCache,
    /// Slots for Server-Sent Event streams (`operations.max_event_streams`).
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// What the event streams follow operations through (one query for all of them).
    pub operation_watch: Arc<depot_packages::watch::OperationWatch>,
}
