//! Owners (the trust issue): a package name belongs to whoever created its first version, kept
//! in `package_names`; each version carries its name's owner. An API key's `lineage_id` is the
//! key a rotation chain started from, so a rotated key's successor keeps what its predecessor
//! owns.
//!
//! Names registered before this migration get a `package_names` row **without an owner**
//! (`owner_kind` NULL): only principals holding `packages:admin` manage them until an operator
//! decides otherwise. Existing keys start their own lineage (`lineage_id` = `id`); nothing was
//! owned before, so no ownership is lost.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PackageNames {
    Table,
    Name,
    OwnerKind,
    OwnerId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Packages {
    Table,
    Name,
    OwnerKind,
    OwnerId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    LineageId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PackageNames::Table)
                    .col(string_len(PackageNames::Name, 200).primary_key())
                    .col(string_len_null(PackageNames::OwnerKind, 16))
                    .col(uuid_null(PackageNames::OwnerId))
                    .col(timestamp_with_time_zone(PackageNames::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // Every name already registered, without an owner.
        let names = Query::select()
            .column(Packages::Name)
            .expr(Expr::col(Packages::CreatedAt).min())
            .from(Packages::Table)
            .group_by_col(Packages::Name)
            .to_owned();
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(PackageNames::Table)
                    .columns([PackageNames::Name, PackageNames::CreatedAt])
                    .select_from(names)
                    .map_err(|e| DbErr::Migration(e.to_string()))?
                    .to_owned(),
            )
            .await?;
        // One column per statement: SQLite alters one at a time.
        for col in [
            ColumnDef::new(Packages::OwnerKind)
                .string_len(16)
                .null()
                .to_owned(),
            ColumnDef::new(Packages::OwnerId).uuid().null().to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Packages::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(ApiKeys::Table)
                    .add_column(ColumnDef::new(ApiKeys::LineageId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::update()
                    .table(ApiKeys::Table)
                    .value(ApiKeys::LineageId, Expr::col(ApiKeys::Id))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ApiKeys::Table)
                    .drop_column(ApiKeys::LineageId)
                    .to_owned(),
            )
            .await?;
        for col in [Packages::OwnerId, Packages::OwnerKind] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Packages::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(PackageNames::Table).to_owned())
            .await
    }
}
