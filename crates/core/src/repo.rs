//! Repository conventions shared by every component: keyset pages, opaque cursors, and the
//! errors an adapter may answer with.

use crate::error::ValidationError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const DEFAULT_PAGE_LIMIT: u32 = 50;
pub const MAX_PAGE_LIMIT: u32 = 200;

/// A keyset position: the sort key of the last item seen and its id (the tie-breaker).
///
/// On the wire it is opaque (URL-safe base64 of a small JSON document); clients must not build one.
/// Keyset cursors stay stable under concurrent inserts, unlike offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "k")]
    pub key: String,
    #[serde(rename = "i")]
    pub id: Uuid,
}

impl Cursor {
    pub fn new(key: impl Into<String>, id: Uuid) -> Self {
        Self {
            key: key.into(),
            id,
        }
    }

    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a cursor always serialises");
        URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(raw: &str) -> Result<Self, ValidationError> {
        let invalid = || ValidationError::field("cursor", "is not a cursor this service issued");
        if raw.len() > 1024 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        serde_json::from_slice(&bytes).map_err(|_| invalid())
    }
}

/// What page of a collection to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    limit: u32,
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// Validates `limit` (1–200, default 50) and decodes `cursor`, naming each failing field.
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> Result<Self, ValidationError> {
        let mut errors = Vec::new();
        let limit = match limit {
            None => Some(DEFAULT_PAGE_LIMIT),
            Some(n) if (1..=i64::from(MAX_PAGE_LIMIT)).contains(&n) => Some(n as u32),
            Some(_) => {
                errors.push(crate::error::FieldError {
                    field: "limit".into(),
                    message: format!("must be between 1 and {MAX_PAGE_LIMIT}"),
                });
                None
            }
        };
        let after = match cursor.filter(|c| !c.is_empty()).map(Cursor::decode) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                errors.extend(e.errors);
                None
            }
        };
        match ValidationError::from_errors(errors) {
            Some(e) => Err(e),
            None => Ok(Self {
                limit: limit.unwrap_or(DEFAULT_PAGE_LIMIT),
                after,
            }),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }
}

/// One page of a collection; `next_cursor` is `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in keyset order: the extra row, when
    /// present, only tells that there is a next page.
    pub fn from_overfetch(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> Cursor) -> Self {
        let limit = limit as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(&cursor_of)
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

/// What any repository call can fail with. Outcomes a caller must tell apart (a duplicate, a
/// stale revision, a busy resource) are not here: each port method that has them returns its
/// own error enum, made by the adapter from constraints and row counts, wrapping this one for
/// the rest.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("not found")]
    NotFound,
    /// The store could not be reached (connection refused, pool timed out).
    #[error("the store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("unexpected store error")]
    Unexpected(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn page_request_defaults_and_bounds() {
        assert_eq!(PageRequest::parse(None, None).unwrap().limit(), 50);
        assert_eq!(PageRequest::parse(Some(200), None).unwrap().limit(), 200);
        assert_eq!(PageRequest::parse(Some(1), None).unwrap().limit(), 1);
        let err = PageRequest::parse(Some(0), Some("%%%")).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["limit", "cursor"]);
        assert!(PageRequest::parse(Some(201), None).is_err());
        assert!(PageRequest::parse(None, Some("")).unwrap().after.is_none());
    }

    #[test]
    fn overfetch_sets_next_cursor_only_when_there_is_more() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let page = Page::from_overfetch(ids.clone(), 2, |id| Cursor::new("", *id));
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next_cursor.unwrap().id, ids[1]);
        let page = Page::from_overfetch(ids[..2].to_vec(), 2, |id| Cursor::new("", *id));
        assert!(page.next_cursor.is_none());
    }

    proptest! {
        #[test]
        fn cursor_round_trips(key in ".{0,100}", id in any::<u128>()) {
            let c = Cursor::new(key, Uuid::from_u128(id));
            prop_assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }

        #[test]
        fn garbage_never_panics(raw in ".{0,200}") {
            let _ = Cursor::decode(&raw);
        }
    }
}
