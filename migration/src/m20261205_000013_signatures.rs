//! Detached signatures: a package may carry the text of a minisign signature over its
//! artifact (`signature`), uploaded or fetched from `signature_url` beside `source_url`, and
//! when it last verified by a trusted key (`signature_verified_at`; the key is the one the
//! signature names). `signature_url` is one of the verified fields that freeze when the package
//! is sealed.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Packages {
    Table,
    Signature,
    SignatureVerifiedAt,
    SignatureUrl,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        for column in [
            text_null(Packages::Signature),
            timestamp_with_time_zone_null(Packages::SignatureVerifiedAt),
            string_len_null(Packages::SignatureUrl, 2000),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(Packages::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            Packages::SignatureUrl,
            Packages::SignatureVerifiedAt,
            Packages::Signature,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Packages::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
