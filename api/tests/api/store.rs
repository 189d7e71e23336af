//! The store's housekeeping and failure paths, on this run's backend (SQLite, or PostgreSQL when
//! DEPOT_TEST_POSTGRES_URL is set): the outbox's leases and removal, the usage log's purge, a
//! refused batch.

use crate::helpers::{spawn_app, test_settings};
use chrono::{Duration, Utc};
use depot_store::entities::outbox;
use depot_store::{MigrateCommand, migrate};
use sea_orm::{ActiveModelTrait, Set};
use uuid::Uuid;

/// A migrated database of this run's backend, and what keeps it alive.
async fn migrated_db() -> (sea_orm::DatabaseConnection, crate::helpers::TestResources) {
    let (settings, resources) = test_settings().await;
    let db = depot_store::connect(&settings.database_options())
        .await
        .unwrap();
    migrate(&db, MigrateCommand::Up).await.unwrap();
    (db, resources)
}

/// The outbox holds only unsent messages: a lease hides a message from other relays until it
/// expires or is released, and a confirmed message is removed.
#[tokio::test]
async fn outbox_leases_release_and_remove_messages() {
    use depot_packages::ports::OutboxRepository;
    let (db, _resources) = migrated_db().await;
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

/// Depot's PostgreSQL connections plan each prepared statement once (generic plans) and prefer
/// indexes, unless the URL's `options` say otherwise.
#[tokio::test]
#[ignore = "needs PostgreSQL; run with --include-ignored (scripts/test.sh does)"]
async fn postgres_connections_plan_once_and_prefer_indexes_unless_the_url_says_otherwise() {
    use sea_orm::{ConnectionTrait, Statement};
    let (settings, _resources) = test_settings().await;
    assert!(
        settings.database.url.starts_with("postgres"),
        "DEPOT_TEST_POSTGRES_URL must be set for this test"
    );
    let show = async |url: &str| -> (String, String) {
        let mut options = settings.database_options();
        options.url = url.to_owned();
        let db = depot_store::connect(&options).await.unwrap();
        let mut values = Vec::new();
        for name in ["plan_cache_mode", "enable_seqscan"] {
            let row = db
                .query_one_raw(Statement::from_string(
                    db.get_database_backend(),
                    format!("SHOW {name}"),
                ))
                .await
                .unwrap()
                .unwrap();
            values.push(row.try_get_by_index::<String>(0).unwrap());
        }
        db.close().await.ok();
        (values[0].clone(), values[1].clone())
    };
    let url = settings.database.url.clone();
    assert_eq!(
        show(&url).await,
        ("force_generic_plan".into(), "off".into())
    );
    let sep = if url.contains('?') { '&' } else { '?' };
    let custom = format!("{url}{sep}options=-c%20plan_cache_mode%3Dforce_custom_plan");
    assert_eq!(
        show(&custom).await,
        ("force_custom_plan".into(), "off".into()),
        "the URL's plan_cache_mode wins, the other setting stays"
    );
    let seqscan = format!("{url}{sep}options=-c%20enable_seqscan%3Don");
    assert_eq!(
        show(&seqscan).await,
        ("force_generic_plan".into(), "on".into())
    );
}

/// A batch the database refuses as a whole is run again call by call: only the call that
/// cannot be written fails, its bystanders in the batch go through.
#[tokio::test]
async fn a_refused_batch_fails_only_the_call_that_caused_it() {
    use depot_packages::model::{Operation, OperationKind, Package};
    use depot_packages::ports::{
        OperationRepository, OutboxMessage, OutboxRepository, PackageRepository, StartError,
    };
    let (db, _resources) = migrated_db().await;
    let repo = depot_store::SeaOrmPackageRepository::new(db.clone());
    let now = Utc::now();
    let mut packages = Vec::new();
    for i in 0..6 {
        let p = Package::created(format!("batch-{i}"), "1.0".into(), now);
        repo.insert(&p).await.unwrap();
        packages.push(p);
    }
    // Six downloads started at once (one batch); two carry the same outbox message id, which
    // the outbox's primary key refuses: the batch's transaction fails as a whole.
    let shared_message = Uuid::now_v7();
    let calls: Vec<(Operation, OutboxMessage)> = packages
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let op = Operation::pending(OperationKind::Download, p.id, now);
            let message = OutboxMessage {
                id: if i == 1 || i == 4 {
                    shared_message
                } else {
                    Uuid::now_v7()
                },
                queue: "operations".into(),
                payload: op.id.as_bytes().to_vec(),
                created_at: now,
                headers: Default::default(),
            };
            (op, message)
        })
        .collect();
    let results = futures::future::join_all(calls.iter().map(|(op, m)| repo.start(op, m))).await;
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "one of the two duplicates fails: {results:?}"
    );
    assert!(failed[0] == 1 || failed[0] == 4, "{results:?}");
    assert!(matches!(
        results[failed[0]],
        Err(StartError::Repo(depot_core::RepoError::Conflict(_)))
    ));
    for (i, (op, _)) in calls.iter().enumerate() {
        let stored = OperationRepository::get(&repo, op.id).await;
        assert_eq!(stored.is_ok(), i != failed[0], "operation {i}: {stored:?}");
    }
    assert_eq!(
        repo.backlog().await.unwrap(),
        5,
        "one outbox message per started operation"
    );
    db.close().await.ok();
}

