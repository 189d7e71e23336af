//! API keys (stored as SHA-256 hashes), their usage log, the admin audit log, and the change log
//! every replica polls to invalidate its key cache.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    Name,
    KeyHash,
    KeyPrefix,
    Scopes,
    RateLimitPerMinute,
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
    RevokedAt,
    LastUsedAt,
    TotalUses,
    RotatedFrom,
    Revision,
}

#[derive(DeriveIden)]
enum ApiKeyUsage {
    Table,
    Id,
    KeyId,
    At,
    Method,
    Route,
    Status,
    ClientIp,
    UserAgent,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    At,
    Actor,
    Action,
    TargetId,
    ClientIp,
    Details,
}

#[derive(DeriveIden)]
enum ApiKeyChanges {
    Table,
    Id,
    KeyId,
    At,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(uuid(ApiKeys::Id).primary_key())
                    .col(string_len(ApiKeys::Name, 100))
                    .col(binary_len(ApiKeys::KeyHash, 32).unique_key())
                    .col(string_len(ApiKeys::KeyPrefix, 16))
                    .col(string_len(ApiKeys::Scopes, 500))
                    .col(integer_null(ApiKeys::RateLimitPerMinute))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone(ApiKeys::UpdatedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::LastUsedAt))
                    .col(big_integer(ApiKeys::TotalUses).default(0))
                    .col(uuid_null(ApiKeys::RotatedFrom))
                    .col(big_integer(ApiKeys::Revision).default(1))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_keys_name")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::Name)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKeyUsage::Table)
                    .col(uuid(ApiKeyUsage::Id).primary_key())
                    .col(uuid(ApiKeyUsage::KeyId))
                    .col(timestamp_with_time_zone(ApiKeyUsage::At))
                    .col(string_len(ApiKeyUsage::Method, 10))
                    .col(string_len(ApiKeyUsage::Route, 200))
                    .col(small_integer(ApiKeyUsage::Status))
                    .col(string_len_null(ApiKeyUsage::ClientIp, 64))
                    .col(string_len_null(ApiKeyUsage::UserAgent, 300))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_key_usage_key")
                            .from(ApiKeyUsage::Table, ApiKeyUsage::KeyId)
                            .to(ApiKeys::Table, ApiKeys::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_key_usage_key_id")
                    .table(ApiKeyUsage::Table)
                    .col(ApiKeyUsage::KeyId)
                    .col(ApiKeyUsage::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_key_usage_at")
                    .table(ApiKeyUsage::Table)
                    .col(ApiKeyUsage::At)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(uuid(AuditEvents::Id).primary_key())
                    .col(timestamp_with_time_zone(AuditEvents::At))
                    .col(string_len(AuditEvents::Actor, 100))
                    .col(string_len(AuditEvents::Action, 64))
                    .col(uuid_null(AuditEvents::TargetId))
                    .col(string_len_null(AuditEvents::ClientIp, 64))
                    .col(json_null(AuditEvents::Details))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKeyChanges::Table)
                    .col(uuid(ApiKeyChanges::Id).primary_key())
                    .col(uuid(ApiKeyChanges::KeyId))
                    .col(timestamp_with_time_zone(ApiKeyChanges::At))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_api_key_changes_at")
                    .table(ApiKeyChanges::Table)
                    .col(ApiKeyChanges::At)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ApiKeyChanges::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            ApiKeyUsage::Table.into_iden(),
            ApiKeys::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
