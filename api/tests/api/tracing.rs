//! OpenTelemetry: `depot` processes export spans over OTLP/HTTP to a collector run by the test;
//! a request's W3C `traceparent` is continued by the API, the outbox relay's publish, the
//! worker's consume and the database statements, and JSON log lines carry the trace id.
//!
//! On SQLite this is one `depot serve` (embedded worker, in-process queue). With
//! DEPOT_TEST_POSTGRES_URL and DEPOT_TEST_AMQP_URL set it is `depot serve` without a worker plus
//! a separate `depot worker` on RabbitMQ: the trace crosses the broker in message headers.

use crate::helpers::{ADMIN_SECRET, test_settings};
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Received = Arc<Mutex<Vec<Value>>>;

async fn start_collector() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let received: Received = Arc::default();
    let data = web::Data::new(received.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .route(
                "/v1/traces",
                web::post().to(|body: web::Bytes, r: web::Data<Received>| async move {
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        r.lock().unwrap().push(v);
                    }
                    HttpResponse::Ok().json(json!({}))
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (url, received)
}

/// (service name, span name, trace id) of every exported span.
fn spans(received: &Received) -> Vec<(String, String, String)> {
    let mut out = vec![];
    for batch in received.lock().unwrap().iter() {
        for rs in batch["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_owned();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    out.push((
                        service.clone(),
                        s["name"].as_str().unwrap_or_default().to_owned(),
                        s["traceId"].as_str().unwrap_or_default().to_lowercase(),
                    ));
                }
            }
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_depot(args: &[&str], env: &[(String, String)], log: &std::path::Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_depot"));
    cmd.args(args)
        .current_dir(log.parent().unwrap())
        .env_remove("RUST_LOG")
        .env_remove("PORT")
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Kills the process if the test fails before stopping it: a test never leaves one behind.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn terminate(mut running: Running) {
    let mut child = running.0.take().expect("running");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("depot did not stop within 15 s of SIGTERM");
}

#[tokio::test]
async fn one_trace_spans_the_request_the_queue_and_the_worker() {
    let (collector, received) = start_collector().await;
    let (settings, _resources) = test_settings().await;
    let scaled = settings.queue.amqp_url.is_some();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env: Vec<(String, String)> = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), collector.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/json".into()),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ("DEPOT_ADMIN_SECRET".into(), ADMIN_SECRET.into()),
        ("DATABASE_URL".into(), settings.database.url.clone()),
        ("DEPOT__DATABASE__AUTO_MIGRATE".into(), "false".into()),
        ("DEPOT__LOG__FORMAT".into(), "json".into()),
        ("DEPOT__SERVER__HOST".into(), "127.0.0.1".into()),
        ("DEPOT__SERVER__PORT".into(), port.to_string()),
        ("DEPOT__SERVER__SHUTDOWN_GRACE_SECONDS".into(), "2".into()),
        ("DEPOT__EXECUTOR__SIMULATED_DURATION_MS".into(), "50".into()),
        // The test's client on 127.0.0.1 is the trusted proxy whose traceparent is continued;
        // a client on 127.0.0.2 is anyone else.
        ("DEPOT__SERVER__TRUSTED_PROXIES".into(), "127.0.0.1".into()),
    ];
    if let Some(amqp) = &settings.queue.amqp_url {
        env.push(("AMQP_URL".into(), amqp.clone()));
        env.push((
            "DEPOT__QUEUE__QUEUE_PREFIX".into(),
            settings.queue.queue_prefix.clone(),
        ));
        env.push(("DEPOT__WORKER__EMBEDDED".into(), "false".into()));
    } else {
        env.push(("DEPOT__QUEUE__KIND".into(), "in_process".into()));
    }
    // Migrations run once, before any process starts (as in production).
    let migrate = Command::new(env!("CARGO_BIN_EXE_depot"))
        .args(["migrate", "up"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let api_log = dir.path().join("api.log");
    let api = Running(Some(spawn_depot(&["serve"], &env, &api_log)));
    let worker_log = dir.path().join("worker.log");
    let worker = scaled.then(|| Running(Some(spawn_depot(&["worker"], &env, &worker_log))));

    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = client.get(format!("{base}/health/ready")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "depot serve did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key: Value = client
        .post(format!("{base}/api/v1/api-keys"))
        .header("X-Admin-Secret", ADMIN_SECRET)
        .json(&json!({"name": "tracing", "scopes": ["packages:read", "packages:write", "operations:read"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let package: Value = client
        .post(format!("{base}/api/v1/packages"))
        .header("X-API-Key", &key)
        .json(&json!({"name": "traced", "version": "1.0.0"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The caller's trace: everything below must continue it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let res = client
        .post(format!(
            "{base}/api/v1/packages/{}/download",
            package["id"].as_str().unwrap()
        ))
        .header("X-API-Key", &key)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let op: Value = res.json().await.unwrap();
    // Anyone else's traceparent is not continued: that request starts a trace of its own.
    let foreign_trace = "0af7651916cd43dd8448eb211c80319c";
    let elsewhere = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let res = elsewhere
        .get(format!("{base}/api/v1/packages"))
        .header("X-API-Key", &key)
        .header(
            "traceparent",
            format!("00-{foreign_trace}-00f067aa0ba902b7-01"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let op_url = format!("{base}/api/v1/operations/{}", op["id"].as_str().unwrap());
    loop {
        let o: Value = client
            .get(&op_url)
            .header("X-API-Key", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if o["status"] == "succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the operation did not finish: {o}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stopping flushes the exporters.
    terminate(api);
    if let Some(w) = worker {
        terminate(w);
    }

    let all = spans(&received);
    let ours: Vec<&(String, String, String)> = all.iter().filter(|s| s.2 == trace_id).collect();
    let has =
        |service: &str, name: &str| ours.iter().any(|s| s.0 == service && s.1.starts_with(name));
    assert!(
        has("depot-api", "POST /api/v1/packages/{id}/download"),
        "the request span continues the caller's trace: {all:?}"
    );
    assert!(
        has("depot-api", "sea_orm"),
        "database statements are spans of the trace: {all:?}"
    );
    assert!(
        has("depot-api", "publish"),
        "the relay's publish joins the trace: {all:?}"
    );
    let worker_service = if scaled { "depot-worker" } else { "depot-api" };
    assert!(
        has(worker_service, "consume operations"),
        "the worker's consume joins the trace (scaled: {scaled}): {all:?}"
    );
    let other = all.iter().filter(|s| s.2 != trace_id).count();
    assert!(other > 0, "unrelated requests have traces of their own");
    assert!(
        all.iter().any(|s| s.1.starts_with("GET /api/v1/packages")),
        "the untrusted client's request was traced: {all:?}"
    );
    assert!(
        all.iter().all(|s| s.2 != foreign_trace),
        "an untrusted client's traceparent was continued: {all:?}"
    );

    let logs = std::fs::read_to_string(&api_log).unwrap();
    assert!(
        logs.lines()
            .any(|l| l.contains(&format!("\"trace_id\":\"{trace_id}\""))),
        "JSON log lines carry the trace id:\n{logs}"
    );
}
