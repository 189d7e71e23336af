//! What every component's routes share: authentication ([`auth`]), problem documents
//! ([`error`]), extractors, collections and ETags ([`collection`]), `Idempotency-Key`,
//! request ids and spans ([`middleware`]), metrics, telemetry, health, `whoami` and the
//! OpenAPI document ([`docs`]).

pub mod auth;
pub mod client_ip;
pub mod collection;
pub mod docs;
pub mod egress;
pub mod error;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod state;
pub mod telemetry;
pub mod throttle;
pub mod whoami;
