//! Depot's schema, as sea-orm migrations. Every migration has a working `down`; the tests run
//! up → down → up on SQLite and PostgreSQL.

pub use sea_orm_migration::MigrationStatus;
pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_idempotency_keys;
mod m20261122_000002_create_api_keys;
mod m20261122_000003_create_packages;
mod m20261122_000004_create_accounts;
mod m20261122_000005_outbox_headers;
mod m20261122_000006_lean_writes;
mod m20261123_000007_users_updated_at;
mod m20261201_000008_owners;
mod m20261201_000009_sealed_packages;
mod m20261202_000010_one_active_version;
mod m20261203_000011_name_operations;
mod m20261204_000012_active_versions;
mod m20261205_000013_signatures;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_idempotency_keys::Migration),
            Box::new(m20261122_000002_create_api_keys::Migration),
            Box::new(m20261122_000003_create_packages::Migration),
            Box::new(m20261122_000004_create_accounts::Migration),
            Box::new(m20261122_000005_outbox_headers::Migration),
            Box::new(m20261122_000006_lean_writes::Migration),
            Box::new(m20261123_000007_users_updated_at::Migration),
            Box::new(m20261201_000008_owners::Migration),
            Box::new(m20261201_000009_sealed_packages::Migration),
            Box::new(m20261202_000010_one_active_version::Migration),
            Box::new(m20261203_000011_name_operations::Migration),
            Box::new(m20261204_000012_active_versions::Migration),
            Box::new(m20261205_000013_signatures::Migration),
        ]
    }
}
