//! sea-orm entities, one module per table. Hand-written behaviour lives in the repositories.

pub mod api_key;
pub mod api_key_change;
pub mod api_key_usage;
pub mod audit_event;
pub mod idempotency_key;
pub mod login_throttle;
pub mod oidc_login;
pub mod operation;
pub mod outbox;
pub mod package;
pub mod package_activation;
pub mod package_name;
pub mod refresh_token;
pub mod retired_version;
pub mod user;
pub mod user_identity;
