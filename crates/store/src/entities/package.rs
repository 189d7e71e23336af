use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "packages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub status: String,
    pub description: Option<String>,
    pub source_url: Option<String>,
    pub sha256: Option<String>,
    pub size_bytes: Option<i64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub revision: i64,
    /// The name's owner (see `package_name`), kept on each version for reads.
    pub owner_kind: Option<String>,
    pub owner_id: Option<Uuid>,
    /// When the package first left Created (its verified fields are frozen from then on).
    pub sealed_at: Option<DateTimeUtc>,
    pub yanked_at: Option<DateTimeUtc>,
    pub yanked_reason: Option<String>,
    /// The text of a detached minisign signature over the artifact.
    pub signature: Option<String>,
    /// When the signature last verified by a trusted key.
    pub signature_verified_at: Option<DateTimeUtc>,
    /// Where a download fetches the signature from, beside `source_url`.
    pub signature_url: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
