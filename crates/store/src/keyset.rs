//! Keyset pagination by UUIDv7 id. Ids are time-ordered, so "newest first" is "id descending",
//! and a cursor is just the last id seen: stable under concurrent inserts, no offsets.

use depot_core::{Cursor, Page, PageRequest};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use uuid::Uuid;

/// Rows after the cursor, newest first, one more than the page holds (to tell if there is more).
pub fn newest_first<E: EntityTrait>(
    query: Select<E>,
    id: E::Column,
    page: &PageRequest,
) -> Select<E> {
    let query = match &page.after {
        Some(after) => query.filter(id.lt(after.id)),
        None => query,
    };
    query.order_by_desc(id).limit(u64::from(page.limit()) + 1)
}

/// The page of rows fetched by [`newest_first`].
pub fn page_by_id<T>(rows: Vec<T>, page: &PageRequest, id_of: impl Fn(&T) -> Uuid) -> Page<T> {
    Page::from_overfetch(rows, page.limit(), |r| Cursor::new("", id_of(r)))
}
