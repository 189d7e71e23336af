//! API tests: one binary, each test starts the real application on a random port with its own
//! database (a temp SQLite file; a fresh PostgreSQL database when DEPOT_TEST_POSTGRES_URL is set)
//! and, when DEPOT_TEST_AMQP_URL is set, unique queues on a real RabbitMQ.

mod accounts;
mod api_keys;
mod artifacts;
mod cli;
mod doc_patterns;
mod docs;
mod errors;
mod health;
mod helpers;
mod http_executor;
mod metrics;
mod migrations;
mod names;
mod oidc;
mod packages;
mod passwords;
mod scaled;
mod signatures;
mod tracing;
