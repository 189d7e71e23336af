//! The port behind `Idempotency-Key` (shared/CONVENTIONS.md): the first response to a POST is
//! stored under (caller, key) and replayed to retries with the same body.

use crate::repo::RepoError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First use of the key: process the request, then `complete` (or `abandon`).
    Started,
    /// The first request with this key is still being processed.
    InProgress,
    /// The key was used with another request body.
    Mismatch,
    /// The first request finished: answer this.
    Replay(StoredResponse),
}

/// How long a claim without a response holds its key: a process that crashed between `begin`
/// and `complete` leaves one behind, which then answers "in progress" only this long (instead
/// of for the record's whole 24 hours); a retry after it runs the request again.
pub const IN_PROGRESS_LEASE: chrono::Duration = chrono::Duration::minutes(5);

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `owner` with the request's hash; expired records, and claims still
    /// without a response after [`IN_PROGRESS_LEASE`], are replaced.
    async fn begin(
        &self,
        owner: &str,
        key: Uuid,
        request_hash: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<Begin, RepoError>;
    async fn complete(
        &self,
        owner: &str,
        key: Uuid,
        response: &StoredResponse,
    ) -> Result<(), RepoError>;
    /// Forgets a claim whose request failed in a way worth retrying (5xx, 409, 429).
    async fn abandon(&self, owner: &str, key: Uuid) -> Result<(), RepoError>;
    /// Deletes expired records.
    async fn purge(&self, now: DateTime<Utc>) -> Result<u64, RepoError>;
}
