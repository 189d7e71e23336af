use depot_api::bootstrap::Adapters;
use depot_api::settings::{QueueKind, Settings};
use depot_api::startup::Application;
use sea_orm::{ConnectionTrait, Database};
use std::sync::Once;
use uuid::Uuid;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    _resources: TestResources,
}

/// What a test's settings point at: a temp SQLite directory or a PostgreSQL database created
/// for the test. Dropping it removes them.
pub struct TestResources {
    pg_database: Option<(String, String)>,
    _sqlite_dir: Option<tempfile::TempDir>,
}

/// Which backends this run targets, for tests that report it.
pub fn postgres_url() -> Option<String> {
    std::env::var("DEPOT_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.is_empty())
}

pub fn amqp_url() -> Option<String> {
    std::env::var("DEPOT_TEST_AMQP_URL")
        .ok()
        .filter(|v| !v.is_empty())
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // TEST_LOG=debug shows the app's logs; silent otherwise.
        if let Ok(level) = std::env::var("TEST_LOG") {
            let mut log = Settings::defaults().log;
            log.level = level;
            depot_api::telemetry::init(&log);
        }
    });
}

/// `postgres://u@h:5432/test` with its database replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    let mut url = reqwest::Url::parse(base).expect("DEPOT_TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Settings for one test: random port, its own database, its own queue names.
pub async fn test_settings() -> (Settings, TestResources) {
    init_logs();
    let mut settings = Settings::defaults();
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.server.workers = 1;
    settings.server.shutdown_grace_seconds = 1;
    settings.database.max_connections = 5;
    let mut pg = None;
    let mut dir = None;
    if let Some(base) = postgres_url() {
        let name = format!("depot_test_{}", Uuid::new_v4().simple());
        let admin = Database::connect(&base).await.unwrap_or_else(|e| {
            panic!("DEPOT_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {e}")
        });
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("creating the test database");
        admin.close().await.ok();
        settings.database.url = with_database(&base, &name);
        settings.database.auto_migrate = Some(true);
        pg = Some((base, name));
    } else {
        let tmp = tempfile::tempdir().expect("a temp dir");
        settings.database.url = format!("sqlite://{}", tmp.path().join("depot.db").display());
        dir = Some(tmp);
    }
    if let Some(amqp) = amqp_url() {
        settings.queue.kind = Some(QueueKind::Rabbitmq);
        settings.queue.amqp_url = Some(amqp);
        settings.queue.queue_prefix = format!("depot-test-{}.", Uuid::new_v4().simple());
    }
    (
        settings,
        TestResources {
            pg_database: pg,
            _sqlite_dir: dir,
        },
    )
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let (mut settings, resources) = test_settings().await;
    customize(&mut settings);
    let app = Application::build(settings.clone())
        .await
        .unwrap_or_else(|e| panic!("the app failed to start: {e}"));
    launch(app, resources)
}

/// Starts the app with adapters the test built itself (e.g. a queue it will close).
pub async fn spawn_app_with_adapters(build: impl AsyncFnOnce(&Settings) -> Adapters) -> TestApp {
    let (settings, resources) = test_settings().await;
    let adapters = build(&settings).await;
    let app = Application::build_with(settings.clone(), adapters)
        .await
        .unwrap_or_else(|e| panic!("the app failed to start: {e}"));
    launch(app, resources)
}

fn launch(app: Application, resources: TestResources) -> TestApp {
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _resources: resources,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }
}

impl Drop for TestResources {
    fn drop(&mut self) {
        if let Some((base, name)) = self.pg_database.take() {
            // Drop the test's database from a fresh runtime (Drop cannot await).
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

/// Asserts a problem+json answer and returns its body.
pub async fn assert_problem(res: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct}"
    );
    let body: serde_json::Value = res.json().await.expect("a JSON problem");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["type"].is_string() && body["title"].is_string(),
        "{body}"
    );
    body
}
