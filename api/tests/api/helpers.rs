use depot_api::bootstrap::Adapters;
use depot_api::settings::{QueueKind, Settings};
use depot_api::startup::Application;
use depot_client::wire::{ApiKeyCreated, CreateApiKeyRequest, OperationView, Problem};
use sea_orm::{ConnectionTrait, Database};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub admin_secret: String,
    pub settings: Settings,
    /// `http://127.0.0.1:<port>` of the management listener, when configured.
    pub management_address: Option<String>,
    server: actix_web::dev::ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    resources: Arc<TestResources>,
}

/// What a test's settings point at: a temp directory (the SQLite file, the secrets directory)
/// and, on PostgreSQL, a database created for the test. Dropping it removes them.
pub struct TestResources {
    pg_database: Option<(String, String)>,
    /// (AMQP URL, queue prefix) of this test's queues on the real broker.
    amqp_queues: Option<(String, String)>,
    _dir: tempfile::TempDir,
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
            depot_api::http::telemetry::init(&log);
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
    // Operations finish quickly in tests unless a test asks for slow ones.
    settings.executor.simulated_duration_ms = 100;
    settings.executor.simulated_steps = 4;
    settings.api_keys.usage_flush_milliseconds = 200;
    // The tests' artifact servers and identity provider listen on loopback, which the egress
    // policy refuses by default; the egress tests put the default back.
    settings.egress.allowed_networks = vec!["127.0.0.0/8".into(), "::1/128".into()];
    // Most account tests register users; the default (off) has its own test.
    settings.accounts.registration_enabled = true;
    let mut pg = None;
    let dir = tempfile::tempdir().expect("a temp dir");
    // The admin secret comes through the real file secret store.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("admin_secret"), ADMIN_SECRET).unwrap();
    settings.secrets.dir = Some(secrets);
    // Each test keeps its artifacts in its own directory (uploads work with any executor).
    settings.artifacts.url = Some(format!("file://{}", dir.path().join("artifacts").display()));
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
        settings.database.url = format!("sqlite://{}", dir.path().join("depot.db").display());
    }
    let mut amqp_queues = None;
    if let Some(amqp) = amqp_url() {
        let prefix = format!("depot-test-{}.", Uuid::new_v4().simple());
        settings.queue.kind = Some(QueueKind::Rabbitmq);
        settings.queue.amqp_url = Some(amqp.clone());
        settings.queue.queue_prefix = prefix.clone();
        amqp_queues = Some((amqp, prefix));
    }
    (
        settings,
        TestResources {
            pg_database: pg,
            amqp_queues,
            _dir: dir,
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
    launch(app, settings, Arc::new(resources))
}

/// Starts the app with adapters the test built itself (e.g. a queue it will close).
pub async fn spawn_app_with_adapters(build: impl AsyncFnOnce(&Settings) -> Adapters) -> TestApp {
    spawn_app_with_settings_and_adapters(|_| {}, build).await
}

/// [`spawn_app_with_adapters`] with settings of the test's own.
pub async fn spawn_app_with_settings_and_adapters(
    customize: impl FnOnce(&mut Settings),
    build: impl AsyncFnOnce(&Settings) -> Adapters,
) -> TestApp {
    let (mut settings, resources) = test_settings().await;
    customize(&mut settings);
    let adapters = build(&settings).await;
    let app = Application::build_with(settings.clone(), adapters)
        .await
        .unwrap_or_else(|e| panic!("the app failed to start: {e}"));
    launch(app, settings, Arc::new(resources))
}

pub const ADMIN_SECRET: &str = "test-admin-secret-0123456789abcdefghijklmnop";

fn launch(app: Application, settings: Settings, resources: Arc<TestResources>) -> TestApp {
    let port = app.port();
    let management_address = app
        .management_port()
        .map(|p| format!("http://127.0.0.1:{p}"));
    let server = app.server_handle();
    let task = Some(tokio::spawn(app.run_until_stopped()));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .build()
            .unwrap(),
        admin_secret: ADMIN_SECRET.to_owned(),
        settings,
        management_address,
        server,
        task,
        resources,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Stops the server gracefully (as SIGTERM does) and waits for the shutdown to finish.
    pub async fn stop(&mut self) {
        self.server.stop(true).await;
        if let Some(task) = self.task.take() {
            task.await.expect("the app task").expect("a clean shutdown");
        }
    }

    /// Another replica on the same database (and broker): a second process in production.
    pub async fn spawn_replica(&self) -> TestApp {
        let mut settings = self.settings.clone();
        settings.server.port = 0;
        let app = Application::build(settings.clone())
            .await
            .unwrap_or_else(|e| panic!("the replica failed to start: {e}"));
        launch(app, settings, self.resources.clone())
    }

    /// The typed client of this app, without credentials.
    pub fn depot(&self) -> depot_client::Client {
        depot_client::Client::with_http(self.client.clone(), &self.address)
    }

    /// The typed client, with the admin secret.
    pub fn admin_depot(&self) -> depot_client::Client {
        self.depot().with_admin_secret(&self.admin_secret)
    }

    /// The typed client, with an API key.
    pub fn depot_with_key(&self, key: &str) -> depot_client::Client {
        self.depot().with_api_key(key)
    }

    /// The typed client, with a user's access token (`Authorization: Bearer`).
    pub fn depot_with_token(&self, token: &str) -> depot_client::Client {
        self.depot().with_bearer(token)
    }

    /// Creates a key (with the admin secret) from this request.
    pub async fn create_key_with(&self, request: &CreateApiKeyRequest) -> ApiKeyCreated {
        self.admin_depot()
            .create_api_key(request)
            .await
            .unwrap_or_else(|e| panic!("creating a key: {e}"))
    }

    /// Creates a key named "test key" with these scopes and the default lifetime.
    pub async fn key_with_scopes(&self, scopes: &[&str]) -> ApiKeyCreated {
        self.create_key_with(&key_request(scopes)).await
    }

    /// Creates a key with these scopes (and extra fields of the request); returns (id,
    /// plaintext key).
    pub async fn create_key(&self, scopes: &[&str], extra: serde_json::Value) -> (String, String) {
        let mut body = serde_json::to_value(key_request(scopes)).unwrap();
        if let serde_json::Value::Object(extra) = extra {
            body.as_object_mut().unwrap().extend(extra);
        }
        let request: CreateApiKeyRequest = serde_json::from_value(body).expect("a key request");
        let created = self.create_key_with(&request).await;
        (created.api_key.id.to_string(), created.key)
    }

    /// A key holding every package and operation scope.
    pub async fn writer_key(&self) -> String {
        self.key_with_scopes(&["packages:read", "packages:write", "operations:read"])
            .await
            .key
    }

    /// A request with an API key.
    pub fn with_key(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("X-API-Key", key)
    }

    /// GET with an API key.
    pub async fn get_with_key(&self, path: &str, key: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap()
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
        if let Some((url, prefix)) = self.amqp_queues.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    if let Ok(q) = depot_queue::LapinQueue::connect(&url, prefix).await {
                        let _ = q.delete_queue(depot_packages::OPERATIONS_QUEUE).await;
                        q.close().await;
                    }
                });
            })
            .join();
        }
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

