//! A migrated database of this run's backend per test.

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use uuid::Uuid;

/// What keeps a test's database alive: the temp directory of its SQLite file, or the name of
/// its PostgreSQL database (dropped when this is).
pub struct TestDb {
    pub db: DatabaseConnection,
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestDb {
    type Target = DatabaseConnection;
    fn deref(&self) -> &DatabaseConnection {
        &self.db
    }
}

pub fn postgres_url() -> Option<String> {
    std::env::var("DEPOT_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
}

pub fn options(url: String) -> depot_store::DatabaseOptions {
    depot_store::DatabaseOptions {
        url,
        max_connections: 5,
        min_connections: 0,
        connect_timeout: std::time::Duration::from_secs(5),
        acquire_timeout: std::time::Duration::from_secs(5),
        log_statements: false,
    }
}

/// A fresh, migrated database: PostgreSQL when `DEPOT_TEST_POSTGRES_URL` is set (and then it
/// must be reachable: the test fails loudly otherwise), else a temp SQLite file.
pub async fn migrated_db() -> TestDb {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut pg = None;
    let url = match postgres_url() {
        Some(base) => {
            let name = format!("depot_store_test_{}", Uuid::new_v4().simple());
            let admin = Database::connect(&base).await.unwrap_or_else(|e| {
                panic!("DEPOT_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {e}")
            });
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("creating the test database");
            admin.close().await.ok();
            let mut url = url::Url::parse(&base).expect("DEPOT_TEST_POSTGRES_URL is a URL");
            url.set_path(&format!("/{name}"));
            pg = Some((base, name));
            url.to_string()
        }
        None => format!("sqlite://{}", dir.path().join("depot.db").display()),
    };
    let db = depot_store::connect(&options(url)).await.unwrap();
    depot_store::migrate_up(&db).await.unwrap();
    TestDb { db, pg, _dir: dir }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, name)) = self.pg.take() {
            // Drop the database from a fresh runtime (Drop cannot await).
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    if let Ok(admin) = Database::connect(&base).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                    }
                });
            })
            .join();
        }
    }
}
