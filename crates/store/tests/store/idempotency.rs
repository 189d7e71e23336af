//! The idempotency port: claims, replays, and the lease of a claim whose process never answered.

use crate::common::migrated_db;
use chrono::{Duration, Utc};
use depot_core::idempotency::{Begin, IN_PROGRESS_LEASE, IdempotencyStore, StoredResponse};
use depot_store::SeaOrmIdempotencyStore;
use uuid::Uuid;

/// The review's finding: a crash between `begin` and `complete` left the key answering 409
/// "in progress" for 24 hours. A claim without a response holds the key for the lease only.
#[tokio::test]
async fn a_claim_that_never_completed_holds_its_key_only_for_the_lease() {
    let db = migrated_db().await;
    let store = SeaOrmIdempotencyStore::new(db.db.clone());
    let (owner, key, t0) = ("api_key:x", Uuid::new_v4(), Utc::now());
    let keep = t0 + Duration::hours(24);
    assert_eq!(
        store.begin(owner, key, "h", t0, keep).await.unwrap(),
        Begin::Started
    );
    // The process dies here: no complete, no abandon.
    let soon = t0 + Duration::minutes(1);
    assert_eq!(
        store.begin(owner, key, "h", soon, keep).await.unwrap(),
        Begin::InProgress
    );
    let later = t0 + IN_PROGRESS_LEASE + Duration::seconds(1);
    assert_eq!(
        store.begin(owner, key, "h", later, keep).await.unwrap(),
        Begin::Started
    );
    // A completed record is replayed for its whole life, lease or not.
    let done = StoredResponse {
        status: 201,
        headers: vec![],
        body: b"{}".to_vec(),
    };
    store.complete(owner, key, &done).await.unwrap();
    let much_later = later + IN_PROGRESS_LEASE * 10;
    assert_eq!(
        store
            .begin(owner, key, "h", much_later, keep)
            .await
            .unwrap(),
        Begin::Replay(done)
    );
}
