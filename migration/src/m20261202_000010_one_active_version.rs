//! One active version per name, and the record of what was active when.
//!
//! - The database enforces that at most one version of a name is `active`: a partial unique
//!   index on SQLite, a deferrable exclusion constraint on PostgreSQL (checked at the end of
//!   the statement, so one statement can move the name from one version to another). Names
//!   that had several active versions before keep the most recently changed one active; the
//!   others become `downloaded` (their artifacts stay).
//! - `package_activations`: every activation and deactivation (from which version to which, by
//!   whom, by which operation), newest first by id.
//! - `packages.yanked_at` and `yanked_reason`: a version its owner withdrew (not downloaded or
//!   activated anew, skipped by `latest` and rollback, still readable).
//! - `operations.started_by`: who started an operation (`api_key:<id>`, `user:<id>`, `admin`),
//!   for that record, and `operations.package_name`: the name of the package it acts on (when
//!   it started); NULL for operations started before this migration.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PackageActivations {
    Table,
    Id,
    Name,
    FromPackageId,
    FromVersion,
    ToPackageId,
    ToVersion,
    OperationId,
    Actor,
    At,
}

#[derive(DeriveIden)]
enum Packages {
    Table,
    YankedAt,
    YankedReason,
}

#[derive(DeriveIden)]
enum Operations {
    Table,
    StartedBy,
    PackageName,
}

const DEMOTE_DUPLICATES: &str = "UPDATE packages SET status = 'downloaded' \
    WHERE status = 'active' AND EXISTS (SELECT 1 FROM packages q \
      WHERE q.name = packages.name AND q.status = 'active' AND q.id <> packages.id \
        AND (q.updated_at > packages.updated_at \
             OR (q.updated_at = packages.updated_at AND q.id > packages.id)))";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(DEMOTE_DUPLICATES).await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE packages ADD CONSTRAINT packages_one_active_per_name \
                 EXCLUDE USING btree (name WITH =) WHERE (status = 'active') \
                 DEFERRABLE INITIALLY IMMEDIATE",
            )
            .await?;
        } else {
            db.execute_unprepared(
                "CREATE UNIQUE INDEX packages_one_active_per_name ON packages (name) \
                 WHERE status = 'active'",
            )
            .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(PackageActivations::Table)
                    .col(uuid(PackageActivations::Id).primary_key())
                    .col(string_len(PackageActivations::Name, 200))
                    .col(uuid_null(PackageActivations::FromPackageId))
                    .col(string_len_null(PackageActivations::FromVersion, 50))
                    .col(uuid_null(PackageActivations::ToPackageId))
                    .col(string_len_null(PackageActivations::ToVersion, 50))
                    .col(uuid_null(PackageActivations::OperationId))
                    .col(string_len_null(PackageActivations::Actor, 64))
                    .col(timestamp_with_time_zone(PackageActivations::At))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("package_activations_by_name")
                    .table(PackageActivations::Table)
                    .col(PackageActivations::Name)
                    .col(PackageActivations::Id)
                    .to_owned(),
            )
            .await?;
        add_column(
            manager,
            Operations::Table,
            string_len_null(Operations::StartedBy, 64),
        )
        .await?;
        add_column(
            manager,
            Operations::Table,
            string_len_null(Operations::PackageName, 200),
        )
        .await?;
        add_column(
            manager,
            Packages::Table,
            timestamp_with_time_zone_null(Packages::YankedAt),
        )
        .await?;
        add_column(
            manager,
            Packages::Table,
            string_len_null(Packages::YankedReason, 500),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_column(manager, Packages::Table, Packages::YankedReason).await?;
        drop_column(manager, Packages::Table, Packages::YankedAt).await?;
        drop_column(manager, Operations::Table, Operations::StartedBy).await?;
        drop_column(manager, Operations::Table, Operations::PackageName).await?;
        manager
            .drop_table(Table::drop().table(PackageActivations::Table).to_owned())
            .await?;
        let db = manager.get_connection();
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE packages DROP CONSTRAINT packages_one_active_per_name",
            )
            .await?;
        } else {
            db.execute_unprepared("DROP INDEX packages_one_active_per_name")
                .await?;
        }
        Ok(())
    }
}

/// One column per statement: SQLite alters a table one column at a time.
async fn add_column(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    column: ColumnDef,
) -> Result<(), DbErr> {
    let mut column = column;
    manager
        .alter_table(
            Table::alter()
                .table(table)
                .add_column(&mut column)
                .to_owned(),
        )
        .await
}

async fn drop_column(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    column: impl IntoIden,
) -> Result<(), DbErr> {
    manager
        .alter_table(Table::alter().table(table).drop_column(column).to_owned())
        .await
}