/// The same checks for a raw answer, its problem read through the wire type.
pub async fn assert_raw_problem(res: reqwest::Response, status: u16, code: &str) -> Problem {
    assert_raw_problem_text(res, status, code).await.0
}

/// [`assert_raw_problem`], also returning the body as it was sent: for tests about which bytes
/// a problem carries (the wire type drops members it does not know).
pub async fn assert_raw_problem_text(
    res: reqwest::Response,
    status: u16,
    code: &str,
) -> (Problem, String) {
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
    let text = res.text().await.expect("a body");
    let problem: Problem =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("a problem document ({e}): {text}"));
    assert_eq!(problem.status, status, "{text}");
    assert_eq!(problem.code, code, "{text}");
    (problem, text)
}

/// The HTTP status of an answer, whether it succeeded or not.
pub fn status_of<T>(answer: &Result<depot_client::Response<T>, depot_client::Error>) -> u16 {
    match answer {
        Ok(res) => res.status,
        Err(e) => e.status().unwrap_or_else(|| panic!("no answer: {e}")),
    }
}

/// Asserts that a typed call failed with a problem+json answer of this status and code (the
/// wire type requires `type` and `title`); returns the problem.
pub fn assert_api_problem<T: std::fmt::Debug>(
    result: Result<T, depot_client::Error>,
    status: u16,
    code: &str,
) -> Problem {
    let e = match result {
        Ok(answer) => panic!("expected a {status} {code} problem, got {answer:?}"),
        Err(e) => e,
    };
    assert_eq!(e.status(), Some(status), "status: {e}");
    assert_eq!(e.status_and_code(), Some((status, code)), "{e}");
    let ct = e
        .headers()
        .and_then(|h| h.get(reqwest::header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct}"
    );
    e.problem().cloned().unwrap()
}

/// The fields a validation problem names, in order.
pub fn fields(problem: &Problem) -> Vec<&str> {
    problem.errors.iter().map(|e| e.field.as_str()).collect()
}

/// A key request named "test key" with these scopes and nothing else.
pub fn key_request(scopes: &[&str]) -> CreateApiKeyRequest {
    CreateApiKeyRequest {
        name: "test key".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Polls an operation until it is final (at most 20 s).
pub async fn wait_final(depot: &depot_client::Client, op_id: Uuid) -> OperationView {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let op = depot.get_operation(op_id).await.unwrap();
        if op.status.is_final() {
            return op;
        }
        assert!(Instant::now() < deadline, "operation still {op:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A problem's `detail`, which must be there.
pub fn detail(problem: &Problem) -> &str {
    problem
        .detail
        .as_deref()
        .unwrap_or_else(|| panic!("a detail: {problem:?}"))
}
