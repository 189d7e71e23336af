//! The `depot` binary: `serve` (default), `worker`, `migrate`, `config`.

use clap::{Parser, Subcommand};
use depot_api::bootstrap;
use depot_api::http::telemetry;
use depot_api::settings::Settings;
use depot_api::startup::{self, Application};
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
    /// Drive a running Depot: create, list, download, activate packages (with a progress bar).
    Packages(depot_api::cli::packages::PackagesArgs),
    /// Generate passwords or passphrases locally, with the same rules as GET /api/v1/passwords.
    Password(Box<PasswordArgs>),
    /// Manage user accounts from the command line (the first administrator comes from here).
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Exit 0 when this host's Depot answers /health/live within 2 s (the container HEALTHCHECK).
    Healthcheck,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// Options mirror the HTTP query parameters; unset ones take the `[password]` settings.
#[derive(clap::Args)]
struct PasswordArgs {
    /// `password` or `passphrase`.
    #[arg(long)]
    mode: Option<String>,
    /// How many to print, one per line (1–100).
    #[arg(long, short = 'n')]
    count: Option<String>,
    /// Password length, 6–200.
    #[arg(long, short = 'l')]
    password_length: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    password_numbers: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    password_lower_case_chars: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    password_upper_case_chars: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    password_special_symbols: Option<String>,
    /// Leave out look-alike characters (I l 1 | O 0).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    exclude_ambiguous: Option<String>,
    /// Characters to leave out.
    #[arg(long)]
    exclude: Option<String>,
    /// Custom symbol set.
    #[arg(long)]
    symbols: Option<String>,
    #[arg(long)]
    min_numbers: Option<String>,
    #[arg(long)]
    min_symbols: Option<String>,
    /// Passphrase words, 3–20.
    #[arg(long)]
    words: Option<String>,
    #[arg(long)]
    separator: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    capitalize: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    include_number: Option<String>,
    /// Also print the entropy in bits (to standard error).
    #[arg(long)]
    entropy: bool,
}

impl PasswordArgs {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let fields: [(&'static str, &Option<String>); 16] = [
            ("mode", &self.mode),
            ("count", &self.count),
            ("password_length", &self.password_length),
            ("password_numbers", &self.password_numbers),
            ("password_lower_case_chars", &self.password_lower_case_chars),
            ("password_upper_case_chars", &self.password_upper_case_chars),
            ("password_special_symbols", &self.password_special_symbols),
            ("exclude_ambiguous", &self.exclude_ambiguous),
            ("exclude", &self.exclude),
            ("symbols", &self.symbols),
            ("min_numbers", &self.min_numbers),
            ("min_symbols", &self.min_symbols),
            ("words", &self.words),
            ("separator", &self.separator),
            ("capitalize", &self.capitalize),
            ("include_number", &self.include_number),
        ];
        fields
            .into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
            .collect()
    }
}

fn password(settings: &Settings, args: &PasswordArgs) -> ExitCode {
    match depot_password::Generation::from_pairs(args.pairs(), &settings.password.defaults()) {
        Ok(generation) => {
            for secret in generation.generate(&mut rand::rng()) {
                println!("{secret}");
            }
            if args.entropy {
                eprintln!("entropy: {:.2} bits", generation.entropy_bits());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            for f in &e.errors {
                eprintln!("--{}: {}", f.field.replace('_', "-"), f.message);
            }
            ExitCode::from(2)
        }
    }
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
enum UsersAction {
    /// Create a user with a local password. The password is read from the environment variable
    /// DEPOT_NEW_USER_PASSWORD or, when that is unset, from the first line of standard input.
    Create {
        #[arg(long)]
        email: String,
        /// `admin` or `user`.
        #[arg(long, default_value = "user")]
        role: String,
    },
    /// Print a new Ed25519 signing key (PKCS#8 PEM) for the secret `jwt_signing_key`.
    Keygen,
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
    // A client of a running Depot: needs no server settings.
    if let Some(Command::Packages(args)) = cli.command {
        return depot_api::cli::packages::run(args);
    }
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Password(args) = &command {
        return password(&settings, args);
    }
    if let Command::Healthcheck = command {
        return healthcheck(settings.server.port);
    }
    if let Command::Config { action } = command {
        match action {
            ConfigAction::Show => print!("{}", settings.to_redacted_toml()),
            ConfigAction::Check => println!("configuration OK"),
        }
        return ExitCode::SUCCESS;
    }
    if let Command::Users {
        action: UsersAction::Keygen,
    } = &command
    {
        print!("{}", depot_accounts::tokens::generate_ed25519_pem());
        return ExitCode::SUCCESS;
    }
    let service = match command {
        Command::Serve => Some("depot-api"),
        Command::Worker => Some("depot-worker"),
        _ => None,
    };
    let _telemetry = telemetry::init_to(
        &settings.log,
        matches!(command, Command::Migrate { .. } | Command::Users { .. }),
        service,
    );
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
            Command::Users { action } => users(settings, action).await,
            Command::Config { .. }
            | Command::Password(_)
            | Command::Packages(_)
            | Command::Healthcheck => {
                unreachable!("handled above")
            }
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

/// A dependency-free probe for images without a shell or curl (distroless).
fn healthcheck(port: u16) -> ExitCode {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(2);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let probe = || -> std::io::Result<bool> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.write_all(b"GET /health/live HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("unhealthy: /health/live did not answer 200");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
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

async fn users(settings: Settings, action: UsersAction) -> anyhow::Result<()> {
    let UsersAction::Create { email, role } = action else {
        unreachable!("keygen is handled before the runtime starts")
    };
    let role: depot_accounts::Role = role
        .parse()
        .map_err(|_| anyhow::anyhow!("--role: must be `admin` or `user`"))?;
    let password = match std::env::var("DEPOT_NEW_USER_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            eprintln!("password (one line on standard input):");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let db = bootstrap::connect_database(&settings).await?;
    if settings.auto_migrate() {
        depot_store::migrate_up(&db).await?;
    }
    let secrets = bootstrap::secret_store(&settings);
    let accounts = bootstrap::account_service(
        &settings,
        &db,
        secrets.as_ref(),
        std::sync::Arc::new(depot_core::SystemClock),
    )
    .await?;
    match accounts.create_user(&email, &password, role).await {
        Ok(user) => {
            println!("created {} {} ({})", user.role, user.email, user.id);
            Ok(())
        }
        Err(depot_accounts::AccountError::Validation(v)) => Err(anyhow::anyhow!(
            "{}",
            v.errors
                .iter()
                .map(|e| format!("--{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Err(e) => Err(e.into()),
    }
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
