//! Depot's database adapters (sea-orm): connection set-up for SQLite and PostgreSQL, migrations,
//! and the repository implementations of the components' ports.

pub mod database;

pub use database::{
    Backend, DatabaseOptions, MigrateCommand, connect, migrate, migrate_up, migration_status, ping,
};
pub use sea_orm::DatabaseConnection;
