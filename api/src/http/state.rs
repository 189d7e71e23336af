//! What the shared HTTP machinery needs: the credentials it checks (the admin secret, the key
//! verifier, the access-token verifier), idempotency storage, the metrics, the health checks'
//! dependencies, and the components (for their gauges).

use crate::component::Component;
use depot_accounts::AccountService;
use depot_api_keys::Verifier;
use depot_core::queue::QueueHealth;
use depot_core::secrets::SecretString;
use depot_store::DatabaseConnection;
use std::sync::Arc;

pub struct HttpState {
    pub db: DatabaseConnection,
    pub queue_health: Arc<dyn QueueHealth>,
    pub verifier: Arc<Verifier>,
    pub admin_secret: SecretString,
    pub allow_query_keys: bool,
    /// Verifies users' access tokens.
    pub accounts: Arc<AccountService>,
    pub idempotency: Arc<dyn depot_core::idempotency::IdempotencyStore>,
    pub clock: Arc<dyn depot_core::Clock>,
    pub metrics: Arc<crate::http::metrics::Metrics>,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Continue any client's `traceparent` (else only the trusted proxies').
    pub trust_client_traceparent: bool,
    /// Failed credential checks per client address.
    pub failed_credentials: Arc<crate::http::throttle::FailedCredentials>,
    /// The public sign-in routes' budgets per client address.
    pub sign_in_budgets: Arc<crate::http::throttle::SignInBudgets>,
    pub components: Vec<Arc<dyn Component>>,
}
