//! The `depot` binary: parses the command line and hands each command to its module in
//! `depot_api::cli` (`serve` is the default).

use clap::{Parser, Subcommand};
use depot_api::cli::config::ConfigAction;
use depot_api::cli::migrate::{MigrateAction, migrate};
use depot_api::cli::password::PasswordArgs;
use depot_api::cli::serve::{serve, worker};
use depot_api::cli::users::{UsersAction, users};
use depot_api::cli::{healthcheck, password};
use depot_api::http::telemetry;
use depot_api::settings::Settings;
use std::process::ExitCode;

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
    /// Check that the database and the artifact storage agree (links, orphans, missing
    /// artifacts); repair only with --repair.
    Fsck {
        #[arg(long)]
        repair: bool,
    },
    /// Exit 0 when this host's Depot answers /health/live within 2 s (the container HEALTHCHECK).
    Healthcheck,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

fn main() -> ExitCode {
    depot_api::install_tls_provider();
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
        return password::run(&settings, args);
    }
    if let Command::Healthcheck = command {
        return healthcheck::run(settings.server.port);
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
        matches!(
            command,
            Command::Migrate { .. } | Command::Users { .. } | Command::Fsck { .. }
        ),
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
            Command::Fsck { repair } => {
                if depot_api::cli::fsck::fsck(settings, repair).await? {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("the database and the disk disagree"))
                }
            }
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
