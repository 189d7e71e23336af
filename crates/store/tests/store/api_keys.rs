//! The API-key port: typed outcomes of conditional writes, the usage log.

use crate::common::migrated_db;
use chrono::{DateTime, Duration, Utc};
use depot_api_keys::ports::{ApiKeyRepository, UsageBatch};
use depot_api_keys::{
    ApiKey, AuditEvent, KeyChange, KeyWriteError, NewApiKey, PlainKey, UsageRecord,
};
use depot_store::SeaOrmApiKeyRepository;
use uuid::Uuid;

fn audit(action: &str, target: Uuid, now: DateTime<Utc>) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7(),
        at: now,
        actor: "admin".into(),
        action: action.into(),
        target_id: Some(target),
        client_ip: None,
        details: None,
    }
}

fn new_key(now: DateTime<Utc>) -> NewApiKey {
    let plain = PlainKey::generate(&mut rand::rng());
    let id = Uuid::now_v7();
    NewApiKey {
        hash: plain.hash(),
        key: ApiKey {
            id,
            lineage_id: id,
            name: "store test".into(),
            prefix: plain.visible_prefix(),
            scopes: [depot_core::Permission::PackagesRead].into_iter().collect(),
            rate_limit_per_minute: None,
            created_at: now,
            updated_at: now,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            total_uses: 0,
            rotated_from: None,
            revision: 1,
        },
    }
}

async fn insert_key(repo: &SeaOrmApiKeyRepository, now: DateTime<Utc>) -> ApiKey {
    let new = new_key(now);
    repo.insert(&new, &audit("api_key.create", new.key.id, now))
        .await
        .unwrap();
    new.key
}

/// A conditional write answers `StaleRevision` when the key moved on and `NotFound` when there
/// is none; a rotation of a key revoked meanwhile is stale too.
#[tokio::test]
async fn key_writes_answer_typed_outcomes() {
    let db = migrated_db().await;
    let repo = SeaOrmApiKeyRepository::new(db.db.clone());
    let now = Utc::now();
    let key = insert_key(&repo, now).await;
    let revoke = KeyChange::Revoke { at: now };
    let a = audit("api_key.revoke", key.id, now);
    assert!(matches!(
        repo.change(key.id, &revoke, Some(key.revision + 1), now, &a)
            .await,
        Err(KeyWriteError::StaleRevision)
    ));
    assert!(matches!(
        repo.change(Uuid::now_v7(), &revoke, None, now, &a).await,
        Err(KeyWriteError::NotFound)
    ));
    let revoked = repo
        .change(key.id, &revoke, Some(key.revision), now, &a)
        .await
        .unwrap();
    assert_eq!(revoked.revision, key.revision + 1);
    let successor = new_key(now);
    assert!(matches!(
        repo.rotate(
            key.id,
            revoked.revision,
            Some(now),
            &successor,
            now,
            &audit("api_key.rotate", key.id, now)
        )
        .await,
        Err(KeyWriteError::StaleRevision)
    ));
    let d = audit("api_key.delete", key.id, now);
    assert!(matches!(
        repo.delete(key.id, Some(key.revision), now, &d).await,
        Err(KeyWriteError::StaleRevision)
    ));
    repo.delete(key.id, Some(revoked.revision), now, &d)
        .await
        .unwrap();
    assert!(matches!(
        repo.delete(key.id, None, now, &d).await,
        Err(KeyWriteError::NotFound)
    ));
}

/// Usage records older than the retention go, found by their time-ordered ids; newer ones stay.
#[tokio::test]
async fn usage_purge_removes_only_records_past_the_retention() {
    let db = migrated_db().await;
    let repo = SeaOrmApiKeyRepository::new(db.db.clone());
    let now = Utc::now();
    let key_id = insert_key(&repo, now).await.id;
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

/// The review's race: two rotations of one key read at the same revision both succeeded,
/// leaving two live successors. The revision check is in the update: exactly one wins.
#[tokio::test]
async fn concurrent_rotations_of_one_key_leave_one_successor() {
    let db = migrated_db().await;
    let repo = SeaOrmApiKeyRepository::new(db.db.clone());
    let now = Utc::now();
    let key = insert_key(&repo, now).await;
    let successor_of = |id| {
        let mut k = new_key(now);
        k.key.rotated_from = Some(id);
        k
    };
    let (first, second) = (successor_of(key.id), successor_of(key.id));
    let (a, b) = (
        audit("api_key.rotate", key.id, now),
        audit("api_key.rotate", key.id, now),
    );
    let (x, y) = tokio::join!(
        repo.rotate(key.id, key.revision, Some(now), &first, now, &a),
        repo.rotate(key.id, key.revision, Some(now), &second, now, &b)
    );
    match (&x, &y) {
        (Ok(()), Err(KeyWriteError::StaleRevision))
        | (Err(KeyWriteError::StaleRevision), Ok(())) => {}
        other => panic!("exactly one rotation must win: {other:?}"),
    }
    // Nor later, at the key's new revision: a key rotates into one successor.
    let now_rev = repo.get(key.id).await.unwrap().revision;
    let third = successor_of(key.id);
    let c = audit("api_key.rotate", key.id, now);
    assert!(matches!(
        repo.rotate(key.id, now_rev, Some(now), &third, now, &c)
            .await,
        Err(KeyWriteError::StaleRevision)
    ));
}
