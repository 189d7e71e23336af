//! Scaled mode on PostgreSQL + RabbitMQ: worker processes that crash, and a broker that goes away.
//! These need DEPOT_TEST_POSTGRES_URL and DEPOT_TEST_AMQP_URL; they are `#[ignore]`d in the
//! SQLite run and run by `scripts/test.sh` with `--include-ignored` in the PostgreSQL + RabbitMQ
//! run, where a missing service fails them.

use crate::helpers::{TestApp, amqp_url, postgres_url, spawn_app_with, wait_final};
use depot_client::Client;
use depot_client::wire::{CreatePackageRequest, OperationKind, OperationStatus, PackageStatus};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

fn require_services() -> (String, String) {
    (
        postgres_url().expect("DEPOT_TEST_POSTGRES_URL must be set for scaled-mode tests"),
        amqp_url().expect("DEPOT_TEST_AMQP_URL must be set for scaled-mode tests"),
    )
}

/// Kills a child process when dropped, so a failing test leaves none behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a `depot worker` process on the app's database and queues (killed when dropped).
fn spawn_worker(app: &TestApp) -> KillOnDrop {
    spawn_worker_with(app, &[])
}

/// [`spawn_worker`] with more environment.
fn spawn_worker_with(app: &TestApp, env: &[(&str, &str)]) -> KillOnDrop {
    let s = &app.settings;
    Command::new(env!("CARGO_BIN_EXE_depot"))
        .envs(env.iter().copied())
        .arg("worker")
        .env("DATABASE_URL", &s.database.url)
        .env("AMQP_URL", s.queue.amqp_url.as_deref().unwrap())
        .env("DEPOT__QUEUE__QUEUE_PREFIX", &s.queue.queue_prefix)
        .env("DEPOT__WORKER__CONCURRENCY", "8")
        .env(
            "DEPOT__EXECUTOR__SIMULATED_DURATION_MS",
            s.executor.simulated_duration_ms.to_string(),
        )
        .env(
            "DEPOT__EXECUTOR__SIMULATED_STEPS",
            s.executor.simulated_steps.to_string(),
        )
        .env("DEPOT__LOG__LEVEL", "warn")
        .env_remove("PORT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .expect("starting depot worker")
}

/// Creates `n` packages and starts their downloads: (package id, operation id) each.
async fn create_and_download(depot: &Client, n: usize) -> Vec<(Uuid, Uuid)> {
    let mut out = Vec::new();
    for i in 0..n {
        let p = depot
            .create_package(&CreatePackageRequest::new(format!("pkg-{i}"), "1"))
            .await
            .unwrap();
        let res = depot
            .start_with(p.id, OperationKind::Download, None)
            .await
            .unwrap();
        assert_eq!(
            res.status, 202,
            "the request succeeds whatever the broker does"
        );
        out.push((p.id, res.body.id));
    }
    out
}

/// Every operation succeeded and every package changed status exactly once (ETag = revision 2).
async fn assert_all_done_once(depot: &Client, ops: &[(Uuid, Uuid)]) {
    for (pkg, op) in ops {
        let done = wait_final(depot, *op).await;
        assert_eq!(done.status, OperationStatus::Succeeded, "{done:?}");
        let res = depot.get_package(*pkg).await.unwrap();
        assert_eq!(res.etag.as_deref(), Some("\"2\""), "one status change");
        assert_eq!(res.body.status, PackageStatus::Downloaded);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ; run with --include-ignored (scripts/test.sh does)"]
async fn a_killed_worker_loses_no_operation_and_none_runs_twice() {
    require_services();
    let app = spawn_app_with(|s| {
        s.worker.embedded = false;
        s.executor.simulated_duration_ms = 1500;
        s.executor.simulated_steps = 15;
    })
    .await;
    let depot = app.depot_with_key(&app.writer_key().await);
    let mut first = spawn_worker(&app);
    let ops = create_and_download(&depot, 12).await;

    // Kill the worker with SIGKILL while operations are running.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running = depot
            .list_operations(&[("status", Some("running".into()))])
            .await
            .unwrap();
        if !running.items.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no operation started running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();

    let mut second = spawn_worker(&app);
    assert_all_done_once(&depot, &ops).await;
    // The crashed worker's operations ran again (attempts > 1) but changed the status once.
    let mut retried = 0;
    for (_, op) in &ops {
        if depot.get_operation(*op).await.unwrap().attempts > 1 {
            retried += 1;
        }
    }
    assert!(
        retried >= 1,
        "no operation was taken over from the killed worker"
    );
    Command::new("kill")
        .args(["-TERM", &second.0.id().to_string()])
        .status()
        .unwrap();
    let status = second.0.wait().unwrap();
    assert!(
        status.success(),
        "the second worker stops cleanly on SIGTERM: {status:?}"
    );
}

/// The crash test with racing activations: SIGKILL the worker while activations of three
/// versions of one name race; a second worker takes over. Exactly one version ends active, and
/// the `active/` link on disk points at it.
#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ; run with --include-ignored (scripts/test.sh does)"]
async fn a_killed_worker_amid_racing_activations_leaves_one_active_version_and_its_link() {
    use crate::http_executor::{ARTIFACT, artifact_server, sha256_hex};
    require_services();
    let base = artifact_server();
    let storage = tempfile::tempdir().unwrap();
    let dir = storage.path().to_owned();
    let app = spawn_app_with(move |s| {
        s.worker.embedded = false;
        s.executor.kind = depot_api::settings::ExecutorKind::Http;
        s.artifacts.url = Some(format!("file://{}", dir.display()));
    })
    .await;
    let dir = storage.path().to_string_lossy().into_owned();
    let env = [
        ("DEPOT__EXECUTOR__KIND", "http"),
        ("DEPOT__EXECUTOR__STORAGE_DIR", dir.as_str()),
        ("DEPOT__EGRESS__ALLOWED_NETWORKS", "127.0.0.0/8"),
    ];
    let depot = app.depot_with_key(&app.writer_key().await);
    let mut first = spawn_worker_with(&app, &env);
    let mut ids = vec![];
    for v in ["1.0.0", "2.0.0", "3.0.0"] {
        let p = depot
            .create_package(&CreatePackageRequest {
                source_url: Some(format!("{base}/artifact.tgz")),
                sha256: Some(sha256_hex(ARTIFACT)),
                ..CreatePackageRequest::new("crashed", v)
            })
            .await
            .unwrap();
        let op = depot.start(p.id, OperationKind::Download).await.unwrap();
        assert_eq!(
            wait_final(&depot, op.id).await.status,
            OperationStatus::Succeeded
        );
        ids.push(p.id);
    }
    let ops = futures::future::join_all(
        ids.iter()
            .map(|id| depot.start(*id, OperationKind::Activate)),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    first.0.kill().unwrap(); // SIGKILL, mid-race
    first.0.wait().unwrap();
    let _second = spawn_worker_with(&app, &env);
    for op in &ops {
        wait_final(&depot, op.as_ref().unwrap().id).await;
    }
    let mut active = vec![];
    for id in &ids {
        if depot.get_package(*id).await.unwrap().body.status == PackageStatus::Active {
            active.push(*id);
        }
    }
    assert_eq!(active.len(), 1, "exactly one active version: {active:?}");
    // The link follows the database once each activation's worker has synced it (just after
    // the operation ends).
    let link = storage
        .path()
        .join("active")
        .join(depot_api::packages::executor::link_name("crashed"));
    let want = std::path::Path::new("../packages").join(active[0].to_string());
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(&link).ok().as_deref() != Some(want.as_path())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        want,
        "the link agrees with the database"
    );
}

/// A TCP proxy to the broker that the test can cut and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let handle = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns2.lock().unwrap().push(handle);
            }
        });
        Self { port, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ; run with --include-ignored (scripts/test.sh does)"]
async fn requests_succeed_while_the_broker_is_away_and_the_work_completes_after() {
    let (_, amqp) = require_services();
    let broker = reqwest::Url::parse(&amqp).unwrap();
    let proxy = Proxy::start(format!(
        "{}:{}",
        broker.host_str().unwrap(),
        broker.port().unwrap_or(5672)
    ))
    .await;
    let mut via_proxy = broker.clone();
    via_proxy.set_port(Some(proxy.port)).unwrap();
    let via_proxy = via_proxy.to_string();
    let app = spawn_app_with(move |s| s.queue.amqp_url = Some(via_proxy)).await;
    let depot = app.depot_with_key(&app.writer_key().await);

    proxy.cut();
    // Readiness has no wire type (nor a typed call): its status is read raw.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/health/ready").await.status() != 503 {
        assert!(
            Instant::now() < deadline,
            "readiness never reported the broker down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ops = create_and_download(&depot, 5).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (_, op) in &ops {
        let v = depot.get_operation(*op).await.unwrap();
        assert_eq!(
            v.status,
            OperationStatus::Pending,
            "nothing ran while the broker was away"
        );
    }

    proxy.restore();
    assert_all_done_once(&depot, &ops).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/health/ready").await.status() != 200 {
        assert!(Instant::now() < deadline, "readiness never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An event stream on the API hears of an operation a `depot worker` process ended at once
/// (PostgreSQL notifies the API), not at the watch's next read, set here to 5 s.
#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ; run with --include-ignored (scripts/test.sh does)"]
async fn event_streams_hear_at_once_of_operations_a_worker_process_ends() {
    require_services();
    let app = spawn_app_with(|s| {
        s.worker.embedded = false;
        s.operations.watch_interval_ms = 5000;
        s.executor.simulated_duration_ms = 1000;
        s.executor.simulated_steps = 1;
    })
    .await;
    let key = app.writer_key().await;
    let depot = app.depot_with_key(&key);
    let _worker = spawn_worker(&app);
    let ops = create_and_download(&depot, 1).await;
    let path = format!("/api/v1/operations/{}", ops[0].1);
    // Follow it once it runs: the worker process is up, and about a second of work is left.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let op = depot.get_operation(ops[0].1).await.unwrap();
        if op.status == OperationStatus::Running {
            break;
        }
        assert_eq!(op.status, OperationStatus::Pending, "{op:?}");
        assert!(Instant::now() < deadline, "the operation never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    // The event stream is read raw, as its text: the test times its end.
    let res = app.get_with_key(&format!("{path}/events"), &key).await;
    assert_eq!(res.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(20), res.text())
        .await
        .expect("the stream closes")
        .unwrap();
    let took = started.elapsed();
    assert!(body.contains("\"succeeded\""), "{body}");
    // At most a second of work was left; polling alone would report the end after 5 s.
    assert!(
        took < Duration::from_secs(4),
        "the final event came after {took:?}"
    );
}

/// The operation listener has a connection of its own: with a pool of one connection the API
/// still serves, and an operation still runs to its end.
#[tokio::test]
#[ignore = "needs PostgreSQL and RabbitMQ; run with --include-ignored (scripts/test.sh does)"]
async fn the_operation_listener_takes_no_connection_from_the_pool() {
    require_services();
    let app = spawn_app_with(|s| {
        s.database.max_connections = 1;
        s.database.acquire_timeout_seconds = 2;
        s.executor.simulated_duration_ms = 0;
    })
    .await;
    let depot = app.depot_with_key(&app.writer_key().await);
    // Let the listener connect first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ops = create_and_download(&depot, 2).await;
    for (_, op) in &ops {
        let done = wait_final(&depot, *op).await;
        assert_eq!(done.status, OperationStatus::Succeeded, "{done:?}");
    }
}
