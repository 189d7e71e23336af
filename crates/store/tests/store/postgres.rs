//! What only PostgreSQL has: connection settings and change notifications. These need
//! `DEPOT_TEST_POSTGRES_URL` and run with `--include-ignored` (`make test` does).

use crate::common::migrated_db;
use chrono::Utc;
use uuid::Uuid;

/// Depot's PostgreSQL connections plan each prepared statement once (generic plans) and prefer
/// indexes, unless the URL's `options` say otherwise.
#[tokio::test]
#[ignore = "needs PostgreSQL; run with --include-ignored (scripts/test.sh does)"]
async fn postgres_connections_plan_once_and_prefer_indexes_unless_the_url_says_otherwise() {
    use sea_orm::{ConnectionTrait, Statement};
    let test = migrated_db().await;
    let url =
        crate::common::postgres_url().expect("DEPOT_TEST_POSTGRES_URL must be set for this test");
    // This test's own database, reached with the URL's options varied.
    let url = {
        let mut u = url::Url::parse(&url).unwrap();
        let name = test
            .query_one_raw(sea_orm::Statement::from_string(
                test.get_database_backend(),
                "SELECT current_database()",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<String>(0)
            .unwrap();
        u.set_path(&format!("/{name}"));
        u.to_string()
    };
    let show = async |url: &str| -> (String, String) {
        let db = depot_store::connect(&crate::common::options(url.to_owned()))
            .await
            .unwrap();
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

/// On PostgreSQL, ended operations are announced on `depot_operations`: a finish batch in its
/// own statement, a cancellation just after its commit.
#[tokio::test]
#[ignore = "needs PostgreSQL; run with --include-ignored (scripts/test.sh does)"]
async fn postgres_announces_finished_and_cancelled_operations() {
    use depot_packages::model::{Operation, OperationKind, Package};
    use depot_packages::ports::{OperationRepository, OutboxMessage, Outcome, PackageRepository};
    use sea_orm::sqlx::postgres::PgListener;
    let db = migrated_db().await;
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
    repo.request_cancel(
        ops[1].id,
        Utc::now(),
        Utc::now() - chrono::Duration::minutes(5),
    )
    .await
    .unwrap();
    assert_eq!(next().await, ops[1].id.to_string());
    drop(listener);
}

/// A start in flight holds only a KEY SHARE lock on its package, which does not exclude an
/// update: a PATCH of a frozen field (sha256) committed while the start was committing its
/// operation, so the download verified a digest that changed under it. The frozen-field update
/// waits for the start, then sees its operation (409 `operation_in_progress`).
#[tokio::test]
#[ignore = "needs PostgreSQL; run with --include-ignored (scripts/test.sh does)"]
async fn a_frozen_field_update_waits_for_a_committing_start_and_sees_its_operation() {
    use depot_packages::model::{Package, PackageFields};
    use depot_packages::ports::{PackageRepository, UpdateError};
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let test = migrated_db().await;
    assert!(
        crate::common::postgres_url().is_some(),
        "DEPOT_TEST_POSTGRES_URL must be set for this test"
    );
    let repo = depot_store::SeaOrmPackageRepository::new(test.db.clone());
    let now = Utc::now();
    let p = Package::created("raced".into(), "1".into(), now);
    repo.insert(&p).await.unwrap();
    // The start's transaction as `start_batch` runs it: the package locked FOR KEY SHARE, the
    // operation inserted, not committed yet.
    let start = test.db.begin().await.unwrap();
    start
        .execute_unprepared(&format!(
            "SELECT id FROM packages WHERE id = '{}' FOR KEY SHARE",
            p.id
        ))
        .await
        .unwrap();
    start
        .execute_unprepared(&format!(
            "INSERT INTO operations (id, kind, package_id, status, progress, cancel_requested, \
             attempts, created_at, updated_at) VALUES ('{}', 'download', '{}', 'pending', 0, \
             false, 0, now(), now())",
            Uuid::now_v7(),
            p.id
        ))
        .await
        .unwrap();
    let patch = tokio::spawn({
        let repo = repo.clone();
        async move {
            let sha = PackageFields {
                sha256: Some(Some("b".repeat(64))),
                ..Default::default()
            };
            repo.update(p.id, &sha, None, Utc::now()).await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!patch.is_finished(), "the update went ahead of the start");
    start.commit().await.unwrap();
    let outcome = patch.await.unwrap();
    assert!(matches!(outcome, Err(UpdateError::Busy(_))), "{outcome:?}");
    assert_eq!(repo.get(p.id).await.unwrap().sha256, None);
}

/// One active version per name on PostgreSQL: `active_versions` follows every write of
/// `packages.status` and `name`, hand edits included (its triggers), so the database refuses a
/// second active version; and no index of `packages` covers `status`, so the lifecycle's status
/// changes stay in-place (HOT) updates, which an index on it (the exclusion constraint this
/// replaced) cost about a fifth of the lifecycle's throughput.
#[tokio::test]
#[ignore = "needs PostgreSQL; run with --include-ignored (scripts/test.sh does)"]
async fn the_active_version_of_a_name_is_kept_by_the_database_without_indexing_the_status() {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    let test = migrated_db().await;
    assert_eq!(
        test.get_database_backend(),
        DatabaseBackend::Postgres,
        "DEPOT_TEST_POSTGRES_URL must be set for this test"
    );
    let exec = async |sql: String| test.execute_unprepared(&sql).await;
    let active = async || -> Vec<(String, Uuid)> {
        test.query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT name, package_id FROM active_versions ORDER BY name",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.try_get("", "name").unwrap(),
                r.try_get("", "package_id").unwrap(),
            )
        })
        .collect()
    };
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (id, version) in ids.iter().zip(["1.0.0", "2.0.0", "3.0.0"]) {
        exec(format!(
            "INSERT INTO packages (id, name, version, status, revision, created_at, updated_at) \
             VALUES ('{id}', 'nginx', '{version}', 'downloaded', 1, now(), now())"
        ))
        .await
        .unwrap();
    }
    let set = async |id: Uuid, status: &str| {
        exec(format!(
            "UPDATE packages SET status = '{status}' WHERE id = '{id}'"
        ))
        .await
    };
    set(ids[0], "active").await.unwrap();
    assert_eq!(active().await, vec![("nginx".into(), ids[0])]);
    // A second active version of the name is refused, and nothing changes.
    let refused = set(ids[1], "active").await;
    assert!(
        matches!(&refused, Err(e) if depot_store::error::is_unique_violation(e)),
        "{refused:?}"
    );
    assert_eq!(active().await, vec![("nginx".into(), ids[0])]);
    // One statement switching the name, whichever row it writes first.
    for (from, to) in [(ids[0], ids[2]), (ids[2], ids[0])] {
        exec(format!(
            "UPDATE packages SET status = CASE WHEN id = '{to}' THEN 'active' ELSE 'downloaded' END \
             WHERE id IN ('{from}', '{to}')"
        ))
        .await
        .unwrap();
        assert_eq!(active().await, vec![("nginx".into(), to)]);
    }
    // A rename moves it; a deactivation or a deletion removes it.
    exec(format!(
        "UPDATE packages SET name = 'nginx-renamed' WHERE id = '{}'",
        ids[0]
    ))
    .await
    .unwrap();
    assert_eq!(active().await, vec![("nginx-renamed".into(), ids[0])]);
    set(ids[1], "active").await.unwrap();
    assert_eq!(
        active().await,
        vec![("nginx".into(), ids[1]), ("nginx-renamed".into(), ids[0])]
    );
    set(ids[1], "downloaded").await.unwrap();
    exec(format!("DELETE FROM packages WHERE id = '{}'", ids[0]))
        .await
        .unwrap();
    assert_eq!(active().await, vec![]);

    let covering_status: Vec<String> = test
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT c.relname::text AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = 'packages'::regclass AND (\
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indrelid \
                       AND a.attname = 'status' AND a.attnum = ANY(i.indkey)) \
               OR pg_get_expr(i.indpred, i.indrelid) LIKE '%status%' \
               OR pg_get_expr(i.indexprs, i.indrelid) LIKE '%status%')",
        ))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("", "name").unwrap())
        .collect();
    assert_eq!(covering_status, Vec::<String>::new());
}
