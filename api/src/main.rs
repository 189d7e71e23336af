//! The `depot` binary: `serve` (default), `worker`, `migrate`, `config`.

use clap::{Parser, Subcommand};
use depot_api::bootstrap;
use depot_api::settings::Settings;
use depot_api::startup::{self, Application};
use depot_api::telemetry;
use depot_store::MigrateCommand;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "depot", version, about = "Depot: a package registry service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (and, in embedded mode, the worker). The default.
    Serve,
    /// Run only the worker: consume operations from the queue (scaled mode, RabbitMQ).
    Worker,
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply all pending migrations.
    Up,
    /// Roll back migrations (the last one by default).
    Down {
        /// How many to roll back; 0 rolls back all.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
    /// Drop every table and re-apply all migrations (destroys data).
    Fresh,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the effective settings, secrets redacted.
    Show,
    /// Validate the settings and exit non-zero on the first problem.
    Check,
}

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Config { action } = command {
        match action {
            ConfigAction::Show => print!("{}", settings.to_redacted_toml()),
            ConfigAction::Check => println!("configuration OK"),
        }
        return ExitCode::SUCCESS;
    }
    telemetry::init(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve => serve(settings).await,
            Command::Worker => worker(settings).await,
            Command::Migrate { action } => migrate(settings, action).await,
            Command::Config { .. } => unreachable!("handled above"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings.clone()).await?;
    tracing::info!(
        port = app.port(),
        database = %depot_api::settings::redact_url(&settings.database.url),
        queue = ?settings.queue_kind(),
        embedded_worker = settings.worker.embedded,
        "Depot is listening"
    );
    app.run_until_stopped().await?;
    Ok(())
}

async fn worker(settings: Settings) -> anyhow::Result<()> {
    if settings.queue_kind() == depot_api::settings::QueueKind::InProcess {
        anyhow::bail!(
            "queue.kind: `depot worker` needs a shared queue (queue.kind = \"rabbitmq\" with queue.amqp_url); \
             with the in-process queue the worker runs inside `depot serve`"
        );
    }
    let adapters = bootstrap::build(&settings).await?;
    let handle = startup::start_worker(&settings, &adapters).await?;
    tracing::info!("worker running; SIGTERM or SIGINT stops it");
    shutdown_signal().await;
    tracing::info!("stopping: finishing in-flight jobs");
    handle
        .shutdown(Duration::from_secs(settings.server.shutdown_grace_seconds))
        .await;
    Ok(())
}

async fn shutdown_signal() {
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

async fn migrate(settings: Settings, action: MigrateAction) -> anyhow::Result<()> {
    let db = bootstrap::database_for_migrations(&settings).await?;
    match action {
        MigrateAction::Up => depot_store::migrate(&db, MigrateCommand::Up).await?,
        MigrateAction::Down { steps } => {
            let steps = if steps == 0 { None } else { Some(steps) };
            depot_store::migrate(&db, MigrateCommand::Down { steps }).await?
        }
        MigrateAction::Fresh => depot_store::migrate(&db, MigrateCommand::Fresh).await?,
        MigrateAction::Status => {
            for (name, applied) in depot_store::migration_status(&db).await? {
                println!("{} {name}", if applied { "applied" } else { "pending" });
            }
            return Ok(());
        }
    }
    for (name, applied) in depot_store::migration_status(&db).await? {
        println!("{} {name}", if applied { "applied" } else { "pending" });
    }
    Ok(())
}
