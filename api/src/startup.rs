//! Building and running the HTTP application. `Application::build` binds first, so a caller
//! (the tests) can ask for port 0 and learn the real port.

use crate::bootstrap::{self, Adapters, StartupError};
use crate::http::error::{ApiError, problem_for_any_error};
use crate::http::extract::BodyLimit;
use crate::http::middleware::{DepotRootSpan, request_context};
use crate::settings::Settings;
use crate::worker::{Worker, WorkerHandle};
use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpRequest, HttpServer, web};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tracing_actix_web::TracingLogger;

pub struct Application {
    port: u16,
    server: Server,
    /// The management listener (`server.management_port`): its port and server.
    management: Option<(u16, Server)>,
    adapters: Adapters,
    worker: Option<WorkerHandle>,
    grace: Duration,
    /// Stops the background loops: the API-key verifier (which flushes usage on the way out) and
    /// the outbox relay.
    background_stop: tokio::sync::watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Connects the adapters, migrates (when configured), binds the listener and starts the
    /// embedded worker (when configured). The server runs once [`run_until_stopped`] is awaited.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let adapters = bootstrap::build(&settings).await?;
        Self::build_with(settings, adapters).await
    }

    pub async fn build_with(settings: Settings, adapters: Adapters) -> Result<Self, StartupError> {
        let address = (settings.server.host.as_str(), settings.server.port);
        let listener = TcpListener::bind(address).map_err(|e| StartupError {
            key: "server.port",
            message: format!(
                "cannot listen on {}:{}: {e}",
                settings.server.host, settings.server.port
            ),
        })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        if settings.worker.embedded {
            bootstrap::report_drift(&settings, &adapters);
        }
        let worker = if settings.worker.embedded {
            Some(start_worker(&settings, &adapters).await?)
        } else {
            None
        };
        let grace = Duration::from_secs(settings.server.shutdown_grace_seconds);
        let services = bootstrap::services(&settings, &adapters).await?;
        if adapters.in_process_queue.is_some() {
            recover_unfinished(&settings, &adapters).await?;
        }
        let state = web::Data::new(crate::app::components(&settings, &adapters, services));
        let (background_stop, stopped) = tokio::sync::watch::channel(false);
        let mut background: Vec<_> = state
            .components
            .iter()
            .flat_map(|c| c.loops(stopped.clone()))
            .map(tokio::spawn)
            .collect();
        background.extend([
            // PostgreSQL: operations other processes end reach the watch at once.
            tokio::spawn(depot_store::listen_for_operations(
                adapters.db.clone(),
                {
                    let watch = adapters.operation_watch.clone();
                    move |ids: &[uuid::Uuid]| watch.changed(ids)
                },
                stopped.clone(),
            )),
            tokio::spawn(bootstrap::maintenance(
                settings.clone(),
                adapters.clone(),
                stopped.clone(),
            )),
            tokio::spawn(bootstrap::reaper(
                settings.clone(),
                adapters.clone(),
                stopped,
            )),
        ]);
        let management = match settings.server.management_port {
            Some(management_port) => {
                let host = settings.server.management_host.as_str();
                let listener =
                    TcpListener::bind((host, management_port)).map_err(|e| StartupError {
                        key: "server.management_port",
                        message: format!("cannot listen on {host}:{management_port}: {e}"),
                    })?;
                let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
                let server = run_management(listener, state.clone()).map_err(|e| StartupError {
                    key: "server.management_port",
                    message: e.to_string(),
                })?;
                tracing::info!(
                    host,
                    port,
                    "management listener (metrics, readiness details)"
                );
                Some((port, server))
            }
            None => None,
        };
        let server = run(listener, &settings, state).map_err(|e| StartupError {
            key: "server.port",
            message: e.to_string(),
        })?;
        Ok(Self {
            port,
            server,
            management,
            adapters,
            worker,
            grace,
            background_stop,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The management listener's port, when there is one.
    pub fn management_port(&self) -> Option<u16> {
        self.management.as_ref().map(|(port, _)| *port)
    }

    /// Serves until SIGTERM/SIGINT (or the server handle stops it), then drains: in-flight
    /// requests get the grace period, the embedded worker likewise.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let management = self.management.map(|(_, server)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let result = self.server.await;
        if let Some((handle, task)) = management {
            handle.stop(true).await;
            let _ = task.await;
        }
        tracing::info!("HTTP server stopped; flushing usage and stopping the worker");
        let _ = self.background_stop.send(true);
        for task in self.background {
            let _ = task.await;
        }
        if let Some(worker) = self.worker {
            worker.shutdown(self.grace).await;
        }
        if let Some(q) = &self.adapters.in_process_queue {
            q.close();
        }
        result
    }

    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

/// A worker running every room's jobs (listed in `app::jobs`).
pub fn worker_for(settings: &Settings, adapters: &Adapters) -> Result<Worker, StartupError> {
    let worker = Worker::new(
        adapters.consumer.clone(),
        settings.worker.concurrency,
        settings.queue.prefetch,
    )
    .max_deliveries(settings.queue.max_deliveries)
    .metrics(adapters.metrics.clone());
    Ok(crate::app::jobs(settings, adapters)?
        .into_iter()
        .fold(worker, Worker::register))
}

/// Embedded mode: the in-process queue did not survive a restart, so unfinished operations are
/// queued again (the runner is idempotent, so a duplicate is harmless).
async fn recover_unfinished(settings: &Settings, adapters: &Adapters) -> Result<(), StartupError> {
    let runner = bootstrap::operation_runner(settings, adapters)?;
    let ids = runner.unfinished().await.map_err(|e| StartupError {
        key: "database.url",
        message: format!("reading unfinished operations failed: {e}"),
    })?;
    for id in &ids {
        let body = serde_json::to_vec(&depot_packages::runner::OperationMessage {
            operation_id: *id,
            keep: None,
        })
        .expect("serialisable");
        let _ = adapters
            .publisher
            .publish(
                depot_packages::OPERATIONS_QUEUE,
                depot_core::queue::Message::new(body),
            )
            .await;
    }
    if !ids.is_empty() {
        tracing::info!(operations = ids.len(), "re-queued unfinished operations");
    }
    Ok(())
}

pub async fn start_worker(
    settings: &Settings,
    adapters: &Adapters,
) -> Result<WorkerHandle, StartupError> {
    let worker = worker_for(settings, adapters)?;
    tracing::info!(handlers = worker.handler_count(), "starting the worker");
    worker.start().await.map_err(|e| StartupError {
        key: "queue",
        message: format!("cannot start consuming: {e}"),
    })
}

fn cors(settings: &Settings) -> Cors {
    let origins = &settings.server.cors_allowed_origins;
    let mut cors = Cors::default()
        .allow_any_method()
        .allow_any_header()
        .expose_headers([
            "x-request-id",
            "etag",
            "location",
            "retry-after",
            // Artifact downloads (ranges, digests, the suggested file name).
            "accept-ranges",
            "content-range",
            "content-digest",
            "repr-digest",
            "content-disposition",
            "content-location",
        ])
        .max_age(3600);
    if origins.iter().any(|o| o == "*") {
        cors = cors.allow_any_origin();
    } else {
        for origin in origins {
            cors = cors.allowed_origin(origin);
        }
    }
    cors
}

fn run(
    listener: TcpListener,
    settings: &Settings,
    state: web::Data<crate::http::state::HttpState>,
) -> std::io::Result<Server> {
    let settings = Arc::new(settings.clone());
    let body_limit = settings.server.body_limit_bytes;
    let routes = Arc::new(crate::app::route_table());
    let docs = settings
        .docs
        .enabled
        .then(|| web::Bytes::from(crate::app::openapi(&settings).to_string()));
    let app_settings = settings.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(ErrorHandlers::new().default_handler(problem_for_any_error))
            .wrap(cors(&app_settings))
            .wrap(from_fn(crate::http::metrics::record_http))
            .wrap(TracingLogger::<DepotRootSpan>::new())
            .wrap(from_fn(request_context))
            .app_data(state.clone())
            .configure(|cfg| {
                for component in &state.components {
                    component.app_data(cfg);
                }
            })
            .app_data(web::PayloadConfig::new(body_limit))
            .app_data(BodyLimit(body_limit))
            .app_data(web::PathConfig::default().error_handler(|e, _req| {
                ApiError::from(depot_core::ValidationError::field("path", e.to_string())).into()
            }))
            .configure(|cfg| crate::http::routes::configure(&routes, false, cfg))
            .configure(|cfg| {
                // With a management listener, metrics are served there only.
                if app_settings.server.management_port.is_none() {
                    cfg.service(
                        web::resource("/metrics")
                            .route(web::get().to(crate::http::metrics::metrics)),
                    );
                }
            })
            .configure(crate::http::docs::configure(docs.clone()))
            .service(
                web::scope(crate::http::routes::API_PREFIX)
                    .wrap(from_fn(crate::http::auth::record_key_use))
                    .configure(|cfg| crate::http::routes::configure(&routes, true, cfg)),
            )
            .default_service(web::to(not_found))
    })
    // Without TCP_NODELAY a small write waits for the ACK of the one before it (Nagle), and the
    // client delays that ACK: an event stream's second and later events arrived 20-40 ms late.
    .tcp_nodelay(true)
    // A client that closes its side of the connection is gone: its response (an event stream
    // holding a slot) is dropped at once, not at the next write. HTTP/1.1 clients do not
    // half-close a connection to wait for an answer.
    .h1_allow_half_closed(false)
    .listen(listener)?
    .shutdown_timeout(settings.server.shutdown_grace_seconds);
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    Ok(server.run())
}

/// The management listener: `/metrics`, `/health/live` and `/health/ready` with each failing
/// check's error. For operators and their scrapers: bind it where only they reach it.
fn run_management(
    listener: TcpListener,
    state: web::Data<crate::http::state::HttpState>,
) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || {
        App::new()
            .wrap(ErrorHandlers::new().default_handler(problem_for_any_error))
            .app_data(state.clone())
            .route("/metrics", web::get().to(crate::http::metrics::metrics))
            .route("/health/live", web::get().to(crate::http::health::live))
            .route(
                "/health/ready",
                web::get().to(crate::http::health::ready_detailed),
            )
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

async fn not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "no resource at {}",
        req.path()
    )))
}
