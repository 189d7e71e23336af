//! Packages, their operations, and the transactional outbox.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Packages {
    Table,
    Id,
    Name,
    Version,
    Status,
    Description,
    SourceUrl,
    Sha256,
    SizeBytes,
    CreatedAt,
    UpdatedAt,
    Revision,
}

#[derive(DeriveIden)]
enum Operations {
    Table,
    Id,
    Kind,
    PackageId,
    Status,
    Progress,
    ErrorCode,
    ErrorDetail,
    CancelRequested,
    Attempts,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Queue,
    Payload,
    CreatedAt,
    SentAt,
    LockedUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Packages::Table)
                    .col(uuid(Packages::Id).primary_key())
                    .col(string_len(Packages::Name, 200))
                    .col(string_len(Packages::Version, 50))
                    .col(string_len(Packages::Status, 16))
                    .col(text_null(Packages::Description))
                    .col(string_len_null(Packages::SourceUrl, 2000))
                    .col(string_len_null(Packages::Sha256, 64))
                    .col(big_integer_null(Packages::SizeBytes))
                    .col(timestamp_with_time_zone(Packages::CreatedAt))
                    .col(timestamp_with_time_zone(Packages::UpdatedAt))
                    .col(big_integer(Packages::Revision).default(1))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_packages_name_version")
                    .table(Packages::Table)
                    .col(Packages::Name)
                    .col(Packages::Version)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_packages_name_id")
                    .table(Packages::Table)
                    .col(Packages::Name)
                    .col(Packages::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_packages_status")
                    .table(Packages::Table)
                    .col(Packages::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Operations::Table)
                    .col(uuid(Operations::Id).primary_key())
                    .col(string_len(Operations::Kind, 16))
                    .col(uuid(Operations::PackageId))
                    .col(string_len(Operations::Status, 16))
                    .col(small_integer(Operations::Progress).default(0))
                    .col(string_len_null(Operations::ErrorCode, 64))
                    .col(text_null(Operations::ErrorDetail))
                    .col(boolean(Operations::CancelRequested).default(false))
                    .col(integer(Operations::Attempts).default(0))
                    .col(timestamp_with_time_zone(Operations::CreatedAt))
                    .col(timestamp_with_time_zone(Operations::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Operations::FinishedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_operations_package")
                            .from(Operations::Table, Operations::PackageId)
                            .to(Packages::Table, Packages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_operations_package_id")
                    .table(Operations::Table)
                    .col(Operations::PackageId)
                    .col(Operations::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_operations_status")
                    .table(Operations::Table)
                    .col(Operations::Status)
                    .to_owned(),
            )
            .await?;
        // At most one pending or running operation per package, enforced by the database so two
        // concurrent requests cannot both start one (a partial unique index: PostgreSQL and SQLite).
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX uq_operations_one_active_per_package ON operations (package_id) \
                 WHERE status IN ('pending', 'running')",
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(uuid(Outbox::Id).primary_key())
                    .col(string_len(Outbox::Queue, 200))
                    .col(blob(Outbox::Payload))
                    .col(timestamp_with_time_zone(Outbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(Outbox::SentAt))
                    .col(timestamp_with_time_zone_null(Outbox::LockedUntil))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_unsent")
                    .table(Outbox::Table)
                    .col(Outbox::SentAt)
                    .col(Outbox::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Outbox::Table.into_iden(),
            Operations::Table.into_iden(),
            Packages::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
