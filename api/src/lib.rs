//! Depot's HTTP container. `http/` is the shared machinery (authentication, problem documents,
//! idempotency, middleware, metrics, telemetry, docs); each component has one room
//! (`packages/`, `api_keys/`, `accounts/`, `passwords/`) with its routes and its adapters;
//! `bootstrap` and `startup` wire them; `cli/` is the command line's client side.

pub mod accounts;
pub mod api_keys;
pub mod app;
pub mod bootstrap;
pub mod cli;
pub mod component;
pub mod http;
pub mod packages;
pub mod passwords;
pub mod settings;
pub mod startup;
pub mod worker;

/// Makes ring the process's rustls provider. The HTTP clients on reqwest 0.13 (object_store's,
/// the OTLP exporter's) take the process's provider and fail without one; Depot's other TLS
/// (sqlx, lapin, reqwest 0.12) uses ring already. Idempotent: a provider already installed stays.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
