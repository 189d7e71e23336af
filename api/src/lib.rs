//! Depot's HTTP container: configuration, adapters wiring, routes, error mapping, docs.

pub mod auth;
pub mod bootstrap;
pub mod client;
pub mod client_ip;
pub mod docs;
pub mod error;
pub mod extract;
pub mod http;
pub mod http_executor;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod oidc;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod worker;
