use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
/// Messages waiting for the broker: the relay deletes each once the broker confirmed it.
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub queue: String,
    pub payload: Vec<u8>,
    pub created_at: DateTimeUtc,
    pub locked_until: Option<DateTimeUtc>,
    /// JSON object of headers to publish with the message (trace context).
    pub headers: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
