//! The store's housekeeping paths, on this run's backend (SQLite, or PostgreSQL when
//! DEPOT_TEST_POSTGRES_URL is set): the outbox's leases and removal, the usage log's purge.

use crate::helpers::{spawn_app, test_settings};
use chrono::{Duration, Utc};
use depot_store::entities::outbox;
use depot_store::{MigrateCommand, migrate};
use sea_orm::{ActiveModelTrait, Set};
use uuid::Uuid;

/// The outbox holds only unsent messages: a lease hides a message from other relays until it
/// expires or is released, and a confirmed message is removed.
#[tokio::test]
async fn outbox_leases_release_and_remove_messages() {
    use depot_packages::ports::OutboxRepository;
    let (settings, _resources) = test_settings().await;
    let db = depot_store::connect(&settings.database_options())
        .await
        .unwrap();
    migrate(&db, MigrateCommand::Up).await.unwrap();
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
        .insert(&db)
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
    db.close().await.ok();
}

/// Usage records older than the retention go, found by their time-ordered ids; newer ones stay.
#[tokio::test]
async fn usage_purge_removes_only_records_past_the_retention() {
    use depot_api_keys::UsageRecord;
    use depot_api_keys::ports::{ApiKeyRepository, UsageBatch};
    let app = spawn_app().await;
    let (key_id, _) = app
        .create_key(&["packages:read"], serde_json::json!({}))
        .await;
    let key_id: Uuid = key_id.parse().unwrap();
    let db = depot_api::bootstrap::connect_database(&app.settings)
        .await
        .unwrap();
    let repo = depot_store::SeaOrmApiKeyRepository::new(db);
    let now = Utc::now();
    let record = |at: chrono::DateTime<Utc>| UsageRecord {
        id: uuid::Builder::from_unix_timestamp_millis(at.timestamp_millis() as u64, &rand_bytes())
            .into_uuid(),
        key_id,
        at,
        method: "GET".into(),
        route: "/api/v1/packages".into(),
        status: 200,
        client_ip: None,
        user_agent: None,
    };
    let old = record(now - Duration::days(31));
    let edge = record(now - Duration::days(30) + Duration::seconds(1));
    let new = record(now);
    let batch = UsageBatch {
        counts: [(key_id, (3, now))].into_iter().collect(),
        records: vec![old.clone(), edge.clone(), new.clone()],
    };
    repo.record_usage(&batch).await.unwrap();
    let page = depot_core::PageRequest::parse(Some(200), None).unwrap();
    assert_eq!(repo.usage(key_id, &page).await.unwrap().items.len(), 3);
    let removed = repo
        .purge(now - Duration::days(30), now - Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let kept: Vec<Uuid> = repo
        .usage(key_id, &page)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        kept,
        vec![new.id, edge.id],
        "newest first, the old one gone"
    );
}

fn rand_bytes() -> [u8; 10] {
    *Uuid::new_v4().as_bytes().first_chunk().unwrap()
}