/// An operation another process ended reaches the watch's followers as soon as it is reported
/// changed, not at the watch's next interval read (an hour away here).
#[tokio::test]
async fn a_watch_reads_an_operation_reported_changed_at_once() {
    use depot_packages::model::{Operation, OperationKind, OperationStatus, Package};
    use depot_packages::ports::{OperationRepository, OutboxMessage, Outcome, PackageRepository};
    use depot_packages::watch::OperationWatch;
    use std::sync::Arc;
    let (db, _resources) = migrated_db().await;
    let repo = depot_store::SeaOrmPackageRepository::new(db.clone());
    let now = Utc::now();
    let package = Package::created("watched".into(), "1.0".into(), now);
    repo.insert(&package).await.unwrap();
    let op = Operation::pending(OperationKind::Download, package.id, now);
    let message = OutboxMessage {
        id: Uuid::now_v7(),
        queue: "operations".into(),
        payload: op.id.as_bytes().to_vec(),
        created_at: now,
        headers: Default::default(),
    };
    repo.start(&op, &message).await.unwrap();

    let watch = Arc::new(OperationWatch::new(
        Arc::new(depot_store::SeaOrmPackageRepository::new(db.clone())),
        std::time::Duration::from_secs(3600),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(watch.clone().run(stopped));
    let mut rx = watch.follow(op.clone());
    // Let the watch make its first read (the operation is still pending).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let claimed = repo.claim(op.id, Utc::now()).await.unwrap();
    repo.finish(&claimed.operation, &Outcome::Succeeded, Utc::now())
        .await
        .unwrap()
        .expect("this call ends it");
    watch.changed(&[op.id, Uuid::now_v7()]);
    let seen = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        rx.wait_for(|o| o.status == OperationStatus::Succeeded),
    )
    .await;
    assert!(
        matches!(seen, Ok(Ok(_))),
        "the follower did not see the operation succeed"
    );
    let _ = stop.send(true);
    running.await.unwrap();
    db.close().await.ok();
}

/// On PostgreSQL, ended operations are announced on `depot_operations`: a finish batch in its
/// own statement, a cancellation just after its commit.
#[tokio::test]
#[ignore = "needs PostgreSQL; run with --include-ignored (scripts/test.sh does)"]
async fn postgres_announces_finished_and_cancelled_operations() {
    use depot_packages::model::{Operation, OperationKind, Package};
    use depot_packages::ports::{OperationRepository, OutboxMessage, Outcome, PackageRepository};
    use sea_orm::sqlx::postgres::PgListener;
    let (db, _resources) = migrated_db().await;
    assert_eq!(
        db.get_database_backend(),
        sea_orm::DatabaseBackend::Postgres,
        "DEPOT_TEST_POSTGRES_URL must be set for this test"
    );
    let mut listener = PgListener::connect_with(db.get_postgres_connection_pool())
        .await
        .unwrap();
    listener
        .listen(depot_store::notify::OPERATIONS_CHANNEL)
        .await
        .unwrap();
    let repo = depot_store::SeaOrmPackageRepository::new(db.clone());
    let now = Utc::now();
    let mut ops = Vec::new();
    for name in ["finished", "cancelled"] {
        let package = Package::created(name.into(), "1.0".into(), now);
        repo.insert(&package).await.unwrap();
        let op = Operation::pending(OperationKind::Download, package.id, now);
        let message = OutboxMessage {
            id: Uuid::now_v7(),
            queue: "operations".into(),
            payload: op.id.as_bytes().to_vec(),
            created_at: now,
            headers: Default::default(),
        };
        repo.start(&op, &message).await.unwrap();
        ops.push(op);
    }
    let mut next = async || {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), listener.recv())
            .await
            .expect("a notification")
            .unwrap();
        n.payload().to_owned()
    };
    let claimed = repo.claim(ops[0].id, Utc::now()).await.unwrap();
    repo.finish(&claimed.operation, &Outcome::Succeeded, Utc::now())
        .await
        .unwrap();
    assert_eq!(next().await, ops[0].id.to_string());
    repo.request_cancel(ops[1].id, Utc::now()).await.unwrap();
    assert_eq!(next().await, ops[1].id.to_string());
    drop(listener);
    db.close().await.ok();
}
