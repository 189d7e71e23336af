//! The outbox: leases, release and removal.

use crate::common::migrated_db;
use chrono::{Duration, Utc};
use depot_store::entities::outbox;
use sea_orm::{ActiveModelTrait, Set};
use uuid::Uuid;

/// The outbox holds only unsent messages: a lease hides a message from other relays until it
/// expires or is released, and a confirmed message is removed.
#[tokio::test]
async fn outbox_leases_release_and_remove_messages() {
    use depot_packages::ports::OutboxRepository;
    let db = migrated_db().await;
    let now = Utc::now();
    let mut ids = Vec::new();
    for i in 0..3u8 {
        let id = Uuid::now_v7();
        outbox::ActiveModel {
            id: Set(id),
            queue: Set("operations".into()),
            payload: Set(vec![i]),
            created_at: Set(now),
            locked_until: Set(None),
            headers: Set(None),
        }
        .insert(&db.db)
        .await
        .unwrap();
        ids.push(id);
    }
    let repo = depot_store::SeaOrmPackageRepository::new(db.clone());
    let lease = Duration::seconds(30);
    let ids_of = |m: Vec<depot_packages::ports::OutboxMessage>| -> Vec<Uuid> {
        m.into_iter().map(|m| m.id).collect()
    };

    let first = repo.lease(2, now, lease).await.unwrap();
    assert_eq!(first[0].payload, vec![0], "oldest first, with its payload");
    assert_eq!(ids_of(first), ids[..2], "the two oldest");
    assert_eq!(ids_of(repo.lease(10, now, lease).await.unwrap()), ids[2..]);
    assert!(
        repo.lease(10, now, lease).await.unwrap().is_empty(),
        "all leased"
    );
    assert_eq!(repo.backlog().await.unwrap(), 3, "leased is still unsent");

    repo.release(&ids[1..2]).await.unwrap();
    assert_eq!(ids_of(repo.lease(10, now, lease).await.unwrap()), ids[1..2]);

    repo.remove_sent(&ids[..2]).await.unwrap();
    assert_eq!(repo.backlog().await.unwrap(), 1);
    let later = now + lease + Duration::seconds(1);
    assert_eq!(
        ids_of(repo.lease(10, later, lease).await.unwrap()),
        ids[2..],
        "an expired lease frees the message for another relay; removed ones never come back"
    );
    repo.remove_sent(&ids[2..]).await.unwrap();
    assert_eq!(repo.backlog().await.unwrap(), 0);
    assert!(repo.lease(10, later, lease).await.unwrap().is_empty());
}
