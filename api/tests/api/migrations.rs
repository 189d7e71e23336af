use crate::helpers::test_settings;
use depot_store::{MigrateCommand, migrate, migration_status};

/// Every migration has a working `down`: up → down (all) → up, on this run's backend.
#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let (settings, _resources) = test_settings().await;
    let db = depot_store::connect(&settings.database_options())
        .await
        .unwrap();
    migrate(&db, MigrateCommand::Up).await.unwrap();
    let status = migration_status(&db).await.unwrap();
    assert!(!status.is_empty());
    assert!(status.iter().all(|(_, applied)| *applied), "{status:?}");

    migrate(&db, MigrateCommand::Down { steps: None })
        .await
        .unwrap();
    let status = migration_status(&db).await.unwrap();
    assert!(status.iter().all(|(_, applied)| !*applied), "{status:?}");

    migrate(&db, MigrateCommand::Up).await.unwrap();
    let status = migration_status(&db).await.unwrap();
    assert!(status.iter().all(|(_, applied)| *applied), "{status:?}");

    migrate(&db, MigrateCommand::Fresh).await.unwrap();
    assert!(migration_status(&db).await.unwrap().iter().all(|(_, a)| *a));
    db.close().await.ok();
}
