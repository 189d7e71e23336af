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
