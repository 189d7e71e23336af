//! Fewer index writes on the hot path of the lifecycle (each operation is inserted, claimed and
//! finished, each package updated once per operation, each outbox message written and removed).
//!
//! * The one-active-operation-per-package index (now `uq_operations_unfinished_per_package`)
//!   keys on `finished_at IS NULL` instead of the status (the two are equivalent: a final status is always written with `finished_at`), so a
//!   claim (pending → running) changes no indexed column.
//! * The status indexes of `packages` and `operations` go: three or five values over the whole
//!   table, so a status filter never used them for more than a scan, while every status change
//!   rewrote an entry. Active operations are found through the partial index above.
//! * The outbox keeps only unsent messages: the relay deletes a message once the broker confirmed
//!   it (it used to stamp `sent_at` and purge a day later), so `sent_at` and its index go.
//! * The usage log is purged by id (UUIDv7, time-ordered) instead of through an index on `at`.
//! * On PostgreSQL, `packages`, `operations` and `outbox` leave a third of each page free, so
//!   these updates stay on their page and write no index entry at all (HOT updates).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "CREATE UNIQUE INDEX uq_operations_unfinished_per_package ON operations (package_id) \
     WHERE finished_at IS NULL",
    "DROP INDEX uq_operations_one_active_per_package",
    "DROP INDEX idx_operations_status",
    "DROP INDEX idx_packages_status",
    "DROP INDEX idx_api_key_usage_at",
    "DELETE FROM outbox WHERE sent_at IS NOT NULL",
    "DROP INDEX idx_outbox_unsent",
    "ALTER TABLE outbox DROP COLUMN sent_at",
];

const DOWN: &[&str] = &[
    "ALTER TABLE outbox ADD COLUMN sent_at timestamp with time zone NULL",
    "CREATE INDEX idx_outbox_unsent ON outbox (sent_at, id)",
    "CREATE INDEX idx_api_key_usage_at ON api_key_usage (at)",
    "CREATE INDEX idx_packages_status ON packages (status)",
    "CREATE INDEX idx_operations_status ON operations (status)",
    "CREATE UNIQUE INDEX uq_operations_one_active_per_package ON operations (package_id) \
     WHERE status IN ('pending', 'running')",
    "DROP INDEX uq_operations_unfinished_per_package",
];

const TABLES: &[&str] = &["packages", "operations", "outbox"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in UP {
            db.execute_unprepared(sql).await?;
        }
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            for t in TABLES {
                db.execute_unprepared(&format!("ALTER TABLE {t} SET (fillfactor = 70)"))
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            for t in TABLES {
                db.execute_unprepared(&format!("ALTER TABLE {t} RESET (fillfactor)"))
                    .await?;
            }
        }
        for sql in DOWN {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
