//! Depot's database adapters (sea-orm): connection set-up for SQLite and PostgreSQL, migrations,
//! and the repository implementations of the components' ports.

pub mod accounts;
pub mod api_keys;
mod audit;
mod batch;
pub mod database;
pub mod entities;
pub mod error;
pub mod idempotency;
mod keyset;
pub mod notify;
pub mod packages;

pub use accounts::SeaOrmAccountRepository;
pub use api_keys::SeaOrmApiKeyRepository;
pub use database::{
    Backend, DatabaseOptions, MigrateCommand, connect, migrate, migrate_up, migration_status, ping,
};
pub use idempotency::SeaOrmIdempotencyStore;
pub use notify::listen_for_operations;
pub use packages::SeaOrmPackageRepository;
pub use sea_orm::DatabaseConnection;
