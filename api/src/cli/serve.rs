//! `depot serve` (the API, and the worker in embedded mode) and `depot worker`.

use crate::bootstrap;
use crate::settings::Settings;
use crate::startup::{self, Application};
use std::time::Duration;

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings.clone()).await?;
    tracing::info!(
        port = app.port(),
        database = %crate::settings::redact_url(&settings.database.url),
        queue = ?settings.queue_kind(),
        embedded_worker = settings.worker.embedded,
        "Depot is listening"
    );
    app.run_until_stopped().await?;
    Ok(())
}

pub async fn worker(settings: Settings) -> anyhow::Result<()> {
    if settings.queue_kind() == crate::settings::QueueKind::InProcess {
        anyhow::bail!(
            "queue.kind: `depot worker` needs a shared queue (queue.kind = \"rabbitmq\" with queue.amqp_url); \
             with the in-process queue the worker runs inside `depot serve`"
        );
    }
    let adapters = bootstrap::build(&settings).await?;
    bootstrap::report_drift(&settings, &adapters);
    let handle = startup::start_worker(&settings, &adapters).await?;
    tracing::info!("worker running; SIGTERM or SIGINT stops it");
    shutdown_signal().await;
    tracing::info!("stopping: finishing in-flight jobs");
    handle
        .shutdown(Duration::from_secs(settings.server.shutdown_grace_seconds))
        .await;
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
