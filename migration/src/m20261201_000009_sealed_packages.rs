//! A package's verified fields (`name`, `version`, `source_url`, `sha256`, `size_bytes`) freeze
//! once it first leaves Created: `sealed_at` records when, and stays set even if the package
//! later returns to Created (a different artifact is a new version). Packages already past
//! Created are sealed as of their last change. A sealed version that is deleted stays retired
//! (`retired_versions`): its name and version cannot be registered again with other bytes.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Packages {
    Table,
    SealedAt,
    UpdatedAt,
    Status,
}

#[derive(DeriveIden)]
enum RetiredVersions {
    Table,
    Name,
    Version,
    RetiredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RetiredVersions::Table)
                    .col(string_len(RetiredVersions::Name, 200))
                    .col(string_len(RetiredVersions::Version, 50))
                    .col(timestamp_with_time_zone(RetiredVersions::RetiredAt))
                    .primary_key(
                        Index::create()
                            .col(RetiredVersions::Name)
                            .col(RetiredVersions::Version),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Packages::Table)
                    .add_column(timestamp_with_time_zone_null(Packages::SealedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(Packages::Table)
                    .value(Packages::SealedAt, Expr::col(Packages::UpdatedAt))
                    .and_where(Expr::col(Packages::Status).ne("created"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RetiredVersions::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Packages::Table)
                    .drop_column(Packages::SealedAt)
                    .to_owned(),
            )
            .await
    }
}
