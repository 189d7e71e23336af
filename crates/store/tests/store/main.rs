//! The store adapters' own tests, on SQLite (a temp file per test) and, when
//! `DEPOT_TEST_POSTGRES_URL` is set, on PostgreSQL (a fresh database per test, dropped after).
//! `make test` runs them both ways; the tests marked `ignore` need PostgreSQL and run only then.

mod accounts;
mod api_keys;
mod common;
mod idempotency;
mod outbox;
mod packages;
mod postgres;
